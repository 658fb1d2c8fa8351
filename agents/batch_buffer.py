"""The machines of a batched expansion: kept between expansions, made ready by one compiled loop.

:class:`BatchBuffer` holds the machines an :class:`~agents.batched.ActionEvaluator` runs
its batches on and reuses them for every expansion. Before an expansion each child's
machines must be the node's machines with the child's call set up, bit for bit what the
one-at-a-time path builds. What the runs since a machine's last use may have changed is
known from the backend's write ranges
(:func:`~algind_gym.cpu.backend.run_recording_writes`: per machine, a range below the
memory block and one from it up), so :func:`~agents.batch_loops.prepare` rewrites,
machine by machine:

1. every register, from the ready machine (the root machine with the top-level call set
   up: the HALT address pushed, MODE, HALT and FAULT cleared);
2. the cells of its range below the memory block (the stack a call used, a few dozen of
   the 1,172 stack cells), from the ready machine;
3. the memory block, from the node's memory: only the cells its range covers when the
   machine's memory was last written from the same node (consecutive expansions of one
   node's children: ``holds_node``, the node compared by its bytes), else all of it;
4. the cells of its range above the memory block that are not write protected (skill
   slots a combinator bound for its callee; a protected cell is never written), from the
   root machine;
5. then the call: the entry point of the action's skill into PC and the action's bindings
   (pointer-table descriptors of the ready machine) into the skill's argument slots, as
   ``MachineImage.execute_rows`` does for an action the action table validated;

and marks the machine's ranges empty. After the CPU call,
:func:`~agents.batch_loops.collect` reads back each machine's memory block, instructions,
fault and score. Both are compiled loops over the machines, run on the backend's threads
(:mod:`agents.batch_loops`). The CPU call itself runs on the backend's threads or, when
the evaluator asks for the thread choice, on a one-thread twin of it, per call, whichever
has run faster lately (:mod:`agents.thread_choice`).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import numpy as np

from agents.batch_loops import collect, prepare, run_loop
from agents.thread_choice import SERIAL, ThreadChoice, serial_twin, shared_costs
from algind_gym.cpu.backend import empty_write_ranges
from algind_gym.cpu.threads import PARALLEL_MIN_ROWS, resolve_threads
from algind_gym.machine.layout import DESCRIPTOR_WIDTH
from algind_gym.machine.state import MachineState

if TYPE_CHECKING:
    from agents.batched import ActionEvaluator


class Targets:
    """What a batch's machines are scored against, per row of a child (search example):
    the memory columns of the task's output cells, their expected values and tolerance
    bounds (the arguments of :func:`~agents.batch_loops.collect`).

    Args:
        columns: per row, the output cells' memory columns.
        want: per row, their expected values (float64), aligned with ``columns``.
        tolerance: the task's :class:`~algind_gym.tasks.spec.Tolerance`.
    """

    def __init__(self, columns: list[np.ndarray], want: list[np.ndarray], tolerance) -> None:
        rows = len(columns)
        width = max([len(c) for c in columns] + [1])
        self.columns = np.full((rows, width), -1, dtype=np.int64)
        self.want = np.zeros((rows, width))
        self.total = np.zeros(rows, dtype=np.int64)
        for g, (c, w) in enumerate(zip(columns, want, strict=True)):
            self.columns[g, : len(c)] = c
            self.want[g, : len(w)] = w
            self.total[g] = len(c)
        self.exact = bool(tolerance.exact)
        self.bound = tolerance.atol + tolerance.rtol * np.abs(self.want)

    @classmethod
    def none(cls, rows: int) -> Targets:
        """No output cells (the task scores itself; the scores ``collect`` gives are
        then not used)."""
        from algind_gym.tasks.spec import EXACT

        return cls([np.zeros(0, np.int64)] * rows, [np.zeros(0)] * rows, EXACT)


class BatchBuffer:
    """The machines of one batched expansion, kept between expansions.

    ``capacity`` children x ``rows`` machines, allocated (and checked finite) once, their
    low part (registers, stack, pointer table) set to a copy of the root machines' prepared
    once with the top-level call set up (``machine.program.call``: the HALT address pushed
    as the return address, MODE, HALT and FAULT cleared): the *ready* machines.

    Before each expansion of ``n`` children, :func:`~agents.batch_loops.prepare` makes the
    first ``n x rows`` machines ready again, rewriting only what the runs since a machine's
    last use may have changed according to the backend's write ranges (kept per machine in
    ``written``, accumulated over the runs a machine sat out): its registers, the stack
    cells a call used (a few dozen, instead of the whole 1,172-cell stack block), the
    node's memory, and any writable cells above the memory block (slots a combinator bound
    for its callee); then it sets up every child's call (entry point and bindings, what
    ``MachineImage.execute_rows`` does for an action the action table validated). So a
    child's machines are bit for bit the node's machines with the call set up, as the
    one-at-a-time path builds them, apart from argument slots that an earlier expansion's
    bindings wrote (every call binds its own slots before reading them). Backends that do
    not track writes report whole rows, and then all of that is rewritten. The backend runs
    those machines, and only those, in one call. Each action's call plan (entry point, slot
    and pointer columns) is computed for the whole action table when the buffer is built
    and kept in arrays indexed by action.
    """

    def __init__(self, ev: ActionEvaluator, capacity: int, adaptive_threads: bool = False) -> None:
        lay = ev.layout
        self.ev, self.capacity, self.rows = ev, capacity, ev.rows
        r = self.rows
        self.low = ev.mem.start
        if lay.block("code").start < ev.mem.stop:
            raise AssertionError("the code block must lie above memory")
        self.n_registers = lay.block("registers").size
        self.pc, self.fault = lay.register("pc"), lay.register("fault")
        self.icount = lay.register("icount")
        # the root machines' registers, stack and pointer table, the call set up
        ready = ev.root_cells[:, : self.low].copy()
        sp = ready[:, lay.register("sp")].astype(np.int64)
        if (sp >= self.low).any():
            raise AssertionError("the stack must lie below memory")
        ready[np.arange(r), sp] = lay.halt_address
        ready[:, lay.register("sp")] = sp + 1
        for name in ("mode", "halt", "fault"):
            ready[:, lay.register(name)] = 0
        self.ready = ready
        """The low part of a child's machines (below the memory block)."""
        self.cells = np.tile(ev.root_cells, (capacity, 1))
        self.cells.reshape(capacity, r, -1)[:, :, : self.low] = ready[None]
        self.written = empty_write_ranges(capacity * r)
        """Per machine: the cells the runs since it was last made ready may have changed
        (the backend's write ranges, accumulated)."""
        self.writable_above = ev.mem.stop + np.flatnonzero(~lay.protected_mask[ev.mem.stop :])
        """The cells above the memory block that a program may write (skill slots)."""
        self.icount_before = np.tile(ready[:, self.icount], capacity)
        m = capacity * r
        self.steps, self.faults = np.empty(m, dtype=np.int64), np.empty(m, dtype=bool)
        self.frac, self.ok = np.empty(m), np.empty(m, dtype=bool)
        """Per machine, what :func:`~agents.batch_loops.collect` reads back (reused)."""
        threads = getattr(ev.backend.inner, "threads", None)
        self.threads = resolve_threads(threads if isinstance(threads, int) else None)
        """Threads the loops before and after the CPU call may use: the backend's (the CPU
        kernel's thread policy, :mod:`algind_gym.cpu.threads`)."""
        self._plan(ev)
        twin = serial_twin(ev.backend.inner) if adaptive_threads else None
        self.choice, self._twin_ready = None, False
        if twin is not None:
            inner = ev.backend.inner
            costs = shared_costs(inner.threads)
            self.choice = ThreadChoice(inner, twin, PARALLEL_MIN_ROWS, costs)
        """Per CPU call, the backend's threads or one (:mod:`agents.thread_choice`); None
        when the backend has one thread or no choice of threads."""
        self.node = ev.root_memory.tobytes(order="F")
        """The bytes of the node whose memory the machines marked in ``holds_node`` hold
        (apart from the cells their write ranges cover)."""
        self.holds_node = np.ones(capacity * r, dtype=bool)
        self.state = MachineState(lay, self.cells, check_registers=False)
        self._states: dict[int, MachineState] = {capacity: self.state}
        """Per number of children: a state over the buffer's first machines (a view of
        the cells checked when the buffer was built)."""

    def _plan(self, ev: ActionEvaluator) -> None:
        """Every candidate action's call plan as arrays indexed by action: the entry point
        of its skill per row (``entry``; HALT's row is -1), the slot columns its bindings
        go to and the pointer-table columns they come from (padded to the longest with a
        pointer cell copied onto itself)."""
        table, lay = ev.table, ev.layout
        n_cand = len(table.candidates)
        skill = np.fromiter((c[0] for c in table.candidates), np.int64, n_cand)
        binds = np.zeros((n_cand, max(table.max_arity, 1)), dtype=np.int64)
        for i, (_, b) in enumerate(table.candidates):
            binds[i, : len(b)] = b
        blocks = [lay.skill(ev.library.get(key).block_name) for key in table.skills]
        # per skill: entry point (the header's output entry) and slot columns; per
        # pointer: its descriptor's columns
        offsets = np.arange(DESCRIPTOR_WIDTH)
        headers = np.array([sb.header for sb in blocks], dtype=np.int64)
        entries = ev.root_cells[:, headers].T  # (skills, rows)
        slots = np.zeros((len(blocks), binds.shape[1] * DESCRIPTOR_WIDTH), dtype=np.int64)
        for s, sb in enumerate(blocks):
            for i in range(table.arity[s]):
                slots[s, i * DESCRIPTOR_WIDTH : (i + 1) * DESCRIPTOR_WIDTH] = sb.slot(i) + offsets
        pointers = np.array([lay.pointer(p) for p in range(table.n_pointers)], dtype=np.int64)
        self.entry = np.concatenate([entries[skill], np.full((1, self.rows), -1.0)])
        src = (pointers[binds][:, :, None] + offsets).reshape(n_cand, -1)
        dst = slots[skill]
        # a column past the skill's arity copies the first pointer cell onto itself
        unused = np.arange(dst.shape[1])[None] >= (
            np.asarray(table.arity, dtype=np.int64)[skill][:, None] * DESCRIPTOR_WIDTH
        )
        pad_cell = int(pointers[0]) if len(pointers) else 0
        dst[unused] = src[unused] = pad_cell
        pad = np.full((1, dst.shape[1]), pad_cell, np.int64)
        self.dst = np.concatenate([dst, pad])
        self.src = np.concatenate([src, pad])
        if self.src.max() >= self.low:
            raise AssertionError("the pointer table must lie below memory")
        self.is_halt = np.zeros(n_cand + 1, dtype=bool)
        self.is_halt[-1] = True

    def run(
        self, memory: np.ndarray, actions: np.ndarray, targets: Targets
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Run ``actions`` from the node with ``memory``; returns the children's memory
        after the call, ``(n, memory size, rows)`` (a new array, a child's memory column
        by column), and, for the ``n x rows`` machines, faults, steps, and the fraction of
        output cells right and success against ``targets``
        (:func:`~agents.batch_loops.collect`; these four are the buffer's own arrays,
        overwritten by the next run)."""
        ev, r, n = self.ev, self.rows, len(actions)
        if self.is_halt[actions].any():
            raise ValueError("HALT is not an action to evaluate: it runs nothing")
        m = n * r
        cells = self.cells[:m]
        mem = ev.mem
        node = memory.tobytes(order="F")  # bits, not values: -0.0 is not 0.0
        same_node = node == self.node
        if not same_node:
            self.node = node
            self.holds_node[:] = False
        run_loop(
            prepare,
            m,
            self.threads,
            self.cells,
            self.written,
            self.ready,
            memory,
            ev.root_cells,
            self.writable_above,
            actions,
            self.entry,
            self.dst,
            self.src,
            self.pc,
            self.n_registers,
            mem.start,
            mem.stop,
            same_node,
            self.holds_node,
        )
        if n not in self._states:
            state = copy.copy(self.state)
            state.cells = cells
            self._states[n] = state
        backend, arm = self.choice.pick(m) if self.choice else (None, None)
        if arm == SERIAL and not self._twin_ready:  # its CPU built outside the timed call
            backend.model(ev.layout, cells.dtype)
            self._twin_ready = True
        ev.backend.run(self._states[n], ev.max_steps, written=self.written[:m], inner=backend)
        after = np.empty((n, mem.stop - mem.start, r), dtype=cells.dtype)
        steps, faults = self.steps[:m], self.faults[:m]
        frac, ok = self.frac[:m], self.ok[:m]
        t = targets
        run_loop(
            collect, m, self.threads,
            cells, self.icount_before, self.icount, self.fault, mem.start,
            t.columns, t.want, t.bound, t.exact, t.total,
            after, steps, faults, frac, ok,
        )  # fmt: skip
        if arm is not None:
            self.choice.record(arm, ev.backend.last_seconds, int(steps.sum()), m)
        return after, faults, steps, frac, ok
