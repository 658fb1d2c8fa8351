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
   default), both on the array loop, and the generated kernel (straight-line code emitted
   from the specialised programs, :mod:`algind_gym.cpu_v2.codegen`), the same states through
   ``kernel.run``, per wall-clock and per CPU-second, with the generated kernel's emit time
   and first-call (compile or cache load) time, its and the array kernel's fixed cost per
   call and one env step; side by side, the generated kernel with every step bank a binary
   search and every decoded head decoded from its query (as before
   :mod:`algind_gym.cpu_v2.bank_guess` and :mod:`algind_gym.cpu_v2.bank_values`); the
   generated kernel at the largest batch on 1 thread and on every numba thread;
2. the fixed cost of a call (``run`` with 0 and with 1 step, batch 1); 2b. the v1 kernel's
   thread policy: one thread, all threads forced parallel, and the default policy, at
   8..4096 machines and 0, 1, 100 steps;
3. the time of one environment step: a 100-instruction run on 8 machines;
4. the dense paths (v1 and v2) at batch 1 on a state of about 1024 cells, per wall-clock
   second and per CPU-second of this process (the second moves less with other load);
5. the issue's targets for v2 (the backend's kernel, and the generated kernel), each with
   the measured figure and "met" or "not met".
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
    cost: dict = {}

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

    print(
        "\n1b. v2 numba kernel: array loop (general program / per-opcode specialised programs) "
        "vs generated (straight-line code emitted from the specialised programs)"
    )
    out["v2_programs"] = []
    v2 = V2Programs(dt)
    print(
        f"  generated kernel: source emitted and loaded in {v2.emit_s:.2f} s, first call "
        f"(numba compile, or load from its disk cache) {v2.first_call_s:.1f} s"
    )
    out["v2_compile"] = {"emit_s": v2.emit_s, "first_call_s": v2.first_call_s}
    for batch in (int(b) for b in args.batches.split(",")):
        row = v2.throughput(batch, 200 if batch < 64 else 30, args.min_seconds)
        out["v2_programs"].append(row)
        g, sp, gen, gb = (
            row[k]["instructions_per_s"]
            for k in ("general", "specialised", "generated", "generated-decode")
        )
        cpu_s = {k: v["instructions_per_cpu_s"] for k, v in row.items() if isinstance(v, dict)}
        rate["generated", batch] = gen
        print(
            f"  batch {batch:5d}: v2 numba (array, general) {g:.3g}  v2 numba (array) {sp:.3g}  "
            f"v2 numba (generated) {gen:.3g}  (generated, banks searched, heads decoded) {gb:.3g} "
            f"instr/s  | generated/array {gen / sp:.2f}x "
            f"(per CPU-second {cpu_s['generated'] / cpu_s['specialised']:.2f}x)"
            f"  array/general {sp / g:.2f}x  generated/searched-decoded {gen / gb:.2f}x "
            f"(per CPU-second {cpu_s['generated'] / cpu_s['generated-decode']:.2f}x)"
        )
    big = max(int(b) for b in args.batches.split(","))
    print(f"  generated kernel at batch {big} on 1 thread and on {max_threads()} (kernel.run):")
    out["v2_threads"] = v2.threads(big, 200 if big < 64 else 30, args.min_seconds)
    for t, r in out["v2_threads"].items():
        rate["generated", big, t] = r["instructions_per_s"]
        print(
            f"  {t} thread(s): {r['instructions_per_s']:.3g} instr/s "
            f"({r['instructions_per_s'] / out['v2_threads'][1]['instructions_per_s']:.2f}x)"
        )
    print("  fixed cost and one env step, both v2 kernels through kernel.run:")
    for name in ("specialised", "generated"):
        c0, c1, c100 = (
            v2.call(name, b, n, args.min_seconds) for b, n in ((1, 0), (1, 1), (8, 100))
        )
        cost[name] = (c0, c1, c100)
        out["calls"].append({"name": f"v2-{name}", "0": c0, "1": c1, "100x8": c100})
        label = "array" if name == "specialised" else "generated"
        print(
            f"  v2 numba ({label:9s}) 0 steps {c0 * 1e6:8.1f} us   1 step {c1 * 1e6:8.1f} us   "
            f"100 instructions x 8 machines {c100 * 1e6:9.1f} us"
        )

    print("\n2. fixed cost of a call (batch 1) and 3. one env step (100 instructions, batch 8)")
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
            f"generated numba at batch {big} >= reference",
            f"{rate['generated', big]:.3g} vs {rate['reference', big]:.3g}",
            rate["generated", big] >= rate["reference", big],
        ),
        (
            f"generated numba at batch {big} >= 5e6 instructions/s",
            f"{rate['generated', big]:.3g}",
            rate["generated", big] >= 5e6,
        ),
        *(
            (
                f"generated numba at batch {big}, {t} thread(s) >= 5e6",
                f"{rate['generated', big, t]:.3g}",
                rate["generated", big, t] >= 5e6,
            )
            for t in out["v2_threads"]
        ),
        (
            "generated: fixed cost per call < 20 us",
            f"{max(cost['generated'][:2]) * 1e6:.1f} us",
            max(cost["generated"][:2]) < 20e-6,
        ),
        (
            "dense at batch 1, 1024 cells >= 1e3 instructions/s",
            f"{dense['transformer-v2-dense']:.3g} ({dense_cpu['transformer-v2-dense']:.3g}/CPU-s)",
            dense["transformer-v2-dense"] >= 1e3,
        ),
    ]
    for text, figure, ok in checks:
        print(f"  {text:50s} {figure:24s} {'met' if ok else 'NOT met'}")
    print(
        f"  (one env step, 100 instructions x 8: array {cost['transformer-v2', 8, 100] * 1e6:.0f} "
        f"us, generated {cost['generated'][2] * 1e6:.0f} us)"
    )
    if args.out:
        from algind_gym.atomic import atomic_write_text

        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps(out, indent=1))


