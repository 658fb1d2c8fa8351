"""Environment logic on many episodes at once, as array operations on machine rows.

A single :class:`~algind_gym.envs.SkillCompositionEnv` is a batch of one; the vector env
(:mod:`algind_gym.envs.vector`) passes all its sub-environments. Episodes that share a
length share a pointer table, so the functions here group episodes by length (at most a
handful of groups) and do everything else with numpy on the rows of all K machines of a
group at once:

* :func:`score_rows`: the fraction of output elements within tolerance and success, per
  machine, and hits per output argument (tasks with a custom ``scorer`` fall back to
  :meth:`Workspace.score <algind_gym.tasks.workspace.Workspace.score>`);
* :func:`data_summary`: mean/min/max of every data entry over the K machines (the
  ``"tables"`` observation);
* :func:`bind_and_call`: W^in plus the host's top-level call for many machines with
  different skills and bindings, the batched equivalent of
  :meth:`MachineImage.execute_rows <algind_gym.skills.image.MachineImage.execute_rows>`
  for actions the env has already validated (the parity tests check the two agree bit for
  bit);
* :func:`call_results`: after the CPU call, each call's instructions and first fault;
* :func:`score_envs`: the vector env's scoring of episodes of every length at once,
  written into its columns.

With numba installed (a dependency), :func:`bind_and_call`, :func:`call_results`,
:func:`score_envs` and the scoring of :func:`score_group` are compiled loops over the
machines (each reads a machine's few cells once, where numpy would make a pass per
operation over rows that lie far apart in memory); the numpy versions give the same values
(tests compare them bit for bit).

Results depend only on each machine's own row, never on which episodes share the batch,
so a vector env and single environments produce identical trajectories.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from algind_gym.cpu.backend import NOTHING_WRITTEN
from algind_gym.machine.isa import Fault
from algind_gym.machine.layout import DESCRIPTOR_WIDTH
from algind_gym.skills.image import BINDING_FAULT
from algind_gym.tasks.workspace import Workspace

try:  # numba is a dependency; without it the numpy version of bind_and_call runs
    import numba
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None


def _segments(image, names_or_ptrs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Columns of the non-empty buffers, the start of each in them, their sizes."""
    cols, starts, sizes = [], [], []
    n = 0
    for addr, size in names_or_ptrs:
        if size:
            cols.append(np.arange(addr, addr + size))
            starts.append(n)
            sizes.append(size)
            n += size
    cat = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    return cat, np.array(starts, dtype=np.int64), np.array(sizes, dtype=np.int64)


@dataclass
class EpisodeIndex:
    """Where a workspace's data and outputs live (the same for every episode of a length)."""

    data_p: np.ndarray
    """Pointer indices of non-empty data entries."""
    data_cols: np.ndarray
    data_starts: np.ndarray
    data_sizes: np.ndarray
    out_p: np.ndarray
    """Pointer index of each non-empty output argument."""
    out_cols: np.ndarray
    out_starts: np.ndarray
    out_sizes: np.ndarray
    shape_features: np.ndarray
    """``(n_pointers, 2)``: ``log2(1 + rows)``, ``log2(1 + cols)`` of data entries."""

    @classmethod
    def of(cls, ws: Workspace) -> EpisodeIndex:
        image = ws.image
        data, data_p, shapes = [], [], np.zeros((image.n_pointers, 2), dtype=np.float32)
        for p, entry in enumerate(image.pointers):
            if entry.name in image.buffers:
                addr, buf = image.buffers[entry.name]
                shapes[p] = np.log2(1.0 + np.array([buf.rows, buf.cols]))
                if buf.size:
                    data.append((addr, buf.size))
                    data_p.append(p)
        outs, out_p = [], []
        for name in ws.task.outputs:
            addr, buf = image.buffers[name]
            if buf.size:
                outs.append((addr, buf.size))
                out_p.append(image.pointer_index(name))
        return cls(
            np.array(data_p, dtype=np.int64),
            *_segments(image, data),
            np.array(out_p, dtype=np.int64),
            *_segments(image, outs),
            shapes,
        )

    def expected(self, ws: Workspace) -> np.ndarray:
        """``(K, n_output_cells)`` float64: the oracle's outputs laid out like ``out_cols``."""
        want = ws.stacked_expected
        parts = [np.asarray(want[n], np.float64).reshape(ws.batch, -1) for n in ws.task.outputs]
        return np.concatenate(parts, axis=1)


