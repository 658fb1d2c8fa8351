"""Private channels of the gradient composer: dataflow, unmixed channels, top programs."""

from __future__ import annotations

import torch

from agents import solve
from agents.api import SolveContext
from agents.gradient import GradientComposer
from agents.gradient.composer import defined_buffers
from agents.gradient.dag import build_plan, channel_zeros, top_programs, usage
from agents.gradient.ops import SoftStep
from agents.gradient.soft import init_params, soft_forward
from algind_gym.cpu.backend import make_backend
from algind_gym.skills import builtin_library
from algind_gym.tasks import Workspace, get_task
from algind_gym.tasks.reference import reference_library_for


def _dot_plan(skills=("zipmap", "reduce", "fold", "s_add", "s_mul", "s_max")):
    lib, task = builtin_library(), get_task("DotProduct")
    ws = Workspace(lib, task, 3, batch=4, seed=0)
    plan = build_plan(lib, task, ws.image, 2, defined_buffers(ws), list(skills))
    return lib, ws, plan


def test_plan_reads_only_what_is_defined_and_gives_every_writer_its_own_channel():
    _, _, plan = _dot_plan()
    inner, last = plan.steps_ops
    first_reads = {c for op in inner for s in op.slots if s.role == "in" for c in s.candidates}
    # the first step reads inputs and constants only: no output, no scratch, no channel
    assert first_reads == {"x", "y", "zero", "one"}
    written = [s.candidates for op in inner for s in op.slots if s.written]
    assert all(len(c) == 1 and c[0] in plan.channels for c in written)
    assert len({c[0] for c in written}) == len(written)  # one channel per writer
    # s_add(zero, one) etc. read only constants: not first-step ops
    assert not any(op.skill.startswith("s_") for op in inner)
    # the last step writes only the output and may read every channel of its shape
    assert all(c == ("out",) for op in last for s in op.slots if s.written for c in [s.candidates])
    reduce_add = next(op for op in last if op.label == "reduce@1[s_add@1]")
    vector_channels = [n for n, (*_, cls) in plan.channels.items() if cls[1:] == (3, 1)]
    assert set(reduce_add.slots[1].candidates) == {"x", "y", *vector_channels}


def test_channels_hold_unmixed_results_and_the_last_step_reads_them():
    lib, ws, plan = _dot_plan(("zipmap", "reduce", "s_add", "s_mul"))
    backend = make_backend("transformer-torch")
    steps = [SoftStep(lib, ops, 4, ws.max_steps, backend) for ops in plan.steps_ops]
    steps[0].private = True
    gen = torch.Generator().manual_seed(0)
    params = [init_params(s.ops, gen, None, 0.0) for s in steps]
    mul = next(v for v, op in enumerate(plan.steps_ops[0]) if op.label == "zipmap@1[s_mul@1]")
    # W^in of zipmap(s_mul)'s two reads: x then y (logits +-30: one-hot in float64)
    params[0].w_in[(mul, 1)].data[:] = torch.tensor([30.0, -30.0])
    params[0].w_in[(mul, 2)].data[:] = torch.tensor([-30.0, 30.0])
    state, _ = GradientComposer()._state(ws, torch.float64)
    state.update(channel_zeros(plan, 4, torch.float64))
    final, stats = soft_forward(
        state, steps, params, 1.0, False, gen, defined_buffers(ws), 2.0, balanced=True
    )
    channel = next(n for n, (t, v, *_) in plan.channels.items() if (t, v) == (0, mul))
    assert torch.allclose(final[channel], state["x"] * state["y"])  # not scaled by any alpha
    assert (stats.faults[0] == 0).all()
    # the top programs read that channel through its producer, given a scratch buffer
    add = next(v for v, op in enumerate(plan.steps_ops[1]) if op.label == "reduce@1[s_add@1]")
    cands = plan.steps_ops[1][add].slots[1].candidates
    params[1].w_in[(add, 1)].data[:] = torch.tensor([30.0 if c == channel else 0 for c in cands])
    params[1].alpha.data[add + 1] = 5.0
    _, best = top_programs(plan, params, 2.0)[0]
    assert best == [
        ("zipmap@1", ["&s_mul@1", "x", "y", "tmp_v0"]),
        ("reduce@1", ["&s_add@1", "tmp_v0", "out"]),
    ]
    alphas = usage(plan, params, 1.0, 2.0)
    assert alphas[0][1 + mul] > 0.9 and abs(alphas[1].sum() - 1) < 1e-9


def test_solves_dot_product_from_the_built_in_library():
    """zipmap(s_mul) then a sum, from the whole built-in library (29 ops can write the
    output, 49 first-step ops), verified at 8x the longest training length, found by
    training alone: only the members' argmax programs are run exactly (``top_k=0``). The
    composer's defaults (a population of 4 members batched as rows), seed 0, schedules over
    30 iterations; it stops at the first verified program (iteration 12 when measured;
    seeds 0-4: experiments/results/gradient_table_session7_notes.md)."""
    kw = dict(steps=2, iterations=30, deepen=False, top_k=0)  # T = 2 from the start
    r = solve("DotProduct", agent="gradient", budget=10**7, seed=0, **kw)
    assert r.success, r.stats
    assert r.generalisation["64"] == 1.0
    assert r.program[0][0] == "zipmap@1" and r.program[0][1][0] == "&s_mul@1"
    assert r.stats["success_source"] == "argmax" and r.stats["success_rank"] == 0
    # only the members' argmax programs, each new one once
    assert r.stats["checked"] <= 4 * r.stats["iterations"] + 2  # + 2: pruning each step


def test_matvec_runs_one_step_programs_and_reports_why_not_two():
    ctx = SolveContext(get_task("MatVec"), reference_library_for("MatVec"), 10**6, 0)
    ws = Workspace(ctx.library, ctx.task, 3, batch=2, seed=0)
    inner, final = GradientComposer(steps=2)._ops(ctx, ws)
    assert inner == [] and "more than 400 candidate ops" in ctx.stats["deepening_stopped"]
    assert any(op.skill == "map_rows@1" for op in final)
