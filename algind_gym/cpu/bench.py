"""Throughput benchmark of the CPU backends: reference, dense and fused, side by side.

Workload: every machine runs a dot-product kernel in an endless loop (LOAD through
pointers, MUL, ADD, ADDI, a counted JNZ loop, STORE, CALL/RET, PUSH/POP), so that no
machine halts during the measurement and every step executes one instruction per
machine. Two variants:

* ``lockstep``: every machine has the same loop length, so all machines execute the same
  opcode at every step (the environment's K example machines running one skill);
* ``divergent``: loop lengths differ per machine, so after a few iterations the machines
  sit at different instructions (data-dependent control flow; the reference
  interpreter then dispatches many opcode groups per step).

``instructions_per_s`` counts executed instructions (machines x steps / seconds). Peak
memory is the growth of the process's peak resident set during the measurement (CPU) or
``torch.cuda.max_memory_allocated`` (CUDA); 0 means "below what was already reached".
"""

from __future__ import annotations

import resource
import time
from collections.abc import Sequence

import numpy as np
import torch

from algind_gym.cpu.backend import make_backend
from algind_gym.machine.isa import encode
from algind_gym.machine.layout import Layout, SkillBlockSpec
from algind_gym.machine.state import MachineState

BENCH_BACKENDS = ("reference", "transformer-dense", "transformer-torch", "transformer")


def bench_layout(memory_size: int = 64) -> Layout:
    """A layout with a ``main`` and a ``sub`` skill block (``memory_size`` data cells)."""
    return Layout(
        n_general=8,
        stack_size=16,
        n_pointers=4,
        memory_size=memory_size,
        skill_blocks=(SkillBlockSpec("main", 0, 64), SkillBlockSpec("sub", 0, 16)),
    )


def bench_machines(
    batch: int,
    workload: str = "divergent",
    dtype=np.float32,
    seed: int = 0,
    layout: Layout | None = None,
) -> MachineState:
    """``batch`` machines running the endless dot-product loop (see the module docstring)."""
    if workload not in ("lockstep", "divergent"):
        raise ValueError(f"workload must be 'lockstep' or 'divergent', got {workload!r}")
    lay = layout or bench_layout()
    rng = np.random.default_rng(seed)
    r = {f"r{i}": lay.register(f"r{i}") for i in range(8)}
    mem = lay.block("memory")
    half = mem.size // 2 - 1
    main, sub = lay.skill("main"), lay.skill("sub")
    loop = main.code_start + 4 * 4
    code = [
        *encode("MOVI", r["r0"], mem.start),  # x pointer
        *encode("MOVI", r["r1"], mem.start + half),  # y pointer
        *encode("MOVI", r["r2"], 0),  # accumulator
        *encode("MOV", r["r3"], r["r7"]),  # loop count (per machine)
        *encode("LOAD", r["r4"], r["r0"], 0),
        *encode("LOAD", r["r5"], r["r1"], 0),
        *encode("MUL", r["r4"], r["r4"], r["r5"]),
        *encode("ADD", r["r2"], r["r2"], r["r4"]),
        *encode("ADDI", r["r0"], r["r0"], 1),
        *encode("ADDI", r["r1"], r["r1"], 1),
        *encode("ADDI", r["r3"], r["r3"], -1),
        *encode("JNZ", r["r3"], loop),
        *encode("STORE", r["r6"], 0, r["r2"]),
        *encode("CALL", sub.code_start),
        *encode("JMP", main.code_start),
    ]
    sub_code = [*encode("PUSH", r["r2"]), *encode("POP", r["r5"]), *encode("RET")]
    state = MachineState.zeros(lay, batch, dtype)
    state.load_code(main.code_start, code)
    state.load_code(sub.code_start, sub_code)
    state.block("memory")[:] = rng.uniform(-1, 1, (batch, mem.size))
    state.set_register("r6", np.full(batch, mem.end - 1.0))
    if workload == "lockstep":
        state.set_register("r7", np.full(batch, float(half)))
    else:
        state.set_register("r7", rng.integers(1, half + 1, batch).astype(float))
    state.set_register("pc", main.code_start)
    return state


def _peak_bytes(device: str) -> int:
    if str(device).startswith("cuda"):
        return int(torch.cuda.max_memory_allocated())
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def bench_backend(
    backend: str,
    batch: int,
    steps: int = 200,
    workload: str = "divergent",
    dtype=np.float32,
    device: str = "cpu",
    min_seconds: float = 0.5,
    memory_size: int = 64,
    threads: int | None = None,
) -> dict:
    """Time ``backend`` on ``batch`` machines; returns one result row (a dict).

    Runs ``steps`` instructions (after a warm-up of the same length), repeating until
    ``min_seconds`` have passed, through the backend's own ``run``. ``threads``: the
    ``"transformer"`` kernel's threads (:func:`~algind_gym.cpu.backend.make_backend`).
    """
    be = make_backend(backend, device, threads=threads)
    state = bench_machines(batch, workload, dtype, layout=bench_layout(memory_size))
    be.run(state, steps)  # warm-up: compile, caches, first-touch memory
    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    peak0 = _peak_bytes(device)
    executed, elapsed, cpu = 0, 0.0, 0.0
    while elapsed < min_seconds or executed == 0:
        state = bench_machines(batch, workload, dtype, layout=bench_layout(memory_size))
        start, start_cpu = time.perf_counter(), time.process_time()
        be.run(state, steps)
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        elapsed += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        executed += int(state.register("icount").sum())
    peak = _peak_bytes(device)
    return {
        "backend": backend,
        "batch": batch,
        "workload": workload,
        "dtype": np.dtype(dtype).name,
        "device": str(device),
        "threads": getattr(be, "threads", 1),
        "n_cells": state.layout.n_cells,
        "instructions": executed,
        "seconds": elapsed,
        "instructions_per_s": executed / elapsed,
        # CPU time of this process (all its threads): less sensitive to other processes
        # on a shared machine than the wall-clock rate above.
        "instructions_per_cpu_s": executed / max(cpu, 1e-9),
        "peak_memory_mb": (peak if str(device).startswith("cuda") else peak - peak0) / 2**20,
    }


