"""The compiled loops of a batched expansion, machine by machine, on one thread or several.

Two loops run over the machines of a batch (:class:`~agents.batch_buffer.BatchBuffer`),
one before and one after the CPU call; both touch each machine's cells once, where a
dozen array operations would each sweep every machine:

* :func:`prepare` makes the machines ready for the children's calls (what it rewrites and
  why is in :mod:`agents.batch_buffer`);
* :func:`collect` reads back what each machine computed: its memory block, instructions,
  fault, and its score against the oracle (``Workspace.score``'s numbers).

(:func:`scalar_values`, the search's value of scalar-output nodes, is a compiled loop too,
serial: it reads one cell per machine.)

Machines are independent, so each loop is written over a range of machines
(``first, first + step, ...``) and has a serial driver (``first=0, step=1``) and a
parallel one (``chunks`` strided ranges on numba's threads with ``prange``); every
machine's result is the same bit for bit whichever runs. :func:`run_loop` chooses by the
CPU kernel's thread policy (:mod:`algind_gym.cpu.threads`: the backend's thread
count; serial when another Python thread is inside a parallel call, the kernel's lock),
with its own threshold, :data:`LOOP_PARALLEL_MIN_MACHINES`: these loops copy about a
hundred cells per machine, far less work than a CPU call, so waking numba's threads pays
only for large batches. A search's batches (64 children x 8 examples = 512 machines) run
them serially; the CPU call between them uses the cores. Without numba (a dependency, so
only a broken install) the loops run serially in Python, slowly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from algind_gym.cpu import threads as cpu_threads
from algind_gym.cpu.backend import NOTHING_WRITTEN
from algind_gym.machine.isa import Fault

NOTHING = NOTHING_WRITTEN  # the lo of an empty write range (hi is -1), as numba sees it
NO_FAULT = int(Fault.NONE)

LOOP_PARALLEL_MIN_MACHINES = 4096
"""Batches of fewer machines run :func:`prepare` and :func:`collect` serially. Measured on
512 machines (Mean, 2 threads, loaded machine): prepare 36 us serial against 85 us at best
(258 us median) in 2 chunks, collect 23 us against 73 us. 4,096 follows the CPU kernel's
measurement of comparable work (:mod:`algind_gym.cpu.threads`: its parallel driver lost
below about 4,096 machines at one step); not measured on an idle machine."""


def _prepare(
    first: int,
    step: int,
    cells: np.ndarray,
    written: np.ndarray,
    ready: np.ndarray,
    memory: np.ndarray,
    root: np.ndarray,
    writable: np.ndarray,
    actions: np.ndarray,
    entry: np.ndarray,
    dst: np.ndarray,
    src: np.ndarray,
    pc: int,
    n_registers: int,
    mem_start: int,
    mem_stop: int,
    same_node: bool,
    holds_node: np.ndarray,
) -> None:
    """Make machines ``first, first + step, ...`` of ``cells[: len(actions) * rows]``
    ready for ``actions`` from the node with ``memory`` ``(rows, memory size)``
    (:mod:`agents.batch_buffer`).

    Args:
        cells: ``(machines, cells)`` the batch's machines, child-major, changed in place.
        written: ``(machines, 4)`` their write ranges since their last use; emptied.
        ready: ``(rows, memory start)`` the ready machines' cells below the memory block.
        root: ``(rows, cells)`` the root machines.
        writable: sorted cells above the memory block that are not write protected.
        actions: the children's actions; ``entry`` ``(actions, rows)`` their skills' entry
            points; ``dst``/``src`` ``(actions, width)`` slot cells and the pointer-table
            cells bound to them (padded with a pointer cell copied onto itself).
        pc, n_registers, mem_start, mem_stop: the PC register, the register count and the
            memory block's bounds.
        same_node: ``memory`` is the node the buffer last made machines ready for.
        holds_node: ``(machines,)`` per machine, whether its memory block was last written
            from that node (then, when ``same_node``, only the memory cells its write range
            covers are rewritten); set for these machines.
    """
    rows = ready.shape[0]
    for i in range(first, actions.shape[0] * rows, step):
        c = i // rows
        g = i - c * rows
        a = actions[c]
        for k in range(n_registers):
            cells[i, k] = ready[g, k]
        lo, hi = max(written[i, 0], n_registers), min(written[i, 1], mem_start - 1)
        for k in range(lo, hi + 1):
            cells[i, k] = ready[g, k]
        if same_node and holds_node[i]:  # only the memory cells its runs wrote
            lo, hi = max(written[i, 2], mem_start), min(written[i, 3], mem_stop - 1)
        else:
            lo, hi = mem_start, mem_stop - 1
            holds_node[i] = True
        for k in range(lo, hi + 1):
            cells[i, k] = memory[g, k - mem_start]
        if written[i, 3] >= mem_stop:
            j = np.searchsorted(writable, written[i, 2])
            while j < writable.shape[0] and writable[j] <= written[i, 3]:
                cells[i, writable[j]] = root[g, writable[j]]
                j += 1
        written[i, 0], written[i, 1] = NOTHING, -1
        written[i, 2], written[i, 3] = NOTHING, -1
        cells[i, pc] = entry[a, g]
        for j in range(dst.shape[1]):
            cells[i, dst[a, j]] = ready[g, src[a, j]]


def _collect(
    first: int,
    step: int,
    cells: np.ndarray,
    icount_before: np.ndarray,
    icount: int,
    fault: int,
    mem_start: int,
    columns: np.ndarray,
    want: np.ndarray,
    bound: np.ndarray,
    exact: bool,
    total: np.ndarray,
    after: np.ndarray,
    steps: np.ndarray,
    faulted: np.ndarray,
    frac: np.ndarray,
    ok: np.ndarray,
) -> None:
    """What machines ``first, first + step, ...`` of the first ``children x rows`` of
    ``cells`` computed.

    Fills, per machine ``i`` (row ``g`` of child ``c``): ``after[c, :, g]`` its memory
    block (``after`` is ``(children, memory size, rows)``: a child's memory column by
    column, the byte order of its state key, :func:`~agents.batched.state_key`, so that a
    child's key is one copy of its contiguous block); ``steps`` the instructions it ran
    (ICOUNT less ``icount_before``); ``faulted`` whether its FAULT register is set; and its
    score against the oracle, the numbers ``Workspace.score`` gives: ``frac`` the fraction
    of its output cells right (0 when it faulted; 1 when the task has no output cells) and
    ``ok`` all of them right without a fault. A cell is right when ``got == want``
    (``exact``) or ``|got - want| <= bound`` (``bound = atol + rtol * |want|``, as
    :meth:`~algind_gym.tasks.spec.Tolerance.close` computes it), in float64.

    Args:
        columns: ``(rows, cells)`` per row of a child (search example), the memory columns
            of its output cells, padded with -1; ``want``/``bound`` their targets and
            bounds; ``total`` ``(rows,)`` the number of output cells.
    """
    rows = columns.shape[0]
    size = after.shape[1]
    for i in range(first, after.shape[0] * rows, step):
        c = i // rows
        g = i - c * rows
        for k in range(size):
            after[c, k, g] = cells[i, mem_start + k]
        steps[i] = np.int64(cells[i, icount] - icount_before[i])
        f = np.int64(cells[i, fault]) != NO_FAULT
        faulted[i] = f
        hits = 0
        for j in range(columns.shape[1]):
            col = columns[g, j]
            if col < 0:
                break
            got = np.float64(cells[i, mem_start + col])
            if got == want[g, j] if exact else np.abs(got - want[g, j]) <= bound[g, j]:
                hits += 1
        if f:
            frac[i], ok[i] = 0.0, False
        else:
            frac[i] = 1.0 if total[g] == 0 else hits / total[g]
            ok[i] = hits == total[g]


def _scalar_values(
    memory: np.ndarray,
    faulted: np.ndarray,
    potential: np.ndarray,
    address: int,
    chance: float,
    varies: bool,
    centred: np.ndarray,
    scale: float,
    affine_value: float,
    value: np.ndarray,
) -> None:
    """:class:`~agents.batched.ScalarValue` of nodes with memory ``(nodes, memory size,
    rows)`` (a node's memory column by column), faulted machines ``(nodes, rows)`` and potentials ``(nodes,)``, into
    ``value``: the potential corrected for ``chance``; ``affine_value`` when it is lower
    and the output at ``address`` (finite, on no faulted machine, not constant) fits
    ``centred`` (the targets less their mean) as ``a * out + c`` by least squares, within
    ``1e-9 * scale`` on every row, with ``|a| > 1e-12``. The sums run in row order."""
    rows = memory.shape[2]
    for i in range(memory.shape[0]):
        v = potential[i]
        if chance < 1:
            v = max(0.0, (v - chance) / (1 - chance))
        value[i] = v
        if not varies or not v < affine_value:
            continue
        ok, lo, hi, total = True, np.inf, -np.inf, 0.0
        for g in range(rows):
            x = np.float64(memory[i, address, g])
            if faulted[i, g] or not np.isfinite(x):
                ok = False
                break
            lo, hi, total = min(lo, x), max(hi, x), total + x
        if not ok or not hi > lo:
            continue
        mean = total / rows
        sxy = sxx = 0.0
        for g in range(rows):
            xc = np.float64(memory[i, address, g]) - mean
            sxy += xc * centred[g]
            sxx += xc * xc
        a = sxy / sxx
        worst = 0.0
        for g in range(rows):
            xc = np.float64(memory[i, address, g]) - mean
            worst = max(worst, abs(centred[g] - a * xc))
        if worst <= 1e-9 * scale and abs(a) > 1e-12:
            value[i] = affine_value


numba = cpu_threads.numba  # None without numba
if numba is not None:
    prepare = numba.njit(cache=True, nogil=True)(_prepare)
    collect = numba.njit(cache=True, nogil=True)(_collect)
    scalar_values = numba.njit(cache=True, nogil=True)(_scalar_values)

    @numba.njit(cache=True, nogil=True, parallel=True)
    def _prepare_chunks(chunks, *args):  # pragma: no cover - compiled
        for c in numba.prange(chunks):
            prepare(c, chunks, *args)

    @numba.njit(cache=True, nogil=True, parallel=True)
    def _collect_chunks(chunks, *args):  # pragma: no cover - compiled
        for c in numba.prange(chunks):
            collect(c, chunks, *args)

    PARALLEL = {prepare: _prepare_chunks, collect: _collect_chunks}
else:  # pragma: no cover
    prepare, collect, scalar_values, PARALLEL = _prepare, _collect, _scalar_values, {}


def run_loop(loop: Callable, machines: int, threads: int, *args) -> None:
    """Run ``loop`` (:func:`prepare` or :func:`collect`) over ``machines`` machines with
    ``args``: serially, or in ``min(threads, numba's threads, machines)`` chunks on
    numba's threads by the CPU kernel's thread policy (module docstring)."""
    chunked = PARALLEL.get(loop)
    if chunked is not None and threads > 1 and machines >= LOOP_PARALLEL_MIN_MACHINES:
        chunks = min(threads, numba.get_num_threads(), machines)
        if chunks > 1:
            with cpu_threads.parallel_launch() as ok:  # one parallel launch per process
                if ok:
                    chunked(chunks, *args)
                    return
    loop(0, 1, *args)
