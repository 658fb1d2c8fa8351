"""All throughput figures in one file: ``experiments/results/throughput.md``.

Calls the existing benchmarks (nothing is re-implemented here) and writes their rows as
markdown tables, each figure next to its ratio measured in the same run:

* CPU backends (:func:`algind_gym.cpu.bench.bench_cpu`): instructions/s of the reference
  interpreter, the dense and the fused Transformer CPU (torch and numba kernels), per
  batch size and workload, with the ratio to the reference;
* environments (``experiments/bench_env.py``): env steps/s of one environment per backend,
  and of the batched vector env against gymnasium's ``SyncVectorEnv``.

    python experiments/throughput.py [--batches 1,64,1024] [--envs 1,16,256]
        [--task DotProduct] [--out experiments/results/throughput.md]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from algind_gym.atomic import atomic_write_text
from algind_gym.cpu.bench import bench_cpu

HERE = Path(__file__).resolve().parent


def _bench_env_module():
    spec = importlib.util.spec_from_file_location("bench_env", HERE / "bench_env.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cpu_table(rows: list[dict]) -> str:
    out = [
        "| workload | batch | backend | instructions/s | x reference |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r.get("ratio_to_reference")
        out.append(
            f"| {r['workload']} | {r['batch']} | {r['backend']} | "
            f"{r['instructions_per_s']:,.0f} | {'-' if ratio is None else f'{ratio:.2f}'} |"
        )
    return "\n".join(out) + "\n"


def env_table(rows: list[dict]) -> str:
    out = [
        "| envs | mode | backend | env steps/s | vector / sync | CPU call share of the step |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        vector = r["mode"] != "sync"
        speedup = f"{r['speedup_vs_sync']:.1f}x" if vector else ""
        share = f"{100 * r['breakdown']['cpu']:.0f}%" if vector else ""
        out.append(
            f"| {r['envs']} | {'vector' if vector else 'sync'} | {r['backend']} | "
            f"{r['env_steps_per_s']:,.0f} | {speedup} | {share} |"
        )
    return "\n".join(out) + "\n"


def env_rows(task: str, envs: list[int], steps: int, examples: int) -> list[dict]:
    """The rows ``experiments/bench_env.py`` prints, from its own function: one environment
    on the reference and torch backends (6 timed steps, one round: they are slow), then the
    sync and vector envs at each size on the default backend."""
    be = _bench_env_module()
    rows = []
    for backend in ("reference", "transformer-torch"):  # slow backends: one short round
        short = {"steps": 6, "warmup": 2, "repeats": 1}
        for r in be.bench_rows(task, [1], backend=backend, examples=examples, **short):
            rows.append({**r, "backend": backend})
    for r in be.bench_rows(task, envs, steps=steps, backend="transformer", examples=examples):
        rows.append({**r, "backend": "transformer"})
    return rows


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", default="1,64,1024")
    p.add_argument("--envs", default="1,16,256")
    p.add_argument("--task", default="DotProduct")
    p.add_argument("--steps", type=int, default=24, help="timed env steps per measurement")
    p.add_argument("--examples", type=int, default=8)
    p.add_argument("--out", type=Path, default=HERE / "results" / "throughput.md")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    batches = [int(b) for b in args.batches.split(",")]
    cpu = bench_cpu(batches=batches, dtype=np.float32, print_table=False)
    env = env_rows(args.task, [int(n) for n in args.envs.split(",")], args.steps, args.examples)
    cmd = "python experiments/throughput.py " + " ".join(argv if argv is not None else sys.argv[1:])
    md = [
        "# Throughput\n",
        f"Regenerate with `{cmd.strip()}` ({time.perf_counter() - start:.0f} s). Machine: "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"Python {platform.python_version()}, torch {torch.__version__}, torch threads 1. "
        "Absolute figures depend on the machine and its load; the ratios are measured side "
        "by side in the same run.\n",
        "## Transformer CPU backends\n",
        "Endless dot-product loop on every machine (`algind_gym/cpu/bench.py`); float32. "
        "`lockstep`: every machine runs the same instruction; `divergent`: machines at "
        "different instructions.\n",
        cpu_table(cpu),
        "## Environments\n",
        f"`AlgInd/{args.task}-v0`, K={args.examples} examples per environment, uniformly "
        f"random valid actions (HALT included, so episodes end and autoreset), {args.steps} "
        "timed steps after 12 untimed ones, best of 3 alternating rounds "
        "(`experiments/bench_env.py`); the reference and torch backends: 6 timed steps "
        "after 2, one round.\n",
        env_table(env),
    ]
    atomic_write_text(args.out, "\n".join(md))
    atomic_write_text(args.out.with_suffix(".json"), json.dumps({"cpu": cpu, "env": env}) + "\n")
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
