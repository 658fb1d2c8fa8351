"""The CPU backends side by side in one run: the reference interpreter, the default
Transformer CPU kernel (v1, ``algind_gym/cpu``) and the compiled-transformer CPU v2
(``algind_gym/cpu_v2``), with the figures issue 14 asks for.

Usage:
    python experiments/bench_cpu.py [--batches 1,8,4096] [--dtype float32]
                                    [--min-seconds 0.5] [--out results/bench_cpu.json]

Prints, all measured in this one run (absolute numbers depend on the machine's load; the
ratios are the comparable figures):

1. instructions/s of ``reference``, ``transformer`` (v1 numba kernel) and
   ``transformer-v2`` (v2 numba kernel) per batch size (divergent workload of
   :mod:`algind_gym.cpu.bench`), with v2 / reference and v1 / v2; ``transformer`` is v1 on
   one thread and ``v1-parallel`` v1 on every numba thread (``NUMBA_NUM_THREADS``); then
   the v2 kernel on the general program (every block of the compiled circuit) against the
   per-opcode specialised programs (:mod:`algind_gym.cpu_v2.specialise`, the backend's
   default), the same states through ``kernel.run``, per wall-clock and per CPU-second;
2. the fixed cost of a call (``run`` with 0 and with 1 step, batch 1); 2b. the v1 kernel's
   thread policy: one thread, all threads forced parallel, and the default policy, at
   8..4096 machines and 0, 1, 100 steps;
3. the time of one environment step: a 100-instruction run on 8 machines;
4. the dense paths (v1 and v2) at batch 1 on a state of about 1024 cells, per wall-clock
   second and per CPU-second of this process (the second moves less with other load);
5. the issue's targets for v2, each with the measured figure and "met" or "not met".
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from algind_gym.cpu.bench import (
    bench_backend,
    bench_call,
    bench_dense_cells,
    bench_layout,
    bench_machines,
    bench_thread_policy,
)
from algind_gym.cpu.threads import max_threads
from algind_gym.machine.isa import Fault

FAST = ("reference", "transformer", "transformer-v2")
PARALLEL = "v1-parallel"  # the v1 kernel on every numba thread ("transformer" rows: one)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,8,4096")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--min-seconds", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    dt = np.dtype(args.dtype)
    threads = os.environ.get("NUMBA_NUM_THREADS", "numba's default")
    print(
        f"dtype {dt.name}, NUMBA_NUM_THREADS={threads}, v1 threads: transformer 1, "
        f"{PARALLEL} {max_threads()}; load average {os.getloadavg()[0]:.2f}"
    )
    out: dict = {"throughput": [], "calls": [], "dense": []}

    print("\n1. instructions/s (divergent workload)")
    rate: dict[tuple[str, int], float] = {}
    for batch in (int(b) for b in args.batches.split(",")):
        steps = 200 if batch < 64 else 30
        for name in (*FAST, PARALLEL):
            be, t = name, (1 if name == "transformer" else None)
            if name == PARALLEL:
                be, t = "transformer", max_threads()
            row = bench_backend(be, batch, steps, dtype=dt, min_seconds=args.min_seconds, threads=t)
            rate[name, batch] = row["instructions_per_s"]
            out["throughput"].append(dict(row, name=name))
        r = {n: rate[n, batch] for n in (*FAST, PARALLEL)}
        print(
            f"  batch {batch:5d}: "
            + "  ".join(f"{n} {v:.3g}" for n, v in r.items())
            + f"  | v2/reference {r['transformer-v2'] / r['reference']:.2f}x"
            + f"  v1/v2 {r['transformer'] / r['transformer-v2']:.1f}x"
            + f"  {PARALLEL}/v1 {r[PARALLEL] / r['transformer']:.2f}x"
        )

    print("\n1b. v2 numba kernel: general program vs per-opcode specialised programs")
    out["v2_programs"] = []
    for batch in (int(b) for b in args.batches.split(",")):
        row = bench_v2_programs(batch, 200 if batch < 64 else 30, dt, args.min_seconds)
        out["v2_programs"].append(row)
        g, sp = row["general"], row["specialised"]
        print(
            f"  batch {batch:5d}: v2 numba (general) {g['instructions_per_s']:.3g}  "
            f"(specialised) {sp['instructions_per_s']:.3g} instr/s  | specialised/general "
            f"{sp['instructions_per_s'] / g['instructions_per_s']:.2f}x (per CPU-second "
            f"{sp['instructions_per_cpu_s'] / g['instructions_per_cpu_s']:.2f}x)"
        )

    print("\n2. fixed cost of a call (batch 1) and 3. one env step (100 instructions, batch 8)")
    cost: dict[tuple[str, int, int], float] = {}
    for name in FAST:
        for batch, steps in ((1, 0), (1, 1), (8, 100)):
            row = bench_call(name, batch, steps, dt, args.min_seconds)
            cost[name, batch, steps] = row["seconds_per_call"]
            out["calls"].append(row)
        print(
            f"  {name:15s} 0 steps {cost[name, 1, 0] * 1e6:8.1f} us   1 step "
            f"{cost[name, 1, 1] * 1e6:8.1f} us   100 instructions x 8 machines "
            f"{cost[name, 8, 100] * 1e6:9.1f} us"
        )

    print(
        f"\n2b. v1 thread policy: us per call, 1 thread / {max_threads()} threads forced "
        "parallel / default policy (cpu/threads.py)"
    )
    for row in bench_thread_policy(threads=max_threads(), dtype=dt):
        out.setdefault("thread_policy", []).append(row)
        s_, p_, d_ = (row[k] * 1e6 for k in ("serial_s", "parallel_s", "policy_s"))
        print(
            f"  {row['steps']:3d} steps x {row['batch']:5d} machines: {s_:9.1f} / {p_:9.1f} / "
            f"{d_:9.1f}   1 thread / parallel {s_ / p_:5.2f}x   1 thread / policy {s_ / d_:5.2f}x"
        )
    try:
        import numba

        print(f"  numba threading layer: {numba.threading_layer()}")
    except ValueError:  # no parallel call was made (one thread)
        pass

    print("\n4. dense paths, batch 1, about 1024 cells")
    dense, dense_cpu = {}, {}
    for name in ("transformer-dense", "transformer-v2-dense"):
        row = bench_dense_cells(1024, steps=20, dtype=dt, backend=name)
        dense[name] = row["instructions_per_s"]
        dense_cpu[name] = row["instructions_per_cpu_s"]
        out["dense"].append(row)
        print(
            f"  {name:22s} {row['n_cells']} cells: {row['instructions_per_s']:.3g} instr/s "
            f"({row['instructions_per_cpu_s']:.3g} per CPU-second of this process)"
        )
    v1, v2 = "transformer-dense", "transformer-v2-dense"
    print(
        f"  v2-dense / v1-dense {dense[v2] / dense[v1]:.2f}x "
        f"(per CPU-second {dense_cpu[v2] / dense_cpu[v1]:.2f}x)"
    )

    print("\n5. issue 14's targets for v2 (measured in this run)")
    big = max(b for _, b in rate)
    fixed = max(cost["transformer-v2", 1, 0], cost["transformer-v2", 1, 1]) * 1e6
    checks = [
        ("fixed cost per call < 20 us", f"{fixed:.1f} us", fixed < 20),
        (
            f"numba at batch {big} >= reference",
            f"{rate['transformer-v2', big]:.3g} vs {rate['reference', big]:.3g}",
            rate["transformer-v2", big] >= rate["reference", big],
        ),
        (
            f"numba at batch {big} >= 5e6 instructions/s",
            f"{rate['transformer-v2', big]:.3g}",
            rate["transformer-v2", big] >= 5e6,
        ),
        (
            "dense at batch 1, 1024 cells >= 1e3 instructions/s",
            f"{dense['transformer-v2-dense']:.3g} ({dense_cpu['transformer-v2-dense']:.3g}/CPU-s)",
            dense["transformer-v2-dense"] >= 1e3,
        ),
    ]
    for text, figure, ok in checks:
        print(f"  {text:50s} {figure:24s} {'met' if ok else 'NOT met'}")
    print(f"  (one env step, 100 instructions x 8: {cost['transformer-v2', 8, 100] * 1e6:.0f} us)")
    if args.out:
        from algind_gym.atomic import atomic_write_text

        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps(out, indent=1))


def bench_v2_programs(batch: int, steps: int, dtype, min_seconds: float) -> dict:
    """The v2 kernel on the general and on the specialised programs, alternating runs on
    the same states (the divergent workload), so both see the same load."""
    from algind_gym.cpu_v2 import kernel
    from algind_gym.cpu_v2.circuit import compile_circuit

    layout = bench_layout()
    circuit = compile_circuit(layout, dtype)
    programs = {
        name: kernel.pack(kernel.sparse_program(circuit, dtype, specialised))
        for name, specialised in (("general", False), ("specialised", True))
    }
    icount = layout.register("icount")
    budget = float(Fault.BUDGET_EXHAUSTED)
    stats = {name: [0, 0.0, 0.0] for name in programs}
    for program in programs.values():  # warm-up: compile
        kernel.run(bench_machines(batch, "divergent", dtype, layout=layout).cells, 1, program)
    while min(s[1] for s in stats.values()) < min_seconds:
        for name, program in programs.items():
            cells = bench_machines(batch, "divergent", dtype, layout=layout).cells
            start, start_cpu = time.perf_counter(), time.process_time()
            kernel.run(cells, steps, program, budget)
            stats[name][1] += time.perf_counter() - start
            stats[name][2] += time.process_time() - start_cpu
            stats[name][0] += int(cells[:, icount].sum())
    return {"batch": batch, "steps": steps} | {
        name: {
            "instructions": n,
            "seconds": wall,
            "instructions_per_s": n / wall,
            "instructions_per_cpu_s": n / max(cpu, 1e-9),
        }
        for name, (n, wall, cpu) in stats.items()
    }


if __name__ == "__main__":
    main()
