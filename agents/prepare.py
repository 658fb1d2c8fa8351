"""Making the machines of a batched expansion ready: one compiled loop over the machines.

:class:`agents.batched._BatchBuffer` reuses the same machines for every expansion. Before
an expansion each child's machines must be the node's machines with the child's call set
up, bit for bit what the one-at-a-time path builds. What the runs since a machine's last
use may have changed is known from the backend's write ranges
(:func:`~algind_gym.cpu.backend.run_recording_writes`: per machine, a range below the
memory block and one from it up), so :func:`prepare` rewrites, machine by machine:

1. every register, from the ready machine (the root machine with the top-level call set
   up: the HALT address pushed, MODE, HALT and FAULT cleared);
2. the cells of its range below the memory block (the stack a call used, a few dozen of
   the 1,172 stack cells), from the ready machine;
3. the memory block, from the node's memory;
4. the cells of its range above the memory block that are not write protected (skill
   slots a combinator bound for its callee; a protected cell is never written), from the
   root machine;
5. then the call: the entry point of the action's skill into PC and the action's bindings
   (pointer-table descriptors of the ready machine) into the skill's argument slots, as
   ``MachineImage.execute_rows`` does for an action the action table validated;

and marks the machine's ranges empty. The loop touches each machine's cells once, instead
of a dozen array operations each sweeping every machine. Without numba (a dependency, so
only a broken install) the same loop runs in Python, slowly.
"""

from __future__ import annotations

import numpy as np

NOTHING = np.iinfo(np.int64).max
"""The ``lo`` of an empty write range (``hi`` is -1)."""


def _prepare_py(
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
) -> None:
    """Make machines ``cells[: len(actions) * rows]`` ready for ``actions`` from
    the node with ``memory`` ``(rows, memory size)`` (module docstring).

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
    """
    rows = ready.shape[0]
    for c in range(actions.shape[0]):
        a = actions[c]
        for g in range(rows):
            i = c * rows + g
            for k in range(n_registers):
                cells[i, k] = ready[g, k]
            lo, hi = max(written[i, 0], n_registers), min(written[i, 1], mem_start - 1)
            for k in range(lo, hi + 1):
                cells[i, k] = ready[g, k]
            for k in range(mem_start, mem_stop):
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


try:  # numba is a dependency; without it the same loop runs (slowly) in Python
    import numba

    prepare = numba.njit(cache=True, nogil=True)(_prepare_py)
except ImportError:  # pragma: no cover
    prepare = _prepare_py
