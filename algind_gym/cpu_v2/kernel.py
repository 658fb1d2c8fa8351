"""The compiled matrices in sparse form, executed by one numba loop per machine.

:func:`sparse_program` reads every matrix of a compiled
:class:`~algind_gym.cpu_v2.blocks.Circuit` (through :mod:`algind_gym.cpu_v2.assemble`, the
functions that build the dense matrices) and flattens its sparse form into arrays:

* per read head: the non-zeros of ``W_Q`` (CPU channel -> query component), the sink's key,
  the keys of the cell tokens (a table per distinct ``W_K``) and the ``W_V W_O`` copies;
* per write head: the non-zeros of ``W_K``, the queries of the cell tokens, the sink's key
  and the copies;
* per MLP unit: its row of ``W_1`` (and ``W_1b``), bias, op, activation and its column of
  ``W_2``; per step bank: its input row, thresholds and the prefix sums of its ``W_2``;
* per MLP block: the columns of ``W_1`` (input channel -> units that read it) and which
  units are active on an all-zero input (:func:`_touch_lists`);
* per head whose CPU-side matrix reads only the constant channel (register reads and
  writes): the cell it selects, computed once from ``W_Q``/``W_K`` (:func:`_fixed_target`).

:func:`run` executes them. Hard attention is resolved by decoding the query's code: the
cell whose code has the query's signs is the argmax, and it is read if its score beats
the sink's. An MLP unit is evaluated only if one of its ``W_1`` input channels is non-zero
or it is active on a zero input (otherwise its pre-activation is its bias and it adds
nothing); a unit whose gate pre-activation is zero, or whose output is zero, adds nothing
and is skipped; a step bank is a binary search plus one prefix-sum row; the cell MLP runs
only on the cells the write heads select. One loop evaluates the MLP blocks of a layer on
a token's stream, first on each selected cell token, then on the CPU token. (A helper
function for one hidden unit, inlined with ``@njit(inline="always")``, made a pass about
twice as slow, 3.5 against 6.9 us per instruction side by side: numba's inlining left
reference counting of its array arguments inside the unit loop.) Nothing here knows an opcode: change a matrix
entry and this kernel changes with the dense transformer (``tests/cpu_v2`` checks it).

Cost (measured with ``experiments/bench_cpu.py``): a call is a few microseconds (the
program is two packed buffers whose views are made inside the kernel; the entry check of
finite cells and the ``BUDGET_EXHAUSTED`` rule run inside it too); a pass evaluates about
120 MLP units, 90 bank search steps, 12 decoded heads and writes 7 cell tokens. Machines
are independent, so from :data:`PARALLEL_MIN_BATCH` machines on chunks of them run on
numba's threads (``prange``); the kernel does no batching across machines otherwise, so
its instructions/s do not grow with the batch on one thread.

Exactness: every sum is over the same non-zero terms as the dense matmul (the other terms
are zeros, which change at most the sign of a zero in a value channel, and no unit reads
that sign); numba compiles without fastmath (no FMA contraction, no reassociation); every
constant is in the state's dtype.
"""

from __future__ import annotations

import math

import numpy as np

from algind_gym.cpu_v2.assemble import assemble_head, assemble_mlp, sparse_mlp
from algind_gym.cpu_v2.blocks import Circuit

try:  # numba is a dependency, but a broken install must not break the torch paths
    import numba
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None

AVAILABLE = numba is not None
"""Whether the compiled kernel can be used (numba imports)."""

_ID, _STEP_GE, _STEP_GT, _SATURATE, _NONFINITE = range(5)
_LINEAR, _MUL, _DIV = range(3)
_DECODE, _NEVER = -1, -2
"""``h_fixed`` of a head whose query depends on the stream (decoded per pass) and of a
constant head that never beats the sink; a constant head's entry is the cell it selects."""

_prange = numba.prange if numba is not None else range