class V2Programs:
    """The v2 kernel's programs on the benchmark layout, called through ``kernel.run``: the
    array loop on the general and on the specialised programs, and the generated kernel."""

    def __init__(self, dtype) -> None:
        from algind_gym.cpu_v2 import codegen, kernel
        from algind_gym.cpu_v2.circuit import compile_circuit

        self.kernel, self.dtype = kernel, dtype
        self.layout = bench_layout()
        circuit = compile_circuit(self.layout, dtype)
        self.programs = {
            "general": kernel.pack(kernel.sparse_program(circuit, dtype, False, generated=False)),
            "specialised": kernel.pack(kernel.sparse_program(circuit, dtype, generated=False)),
        }
        start = time.perf_counter()
        self.programs["generated"] = kernel.pack(
            kernel.sparse_program(circuit, dtype, generated=True)
        )
        self.emit_s = time.perf_counter() - start
        start = time.perf_counter()
        self._run("generated", 1, 1)  # numba compiles (or loads its cache) on the first call
        self.first_call_s = time.perf_counter() - start
        # The generated kernel as before bank_guess.py and bank_values.py: every step bank a
        # binary search, every decoded head decoded from its query.
        binary = kernel.pack(kernel.sparse_program(circuit, dtype, generated=False))
        binary.generated = codegen.generated_kernel(
            circuit, dtype, *kernel.programs(circuit, dtype), bank_guess=False, head_tables=False
        )
        self.programs["generated-decode"] = binary
        for name in ("general", "specialised", "generated-decode"):
            self._run(name, 1, 1)

    def _run(self, name: str, batch: int, steps: int) -> np.ndarray:
        cells = bench_machines(batch, "divergent", self.dtype, layout=self.layout).cells
        self.kernel.run(cells, steps, self.programs[name], float(Fault.BUDGET_EXHAUSTED))
        return cells

    def throughput(self, batch: int, steps: int, min_seconds: float) -> dict:
        """Instructions/s of each program, alternating runs on the same states (the
        divergent workload), so all see the same load."""
        icount = self.layout.register("icount")
        stats = {name: [0, 0.0, 0.0] for name in self.programs}
        while min(s[1] for s in stats.values()) < min_seconds:
            for name, program in self.programs.items():
                cells = bench_machines(batch, "divergent", self.dtype, layout=self.layout).cells
                start, start_cpu = time.perf_counter(), time.process_time()
                self.kernel.run(cells, steps, program, float(Fault.BUDGET_EXHAUSTED))
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

    def threads(self, batch: int, steps: int, min_seconds: float) -> dict:
        """Instructions/s of the generated kernel through ``kernel.run`` on 1 thread and on
        every numba thread (``numba.set_num_threads``), alternating runs on the same
        states."""
        import numba

        icount = self.layout.register("icount")
        counts = sorted({1, max_threads()})
        stats = {t: [0, 0.0] for t in counts}
        before = numba.get_num_threads()
        try:
            while min(s[1] for s in stats.values()) < min_seconds:
                for t in counts:
                    numba.set_num_threads(t)
                    cells = bench_machines(batch, "divergent", self.dtype, layout=self.layout)
                    cells = cells.cells
                    start = time.perf_counter()
                    self.kernel.run(
                        cells, steps, self.programs["generated"], float(Fault.BUDGET_EXHAUSTED)
                    )
                    stats[t][1] += time.perf_counter() - start
                    stats[t][0] += int(cells[:, icount].sum())
        finally:
            numba.set_num_threads(before)
        return {t: {"instructions_per_s": n / wall} for t, (n, wall) in stats.items()}

    def call(self, name: str, batch: int, steps: int, min_seconds: float) -> float:
        """Seconds per ``kernel.run`` call of ``steps`` passes on ``batch`` fresh machines
        (the states are made outside the timed region)."""
        program, total, calls = self.programs[name], 0.0, 0
        budget = float(Fault.BUDGET_EXHAUSTED)
        states = [
            bench_machines(batch, "divergent", self.dtype, layout=self.layout).cells
            for _ in range(64)
        ]
        while total < min_seconds / 4:
            for cells in states:
                c = cells.copy()
                start = time.perf_counter()
                self.kernel.run(c, steps, program, budget)
                total += time.perf_counter() - start
                calls += 1
        return total / calls


if __name__ == "__main__":
    main()