def score_rows(
    cells: np.ndarray, rows: np.ndarray, index: EpisodeIndex, want: np.ndarray, tolerance
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score machines ``cells[rows]`` (``rows`` flat) against ``want`` ``(R, n_output_cells)``.

    Returns:
        ``(fraction, success, hits)``: per machine the fraction of output elements within
        tolerance and whether all are (faults are not looked at here), and
        ``(R, n_outputs)`` hits per non-empty output argument. The fraction equals
        :meth:`TaskSpec.score_example <algind_gym.tasks.spec.TaskSpec.score_example>`
        for tasks without a custom scorer.
    """
    if cells.flags.c_contiguous:  # flat indices: several times faster than (row, col) pairs
        got = cells.reshape(-1).take(rows[:, None] * cells.shape[1] + index.out_cols)
    else:
        got = cells[rows[:, None], index.out_cols[None, :]]
    close = tolerance.close(got, want)
    total = close.shape[1]
    if total:
        hits = np.add.reduceat(close, index.out_starts, axis=1, dtype=np.int64)
        n_hits = hits.sum(axis=1)
        return n_hits / total, n_hits == total, hits
    return np.ones(rows.size), np.ones(rows.size, dtype=bool), np.zeros((rows.size, 0), np.int64)


def _score_rows_py(cells, rows, cols, starts, want, atol, rtol, exact, fault_col, none):
    """:func:`score_rows` and the fault flags in one pass per machine: for row ``j`` of
    ``rows``, the hits per output argument (segments of ``cols`` from ``starts``), their
    total as a fraction of ``cols.size``, whether all hit, and whether its fault register
    differs from ``none``. The closeness test is :meth:`Tolerance.close
    <algind_gym.tasks.spec.Tolerance.close>`'s, in float64, operation for operation."""
    n, w, n_out = rows.shape[0], cols.shape[0], starts.shape[0]
    frac = np.empty(n)
    ok = np.empty(n, dtype=np.bool_)
    hits = np.zeros((n, n_out), dtype=np.int64)
    faults = np.empty(n, dtype=np.bool_)
    for j in range(n):
        r = rows[j]
        faults[j] = np.float64(cells[r, fault_col]) != none
        total = 0
        seg = 0
        for c in range(w):
            while seg + 1 < n_out and c >= starts[seg + 1]:
                seg += 1
            got = np.float64(cells[r, cols[c]])
            want_c = want[j, c]
            tol = atol + rtol * np.abs(want_c)
            if (got == want_c) if exact else (np.abs(got - want_c) <= tol):
                hits[j, seg] += 1
                total += 1
        frac[j] = total / w
        ok[j] = total == w
    return frac, ok, hits, faults


def _score_compiled(cells, flat, index, want, tolerance, fault_col):
    """:func:`score_rows` plus the fault flags of machines ``flat``, by the compiled loop."""
    n = flat.size
    if index.out_cols.size == 0:
        faults = cells[flat, fault_col] != Fault.NONE
        return np.ones(n), np.ones(n, dtype=bool), np.zeros((n, 0), np.int64), faults
    return _score_rows(
        cells,
        np.ascontiguousarray(flat, dtype=np.int64),
        index.out_cols,
        index.out_starts,
        np.ascontiguousarray(want, dtype=np.float64),
        float(tolerance.atol),
        float(tolerance.rtol),
        bool(tolerance.exact),
        int(fault_col),
        float(Fault.NONE),
    )


def data_summary(cells: np.ndarray, rows: np.ndarray, index: EpisodeIndex) -> np.ndarray:
    """``(n, n_data, 3)``: mean, min and max of each non-empty data entry over the K
    machines ``rows`` ``(n, K)`` of each episode and its elements."""
    n, k = rows.shape
    if index.data_cols.size == 0:
        return np.zeros((n, 0, 3))
    data = cells[rows.reshape(-1, 1), index.data_cols[None, :]].astype(np.float64)
    s = np.add.reduceat(data, index.data_starts, axis=1).reshape(n, k, -1)
    lo = np.minimum.reduceat(data, index.data_starts, axis=1).reshape(n, k, -1)
    hi = np.maximum.reduceat(data, index.data_starts, axis=1).reshape(n, k, -1)
    mean = s.sum(axis=1) / (k * index.data_sizes)
    return np.stack([mean, lo.min(axis=1), hi.max(axis=1)], axis=-1)


def groups(envs, lengths: np.ndarray | None = None) -> dict[int, list[int]]:
    """Positions of ``envs`` by episode length (episodes of a length share a pointer table);
    ``lengths``: their episode lengths when the caller keeps them in an array."""
    out: dict[int, list[int]] = {}
    if lengths is not None:
        lengths = np.asarray(lengths)
        for n in np.unique(lengths).tolist():
            out[n] = np.flatnonzero(lengths == n).tolist()
        return out
    for i, env in enumerate(envs):
        out.setdefault(env.ws.length, []).append(i)
    return out


def score_many(
    envs, cells: np.ndarray, rows: np.ndarray, lengths=None, store: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Score each env's machines ``cells[rows[i]]``: per env the mean fraction over its K
    machines (0 for a faulted machine) and whether all K are right, returned as two arrays
    in the order of ``envs``. Sets ``_out_fraction`` (per non-empty output entry, over the K
    machines) on every env, and ``_scored`` = (fraction, all right) unless ``store=False``.
    ``lengths``: the envs' episode lengths, if the caller has them in an array (see
    :func:`groups`)."""
    potential = np.zeros(len(envs))
    solved = np.zeros(len(envs), dtype=bool)
    for group in groups(envs, lengths).values():
        members = [envs[i] for i in group]
        want = None
        if members[0].task.scorer is None:
            want = np.concatenate([e._want for e in members])
        potential[group], solved[group], out_frac = score_group(members, cells, rows[group], want)
        for e, of in zip(members, out_frac, strict=True):
            e._out_fraction = of
    if store:
        for e, p, ok_ in zip(envs, potential.tolist(), solved.tolist(), strict=True):
            e._scored = (p, ok_)
    return potential, solved


def score_group(
    members, cells: np.ndarray, rows: np.ndarray, want: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score envs ``members`` of one episode length, whose machines are ``cells[rows]``
    (``rows`` ``(n, K)``) and whose expected output cells are ``want`` (``(n*K, w)``: their
    ``_want`` stacked; None for a task with a custom ``scorer``). Returns per env the
    potential and success (as :func:`score_many`) and the ``(n, n_outputs)`` fraction of
    each output entry's elements that are right, over the K machines."""
    n, k = rows.shape
    first = members[0]
    index, task = first._index, first.task
    if task.scorer is None:
        flat = rows.ravel()
        if COMPILED and cells.flags.c_contiguous:
            frac, ok, hits, faults = _score_compiled(
                cells, flat, index, want, task.tolerance, first._fault_col
            )
            faults = faults.reshape(n, k)
        else:
            faults = cells[rows, first._fault_col] != Fault.NONE  # (n, K)
            frac, ok, hits = score_rows(cells, flat, index, want, task.tolerance)
        frac, ok = frac.reshape(n, k), ok.reshape(n, k)
        out_frac = hits.reshape(n, k, -1).sum(axis=1) / (k * index.out_sizes)
    else:
        faults = cells[rows, first._fault_col] != Fault.NONE  # (n, K)
        frac, ok = np.zeros((n, k)), np.zeros((n, k), dtype=bool)
        for g, e in enumerate(members):
            sc = e.ws.score(e.state)
            frac[g], ok[g] = sc.fraction, sc.success
        out_frac = np.repeat(frac.mean(axis=1, keepdims=True), index.out_p.size, axis=1)
    potential = np.where(faults, 0.0, frac).mean(axis=1)
    return potential, (ok & ~faults).all(axis=1), out_frac


class ScoreTable:
    """The output columns of every episode length seen, padded into arrays, so that
    :func:`score_envs` scores episodes of all lengths in one compiled call."""

    def __init__(self) -> None:
        self.class_of: dict[int, int] = {}
        self.cols = np.zeros((0, 0), dtype=np.int64)
        self.starts = np.zeros((0, 0), dtype=np.int64)
        self.sizes = np.ones((0, 0), dtype=np.int64)
        self.n_cols = np.zeros(0, dtype=np.int64)
        self.n_outs = np.zeros(0, dtype=np.int64)
        self._lookup = np.full(1, -1, dtype=np.int64)

    def classes(self, lengths: np.ndarray, indexes: dict[int, EpisodeIndex]) -> np.ndarray:
        """Per episode length of ``lengths``, its row in the tables (new lengths are added
        from ``indexes``, the :class:`EpisodeIndex` per length)."""
        top = int(lengths.max())
        if top >= self._lookup.size or (self._lookup[lengths] < 0).any():
            for n in np.unique(lengths).tolist():
                if n not in self.class_of:
                    self._add(n, indexes[n])
            self._lookup = np.full(max(self.class_of) + 1, -1, dtype=np.int64)
            for n, c in self.class_of.items():
                self._lookup[n] = c
        return self._lookup[lengths]

    def _add(self, length: int, index: EpisodeIndex) -> None:
        c = len(self.class_of)
        self.class_of[length] = c
        w = max(self.cols.shape[1], index.out_cols.size)
        o = max(self.starts.shape[1], index.out_starts.size)
        cols, starts = np.zeros((c + 1, w), np.int64), np.zeros((c + 1, o), np.int64)
        sizes = np.ones((c + 1, o), np.int64)
        cols[:c, : self.cols.shape[1]] = self.cols
        starts[:c, : self.starts.shape[1]] = self.starts
        sizes[:c, : self.sizes.shape[1]] = self.sizes
        cols[c, : index.out_cols.size] = index.out_cols
        starts[c, : index.out_starts.size] = index.out_starts
        sizes[c, : index.out_sizes.size] = index.out_sizes
        self.cols, self.starts, self.sizes = cols, starts, sizes
        self.n_cols = np.append(self.n_cols, index.out_cols.size)
        self.n_outs = np.append(self.n_outs, index.out_starts.size)


def score_envs(
    cells: np.ndarray,
    ids: np.ndarray,
    k: int,
    classes: np.ndarray,
    table: ScoreTable,
    want: np.ndarray,
    tolerance,
    fault_col: int,
    out: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    """:func:`score_group` for the episodes ``ids`` of a vector env (env ``i``'s machines are
    rows ``i*k .. (i+1)*k`` of C-contiguous ``cells``; tasks without a custom scorer) of any
    lengths at once: ``classes`` their rows of ``table``, ``want`` the padded ``(num_envs,
    K, width)`` oracle output cells of every env. One compiled pass over the machines
    (:func:`_score_envs_py`, the closeness test of :func:`_score_rows_py`) writes, at
    ``ids``, into ``out = (potential, success, out_fraction, n_outs)`` (``(num_envs,)``,
    ``(num_envs,)``, ``(num_envs, >= max outputs)``, ``(num_envs,)``): per env the potential
    (the mean over its K machines, taken by numpy as :func:`score_group` takes it, of each
    machine's fraction, 0 for a faulted one), the success, the fraction of each output
    entry's elements that are right over its K machines (its first ``n_outs`` entries; the
    rest are left as they are) and its number of output entries."""
    n = ids.size
    potential, success, out_fraction, n_outs = out
    if out_fraction.shape[1] < table.starts.shape[1]:
        raise ValueError(
            f"out_fraction has {out_fraction.shape[1]} columns; the scored lengths have up to "
            f"{table.starts.shape[1]} outputs: widen it first"
        )
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    frac = np.empty((n, k))
    _score_envs(
        cells,
        ids,
        k,
        np.ascontiguousarray(want, dtype=np.float64),
        np.ascontiguousarray(classes, dtype=np.int64),
        table.cols,
        table.n_cols,
        table.starts,
        table.n_outs,
        table.sizes,
        float(tolerance.atol),
        float(tolerance.rtol),
        bool(tolerance.exact),
        int(fault_col),
        float(Fault.NONE),
        frac,
        np.zeros(max(table.starts.shape[1], 1), dtype=np.int64),
        success,
        out_fraction,
        n_outs,
    )
    potential[ids] = frac.mean(axis=1)


def _score_envs_py(
    cells, ids, k, want, classes, cols, n_cols, starts, n_outs, sizes, atol, rtol, exact,
    fault_col, none, frac, hits, success, out_fraction, n_outs_out
):  # fmt: skip
    """:func:`_score_rows_py` for the machines of envs ``ids`` (machine ``j`` of env ``ids[a]``
    is row ``ids[a]*k + j``), each with the output columns of its class: ``frac[a, j]`` the
    machine's fraction of output elements within tolerance (0.0 if it faulted), and per env
    its success, its fraction per output entry (hits over the K machines divided by ``k``
    times the entry's size, as :func:`score_group` divides them) and its number of output
    entries, at ``ids[a]``. ``hits``: scratch, one counter per output entry."""
    for a in range(ids.shape[0]):
        i, c = ids[a], classes[a]
        w, n_out = n_cols[c], n_outs[c]
        for q in range(n_out):
            hits[q] = 0
        solved = True
        for j in range(k):
            r = i * k + j
            faulted = np.float64(cells[r, fault_col]) != none
            total = 0
            seg = 0
            for q in range(w):
                while seg + 1 < n_out and q >= starts[c, seg + 1]:
                    seg += 1
                got = np.float64(cells[r, cols[c, q]])
                want_c = want[i, j, q]
                tol = atol + rtol * np.abs(want_c)
                if (got == want_c) if exact else (np.abs(got - want_c) <= tol):
                    hits[seg] += 1
                    total += 1
            if w:
                fraction, ok = total / w, total == w
            else:
                fraction, ok = 1.0, True
            frac[a, j] = 0.0 if faulted else fraction
            if faulted or not ok:
                solved = False
        success[i] = solved
        for q in range(n_out):
            out_fraction[i, q] = hits[q] / (k * sizes[c, q])
        n_outs_out[i] = n_out


@dataclass
class CallTable:
    """Addresses for :func:`bind_and_call`: per skill of an action table, its header and
    slot addresses; per pointer entry, its descriptor address."""

    headers: np.ndarray
    slot_addr: np.ndarray
    arity: np.ndarray
    pointer_addr: np.ndarray

    @classmethod
    def of(cls, image, skills: tuple[str, ...], max_arity: int) -> CallTable:
        lay = image.layout
        heads, slots, arity = [], np.zeros((len(skills), max(max_arity, 1)), np.int64), []
        for s, key in enumerate(skills):
            sk = image.library.get(key)
            block = lay.skill(sk.block_name)
            heads.append(block.header)
            arity.append(sk.n_slots)
            for j in range(sk.n_slots):
                slots[s, j] = block.slot(j)
        ptr = np.array([lay.pointer(p) for p in range(image.n_pointers)], dtype=np.int64)
        return cls(np.array(heads, np.int64), slots, np.array(arity, np.int64), ptr)


def bind_and_call(
    cells: np.ndarray,
    layout,
    table: CallTable,
    rows: np.ndarray,
    skills: np.ndarray,
    binds,
    written: np.ndarray | None = None,
    pointer_tables: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Load bindings into skill slots and start top-level calls, one per group of rows.

    Args:
        cells: ``(batch, n_cells)`` machines (modified in place).
        layout: their layout.
        table: :class:`CallTable` of the action table.
        rows: ``(n, K)`` machine rows of each call.
        skills: ``(n,)`` skill index per call (validated actions only).
        binds: ``(n, max_arity)`` pointer index per slot (entries beyond the arity ignored).
        written: optional ``(batch, 4)`` write ranges (:mod:`algind_gym.cpu.backend`,
            "Write ranges"), widened in place by what this writes besides the protected
            registers: MODE, the return address pushed on the stack and the slot
            descriptors, so that the ranges of a step cover the host's writes as well as
            the CPU's.
        pointer_tables: optional ``(tables, which, stale)`` from a caller that knows the
            machines' pointer tables: ``tables`` ``(m, DESCRIPTOR_WIDTH * n_pointers)`` in
            the cells' dtype, ``which`` ``(n,)`` the row of ``tables`` that the machines of
            each call hold, ``stale`` ``(n, K)`` bool the machines whose table may differ
            (read from ``cells``). The compiled loop then takes the descriptors it loads
            from ``tables`` instead of each machine's row (the same values; the rows lie
            far apart in memory and their tables are rarely in cache); numpy reads cells.

    Returns:
        ``(n,)`` bool: the call's stack was full, so its live rows got ``BINDING_FAULT``
        and nothing ran there (what :meth:`MachineImage.execute_rows` does).

    On C-contiguous cells with numba installed this is one compiled loop over the calls
    (:func:`_bind_and_call_loop`, the same writes in the same order); otherwise numpy.
    """
    if COMPILED and cells.flags.c_contiguous and cells.shape[0]:
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        full = np.zeros(rows.shape[0], dtype=np.bool_)
        rec = _NO_RANGES if written is None else written
        reg = {n: layout.register(n) for n in ("pc", "sp", "mode", "halt", "fault")}
        if pointer_tables is None:
            tables, which, stale = np.zeros((0, 0), cells.dtype), _NO_WHICH, _NO_STALE
        else:
            tables, which, stale = pointer_tables
            if tables.dtype != cells.dtype:
                raise ValueError(f"pointer tables are {tables.dtype}, cells {cells.dtype}")
        err = _bind_and_call_loop(
            cells,
            rows,
            np.ascontiguousarray(skills, dtype=np.int64),
            np.ascontiguousarray(binds, dtype=np.int64).reshape(rows.shape[0], -1),
            table.arity,
            table.slot_addr,
            table.headers,
            table.pointer_addr,
            np.array([reg[n] for n in ("pc", "sp", "mode", "halt", "fault")], np.int64),
            layout.stack_end,
            layout.halt_address,
            float(BINDING_FAULT),
            rec,
            full,
            tables,
            np.ascontiguousarray(which, dtype=np.int64),
            np.ascontiguousarray(stale, dtype=np.bool_),
            layout.block("pointers").start,
        )
        if err:  # pragma: no cover - a live machine's SP is always inside its stack
            raise RuntimeError("bind_and_call: a live machine's SP is outside its row")
        return full
    return _bind_and_call_numpy(cells, layout, table, rows, skills, binds, written)


def _bind_and_call_numpy(cells, layout, table, rows, skills, binds, written) -> np.ndarray:
    """:func:`bind_and_call` with numpy array operations."""
    # The registers of a machine are one short run of cells: read them for all rows at
    # once, update the copy and write it back (one memory access per row, not one per
    # register; the rows are far apart in memory).
    reg = layout.block("registers")
    col = {name: layout.register(name) - reg.start for name in ("fault", "sp", "pc")}
    n, k = rows.shape
    flat = rows.ravel()
    regs = cells[flat, reg.start : reg.end]  # (n*K, n_registers) copy
    live = (regs[:, col["fault"]] == Fault.NONE).reshape(n, k)
    full = ((regs[:, col["sp"]] >= layout.stack_end).reshape(n, k) & live).any(axis=1)
    if full.any():
        regs[(live & full[:, None]).ravel(), col["fault"]] = BINDING_FAULT
    go = live & ~full[:, None]
    if not go.any():
        cells[flat, reg.start : reg.end] = regs
        return full
    r = rows[go]  # (R,)
    call_of = np.broadcast_to(np.arange(n)[:, None], (n, k))[go]
    s = skills[call_of]
    b = np.asarray(binds)[call_of]  # (R, A)
    a = table.arity[s]
    j = np.arange(b.shape[1])
    used = j[None, :] < a[:, None]  # (R, A)
    rr = np.broadcast_to(r[:, None], used.shape)[used]
    dst = table.slot_addr[s][used]
    src = table.pointer_addr[b[used]]
    f = np.arange(DESCRIPTOR_WIDTH)
    if cells.flags.c_contiguous:  # flat indices: several times faster than (row, col) pairs
        base = rr[:, None] * cells.shape[1] + f
        mem = cells.reshape(-1)
        mem.put(base + dst[:, None], mem.take(base + src[:, None]))
    else:
        cells[rr[:, None], dst[:, None] + f] = cells[rr[:, None], src[:, None] + f]
    g = go.ravel()
    sp = regs[g, col["sp"]].astype(np.int64)
    cells[r, sp] = layout.halt_address
    if written is not None:
        d = table.slot_addr[s]
        lo = np.where(used, d, NOTHING_WRITTEN).min(axis=1)
        hi = np.where(used, d + (DESCRIPTOR_WIDTH - 1), -1).max(axis=1)
        w = written[r]
        w[:, 0] = np.minimum(w[:, 0], layout.register("mode"))
        w[:, 1] = np.maximum(w[:, 1], sp)
        w[:, 2] = np.minimum(w[:, 2], lo)
        w[:, 3] = np.maximum(w[:, 3], hi)
        written[r] = w
    mine = regs[g]
    mine[:, col["sp"]] = sp + 1
    for name in ("mode", "halt", "fault"):
        mine[:, layout.register(name) - reg.start] = 0
    mine[:, col["pc"]] = cells[r, table.headers[s]]
    regs[g] = mine
    cells[flat, reg.start : reg.end] = regs
    return full


def _bind_and_call_py(
    cells,
    rows,
    skills,
    binds,
    arity,
    slot_addr,
    headers,
    pointer_addr,
    reg,
    stack_end,
    halt_address,
    binding_fault,
    written,
    full,
    tables,
    which,
    stale,
    ptr_start,
):
    """:func:`bind_and_call` per call and row (compiled by numba): what the numpy version
    does, in the same order. ``reg``: the addresses of PC, SP, MODE, HALT, FAULT;
    ``tables``, ``which``, ``stale``: ``bind_and_call``'s ``pointer_tables`` (``tables``
    empty: none), whose columns start at cell ``ptr_start``. Returns 1 if a live row's SP is
    outside its row (never for a valid state), else 0."""
    pc, sp_col, mode, halt, fault = reg[0], reg[1], reg[2], reg[3], reg[4]
    n_cells = cells.shape[1]
    record = written.shape[0] > 0
    known = tables.shape[0] > 0
    for c in range(rows.shape[0]):
        s = skills[c]
        is_full = False
        for j in range(rows.shape[1]):
            r = rows[c, j]
            if cells[r, fault] == 0 and cells[r, sp_col] >= stack_end:
                is_full = True
        full[c] = is_full
        for j in range(rows.shape[1]):
            r = rows[c, j]
            if cells[r, fault] != 0:
                continue
            if is_full:
                cells[r, fault] = binding_fault
                continue
            lo, hi = n_cells, -1
            held = known and not stale[c, j]
            for a in range(arity[s]):
                dst, src = slot_addr[s, a], pointer_addr[binds[c, a]]
                if held:
                    for f in range(DESCRIPTOR_WIDTH):
                        cells[r, dst + f] = tables[which[c], src - ptr_start + f]
                else:
                    for f in range(DESCRIPTOR_WIDTH):
                        cells[r, dst + f] = cells[r, src + f]
                lo = min(lo, dst)
                hi = max(hi, dst + DESCRIPTOR_WIDTH - 1)
            sp = int(cells[r, sp_col])
            if sp < 0 or sp >= n_cells:
                return 1
            cells[r, sp] = halt_address
            cells[r, sp_col] = sp + 1
            cells[r, mode] = 0
            cells[r, halt] = 0
            cells[r, fault] = 0
            cells[r, pc] = cells[r, headers[s]]
            if record:
                written[r, 0] = min(written[r, 0], mode)
                written[r, 1] = max(written[r, 1], sp)
                written[r, 2] = min(written[r, 2], lo)
                written[r, 3] = max(written[r, 3], hi)
    return 0


def call_results(
    cells: np.ndarray, rows: np.ndarray, before: np.ndarray, icount: int, fault: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per call (after the CPU ran it), its instructions and first fault, from the registers
    of its machines ``rows`` ``(n, K)``: the sum over its K machines of ICOUNT minus
    ``before`` (``(n*K,)``, ICOUNT when the call started; the difference in the cells'
    dtype, then truncated to an integer), and the fault code (truncated) of its first
    machine that faulted, 0 if none did. One compiled pass over the rows (numba), else numpy.
    """
    n, k = rows.shape
    if COMPILED and cells.flags.c_contiguous:
        steps = np.empty(n, dtype=np.int64)
        first = np.empty(n, dtype=np.int64)
        _call_results(
            cells, np.ascontiguousarray(rows, dtype=np.int64), before, icount, fault, steps, first
        )
        return steps, first
    flat = rows.ravel()
    steps = (cells[flat, icount] - before).astype(np.int64).reshape(n, k).sum(1)
    f = cells[flat, fault].astype(np.int64).reshape(n, k)
    return steps, f[np.arange(n), np.argmax(f != Fault.NONE, axis=1)]


def _call_results_py(cells, rows, before, icount, fault, steps, first):
    """:func:`call_results`'s loop (compiled by numba)."""
    k = rows.shape[1]
    for c in range(rows.shape[0]):
        total = 0
        code = 0
        for j in range(k):
            r = rows[c, j]
            total += np.int64(cells[r, icount] - before[c * k + j])
            f = np.int64(cells[r, fault])
            if code == 0 and f != 0:
                code = f
        steps[c] = total
        first[c] = code


_NO_RANGES = np.zeros((0, 4), dtype=np.int64)
_NO_WHICH = np.zeros(0, dtype=np.int64)
_NO_STALE = np.zeros((0, 0), dtype=np.bool_)

COMPILED = numba is not None
"""Whether :func:`bind_and_call` and :func:`score_many` run their compiled loops (numba
installed)."""

_score_rows = (
    numba.njit(cache=True, nogil=True, boundscheck=False)(_score_rows_py) if COMPILED else None
)

_score_envs = (
    numba.njit(cache=True, nogil=True, boundscheck=False)(_score_envs_py) if COMPILED else None
)

_call_results = (
    numba.njit(cache=True, nogil=True, boundscheck=False)(_call_results_py) if COMPILED else None
)

_bind_and_call_loop = (
    numba.njit(cache=True, nogil=True, boundscheck=False)(_bind_and_call_py) if COMPILED else None
)
