"""Where one training iteration of the gradient composer spends its time, and the hybrid run.

Two parts, side by side in one process:

1. **One CPU call** of the task's first soft step (every op's rows, the torch ops with
   autograd): milliseconds per forward and per backward pass, rows, cells per row, and the
   number of aten ops one forward and its backward dispatch (``TorchDispatchMode``); and
   the same number of rows on the exact (numba) kernel, no autograd.
2. **Whole solves**, ``solve(TASK, agent="gradient", ...)`` with ``hybrid=False`` (every
   row on the torch ops: the path before the hybrid run) and ``hybrid=True`` (every row's
   values on the exact kernel, only the rows that carry a gradient on the torch ops), each
   run ``--repeats`` times in turn: iterations per second, the share of the time inside
   the CPU (forward calls and backward pass), the share of rows that ran on the torch ops,
   and the final loss and program (they must be equal: the hybrid run changes no value).
   A warm-up solve compiles the numba kernel first.

``--profile`` also prints the cProfile functions with the most cumulative time for one
solve of each kind.

Usage::

    python experiments/bench_gradient_iteration.py [--task DotProduct] [--iterations 4]
        [--repeats 2] [--seed 1] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from agents import solve
from agents.gradient.composer import default_examples, defined_buffers, training_length
from agents.gradient.dag import build_plan
from agents.gradient.ops import SoftStep
from algind_gym.cpu.backend import make_backend
from algind_gym.skills import builtin_library
from algind_gym.tasks import Workspace, get_task


class _CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


def one_call(task: str, population: int) -> None:
    """Part 1: one CPU call of the first step of the two-step plan."""
    lib, spec = builtin_library(), get_task(task)
    length = training_length(spec)
    k = default_examples(_Ctx(lib, spec), length, population)
    ws = Workspace(lib, spec, length, batch=k, seed=0)
    plan = build_plan(lib, spec, ws.image, 2, defined_buffers(ws))
    step = SoftStep(
        lib,
        plan.steps_ops[0],
        k * population,
        ws.max_steps,
        make_backend("transformer-torch"),
        np.float32,
    )
    base = step.template()
    cells = base.clone().requires_grad_()
    step.cpu(cells)  # warm the batch-index cache
    with _CountOps() as fwd_ops:
        out = step.cpu(cells)
    with _CountOps() as bwd_ops:
        out.sum().backward()
    reps = 8
    t0 = time.perf_counter()
    for _ in range(reps):
        out = step.cpu(cells)
    t1 = time.perf_counter()
    for _ in range(reps):
        step.cpu(cells).sum().backward()
    t2 = time.perf_counter()
    exact = make_backend("transformer").model(step.layout, np.float32)
    exact.run_array(base.numpy().copy(), 1)  # compile
    copies = [base.numpy().copy() for _ in range(reps)]
    t3 = time.perf_counter()
    for arr in copies:
        exact.run_array(arr, 1)
    t4 = time.perf_counter()
    fwd = (t1 - t0) / reps
    bwd = (t2 - t1) / reps - fwd
    print(
        f"{task}, first step: {len(step.ops)} ops x {k * population} rows = {step.batch} rows "
        f"of {step.layout.n_cells} cells"
    )
    print("| one CPU call (one instruction per row) | ms | aten ops |")
    print("| --- | --- | --- |")
    print(f"| torch ops, forward with autograd | {1e3 * fwd:.2f} | {fwd_ops.n} |")
    print(f"| torch ops, backward | {1e3 * bwd:.2f} | {bwd_ops.n} |")
    print(f"| exact kernel (numba), no autograd | {1e3 * (t4 - t3) / reps:.2f} | - |")


class _Ctx:
    """The two fields :func:`default_examples` reads."""

    def __init__(self, library, task) -> None:
        self.library, self.task, self.seed, self.n_examples = library, task, 0, 8


def solves(task: str, iterations: int, repeats: int, seed: int, profile: bool) -> None:
    """Part 2: whole solves, the torch-only path against the hybrid run, in turn."""
    opts = dict(steps=2, deepen=False, iterations=iterations, seed=seed, budget=10**9)
    solve(task, agent="gradient", **{**opts, "iterations": 1})  # compile the kernels
    rows: dict[bool, list] = {False: [], True: []}
    for _ in range(repeats):
        for hybrid in (False, True):
            prof = cProfile.Profile() if profile else None
            t0 = time.perf_counter()
            if prof:
                prof.enable()
            r = solve(task, agent="gradient", hybrid=hybrid, **opts)
            if prof:
                prof.disable()
                buf = io.StringIO()
                pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(20)
                print(f"--- cProfile, hybrid={hybrid}\n{buf.getvalue()}")
            rows[hybrid].append((time.perf_counter() - t0, r))
    print(f"\n{task}, {iterations} iterations of T = 2 (seed {seed}), {repeats} solves each:")
    print("| path | it/s | s per iteration | CPU share | forward s | backward s | torch rows |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    mean = {}
    for hybrid, runs in rows.items():
        s = [r.stats for _, r in runs]
        train = np.mean([x["train_s"] for x in s])
        its = np.mean([x["iterations"] for x in s])
        fwd = np.mean([x["cpu_forward_s"] for x in s])
        bwd = np.mean([x["cpu_backward_s"] for x in s])
        share = np.mean([x.get("grad_row_share", 1.0) for x in s])
        mean[hybrid] = train / its
        name = "hybrid (exact values, torch for gradients)" if hybrid else "torch ops, every row"
        print(
            f"| {name} | {its / train:.3f} | {train / its:.2f} | {(fwd + bwd) / train:.0%} "
            f"| {fwd / its:.2f} | {bwd / its:.2f} | {share:.0%} |"
        )
    print(f"speed-up (s per iteration, torch / hybrid): {mean[False] / mean[True]:.2f}")
    a, b = rows[False][0][1], rows[True][0][1]
    same = a.stats.get("final_loss") == b.stats.get("final_loss") and a.program == b.program
    print(
        f"same final loss and program: {same} "
        f"({a.stats.get('final_loss')} vs {b.stats.get('final_loss')}; success {a.success}, "
        f"{b.success})"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default="DotProduct")
    p.add_argument("--iterations", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--population", type=int, default=4)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    one_call(args.task, args.population)
    solves(args.task, args.iterations, args.repeats, args.seed, args.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
