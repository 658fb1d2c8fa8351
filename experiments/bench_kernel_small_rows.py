"""The v1 numba kernel on small rows in cache, this tree against a baseline from git, side
by side in one run: the counterpart of ``experiments/bench_kernel_v1.py`` (env calls on
48 KiB rows) for the kernel's prefetching variant, which the drivers skip on small rows.

Usage:
    python experiments/bench_kernel_small_rows.py [--baseline 0908014] [--rounds 5]

Workload: :func:`algind_gym.cpu.bench.bench_machines` (divergent dot-product loops on the
bench layout, 215 cells per row), at 4096 machines x 100 steps and 8 machines x 100 steps
(the latter repeated 200 times per round), in float32 and float64, on the serial driver.
Each call runs on a fresh copy of the same state (the copy is not timed); the figure is the
CPU time of the calling thread (``time.thread_time``), best of ``--rounds`` alternating
rounds, per instruction (every machine executes one instruction per step). The outputs
and write ranges of both kernels are compared bit for bit; a difference fails the run.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np

from algind_gym.cpu import kernel as new_kernel
from algind_gym.cpu.backend import make_backend
from algind_gym.cpu.bench import bench_machines

HERE = Path(__file__).resolve().parent


def _bench_v1():
    spec = importlib.util.spec_from_file_location("bench_kernel_v1", HERE / "bench_kernel_v1.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def time_shape(modules: list, dtype, batch: int, steps: int, reps: int, rounds: int) -> list:
    """Best CPU seconds per module over ``rounds`` for ``reps`` calls; checks the bits."""
    state = bench_machines(batch, "divergent", dtype)
    cpu = make_backend("transformer").model(state.layout, state.cells.dtype)
    tables, split = cpu._kernel_tables(), cpu._split
    c0 = np.ascontiguousarray(state.cells)
    w0 = np.empty((batch, 4), np.int64)
    w0[:, 0::2], w0[:, 1::2] = c0.shape[1], -1
    best = [float("inf")] * len(modules)
    for _ in range(rounds):
        outs = []
        for i, module in enumerate(modules):
            total = 0.0
            for _ in range(reps):
                c, w = c0.copy(), w0.copy()
                t0 = time.thread_time()
                err = module.fused_run(c, steps, *tables, w, split)
                total += time.thread_time() - t0
                if err:
                    raise RuntimeError(f"kernel error {err}")
            best[i] = min(best[i], total)
            outs.append((c, w))
        for c, w in outs[1:]:
            same = np.array_equal(c.view(np.uint8), outs[0][0].view(np.uint8))
            if not (same and np.array_equal(w, outs[0][1])):
                raise AssertionError("the kernels differ")
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", default="0908014", help="git revision of the old kernel")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    old = _bench_v1().load_baseline(args.baseline)
    print(
        f"v1 kernel on small rows: this tree against {args.baseline}, serial driver, best of "
        f"{args.rounds} rounds, CPU ns per instruction; load average {os.getloadavg()[0]:.2f}"
        " (shared machine)"
    )
    print(f"{'dtype':<9}{'machines x steps':>18}{'old':>8}{'new':>8}{'speedup':>9}")
    for dtype in (np.float32, np.float64):
        for batch, steps, reps in ((4096, 100, 1), (8, 100, 200)):
            old_s, new_s = time_shape([old, new_kernel], dtype, batch, steps, reps, args.rounds)
            n = batch * steps * reps
            print(
                f"{np.dtype(dtype).name:<9}{f'{batch} x {steps}':>18}{1e9 * old_s / n:>8.1f}"
                f"{1e9 * new_s / n:>8.1f}{old_s / new_s:>8.2f}x"
            )
    print("outputs and write ranges bit-identical between the kernels: yes")


if __name__ == "__main__":
    main()
