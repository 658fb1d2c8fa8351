"""Discretise and verify: a discrete program from the soft one is run exactly, and counts
only when it verifies.

:func:`check` runs a program on K training examples with the exact Transformer CPU; one that
is right there is verified like any agent's program (``ctx.verify``: fresh inputs at every
training and test length, 8x included). :func:`prune` then drops the steps the verified
program does not need (a write that a later step overwrites), each removal kept only if the
shorter program verifies as well. Every program run is charged to the solve's budget and
counted in ``stats["checked"]``.
"""

from __future__ import annotations

from agents.api import SolveContext
from agents.gradient.ops import SoftStep
from agents.gradient.soft import StepParams, read_bias
from agents.result import Program
from algind_gym.tasks import Workspace


def program_key(program: Program) -> tuple:
    """A hashable form of a program (to run each one once)."""
    return tuple((s, tuple(b)) for s, b in program)


def argmax_program(
    steps: list[SoftStep],
    params: list[StepParams],
    defined: set[str] | None = None,
    fresh_bias: float = 0.0,
) -> Program:
    """The argmax program of the shared-buffer form (one member's logits): per step the
    most likely op (skips dropped) with its most likely buffer per data slot, among the
    buffers the soft forward lets it read."""
    program: Program = []
    defined = None if defined is None else set(defined)
    written: set[str] = set()
    for step, par in zip(steps, params, strict=True):
        i = int(par.alpha.detach().argmax())
        if i == 0:
            continue
        v = i - 1
        op = step.ops[v]
        names = []
        for j, s in enumerate(op.slots):
            if s.skill is not None:
                names.append(f"&{s.skill}")
            elif (v, j) in par.w_in:
                logits = par.w_in[(v, j)].detach()
                if defined is not None:
                    logits = logits + read_bias(op, j, defined, written, fresh_bias)
                names.append(s.candidates[int(logits.argmax())])
            else:
                names.append(s.candidates[0])
        program.append((op.skill, names))
        if defined is not None:
            outs = {n for j, n in enumerate(names) if op.slots[j].role not in ("in", "skill")}
            defined |= outs
            written |= outs
    return program


def check(ctx: SolveContext, program: Program, tried: dict, k: int) -> bool:
    """Exact run of ``program`` on ``k`` training examples, then full verification; False
    without running when it was run before (``tried``: key -> training score)."""
    key = program_key(program)
    if key in tried:
        return False
    ctx.stats["checked"] = ctx.stats.get("checked", 0) + 1
    ws = Workspace(
        ctx.library,
        ctx.task,
        max(ctx.task.train_lengths),
        batch=k,
        seed=int(ctx.rng.integers(2**31 - 1)),
    )
    machines = ws.reset()
    results = ws.run_program(machines, program, "transformer")
    ctx.charge(
        actions=len(program),
        env_steps=len(program),
        instructions=int(sum(r.steps.sum() for r in results)),
    )
    score = float(ws.score(machines).fraction.mean())
    tried[key] = score
    ctx.offer(program, score)
    if score < 1.0:
        return False
    return all(v == 1.0 for v in ctx.verify(program).values())


def prune(ctx: SolveContext, program: Program, tried: dict, k: int) -> Program:
    """Drop steps the verified ``program`` does not need (e.g. a step whose output a later
    step overwrites), keeping each removal only if the shorter program verifies too."""
    i = 0
    while len(program) > 1 and i < len(program):
        shorter = program[:i] + program[i + 1 :]
        if check(ctx, shorter, tried, k):
            program = shorter
            ctx.stats["pruned_steps"] = ctx.stats.get("pruned_steps", 0) + 1
        else:
            i += 1
    return program
