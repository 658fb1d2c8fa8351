"""Fresh machines in place: the vector env's autoreset rewrites only what an episode changed.

:class:`FreshRows` turns the K machine rows of sub-environments whose episode ended back
into what :meth:`Workspace.reset <algind_gym.tasks.workspace.Workspace.reset>` returns for
their new examples, in the shared array of all machines, without building new states.

A fresh machine is the image's template row (the same code block for every length of the
shared layout: code never changes, it is protected) plus the examples' inputs and the
uninitialised values of outputs and scratch. Of the template, a reset rewrites:

* the registers and the memory block, always (they differ between lengths, and an
  episode writes most of them);
* the pointer table, whole, unless the machine still holds the table of the fresh row the
  compiled restore last gave it (:attr:`FreshRows.held`; its write ranges do not reach the
  table): then only the cells in which the two lengths' tables differ (the buffer shapes:
  12 of 144 cells on DotProduct), compared bit for bit once per pair of lengths;
* of the stack (more than a thousand cells, mostly never touched), only the cells up to
  the highest one written since the row was fresh;
* of the skill slots (descriptors W^in writes), only those between the lowest and the
  highest slot cell written since then.

"Written since then" comes from :attr:`FreshRows.written`, one pair of write ranges per
machine (:mod:`algind_gym.cpu.backend`, "Write ranges"): the vector env passes it to the
backend's ``run`` (the numba kernel reports exact ranges, other backends whole rows) and
to :func:`~algind_gym.envs.batch.bind_and_call` (the host's own writes: the pushed return
address and the slot descriptors). Everything else a step does to the cells is in the
registers. Skipping the rest is exact only because the cells outside the ranges still hold
their fresh values, so:

* sub-environments whose rows changed some other way (their own ``step``, ``reset`` or
  ``restore`` called directly, see :class:`~algind_gym.envs.columns.ColumnEnv`) are marked
  in :attr:`FreshRows.untracked` and get the whole template;
* the shortcut is used only while the fresh rows of all lengths seen agree on the stack and
  the slots (they do for images built from one layout; checked once per length);
* the first reset of every length is also compared with ``Workspace.reset`` (registers,
  stack, pointer table, memory and slots); if they ever differ (a workspace that
  initialises more than the inputs), every later reset copies ``Workspace.reset``.

:meth:`FreshRows.reset_many` restores the rows of every length that resets in a step in
one compiled call, each from its length's fresh row. ``tests/envs/test_fresh_rows.py``
compares reset rows byte for byte with freshly built machines after random episodes with
HALT and faults.
"""

from __future__ import annotations

import numpy as np

from algind_gym.cpu.backend import empty_write_ranges

try:  # numba is a dependency; without it the numpy path below does the same writes
    import numba
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None