def bench_cpu(
    batches: Sequence[int] = (1, 64, 1024, 4096),
    backends: Sequence[str] = BENCH_BACKENDS,
    workloads: Sequence[str] = ("lockstep", "divergent"),
    steps: int = 200,
    dtype=np.float32,
    device: str = "cpu",
    min_seconds: float = 0.5,
    dense_max_batch: int = 1024,
    print_table: bool = True,
) -> list[dict]:
    """Benchmark every backend at every batch size in one run; rows with reference ratios.

    Each row gets ``ratio_to_reference`` (its instructions/s over the reference's at the
    same batch and workload). Dense runs only up to ``dense_max_batch`` machines (it
    materialises ``batch x heads x cells`` attention scores). Prints a rich table.
    """
    rows = []
    for workload in workloads:
        for batch in batches:
            ref = None
            for backend in backends:
                if backend == "transformer-dense" and batch > dense_max_batch:
                    continue
                row = bench_backend(backend, batch, steps, workload, dtype, device, min_seconds)
                if backend == "reference":
                    ref = row["instructions_per_s"]
                row["ratio_to_reference"] = row["instructions_per_s"] / ref if ref else None
                rows.append(row)
    if print_table:
        print_bench(rows)
    return rows


def bench_dense_cells(
    n_cells: int = 1024, steps: int = 100, dtype=np.float32, backend: str = "transformer-dense"
) -> dict:
    """A dense path at batch 1 on a state of about ``n_cells`` cells (memory padded)."""
    lay = bench_layout()
    pad = max(64, n_cells - (lay.n_cells - lay.memory_size))
    return bench_backend(backend, 1, steps, "lockstep", dtype, memory_size=pad)


def bench_call(
    backend: str,
    batch: int,
    steps: int,
    dtype=np.float32,
    min_seconds: float = 0.5,
    threads: int | None = None,
    parallel_min_rows: int | None = None,
) -> dict:
    """Seconds per ``run(state, steps)`` call on ``batch`` fresh bench machines.

    Every call starts from the same running state (copied in before the call, outside the
    timing), so ``steps=0`` and ``steps=1`` give the fixed cost of a call and ``steps=100``
    at batch 8 the cost of one environment step that runs a 100-instruction program.
    ``threads`` and ``parallel_min_rows`` (``"transformer"`` only) set the kernel's thread
    policy (:mod:`algind_gym.cpu.threads`); None keeps the defaults.
    Returns ``{"backend", "batch", "steps", "calls", "seconds_per_call"}`` (the best of
    five rounds, each of at least ``min_seconds / 5``).
    """
    be = make_backend(backend, threads=threads)
    start = bench_machines(batch, "divergent", dtype)
    if parallel_min_rows is not None:
        be.model(start.layout, start.dtype).parallel_min_rows = parallel_min_rows
    state = start.copy()
    be.run(state, max(steps, 1))  # warm-up: compile, caches
    best, calls = float("inf"), 0
    for _ in range(5):
        elapsed, n = 0.0, 0
        while elapsed < min_seconds / 5 or n == 0:
            state.cells[...] = start.cells
            t0 = time.perf_counter()
            be.run(state, steps)
            elapsed += time.perf_counter() - t0
            n += 1
        best, calls = min(best, elapsed / n), calls + n
    return {
        "backend": backend,
        "batch": batch,
        "steps": steps,
        "threads": getattr(be, "threads", 1),
        "calls": calls,
        "seconds_per_call": best,
    }


def bench_thread_policy(
    batches: Sequence[int] = (8, 16, 32, 64, 128, 256, 1024, 4096),
    steps: Sequence[int] = (0, 1, 100),
    threads: int | None = None,
    dtype=np.float32,
    min_seconds: float = 0.2,
) -> list[dict]:
    """Seconds per ``"transformer"`` call at each batch and step count, three ways in one run:
    one thread (the serial driver), ``threads`` threads forced onto the parallel driver
    at every batch, and the default policy (:mod:`algind_gym.cpu.threads`).

    Returns one dict per (batch, steps): ``serial_s``, ``parallel_s``, ``policy_s`` and
    ``threads``.
    """
    from algind_gym.cpu.threads import resolve_threads

    t = resolve_threads(threads)
    rows = []
    for n_steps in steps:
        for batch in batches:
            args = ("transformer", batch, n_steps, dtype, min_seconds)
            rows.append(
                {
                    "batch": batch,
                    "steps": n_steps,
                    "threads": t,
                    "serial_s": bench_call(*args, threads=1)["seconds_per_call"],
                    "parallel_s": bench_call(*args, t, 0)["seconds_per_call"],
                    "policy_s": bench_call(*args, threads=t)["seconds_per_call"],
                }
            )
    return rows


def print_bench(rows: list[dict]) -> None:
    """Print benchmark rows as a rich table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Transformer CPU throughput (instructions per second)")
    for col in ("workload", "batch", "backend", "cells", "instr/s", "x reference", "peak MB"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        ratio = r.get("ratio_to_reference")
        table.add_row(
            r["workload"],
            str(r["batch"]),
            r["backend"],
            str(r["n_cells"]),
            f"{r['instructions_per_s']:.3g}",
            "-" if ratio is None else f"{ratio:.2f}",
            f"{r['peak_memory_mb']:.1f}",
        )
    Console(width=max(Console().width, 100)).print(table)  # never truncate the names
