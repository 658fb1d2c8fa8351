"""Fuzz the Transformer CPU against the reference interpreter, step by step, bit for bit.

:func:`verify_cpu` generates random programs and states (:mod:`algind_gym.cpu.fuzz`),
runs the reference interpreter and each Transformer backend side by side, and compares
the full state of every machine after every step by its bit pattern (so ``-0.0`` and
``0.0`` differ). A machine that differs is counted once per step and then resynchronised
from the reference, so one bug does not hide or cascade into others. Machines run in a
pool of ``batch`` slots that is refilled with fresh programs as machines stop, so nearly
every checked step executes an instruction.

Random programs stop after a few steps on average, so ``structured_steps`` adds long ones
(:mod:`algind_gym.cpu_v2.structured`): every reference solution's skill calls on random
inputs (``structured_per_call`` machines per call), and mutated copies of them (a changed operand, two swapped
instructions), run in lockstep on every backend for up to 4096 steps each. The machines of
one layout run in ``structured_slots`` slots (the backends' batch), each refilled with the
layout's next machine when its machine stops, so a dense pass runs at a full batch of
matmuls rather than at the shrinking batch of the machines still running; the backends
(their compiled models) are built once per layout and kept while it is among the last two
layouts used (``keep_layouts``); a caller may pass the same ``built`` dict to successive calls
(rounds of different seeds in one process) to keep them across calls. With the generated v2
kernel (``ALGIND_GYM_V2_KERNEL=generated``) building a layout's backend is what a round
costs: generating its source takes minutes of Python per layout (numba then loads or
compiles the functions, cached on disk by source hash), while the checked steps run at
thousands per second. Layouts depend on a task's buffers only, so tasks of the same
signature share them (Sum, Max, Min and Mean at one length have one layout), and
``structured_lengths`` bounds the lengths drawn.
The result reports how many checked steps came from each source and the distribution of
the structured programs' lengths.
``structured_minimal`` places those programs on minimal layouts (only the skills they call,
a small stack: :func:`~algind_gym.cpu_v2.structured.minimal_image`), which the dense passes
can afford.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Sequence

import numpy as np

from algind_gym.cpu.backend import make_backend
from algind_gym.cpu.fuzz import random_machines
from algind_gym.cpu_v2.structured import mutate, structured_machines
from algind_gym.machine import interpreter
from algind_gym.machine.isa import BY_CODE, MAX_OPCODE, Fault
from algind_gym.machine.state import MachineState

_MAX_EXAMPLES = 5


def _bits(cells: np.ndarray) -> np.ndarray:
    return cells.view(np.int32 if cells.dtype == np.float32 else np.int64)


def _opcodes_fetched(cells: np.ndarray, running: np.ndarray, n: int) -> np.ndarray:
    """How many of the ``running`` machines fetch each valid opcode at their PC now."""
    pc = cells[:, 0]
    fetch = running & (pc >= 0) & (pc <= n - 4) & (np.floor(pc) == pc)
    ops = cells[fetch, pc[fetch].astype(np.int64)]
    ops = ops[(np.floor(ops) == ops) & (ops >= 0) & (ops <= MAX_OPCODE)].astype(np.int64)
    return np.bincount(ops, minlength=MAX_OPCODE + 1)


def verify_cpu(
    programs: int = 2048,
    steps: int = 256,
    batch: int = 512,
    dtype: str = "float32",
    seed: int = 0,
    backends: Sequence[str] = ("transformer", "transformer-torch", "transformer-dense"),
    garbage: float = 0.03,
    print_result: bool = True,
    structured_steps: int = 0,
    structured_tasks: Sequence[str] | None = None,
    structured_minimal: bool = False,
    structured_per_call: int = 16,
    structured_slots: int | None = None,
    structured_lengths: Sequence[int] | None = None,
    built: OrderedDict | None = None,
    keep_layouts: int | None = None,
) -> dict:
    """Run ``programs`` random programs for up to ``steps`` steps on every backend.

    Args:
        programs: number of random machines (each with its own program and data).
        steps: step budget per machine.
        batch: machines per round (the batch size of every backend).
        dtype: "float32" or "float64".
        seed: seeds the program generator.
        backends: the backends compared with the reference interpreter.
        garbage: probability of a garbage field/opcode/register (see ``random_machines``).
        print_result: print a rich summary.
        structured_steps: then check at least this many steps of structured programs
            (see the module docstring), each run up to 4096 steps.
        structured_tasks: the tasks whose reference solutions are used (default: all).
        structured_minimal: run them on minimal layouts (see the module docstring).
        structured_per_call: machines per skill call of a solution (each with a mutated
            copy), all on that solution's layout.
        structured_slots: machines stepped together per layout (the backends' batch); a
            slot whose machine stops takes the next machine of the layout (default:
            ``batch``; 0: every machine of the layout at once).
        structured_lengths: limit each task's random length to these (fewer layouts to
            build; see :func:`~algind_gym.cpu_v2.structured.structured_machines`).
        built: the backends of each layout met (layout -> backends, for the same
            ``backends``; the random programs' layout too), reused and updated; pass the
            same dict to successive calls to keep their compiled models across rounds (a
            call's result does not depend on it; default: a new one per call).
        keep_layouts: layouts whose backends ``built`` keeps (default
            :data:`_BUILT_LAYOUTS`); the generated v2 kernel costs minutes of code
            generation per layout (a process holding two of its layouts peaked at about
            1.4 GB).

    Returns:
        ``{"mismatches", "steps_checked", "random_steps", "structured_steps",
        "structured_programs", "structured_length_percentiles",
        "structured_steps_in_programs_of_100_or_more", "structured_cells", "programs",
        "dtype", "seed",
        "backends", "per_backend", "faults", "opcodes", "examples", "seconds"}``.
        ``steps_checked`` counts (machine, step) pairs where the machine was running on
        the reference; ``mismatches`` counts (backend, machine, step) triples whose state
        differs.
    """
    dt = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    built = OrderedDict() if built is None else built  # layout -> its backends, LRU
    keep = _BUILT_LAYOUTS if keep_layouts is None else keep_layouts
    per_backend = dict.fromkeys(backends, 0)
    faults: Counter = Counter()
    opcode_counts = np.zeros(MAX_OPCODE + 1, dtype=np.int64)
    examples: list[dict] = []
    checked, issued, step = 0, 0, 0
    start = time.perf_counter()
    # A pool of `batch` slots; a slot whose machine stopped (or used its `steps` budget)
    # gets a fresh random program, so every step checks mostly running machines.
    ref = random_machines(min(batch, programs), rng, dt, garbage)
    issued = ref.batch
    engines = _engines(built, ref.layout, backends, keep)
    age = np.zeros(ref.batch, dtype=np.int64)
    active = np.ones(ref.batch, dtype=bool)
    copies = {name: ref.copy() for name in backends}
    n = ref.layout.n_cells
    while active.any():
        running = active & (ref.cells[:, 4] == 0) & (ref.cells[:, 5] == 0)
        checked += int(running.sum())
        opcode_counts += _opcodes_fetched(ref.cells, running, n)
        interpreter.step(ref)
        for name, engine in engines.items():
            state = copies[name]
            engine.step(state)
            bad = np.flatnonzero((_bits(state.cells) != _bits(ref.cells)).any(axis=1) & active)
            if bad.size:
                per_backend[name] += int(bad.size)
                for m in bad[: max(0, _MAX_EXAMPLES - len(examples))]:
                    cols = np.flatnonzero(_bits(state.cells[m]) != _bits(ref.cells[m]))
                    examples.append(
                        {
                            "backend": name,
                            "step": int(age[m]),
                            "cells": [ref.layout.describe(int(c)) for c in cols[:8]],
                            "reference": ref.cells[m, cols[:8]].tolist(),
                            "got": state.cells[m, cols[:8]].tolist(),
                        }
                    )
                state.cells[bad] = ref.cells[bad]
        age += 1
        step += 1
        # Refill after every step: each program is generated once whatever the cadence,
        # while a slot left stopped still costs a dense pass its full share of the batch.
        done = active & (~ref.running | (age >= steps))
        faults.update(Fault(int(f)).name for f in ref.faults[done] if 0 <= f <= max(Fault))
        active &= ~done
        slots = np.flatnonzero(~active)[: programs - issued]
        if slots.size:
            fresh = random_machines(slots.size, rng, dt, garbage).cells
            ref.cells[slots] = fresh
            for state in copies.values():
                state.cells[slots] = fresh
            age[slots] = 0
            active[slots] = True
            issued += slots.size
    random_checked = checked
    lengths: list[int] = []
    cells: list[int] = []  # cells of each structured layout
    slots = batch if structured_slots is None else structured_slots
    while checked - random_checked < structured_steps:
        states = structured_machines(
            rng,
            dt,
            batch=structured_per_call,
            tasks=structured_tasks,
            minimal=structured_minimal,
            lengths=None if structured_lengths is None else list(structured_lengths),
        )
        states += [mutate(st, rng) for st in states]
        by_layout: dict = {}
        for st in states:
            by_layout.setdefault(st.layout, []).append(st.cells)
        for layout, rows in by_layout.items():
            cells.append(layout.n_cells)
            ref = MachineState(layout, np.concatenate(rows), check_registers=False)
            n_checked, n_lengths = _lockstep(
                ref,
                _engines(built, layout, backends, keep),
                4096,
                per_backend,
                examples,
                opcode_counts,
                slots,
            )
            checked += n_checked
            lengths += n_lengths
    opcodes = {BY_CODE[c].name: int(k) for c, k in enumerate(opcode_counts) if c in BY_CODE}
    percentiles = {p: int(np.percentile(lengths, p)) for p in (10, 50, 90, 99)} if lengths else {}
    result = {
        "mismatches": int(sum(per_backend.values())),
        "steps_checked": checked,
        "random_steps": random_checked,
        "structured_steps": checked - random_checked,
        "structured_programs": len(lengths),
        "structured_length_percentiles": percentiles,
        "structured_steps_in_programs_of_100_or_more": int(sum(x for x in lengths if x >= 100)),
        "structured_cells": [min(cells), max(cells)] if cells else [],
        "backends": list(backends),
        "programs": programs,
        "dtype": dt.name,
        "seed": seed,
        "per_backend": per_backend,
        "faults": dict(sorted(faults.items())),
        "opcodes": opcodes,
        "examples": examples,
        "seconds": time.perf_counter() - start,
    }
    if print_result:
        print_verify(result)
    return result


_BUILT_LAYOUTS = 2
"""Layouts whose backends (compiled models) :func:`verify_cpu` keeps at once: large
layouts' dense models would not fit in memory by the dozen."""


def _engines(
    built: OrderedDict, layout, backends: Sequence[str], keep: int = _BUILT_LAYOUTS
) -> dict:
    """The backends for ``layout``: built once per layout and reused while it is among the
    last ``keep`` used (a backend compiles its models for the layouts it
    meets and keeps them, so each layout gets backends of its own)."""
    if layout in built:
        built.move_to_end(layout)
    else:
        built[layout] = {name: make_backend(name) for name in backends}
        while len(built) > keep:
            built.popitem(last=False)
    return built[layout]


def _lockstep(
    ref, engines, steps, per_backend, examples, opcode_counts, slots: int = 0
) -> tuple[int, list]:
    """Run every machine of ``ref`` (one layout) on the reference and a copy per engine,
    step by step, each until it stops (at most ``steps`` steps), counting the checked
    steps and mismatches (a differing machine is resynchronised from the reference).

    At most ``slots`` machines (0: all) are stepped together; a slot whose machine stopped
    takes the next waiting machine, so the backends run at a full batch until the queue
    is empty; then the batch shrinks to the machines still running (a stopped machine's
    row would cost a dense pass its full share). A machine's steps and comparisons do not depend on its slot or on the other
    machines. Returns the steps checked and every machine's program length (steps it ran).
    """
    queue, layout = ref.cells, ref.layout
    total = len(queue)
    width = total if slots <= 0 else min(slots, total)
    ref = MachineState(layout, queue[:width].copy(), check_registers=False)
    copies = {name: ref.copy() for name in engines}
    ids = np.arange(width)  # the machine in each slot; -1: none
    age = np.zeros(width, dtype=np.int64)
    issued = width
    n = layout.n_cells
    checked = 0
    length = np.zeros(total, dtype=np.int64)
    while True:
        running = (ref.cells[:, 4] == 0) & (ref.cells[:, 5] == 0)
        ids[~running | (age >= steps)] = -1  # stopped or out of steps: its slot is free
        free = np.flatnonzero(ids < 0)[: total - issued]
        if free.size:  # refill from the queue
            fresh = queue[issued : issued + free.size]
            ref.cells[free] = fresh
            for state in copies.values():
                state.cells[free] = fresh
            ids[free] = np.arange(issued, issued + free.size)
            age[free] = 0
            issued += free.size
            running[free] = (fresh[:, 4] == 0) & (fresh[:, 5] == 0)
            ids[free[~running[free]]] = -1  # a start state that is not running: 0 steps
        live = ids >= 0
        if not live.any():
            if issued == total:
                break
            continue
        if issued == total and not live.all():  # drop the stopped machines' slots
            keep = np.flatnonzero(live)
            ref = MachineState(layout, ref.cells[keep], check_registers=False)
            for state in copies.values():
                state.cells = state.cells[keep]
            ids, age, live = ids[keep], age[keep], live[keep]
        checked += int(live.sum())
        length[ids[live]] += 1
        opcode_counts += _opcodes_fetched(ref.cells, live, n)
        interpreter.step(ref)
        age += 1
        for name, engine in engines.items():
            state = copies[name]
            engine.step(state)
            bad = np.flatnonzero((_bits(state.cells) != _bits(ref.cells)).any(axis=1) & live)
            if bad.size:
                per_backend[name] += int(bad.size)
                if len(examples) < _MAX_EXAMPLES:
                    m = int(bad[0])
                    cols = np.flatnonzero(_bits(state.cells[m]) != _bits(ref.cells[m]))
                    examples.append(
                        {
                            "backend": name,
                            "structured": True,
                            "step": int(age[m]) - 1,
                            "cells": [ref.layout.describe(int(c)) for c in cols[:8]],
                            "reference": ref.cells[m, cols[:8]].tolist(),
                            "got": state.cells[m, cols[:8]].tolist(),
                        }
                    )
                state.cells[bad] = ref.cells[bad]
            # a slot without a machine follows the reference too (it is not compared)
            state.cells[~live] = ref.cells[~live]
    return checked, length.tolist()


def print_verify(result: dict) -> None:
    """Print a :func:`verify_cpu` result with rich."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    status = "[green]OK[/green]" if result["mismatches"] == 0 else "[red]MISMATCH[/red]"
    console.print(
        f"verify-cpu {status}: {result['mismatches']} mismatches in {result['steps_checked']:,} "
        f"instruction steps ({result['programs']} programs, {result['dtype']}, seed "
        f"{result['seed']}, {result['seconds']:.1f} s)"
    )
    table = Table(title="per backend")
    table.add_column("backend")
    table.add_column("mismatches", justify="right")
    for name, count in result["per_backend"].items():
        table.add_row(name, str(count))
    console.print(table)
    console.print(
        f"random programs: {result['random_steps']:,} steps; structured programs: "
        f"{result['structured_steps']:,} steps in {result['structured_programs']} machines, "
        f"{result['structured_steps_in_programs_of_100_or_more']:,} of them in programs of "
        f">= 100 steps; program length percentiles {result['structured_length_percentiles']}"
        + (
            f"; layouts of {result['structured_cells'][0]:,}-{result['structured_cells'][1]:,}"
            " cells"
            if result["structured_cells"]
            else ""
        )
    )
    console.print(f"final faults: {result['faults']}")
    console.print(f"opcodes executed: {len(result['opcodes'])} distinct")
    for ex in result["examples"]:
        console.print(ex)
