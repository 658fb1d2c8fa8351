"""Benchmark the CPU backends side by side (reference, dense, fused) and save JSON rows.

Usage:
    python experiments/bench_cpu.py [--batches 1,64,1024,4096] [--threads N]
                                    [--out results/bench_cpu.json]

Also times the dense path at batch 1 on a state of about 1024 cells.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from algind_gym.cpu.bench import bench_cpu, bench_dense_cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,64,1024,4096")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's choice); 1 is as fast on small "
        "batches and far steadier when other processes share the cores",
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    rows = bench_cpu(batches=batches, dtype=args.dtype)
    dense = bench_dense_cells(1024, dtype=args.dtype)
    print(
        f"dense, batch 1, {dense['n_cells']} cells: {dense['instructions_per_s']:.3g} instructions/s"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"rows": rows, "dense_1024_cells": dense}, indent=1))


if __name__ == "__main__":
    main()
