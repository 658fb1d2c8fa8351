"""A population batched as rows against the same members run one after another.

For a task's two-step private-channel plan (default DotProduct from the built-in library)
it times one training iteration's soft forward and backward pass (the CPU calls with
autograd) for P members batched as extra rows of the same calls
(:mod:`agents.gradient.population`) and for P single members in turn, side by side in one
process, and prints the ratio (sequential / batched: above 1 means batching pays).

Usage::

    python experiments/bench_gradient_population.py [--task DotProduct] [--members 1 2 4]
        [--examples 8] [--repeats 2]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from agents.gradient import GradientComposer
from agents.gradient.composer import defined_buffers
from agents.gradient.dag import build_plan, channel_zeros
from agents.gradient.ops import SoftStep
from agents.gradient.population import repeat_rows
from agents.gradient.soft import expected_loss, init_params, soft_forward
from algind_gym.cpu.backend import make_backend
from algind_gym.skills import builtin_library
from algind_gym.tasks import Workspace, get_task


def iteration_s(task: str, members: int, k: int, repeats: int) -> float:
    """Best-of-``repeats`` seconds of one forward + backward pass with ``members`` rows
    blocks (1: a single member, no member axis)."""
    lib, spec = builtin_library(), get_task(task)
    ws = Workspace(lib, spec, 3, batch=k, seed=0)
    defined = defined_buffers(ws)
    plan = build_plan(lib, spec, ws.image, 2, defined)
    backend = make_backend("transformer-torch")
    steps = [
        SoftStep(lib, ops, k * members, ws.max_steps, backend, np.float32) for ops in plan.steps_ops
    ]
    steps[0].private = True
    gen = torch.Generator().manual_seed(0)
    pop = members if members > 1 else None
    params = [init_params(s.ops, gen, None, 0.1, 1.0, population=pop) for s in steps]
    state, expected = GradientComposer()._state(ws, torch.float32)
    state = repeat_rows(state, members)
    state.update(channel_zeros(plan, k * members, torch.float32))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        _, st = soft_forward(
            state, steps, params, 1.0, False, gen, defined, 2.0, branches=True, balanced=True
        )
        expected_loss(st.branches, expected, 1.0).sum().backward()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default="DotProduct")
    p.add_argument("--members", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--examples", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    one = iteration_s(args.task, 1, args.examples, args.repeats)
    print(f"{args.task}, K = {args.examples}: one member {one:.2f} s per iteration")
    print("| P | batched s | P x one member s | ratio |")
    print("| --- | --- | --- | --- |")
    for m in args.members:
        batched = iteration_s(args.task, m, args.examples, args.repeats)
        print(f"| {m} | {batched:.2f} | {m * one:.2f} | {m * one / batched:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