class FreshRows:
    """Rewrites the machine rows of resetting sub-environments (see the module docstring).

    Args:
        layout: the shared layout of all machines.
        num_envs: sub-environments; env ``i`` owns rows ``i*k .. (i+1)*k - 1``.
        k: machines (examples) per sub-environment.
        untracked: the ``(num_envs,)`` bool array of :attr:`untracked` to use (the vector
            env passes :attr:`EpisodeColumns.untracked
            <algind_gym.envs.columns.EpisodeColumns.untracked>`); a new one by default.
    """

    def __init__(self, layout, num_envs: int, k: int, untracked: np.ndarray | None = None) -> None:
        self.k = k
        self.code_start = layout.block("code").start
        self.registers_end = layout.block("registers").end
        self.pointers_start = layout.block("pointers").start
        slots = np.flatnonzero(~layout.protected_mask[self.code_start :])
        self.slot_cols = slots + self.code_start
        self.slot_runs = _runs(self.slot_cols)
        """The slot columns as ``[start, stop)`` runs of adjacent cells (one or a few per
        skill block), what the compiled restore copies."""
        self.written = empty_write_ranges(num_envs * k)
        """Write ranges of every machine since its row was last fresh (``(num_envs * k, 4)``)."""
        self.untracked = np.zeros(num_envs, dtype=bool) if untracked is None else untracked
        """Sub-environments whose rows changed outside the tracked writes: restore whole."""
        self._empty = empty_write_ranges(1)[0]
        self._plans: dict[int, tuple] = {}
        self._templates = np.zeros((0, layout.n_cells))
        """The fresh row of every length planned, stacked (the compiled restore's input)."""
        self._template_of: dict[int, int] = {}
        self.memory_start = layout.block("memory").start
        self.held = np.full(num_envs * k, -1, dtype=np.int64)
        """Per machine, the index in :attr:`_templates` of the fresh row whose pointer table
        the compiled restore last wrote into it (-1: unknown, e.g. after a whole-row
        copy): while its write ranges do not reach the table, the next restore rewrites
        only the table cells in which the two fresh rows differ (:attr:`_diff`)."""
        self._diff = np.zeros((0, 0, 0), dtype=np.int64)
        self._n_diff = np.zeros((0, 0), dtype=np.int64)
        self._checked: set[int] = set()
        self._fast = True  # False: copy Workspace.reset (a check failed)
        self._ranged = True  # False: every length's fresh rows do not agree on stack/slots
        self._reference: tuple[np.ndarray, np.ndarray] | None = None

    def fresh_envs(self, env_ids: np.ndarray) -> None:
        """Mark the rows of ``env_ids`` as fresh (the caller wrote whole fresh machines)."""
        rows = (np.asarray(env_ids)[:, None] * self.k + np.arange(self.k)).ravel()
        self.written[rows] = self._empty
        self.held[rows] = -1
        self.untracked[env_ids] = False

    def reset(self, cells: np.ndarray, group: list[int], wss: list, drawn: tuple) -> None:
        """Write what ``ws.reset()`` returns for each workspace of ``wss`` into the rows of
        the envs ``group`` (all of one length), in place; then those rows are fresh.
        ``drawn``: the workspaces' examples, expected outputs and uninitialised values
        stacked, as :func:`~algind_gym.tasks.workspace.refill_group` returns them."""
        k, cs, slots = self.k, self.code_start, self.slot_cols
        g = np.asarray(group)
        rows = (g[:, None] * k + np.arange(k)).ravel()
        length = wss[0].length
        if not self._fast:
            for i, ws in zip(group, wss, strict=True):
                fresh, r = ws.reset().cells, slice(i * k, (i + 1) * k)
                cells[r, :cs] = fresh[:, :cs]
                cells[r, slots] = fresh[:, slots]
            self.fresh_envs(g)
            return
        plan = self._plans.get(length)
        if plan is None:
            plan = self._plans[length] = self._plan(ws=wss[0], cells=cells)
        cells3 = cells.reshape(-1, k, cells.shape[1])
        exact = self._template(cells, cells3, g, rows, length)
        self.fresh_envs(g)
        if exact:
            self.held[rows] = self._template_of[length]
        self._write_data(cells3, g, plan, drawn)
        if length in self._checked:
            return
        self._checked.add(length)
        want = wss[0].reset().cells
        first = cells[group[0] * k : (group[0] + 1) * k]
        if _same(first[:, :cs], want[:, :cs]) and _same(first[:, slots], want[:, slots]):
            return
        self._fast = False
        self.reset(cells, group, wss, drawn)

    def reset_many(self, cells: np.ndarray, parts: list[tuple]) -> None:
        """:meth:`reset` for several lengths at once, ``parts`` a list of its ``(group,
        wss, drawn)`` arguments: once every length has been seen and checked, the template
        rows of all their envs are restored in one compiled call (each row from its
        length's fresh row) and all are marked fresh at once; then each length's data."""
        lengths = [wss[0].length for _, wss, _ in parts]
        k = self.k
        ids = np.concatenate([np.asarray(g) for g, _, _ in parts]) if parts else None
        if (
            ids is None
            or not (self._fast and self._ranged and COMPILED and cells.flags.c_contiguous)
            or not all(n in self._checked for n in lengths)
            or self.untracked[ids].any()
        ):
            for part in parts:
                self.reset(cells, *part)
            return
        rows = (ids[:, None] * k + np.arange(k)).ravel()
        which = np.repeat(
            np.array([self._template_of[n] for n in lengths], dtype=np.int64),
            [len(g) * k for g, _, _ in parts],
        )
        self._restore(cells, rows, which)
        self.fresh_envs(ids)
        self.held[rows] = which
        cells3 = cells.reshape(-1, k, cells.shape[1])
        for (group, _, drawn), n in zip(parts, lengths, strict=True):
            self._write_data(cells3, np.asarray(group), self._plans[n], drawn)

    def _write_data(self, cells3: np.ndarray, g: np.ndarray, plan: tuple, drawn: tuple) -> None:
        """The inputs and uninitialised values ``drawn`` of the envs ``g`` (one length,
        ``plan`` its :meth:`_plan`) into their rows of ``cells3`` (``(envs, K, cells)``)."""
        _, cols, pieces = plan
        k = self.k
        examples, _, block = drawn
        values = []
        for name, size in pieces:  # in the order of cols
            if name is None:
                values.append(block)
            else:
                values.append(examples[name].reshape(g.size, k, size))
        if values:
            v = np.concatenate(values, axis=2) if len(values) > 1 else values[0]
            if isinstance(cols, slice):
                cells3[g, :, cols] = v
            else:
                cells3[g[:, None, None], np.arange(k)[None, :, None], cols] = v

    def _restore(self, cells: np.ndarray, rows: np.ndarray, which: np.ndarray) -> None:
        """:func:`restore_rows` of machine ``rows`` of ``cells``, row ``rows[i]`` from template
        ``which[i]``, with this object's write ranges, templates and layout bounds."""
        restore_rows(
            cells,
            rows,
            self.written,
            self._templates,
            which,
            self.held,
            self._diff,
            self._n_diff,
            self.registers_end,
            self.pointers_start,
            self.memory_start,
            self.code_start,
            self.slot_runs,
        )

    def _template(self, cells, cells3, g, rows, length) -> bool:
        """The fresh row ``row``'s registers, pointer table and memory, and its stack and
        slots where they were written (all of them for untracked envs): per machine in a
        compiled loop (:func:`restore_rows`), or with numpy for the union of the rows'
        ranges."""
        slots, cs = self.slot_cols, self.code_start
        row = self._plans[length][0]
        head, slot_values = row[:cs], row[slots]
        if not self._ranged or self.untracked[g].any():
            cells3[g, :, : self.code_start] = head
            cells[rows[:, None], slots[None, :]] = slot_values
            return False
        if COMPILED and cells.flags.c_contiguous:
            self._restore(
                cells, rows, np.full(rows.size, self._template_of[length], dtype=np.int64)
            )
            return True
        w = self.written[rows]
        top = max(self.registers_end, int(w[:, 1].max()) + 1)
        if top >= self.pointers_start:
            cells3[g, :, : self.code_start] = head
        else:
            ptr = self.pointers_start
            cells3[g, :, :top] = head[:top]
            cells3[g, :, ptr : self.code_start] = head[ptr:]
        i0 = int(np.searchsorted(slots, w[:, 2].min(), "left"))
        i1 = int(np.searchsorted(slots, w[:, 3].max(), "right"))
        if i1 > i0:
            cells[rows[:, None], slots[None, i0:i1]] = slot_values[i0:i1]
        return False

    def _plan(self, ws, cells: np.ndarray) -> tuple:
        """What :meth:`reset` writes at ``ws``'s length: the fresh machine's row; the columns of the data it writes (a slice when they
        are adjacent) and the pieces of that data in order, ``(None, width)`` for the
        uninitialised block and ``(name, size)`` per input."""
        row = ws.image.new_state(1, cells.dtype).cells[0]
        pieces = []
        unc = ws.uninitialised_columns
        if unc.size:
            pieces.append((None, unc.size, unc))
        for a in ws.task.args:
            addr, buf = ws.image.buffers[a.name]
            if a.role != "out" and buf.size:
                pieces.append((a.name, buf.size, np.arange(addr, addr + buf.size)))
        if unc.size and np.array_equal(unc, np.arange(unc[0], unc[0] + unc.size)):
            pieces.sort(key=lambda p: int(p[2][0]))  # every piece is contiguous: by address
        cols = np.concatenate([p[2] for p in pieces]) if pieces else np.zeros(0, np.int64)
        if cols.size and np.array_equal(cols, np.arange(cols[0], cols[0] + cols.size)):
            cols = slice(int(cols[0]), int(cols[0]) + cols.size)
        row = row.copy()
        self._template_of[ws.length] = self._templates.shape[0]
        self._templates = (
            np.concatenate([self._templates, row[None]])
            if self._templates.size
            else row[None].copy()
        )
        self._diff, self._n_diff = _pointer_diffs(
            self._templates, self.pointers_start, self.memory_start
        )
        head, slot_values = row[: self.code_start], row[self.slot_cols]
        # the shortcut needs the same stack and slots in the fresh rows of every length
        stack = head[self.registers_end : self.pointers_start]
        if self._reference is None:
            self._reference = (stack, slot_values)
        elif not (_same(stack, self._reference[0]) and _same(slot_values, self._reference[1])):
            self._ranged = False
        return row, cols, [(n, size) for n, size, _ in pieces]