def _fixed_target(kind: str, comp, w, table: np.ndarray, sink: np.ndarray, n: int, k: int, dt):
    """The cell a head with a constant query selects (the same arithmetic as the kernel,
    on the CPU token's constant channel ``cpu`` = 1), or ``_NEVER``."""
    q = np.zeros(len(sink), dt)
    for t in range(len(comp)):
        q[comp[t]] += dt.type(w[t]) * dt.type(1.0)
    j = sum(1 << b for b in range(k) if q[b] > 0)
    if j >= n:
        return _NEVER
    score, s_sink = dt.type(0.0), dt.type(0.0)
    for b in range(len(sink)):
        score += dt.type(table[j, b]) * q[b]
        other = q[b] if kind == "read" else dt.type(table[j, b])
        s_sink += dt.type(sink[b]) * other
    return int(j) if score > s_sink else _NEVER


def _csr_triples(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-zeros of ``w`` (rows: stream channels, columns: components) as triples."""
    rows, cols = np.nonzero(w)
    return rows, cols, w[rows, cols]


def sparse_program(c: Circuit, dtype) -> tuple:
    """Flatten the sparse forms of every block of ``c`` (see the module docstring)."""
    dt = np.dtype(dtype)
    layers = c.layers
    n_layers = len(layers)
    # ------------------------------------------------------------- heads
    rh_ptr, wh_ptr = [], []  # per layer: (first, end) head index of its read / write heads
    q_ptr, q_ch, q_comp, q_w = [0], [], [], []
    v_ptr, v_src, v_dst = [0], [], []
    sink, table_id, tables, table_keys = [], [], [], {}
    head_kinds, h_fixed = [], []
    cpu_ch, n, k = c.cpu["cpu"], c.meta["n_cells"], c.meta["n_bits"]
    for layer in layers:
        for kind in ("read", "write"):
            first = len(head_kinds)
            for h in layer.heads:
                if h.kind != kind:
                    continue
                a = assemble_head(c, h)
                side, cell_side = ("W_Q", "W_K") if kind == "read" else ("W_K", "W_Q")
                r, comp, w = _csr_triples(a[side])
                q_ch += r.tolist()
                q_comp += comp.tolist()
                q_w += w.tolist()
                q_ptr.append(len(q_ch))
                src, dst = np.nonzero(a["W_V"] @ a["W_O"])
                v_src += src.tolist()
                v_dst += dst.tolist()
                v_ptr.append(len(v_src))
                sink.append(a["k_sink"])
                table = c.cell_constants @ a[cell_side]  # cell keys / queries: constants
                key = table.tobytes()
                if key not in table_keys:
                    table_keys[key] = len(tables)
                    tables.append(table)
                table_id.append(table_keys[key])
                head_kinds.append(kind)
                # A head whose CPU-side matrix reads only the constant channel has a
                # constant query (register reads) or key (register writes): the cell it
                # selects is the same on every pass, so it is resolved here, once.
                fixed = _DECODE
                if len(r) and np.all(r == cpu_ch):
                    fixed = _fixed_target(kind, comp, w, table, a["k_sink"], n, k, dt)
                h_fixed.append(fixed)
            (rh_ptr if kind == "read" else wh_ptr).append((first, len(head_kinds)))
    # ------------------------------------------------------------- MLPs
    blk_ptr, cell_blk_ptr = [0], [0]
    blk_bank, blk_unit, blk_side = [], [0], []
    u_op, u_act, u_b1, u_b1b = [], [], [], []
    w1 = [[0], [], []]
    w1b = [[0], [], []]
    w2 = [[0], [], []]
    bank_in = [[0], [], []]
    pf_off, pf_rows, pf_out_ptr, pf_out, pf_vals = [], [], [0], [], []

    def extend(store, triple):
        ptr, cols, vals = triple
        base = store[0][-1]
        store[0] += (ptr[1:] + base).tolist()
        store[1] += cols.tolist()
        store[2] += vals.tolist()

    for side_list, side in ((blk_ptr, "cpu"), (cell_blk_ptr, "cell")):
        for layer in layers:
            for m in layer.mlps:
                if m.side != side:
                    continue
                s = sparse_mlp(assemble_mlp(c, m))
                blk_bank.append(int(m.bank))
                blk_side.append(side)
                u_op += s["op"].tolist()
                u_act += s["act"].tolist()
                u_b1 += s["b_1"].tolist()
                u_b1b += s["b_1b"].tolist()
                extend(w1, s["w1"])
                extend(w1b, s["w1b"])
                extend(w2, s["w2"])
                blk_unit.append(len(u_op))
                if m.bank:
                    cols, vals = s["bank_w"]
                    bank_in[1] += cols.tolist()
                    bank_in[2] += vals.tolist()
                    pf_off.append(len(pf_vals))
                    pf_rows.append(len(s["prefix"]))
                    pf_out += s["out"].tolist()
                    pf_vals += s["prefix"].ravel().tolist()
                else:
                    pf_off.append(len(pf_vals))
                    pf_rows.append(0)
                bank_in[0].append(len(bank_in[1]))
                pf_out_ptr.append(len(pf_out))
            side_list.append(len(blk_bank))
    assert blk_side[: blk_ptr[-1]] == ["cpu"] * blk_ptr[-1]
    cell_blk_ptr[0] = blk_ptr[-1]  # block indices are global: cell blocks follow the CPU's
    touch = _touch_lists(blk_unit, u_op, u_act, u_b1, w1[0], w1[1])

    i64 = np.int64

    def arr(x, t=i64):
        return np.ascontiguousarray(np.asarray(x, dtype=t))

    meta = np.asarray(
        [
            c.meta["n_cells"],
            c.meta["n_bits"],
            c.d_k,
            len(c.cpu),
            len(c.cell),
            c.cpu["cpu"],
            c.cell["new.v"],
            c.cell["new.s"],
            n_layers,
            len(v_dst) + len(w2[1]) + len(pf_out),  # bound on one layer's pending adds
            len(head_kinds),  # bound on one layer's write heads
        ],
        dtype=i64,
    )
    return (
        meta,
        arr(rh_ptr),
        arr(wh_ptr),
        arr(q_ptr),
        arr(q_ch),
        arr(q_comp),
        arr(q_w, dt),
        arr(v_ptr),
        arr(v_src),
        arr(v_dst),
        arr(np.stack(sink), dt),
        arr(table_id),
        arr(np.stack(tables), dt),
        arr(blk_ptr),
        arr(cell_blk_ptr),
        arr(blk_bank),
        arr(blk_unit),
        arr(u_op),
        arr(u_act),
        arr(u_b1, dt),
        arr(u_b1b, dt),
        arr(w1[0]),
        arr(w1[1]),
        arr(w1[2], dt),
        arr(w1b[0]),
        arr(w1b[1]),
        arr(w1b[2], dt),
        arr(w2[0]),
        arr(w2[1]),
        arr(w2[2], dt),
        arr(bank_in[0]),
        arr(bank_in[1]),
        arr(bank_in[2], dt),
        arr(pf_off),
        arr(pf_rows),
        arr(pf_out_ptr),
        arr(pf_out),
        arr(pf_vals, dt),
        arr(c.cell_constants, dt),
        arr([0.0, 1.0, np.finfo(dt).max], dt),
        arr(h_fixed),
        *(arr(a) for a in touch),
    )


def _touch_lists(blk_unit, u_op, u_act, u_b1, w1p, w1c) -> tuple:
    """Which units of an MLP block can add anything on a given stream (read off ``W_1``).

    A unit whose first pre-activation reads only zero channels has ``pre = b``: it adds
    nothing unless ``act(b)`` (``op(b, .)``) is non-zero. Such units are marked ``always``;
    every other unit is evaluated only when one of its ``W_1`` input channels is non-zero.
    Returns ``(always, in_ptr, in_ch, col_ptr, col_unit)``: per unit the flag; per block its
    input channels; per (block, channel) the units whose ``W_1`` row reads it (ascending).
    """
    always = []
    for u in range(len(u_op)):
        b = u_b1[u]
        if u_op[u] == _DIV:
            on = True
        elif u_op[u] == _MUL:
            on = b != 0  # the kernel skips a closed gate (pre == 0)
        else:
            act = u_act[u]
            on = {
                _ID: b != 0,
                _SATURATE: b != 0,
                _STEP_GE: b >= 0,
                _STEP_GT: b > 0,
                _NONFINITE: not math.isfinite(b),
            }[act]
        always.append(int(on))
    in_ptr, in_ch, col_ptr, col_unit = [0], [], [0], []
    for blk in range(len(blk_unit) - 1):
        cols: dict[int, list[int]] = {}
        for u in range(blk_unit[blk], blk_unit[blk + 1]):
            for t in range(w1p[u], w1p[u + 1]):
                cols.setdefault(w1c[t], []).append(u)
        for ch, units in sorted(cols.items()):
            in_ch.append(ch)
            col_unit += sorted(set(units))
            col_ptr.append(len(col_unit))
        in_ptr.append(len(in_ch))
    return always, in_ptr, in_ch, col_ptr, col_unit


def _njit(fn=None, parallel: bool = False):
    if fn is None:
        return lambda f: _njit(f, parallel)
    if numba is None:  # pragma: no cover
        return fn
    return numba.njit(
        cache=True, nogil=True, boundscheck=False, error_model="numpy", parallel=parallel
    )(fn)


def _run_py(cells, n_steps, meta, ints, floats, ix, n_chunks, budget):
    # The program's arrays: views of the two packed buffers (see ``pack``).
    rh_ptr = ints[ix[0, 0] : ix[0, 1]].reshape((ix[0, 2], ix[0, 3]))
    wh_ptr = ints[ix[1, 0] : ix[1, 1]].reshape((ix[1, 2], ix[1, 3]))
    q_ptr = ints[ix[2, 0] : ix[2, 1]]
    q_ch = ints[ix[3, 0] : ix[3, 1]]
    q_comp = ints[ix[4, 0] : ix[4, 1]]
    q_w = floats[ix[5, 0] : ix[5, 1]]
    v_ptr = ints[ix[6, 0] : ix[6, 1]]
    v_src = ints[ix[7, 0] : ix[7, 1]]
    v_dst = ints[ix[8, 0] : ix[8, 1]]
    sink = floats[ix[9, 0] : ix[9, 1]].reshape((ix[9, 2], ix[9, 3]))
    table_id = ints[ix[10, 0] : ix[10, 1]]
    tables = floats[ix[11, 0] : ix[11, 1]].reshape((ix[11, 2], ix[11, 3], ix[11, 4]))
    blk_ptr = ints[ix[12, 0] : ix[12, 1]]
    cell_blk_ptr = ints[ix[13, 0] : ix[13, 1]]
    blk_bank = ints[ix[14, 0] : ix[14, 1]]
    blk_unit = ints[ix[15, 0] : ix[15, 1]]
    u_op = ints[ix[16, 0] : ix[16, 1]]
    u_act = ints[ix[17, 0] : ix[17, 1]]
    u_b1 = floats[ix[18, 0] : ix[18, 1]]
    u_b1b = floats[ix[19, 0] : ix[19, 1]]
    w1p = ints[ix[20, 0] : ix[20, 1]]
    w1c = ints[ix[21, 0] : ix[21, 1]]
    w1v = floats[ix[22, 0] : ix[22, 1]]
    w1bp = ints[ix[23, 0] : ix[23, 1]]
    w1bc = ints[ix[24, 0] : ix[24, 1]]
    w1bv = floats[ix[25, 0] : ix[25, 1]]
    w2p = ints[ix[26, 0] : ix[26, 1]]
    w2c = ints[ix[27, 0] : ix[27, 1]]
    w2v = floats[ix[28, 0] : ix[28, 1]]
    bkp = ints[ix[29, 0] : ix[29, 1]]
    bkc = ints[ix[30, 0] : ix[30, 1]]
    bkv = floats[ix[31, 0] : ix[31, 1]]
    pf_off = ints[ix[32, 0] : ix[32, 1]]
    pf_out_ptr = ints[ix[34, 0] : ix[34, 1]]
    pf_out = ints[ix[35, 0] : ix[35, 1]]
    pf_vals = floats[ix[36, 0] : ix[36, 1]]
    consts = floats[ix[37, 0] : ix[37, 1]].reshape((ix[37, 2], ix[37, 3]))
    scalars = floats[ix[38, 0] : ix[38, 1]]
    h_fixed = ints[ix[39, 0] : ix[39, 1]]
    u_always = ints[ix[40, 0] : ix[40, 1]]
    in_ptr = ints[ix[41, 0] : ix[41, 1]]
    in_ch = ints[ix[42, 0] : ix[42, 1]]
    col_ptr = ints[ix[43, 0] : ix[43, 1]]
    col_unit = ints[ix[44, 0] : ix[44, 1]]
    n, k, d_k, dc, dl = meta[0], meta[1], meta[2], meta[3], meta[4]
    cpu_ch, new_v, new_s, n_layers = meta[5], meta[6], meta[7], meta[8]
    n_pend_max, n_heads = meta[9], meta[10]
    dt = cells.dtype
    zero, one, big = scalars[0], scalars[1], scalars[2]
    n_machines = cells.shape[0]
    for i in range(n_machines):  # the entry check: every cell finite, else run nothing
        for j in range(cells.shape[1]):
            if not math.isfinite(cells[i, j]):
                return i * cells.shape[1] + j
    # Machines are independent: chunks of them run in parallel (``_run_parallel``), each
    # chunk with its own scratch vectors (the CPU token's stream, queries, pending adds).
    for chunk in _prange(n_chunks):
        x = np.zeros(dc, dt)
        q = np.zeros(d_k, dt)
        pend_ch = np.empty(n_pend_max, np.int64)
        pend_val = np.empty(n_pend_max, dt)
        target = np.empty(n_heads, np.int64)
        head = np.empty(n_heads, np.int64)
        tokv = np.zeros(dl, dt)
        mark = np.empty(len(u_op), np.int64)  # only the non-bank units' marks are read
        for blk in range(len(blk_bank)):
            if not blk_bank[blk]:
                for u in range(blk_unit[blk], blk_unit[blk + 1]):
                    mark[u] = 0
        stamp = 0
        for i in range(chunk * n_machines // n_chunks, (chunk + 1) * n_machines // n_chunks):
            for _ in range(n_steps):
                if cells[i, 4] != zero or cells[i, 5] != zero:
                    break  # halted or faulted: every further pass is a no-op
                for c in range(dc):
                    x[c] = zero
                x[cpu_ch] = one
                for layer in range(n_layers):
                    n_pend = 0
                    # ---- read heads: decode the query's code, read that cell's channels.
                    for h in range(rh_ptr[layer, 0], rh_ptr[layer, 1]):
                        j = h_fixed[h]
                        if j == _NEVER:
                            continue
                        if j == _DECODE:
                            for b in range(d_k):
                                q[b] = zero
                            for t in range(q_ptr[h], q_ptr[h + 1]):
                                q[q_comp[t]] += q_w[t] * x[q_ch[t]]
                            j = 0
                            for b in range(k):
                                if q[b] > zero:
                                    j += 1 << b
                            if j >= n:
                                continue
                            score = zero
                            s_sink = zero
                            tb = table_id[h]
                            for b in range(d_k):
                                score += tables[tb, j, b] * q[b]
                                s_sink += sink[h, b] * q[b]
                            if not score > s_sink:
                                continue
                        for t in range(v_ptr[h], v_ptr[h + 1]):
                            src = v_src[t]
                            if src == 0:
                                val = cells[i, j]
                            elif src == 1:
                                val = one if math.copysign(1.0, cells[i, j]) < 0 else zero
                            else:
                                val = consts[j, src]
                            pend_ch[n_pend] = v_dst[t]
                            pend_val[n_pend] = val
                            n_pend += 1
                    for t in range(n_pend):
                        x[pend_ch[t]] += pend_val[t]
                    n_pend = 0
                    # ---- write heads: decode the key's code; the cell MLP on selected cells.
                    nw = 0
                    for h in range(wh_ptr[layer, 0], wh_ptr[layer, 1]):
                        if h_fixed[h] >= 0:
                            target[nw] = h_fixed[h]
                            head[nw] = h
                            nw += 1
                            continue
                        if h_fixed[h] == _NEVER:
                            continue
                        for b in range(d_k):
                            q[b] = zero
                        for t in range(q_ptr[h], q_ptr[h + 1]):
                            q[q_comp[t]] += q_w[t] * x[q_ch[t]]
                        j = 0
                        for b in range(k):
                            if q[b] > zero:
                                j += 1 << b
                        if j < n:
                            score = zero
                            s_sink = zero
                            tb = table_id[h]
                            for b in range(d_k):
                                score += tables[tb, j, b] * q[b]
                                s_sink += tables[tb, j, b] * sink[h, b]
                            if score > s_sink:
                                target[nw] = j
                                head[nw] = h
                                nw += 1
                    # ---- MLP blocks: first on each cell token a write head selects (the
                    # cell MLP), then on the CPU token. One loop for both: ``vec`` is the
                    # token's stream; hidden units read it, outputs go to the pending adds.
                    for a in range(nw + 1):
                        if a < nw:
                            j = target[a]
                            first = True
                            for b in range(a):
                                if target[b] == j:
                                    first = False
                            if not first:
                                continue
                            # Cell j's token: its embedding plus every write head selecting it.
                            for c in range(dl):
                                tokv[c] = consts[j, c]
                            tokv[0] = cells[i, j]
                            tokv[1] = one if math.copysign(1.0, cells[i, j]) < 0 else zero
                            for b in range(a, nw):
                                if target[b] == j:
                                    hb = head[b]
                                    for t in range(v_ptr[hb], v_ptr[hb + 1]):
                                        tokv[v_dst[t]] += x[v_src[t]]
                            vec = tokv
                            b0, b1 = cell_blk_ptr[layer], cell_blk_ptr[layer + 1]
                        else:
                            vec = x
                            b0, b1 = blk_ptr[layer], blk_ptr[layer + 1]
                        n_pend = 0
                        for blk in range(b0, b1):
                            u0, u1 = blk_unit[blk], blk_unit[blk + 1]
                            if blk_bank[blk]:
                                s = zero
                                for t in range(bkp[blk], bkp[blk + 1]):
                                    s += bkv[t] * vec[bkc[t]]
                                lo, hi = 0, u1 - u0  # count of active units (they form a prefix)
                                while lo < hi:
                                    mid = (lo + hi) // 2
                                    z = s + u_b1[u0 + mid]
                                    if z > zero or (z == zero and u_act[u0 + mid] == _STEP_GE):
                                        lo = mid + 1
                                    else:
                                        hi = mid
                                row = pf_off[blk] + lo * (pf_out_ptr[blk + 1] - pf_out_ptr[blk])
                                for t in range(pf_out_ptr[blk], pf_out_ptr[blk + 1]):
                                    val = pf_vals[row + t - pf_out_ptr[blk]]
                                    if val != zero:
                                        pend_ch[n_pend] = pf_out[t]
                                        pend_val[n_pend] = val
                                        n_pend += 1
                                continue
                            # Only the units that one non-zero input touches (and the few
                            # that are active on a zero input) can add anything.
                            stamp += 1
                            for e in range(in_ptr[blk], in_ptr[blk + 1]):
                                if vec[in_ch[e]] != zero:
                                    for t in range(col_ptr[e], col_ptr[e + 1]):
                                        mark[col_unit[t]] = stamp
                            for u in range(u0, u1):
                                if mark[u] != stamp and u_always[u] == 0:
                                    continue
                                pre = zero
                                for t in range(w1p[u], w1p[u + 1]):
                                    pre += w1v[t] * vec[w1c[t]]
                                pre = pre + u_b1[u]
                                op = u_op[u]
                                if op != _LINEAR:
                                    if op == _MUL and pre == zero:
                                        continue  # a closed gate: the product is a zero, adds nothing
                                    pb = zero
                                    for t in range(w1bp[u], w1bp[u + 1]):
                                        pb += w1bv[t] * vec[w1bc[t]]
                                    pb = pb + u_b1b[u]
                                    pre = pre * pb if op == _MUL else pre / pb
                                act = u_act[u]
                                if act == _ID:
                                    hval = pre
                                elif act == _STEP_GE:
                                    hval = one if pre >= zero else zero
                                elif act == _STEP_GT:
                                    hval = one if pre > zero else zero
                                elif act == _SATURATE:
                                    hval = big if pre > big else (-big if pre < -big else pre)
                                else:
                                    hval = zero if math.isfinite(pre) else one
                                if hval == zero:
                                    continue
                                for t in range(w2p[u], w2p[u + 1]):
                                    pend_ch[n_pend] = w2c[t]
                                    pend_val[n_pend] = w2v[t] * hval
                                    n_pend += 1
                        if a < nw:  # the unembedding of the new cell token: W_2 h, then add
                            out_v = zero
                            out_s = zero
                            for t in range(n_pend):
                                if pend_ch[t] == new_v:
                                    out_v += pend_val[t]
                                elif pend_ch[t] == new_s:
                                    out_s += pend_val[t]
                            v = tokv[new_v] + out_v
                            sgn = tokv[new_s] + out_s
                            cells[i, j] = (one - (sgn + sgn)) * abs(v)
                        else:
                            for t in range(n_pend):
                                x[pend_ch[t]] += pend_val[t]
            # The driver's rule (``interpreter.run``): still running after the budget.
            if budget != zero and cells[i, 4] == zero and math.trunc(cells[i, 5]) == zero:
                cells[i, 5] = budget
    return -1


_run = _njit(_run_py)
_run_parallel = _njit(_run_py, parallel=True)

# Argument order of ``_run`` after ``meta``; which arrays are integer (the others are the
# state's dtype). ``pack`` concatenates them into two buffers so that a Python call passes
# a few arguments: numba's dispatch checks every argument's type on every call, and with
# forty arrays that was most of the fixed cost of a call.
_ARGS = [
    "rh_ptr",
    "wh_ptr",
    "q_ptr",
    "q_ch",
    "q_comp",
    "q_w",
    "v_ptr",
    "v_src",
    "v_dst",
    "sink",
    "table_id",
    "tables",
    "blk_ptr",
    "cell_blk_ptr",
    "blk_bank",
    "blk_unit",
    "u_op",
    "u_act",
    "u_b1",
    "u_b1b",
    "w1p",
    "w1c",
    "w1v",
    "w1bp",
    "w1bc",
    "w1bv",
    "w2p",
    "w2c",
    "w2v",
    "bkp",
    "bkc",
    "bkv",
    "pf_off",
    "pf_rows",
    "pf_out_ptr",
    "pf_out",
    "pf_vals",
    "consts",
    "scalars",
    "h_fixed",
    "u_always",
    "in_ptr",
    "in_ch",
    "col_ptr",
    "col_unit",
]


def pack(program: tuple) -> tuple:
    """``(meta, ints, floats, index)``: every array of ``program`` as a view of one buffer
    (``index`` rows: start, end, shape)."""
    meta, arrays = program[0], program[1:]
    assert len(arrays) == len(_ARGS)
    ints = [a for a in arrays if a.dtype == np.int64]
    floats = [a for a in arrays if a.dtype != np.int64]
    index = np.zeros((len(arrays), 5), dtype=np.int64)
    pos = {"i": 0, "f": 0}
    for r, a in enumerate(arrays):
        kind = "i" if a.dtype == np.int64 else "f"
        shape = list(a.shape) + [1] * (3 - a.ndim)
        index[r] = [pos[kind], pos[kind] + a.size, *shape]
        pos[kind] += a.size
    return (
        meta,
        np.ascontiguousarray(np.concatenate([a.ravel() for a in ints])),
        np.ascontiguousarray(np.concatenate([a.ravel() for a in floats])),
        index,
    )


PARALLEL_MIN_BATCH = 64
"""Below this many machines a call runs on one thread (starting threads costs more)."""


def run(cells: np.ndarray, n_steps: int, program: tuple, budget: float = 0.0) -> int:
    """``n_steps`` forward passes on every machine of ``cells`` ``(B, N)``, in place.

    ``program`` is :func:`sparse_program` or (faster to call) its :func:`pack`. A
    machine's loop stops once it is halted or faulted (frozen: further passes are no-ops).
    A non-zero ``budget`` is then written to the FAULT cell of every machine still running
    (``Fault.BUDGET_EXHAUSTED``, as :func:`algind_gym.machine.interpreter.run` does).
    From :data:`PARALLEL_MIN_BATCH` machines on, chunks of machines run on numba's threads
    (``NUMBA_NUM_THREADS``); results do not depend on it.

    Returns -1, or (running nothing) the flat index of the first non-finite cell.
    """
    if len(program) != 4:
        program = pack(program)
    n_chunks = 1
    if cells.shape[0] >= PARALLEL_MIN_BATCH and numba is not None:
        threads = numba.get_num_threads()
        if threads > 1:
            n_chunks = min(cells.shape[0], 8 * threads)
    fn = _run_parallel if n_chunks > 1 else _run
    return int(fn(cells, n_steps, *program, n_chunks, cells.dtype.type(budget)))
