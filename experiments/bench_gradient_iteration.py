"""Where one training iteration of the gradient composer spends its time, and the hybrid run.

Two parts, side by side in one process:

1. **One CPU call** of the task's first soft step (every op's rows, the torch ops with
   autograd): milliseconds per forward and per backward pass, rows, cells per row, and the
   number of aten ops one forward and its backward dispatch (``TorchDispatchMode``); and
   the same number of rows on the exact (numba) kernel, no autograd.
   The same call on split cells (:class:`~algind_gym.cpu.model.SplitCells`: the code
   outside autograd).
2. **Whole solves**, ``solve(TASK, agent="gradient", ...)`` on each of ``--paths``:
   ``torch`` (every row on the torch ops, whole cells: the path before the hybrid run),
   ``hybrid`` (every row's values on the exact kernel, only the rows that carry a gradient
   on the torch ops, whole cells), ``hybrid-split-wide`` (those rows on split cells: every
   cell but the code in autograd), ``hybrid-split`` (the default: only the cells the exact
   run wrote on those rows and the inputs in autograd) and ``torch-split``, each run ``--repeats`` times in turn: iterations per second,
   the share of the time inside the CPU (forward calls and backward pass), the share of
   rows that ran on the torch ops, and the final loss and program (they must be equal:
   neither the hybrid run nor the split changes a value). A warm-up solve compiles the
   numba kernel first.

``--profile`` also prints the cProfile functions with the most cumulative time for one
solve of each kind.

Usage::

    python experiments/bench_gradient_iteration.py [--task DotProduct] [--iterations 4]
        [--repeats 2] [--seed 1] [--profile] [--paths hybrid hybrid-split] [--no-call]
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
from algind_gym.cpu.backend import empty_write_ranges, make_backend
from algind_gym.cpu.model import SplitCells
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
    # the same call on split cells: the code outside autograd (wide), and only the cells an
    # exact run of these rows writes and the inputs in autograd (narrow, the default)
    written, raw = empty_write_ranges(step.batch), base.clone()
    exact.run_array(raw.numpy(), step.max_steps, written)  # the model timed above
    narrow = step._data_mask(written, torch.arange(step.batch))
    for name, mask in (("wide", None), ("narrow", narrow)):
        split = step.cpu.split_cells(cells, mask)
        state = SplitCells(split.data.detach().requires_grad_(), split.code, split.map)  # leaf
        step.cpu.forward_split(state)  # warm the split-row cache
        with _CountOps() as fwd_ops:
            out = step.cpu.forward_split(state)
        with _CountOps() as bwd_ops:
            out.data.sum().backward()
        t5 = time.perf_counter()
        for _ in range(reps):
            out = step.cpu.forward_split(state)
        t6 = time.perf_counter()
        for _ in range(reps):
            step.cpu.forward_split(state).data.sum().backward()
        t7 = time.perf_counter()
        fwd_s = (t6 - t5) / reps
        bwd_s = (t7 - t6) / reps - fwd_s
        print(
            f"| split cells, {name} ({state.data.shape[1]} cells per row with grad, "
            f"{tuple(state.code.shape)} without), forward | {1e3 * fwd_s:.2f} | {fwd_ops.n} |"
        )
        print(f"| split cells, {name}, backward | {1e3 * bwd_s:.2f} | {bwd_ops.n} |")
        print(
            f"| one call, forward + backward, whole / split {name} | "
            f"{(fwd + bwd) / (fwd_s + bwd_s):.2f}x | - |"
        )
    print(f"| exact kernel (numba), no autograd | {1e3 * (t4 - t3) / reps:.2f} | - |")


class _Ctx:
    """The two fields :func:`default_examples` reads."""

    def __init__(self, library, task) -> None:
        self.library, self.task, self.seed, self.n_examples = library, task, 0, 8


PATHS = {
    "torch": ("torch ops, every row, whole cells", dict(hybrid=False, split=False)),
    "hybrid": ("hybrid, whole cells (session 7)", dict(hybrid=True, split=False)),
    "hybrid-split-wide": (
        "hybrid, split cells, all but the code in autograd",
        dict(hybrid=True, split=True, narrow=False),
    ),
    "hybrid-split": (
        "hybrid, split cells, written cells and inputs in autograd (default)",
        dict(hybrid=True, split=True, narrow=True),
    ),
    "torch-split": ("torch ops, every row, split cells", dict(hybrid=False, split=True)),
}


def solves(
    task: str, iterations: int, repeats: int, seed: int, profile: bool, paths: list[str]
) -> None:
    """Part 2: whole solves on each of ``paths`` (:data:`PATHS`), in turn."""
    opts = dict(steps=2, deepen=False, iterations=iterations, seed=seed, budget=10**9)
    solve(task, agent="gradient", **{**opts, "iterations": 1})  # compile the kernels
    rows: dict[str, list] = {p: [] for p in paths}
    for _ in range(repeats):
        for path in paths:
            prof = cProfile.Profile() if profile else None
            t0 = time.perf_counter()
            if prof:
                prof.enable()
            r = solve(task, agent="gradient", **PATHS[path][1], **opts)
            if prof:
                prof.disable()
                buf = io.StringIO()
                pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(25)
                print(f"--- cProfile, {path}\n{buf.getvalue()}")
            rows[path].append((time.perf_counter() - t0, r))
    print(f"\n{task}, {iterations} iterations of T = 2 (seed {seed}), {repeats} solves each:")
    print("| path | it/s | s per iteration | CPU share | forward s | backward s | torch rows |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    mean = {}
    for path, runs in rows.items():
        s = [r.stats for _, r in runs]
        train = np.mean([x["train_s"] for x in s])
        its = np.mean([x["iterations"] for x in s])
        fwd = np.mean([x["cpu_forward_s"] for x in s])
        bwd = np.mean([x["cpu_backward_s"] for x in s])
        share = np.mean([x.get("grad_row_share", 1.0) for x in s])
        mean[path] = train / its
        print(
            f"| {PATHS[path][0]} | {its / train:.3f} | {train / its:.2f} | "
            f"{(fwd + bwd) / train:.0%} | {fwd / its:.2f} | {bwd / its:.2f} | {share:.0%} |"
        )
    last = paths[-1]
    for path in paths[:-1]:
        print(f"speed-up (s per iteration, {path} / {last}): {mean[path] / mean[last]:.2f}")
    a = rows[paths[0]][0][1]
    for path in paths[1:]:
        b = rows[path][0][1]
        same = a.stats.get("final_loss") == b.stats.get("final_loss") and a.program == b.program
        print(
            f"same final loss and program, {paths[0]} and {path}: {same} "
            f"({a.stats.get('final_loss')} vs {b.stats.get('final_loss')}; success "
            f"{a.success}, {b.success})"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default="DotProduct")
    p.add_argument("--iterations", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--population", type=int, default=4)
    p.add_argument("--profile", action="store_true")
    p.add_argument(
        "--paths",
        nargs="+",
        choices=list(PATHS),
        default=["hybrid", "hybrid-split"],
        help="solves to compare, in turn (the last is the reference of the speed-ups)",
    )
    p.add_argument("--no-call", action="store_true", help="skip part 1 (one CPU call)")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    if not args.no_call:
        one_call(args.task, args.population)
    solves(args.task, args.iterations, args.repeats, args.seed, args.profile, args.paths)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