def _pointer_diffs(templates: np.ndarray, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pair ``(a, b)`` of fresh rows, the pointer-table cells (``start .. stop``) in
    which they differ, bit for bit (padded ``(P, P, width)``), and how many."""
    p = templates.shape[0]
    table = templates[:, start:stop]
    bits = table.view(np.uint8).reshape(p, stop - start, -1)
    diff = (bits[:, None] != bits[None, :]).any(axis=3)  # (P, P, cells)
    n = diff.sum(axis=2)
    cols = np.zeros((p, p, max(int(n.max()), 1)), dtype=np.int64)
    for a in range(p):
        for b in range(p):
            c = np.flatnonzero(diff[a, b]) + start
            cols[a, b, : c.size] = c
    return cols, n.astype(np.int64)


def _restore_rows(
    cells,
    rows,
    written,
    templates,
    which,
    held,
    diff,
    n_diff,
    registers_end,
    pointers_start,
    memory_start,
    code_start,
    runs,
):
    """Per machine ``r = rows[j]``, from its fresh row ``row = templates[which[j]]``: the
    registers, the stack up to the highest cell of ``written[r]``'s first range, the
    pointer table (only the cells in which ``row`` differs from the fresh row ``held[r]``
    when the row still holds that one's table: ``held[r] >= 0`` and the first range below
    the table), the memory, and the skill slots inside ``written[r]``'s second range
    (``runs``: the slot columns as sorted ``[start, stop)`` runs, each copied as one
    contiguous piece clipped to the range), written into ``cells[r]``.

    ``cells`` and ``templates`` are C-contiguous; the loops index their flat views with
    unsigned offsets (about 3x faster compiled than signed 2-D indexing, whose
    negative-index checks keep the copies from being vectorised)."""
    width = cells.shape[1]
    flat, tflat = cells.reshape(-1), templates.reshape(-1)
    u = np.uint64
    for j in range(rows.shape[0]):
        r = rows[j]
        t = which[j]
        base, tb = u(r) * u(width), u(t) * u(width)
        top = written[r, 1] + 1
        if top < registers_end:
            top = registers_end
        if top > pointers_start:
            top = pointers_start
        for c in range(u(top)):
            flat[base + c] = tflat[tb + c]
        h = held[r]
        if h >= 0 and written[r, 1] < pointers_start:
            for i in range(n_diff[h, t]):
                c = u(diff[h, t, i])
                flat[base + c] = tflat[tb + c]
        else:
            for c in range(u(pointers_start), u(memory_start)):
                flat[base + c] = tflat[tb + c]
        for c in range(u(memory_start), u(code_start)):
            flat[base + c] = tflat[tb + c]
        lo, hi = written[r, 2], written[r, 3]
        if lo <= hi:
            for i in range(np.searchsorted(runs[:, 1], lo, side="right"), runs.shape[0]):
                a, b = runs[i, 0], runs[i, 1]
                if a > hi:
                    break
                if a < lo:
                    a = lo
                if b > hi + 1:
                    b = hi + 1
                for c in range(u(a), u(b)):
                    flat[base + c] = tflat[tb + c]


COMPILED = numba is not None
"""Whether :func:`restore_rows` is the compiled loop (else the numpy path is used)."""

restore_rows = (
    numba.njit(cache=True, nogil=True, boundscheck=False)(_restore_rows) if COMPILED else None
)


def _runs(cols: np.ndarray) -> np.ndarray:
    """Sorted columns ``cols`` as ``(m, 2)`` int64 ``[start, stop)`` runs of adjacent ones.

    Example:
        >>> _runs(np.array([3, 4, 5, 9, 11, 12])).tolist()
        [[3, 6], [9, 10], [11, 13]]
    """
    if cols.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    cut = np.flatnonzero(np.diff(cols) != 1) + 1
    starts = cols[np.concatenate([[0], cut])]
    stops = cols[np.concatenate([cut - 1, [cols.size - 1]])] + 1
    return np.stack([starts, stops], axis=1).astype(np.int64)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit for bit equal (``-0.0`` differs from ``0.0``)."""
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()
