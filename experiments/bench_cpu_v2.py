"""The opt-in Transformer CPU v2 next to the default kernel and the reference, in one run.

Usage:
    python experiments/bench_cpu_v2.py [--batches 1,4096] [--min-seconds 1.0]

Prints instructions/s of ``transformer`` (default kernel), ``transformer-v2`` (v2 numba
kernel) and ``reference`` per batch size, and the ratio default / v2 measured side by side
(divergent workload, float32; :func:`algind_gym.cpu.bench.bench_backend`).
"""

from __future__ import annotations

import argparse

from algind_gym.cpu.bench import bench_backend

NAMES = ("transformer", "transformer-v2", "reference")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,4096")
    parser.add_argument("--min-seconds", type=float, default=1.0)
    args = parser.parse_args()
    for batch in (int(b) for b in args.batches.split(",")):
        steps = 200 if batch < 64 else 30
        rate = {
            n: bench_backend(n, batch, steps=steps, min_seconds=args.min_seconds)[
                "instructions_per_s"
            ]
            for n in NAMES
        }
        figures = "  ".join(f"{n} {r:.3g}/s" for n, r in rate.items())
        ratio = rate["transformer"] / rate["transformer-v2"]
        print(f"batch {batch}: {figures}  default/v2 = {ratio:.0f}x")


if __name__ == "__main__":
    main()
