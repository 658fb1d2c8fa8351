"""The compiled matrices in sparse form, executed by one numba loop per machine.

:func:`sparse_program` (:mod:`algind_gym.cpu_v2.program`) flattens the sparse records of a compiled
:class:`~algind_gym.cpu_v2.blocks.Circuit` (:mod:`algind_gym.cpu_v2.sparse`, read off the
matrices that :mod:`algind_gym.cpu_v2.assemble` builds) into arrays, each head and MLP block
stored once and listed per (program, layer):

* per read head: the non-zeros of ``W_Q`` (CPU channel -> query component), the sink's key,
  the keys of the cell tokens (a table per distinct ``W_K``) and the ``W_V W_O`` copies;
* per write head: the non-zeros of ``W_K``, the queries of the cell tokens, the sink's key,
  the copies and (specialised programs) its own cell MLP for a cell that it alone selects;
* per MLP unit: its row of ``W_1`` (and ``W_1b``), bias, op, activation and its column of
  ``W_2``; per step bank: its input row, thresholds and the prefix sums of its ``W_2``;
* per MLP block: the columns of ``W_1`` (input channel -> units that read it) and which
  units are active on an all-zero input (:func:`_touch_lists`);
* per head with a constant query or key (register reads and writes): the cell it selects.

The programs (:func:`~algind_gym.cpu_v2.program.programs`): by default the partial evaluation of
:mod:`algind_gym.cpu_v2.specialise`, one program per opcode value plus a general one and a
dispatch prefix (PC read, PC decoder, opcode fetch) that runs first; with
``specialised=False`` one program with every block of the circuit.

:func:`run` executes them. A pass runs the prefix, reads the fetched opcode from the stream
and runs that opcode's program (the general one if the opcode is not an integer in the
table). Hard attention is resolved by decoding the query's code: the cell whose code has
the query's signs is the argmax, and it is read if its score beats the sink's. An MLP unit
is evaluated only if one of its ``W_1`` input channels is non-zero or it is active on a
zero input (otherwise its pre-activation is its bias and it adds nothing); a unit whose
gate pre-activation is zero, or whose output is zero, adds nothing and is skipped; a step
bank is a binary search plus one prefix-sum row; the cell MLP runs only on the cells the
write heads select. One loop evaluates the MLP blocks of a layer on a token's stream, first
on each selected cell token, then on the CPU token. (A helper function for one hidden
unit, inlined with ``@njit(inline="always")``, made a pass about twice as slow: numba's
inlining left reference counting of its array arguments inside the unit loop.) Nothing
here knows an opcode: change a matrix entry and this kernel changes with the dense
transformer (``tests/cpu_v2`` checks it).

Cost (``experiments/bench_cpu.py``, section 1b, side by side): the specialised programs
run about twice as many instructions/s as the general one. On the benchmark's opcode mix
a pass does, on average, about 8 decoded and 12 fixed heads, 3 bank searches, 50 CPU-side
MLP units and 6 cell writes (:func:`~algind_gym.cpu_v2.specialise.program_work`), against
13, 13, 11, 247 (about 120 of them evaluated) and 7 for the general program. A call costs
a few microseconds (two packed buffers whose views are made inside the kernel; the entry
check of finite cells and the ``BUDGET_EXHAUSTED`` rule run inside it too). Machines are
independent, so from :data:`PARALLEL_MIN_BATCH` machines on chunks of them run on numba's
threads (``prange``); there is no batching across machines otherwise, so instructions/s
do not grow with the batch on one thread.

:func:`sparse_program` can also attach the generated kernel of the same programs
(:mod:`algind_gym.cpu_v2.codegen`: straight-line numba source emitted from the specialised
programs, one function per opcode, weights as literals); :func:`run` then runs it instead of
this loop, with the same results (``tests/cpu_v2/test_codegen.py``).

Exactness: every sum is over the same non-zero terms as the dense matmul, in its order
(the other terms are zeros, which change at most the sign of a zero in a value channel,
and no unit reads that sign); numba compiles without fastmath (no FMA contraction, no
reassociation); every constant is in the state's dtype.
"""

from __future__ import annotations

import math
import os

import numpy as np

from algind_gym.cpu.threads import parallel_launch
from algind_gym.cpu_v2 import codegen
from algind_gym.cpu_v2.blocks import Circuit
from algind_gym.cpu_v2.program import programs
from algind_gym.cpu_v2.program import sparse_program as _flatten
from algind_gym.cpu_v2.sparse import DECODE, NEVER

try:  # numba is a dependency, but a broken install must not break the torch paths
    import numba
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None

AVAILABLE = numba is not None
"""Whether the compiled kernel can be used (numba imports)."""

_ID, _STEP_GE, _STEP_GT, _SATURATE, _NONFINITE = range(5)
_LINEAR, _MUL, _DIV = range(3)
_DECODE, _NEVER = DECODE, NEVER

_prange = numba.prange if numba is not None else range
_SCAN_MIN = 8
"""Blocks of more units than this look up which units a non-zero input touches."""
__all__ = [
    "AVAILABLE",
    "GENERATED",
    "PARALLEL_MIN_BATCH",
    "pack",
    "programs",
    "run",
    "sparse_program",
]

GENERATED = os.environ.get("ALGIND_GYM_V2_KERNEL", "array") == "generated"
"""Whether :func:`sparse_program` attaches the generated kernel by default: environment
variable ``ALGIND_GYM_V2_KERNEL`` ``generated``, or ``array`` (the default: numba compiles
the generated functions of a circuit in minutes on a cold cache, see
:mod:`algind_gym.cpu_v2.codegen`)."""


class SparseProgram(tuple):
    """The kernel's arrays (a tuple, see :func:`sparse_program`); ``generated`` is the
    generated kernel of the same programs (:mod:`algind_gym.cpu_v2.codegen`) or ``None``."""

    generated: tuple | None = None


def sparse_program(
    c: Circuit, dtype, specialised: bool = True, generated: bool | None = None
) -> SparseProgram:
    """The programs of :func:`programs` flattened into the array kernel's arrays
    (:func:`algind_gym.cpu_v2.program.sparse_program`) and, with ``generated`` (default
    :data:`GENERATED`; only for the specialised programs, where numba imports), the
    straight-line source emitted from the same programs, loaded
    (:func:`algind_gym.cpu_v2.codegen.generated_kernel`; numba compiles it on first call).
    :func:`run` runs the generated kernel when it is attached, else the array loop."""
    dt = np.dtype(dtype)
    progs = programs(c, dt, specialised)
    out = SparseProgram(_flatten(c, dt, specialised, progs))
    use = GENERATED if generated is None else generated
    if use and specialised and AVAILABLE and progs[1] >= 0:
        out.generated = codegen.generated_kernel(c, dt, *progs)
    return out


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
    rh_ptr = ints[ix[0, 0] : ix[0, 1]].reshape((ix[0, 2], ix[0, 3], ix[0, 4]))
    wh_ptr = ints[ix[1, 0] : ix[1, 1]].reshape((ix[1, 2], ix[1, 3], ix[1, 4]))
    cpu_ptr = ints[ix[2, 0] : ix[2, 1]].reshape((ix[2, 2], ix[2, 3], ix[2, 4]))
    cell_ptr = ints[ix[3, 0] : ix[3, 1]].reshape((ix[3, 2], ix[3, 3], ix[3, 4]))
    rh_list = ints[ix[4, 0] : ix[4, 1]]
    wh_list = ints[ix[5, 0] : ix[5, 1]]
    blk_list = ints[ix[6, 0] : ix[6, 1]]
    q_ptr = ints[ix[7, 0] : ix[7, 1]]
    q_ch = ints[ix[8, 0] : ix[8, 1]]
    q_comp = ints[ix[9, 0] : ix[9, 1]]
    q_w = floats[ix[10, 0] : ix[10, 1]]
    v_ptr = ints[ix[11, 0] : ix[11, 1]]
    v_src = ints[ix[12, 0] : ix[12, 1]]
    v_dst = ints[ix[13, 0] : ix[13, 1]]
    sink = floats[ix[14, 0] : ix[14, 1]].reshape((ix[14, 2], ix[14, 3]))
    table_id = ints[ix[15, 0] : ix[15, 1]]
    tables = floats[ix[16, 0] : ix[16, 1]].reshape((ix[16, 2], ix[16, 3], ix[16, 4]))
    blk_bank = ints[ix[17, 0] : ix[17, 1]]
    blk_unit = ints[ix[18, 0] : ix[18, 1]]
    u_op = ints[ix[19, 0] : ix[19, 1]]
    u_act = ints[ix[20, 0] : ix[20, 1]]
    u_b1 = floats[ix[21, 0] : ix[21, 1]]
    u_b1b = floats[ix[22, 0] : ix[22, 1]]
    w1p = ints[ix[23, 0] : ix[23, 1]]
    w1c = ints[ix[24, 0] : ix[24, 1]]
    w1v = floats[ix[25, 0] : ix[25, 1]]
    w1bp = ints[ix[26, 0] : ix[26, 1]]
    w1bc = ints[ix[27, 0] : ix[27, 1]]
    w1bv = floats[ix[28, 0] : ix[28, 1]]
    w2p = ints[ix[29, 0] : ix[29, 1]]
    w2c = ints[ix[30, 0] : ix[30, 1]]
    w2v = floats[ix[31, 0] : ix[31, 1]]
    bkp = ints[ix[32, 0] : ix[32, 1]]
    bkc = ints[ix[33, 0] : ix[33, 1]]
    bkv = floats[ix[34, 0] : ix[34, 1]]
    pf_off = ints[ix[35, 0] : ix[35, 1]]
    pf_out_ptr = ints[ix[36, 0] : ix[36, 1]]
    pf_out = ints[ix[37, 0] : ix[37, 1]]
    pf_vals = floats[ix[38, 0] : ix[38, 1]]
    consts = floats[ix[39, 0] : ix[39, 1]].reshape((ix[39, 2], ix[39, 3]))
    scalars = floats[ix[40, 0] : ix[40, 1]]
    h_fixed = ints[ix[41, 0] : ix[41, 1]]
    h_cell = ints[ix[42, 0] : ix[42, 1]].reshape((ix[42, 2], ix[42, 3]))
    u_always = ints[ix[43, 0] : ix[43, 1]]
    in_ptr = ints[ix[44, 0] : ix[44, 1]]
    in_ch = ints[ix[45, 0] : ix[45, 1]]
    col_ptr = ints[ix[46, 0] : ix[46, 1]]
    col_unit = ints[ix[47, 0] : ix[47, 1]]
    init_ptr = ints[ix[48, 0] : ix[48, 1]].reshape((ix[48, 2], ix[48, 3], ix[48, 4]))
    init_ch = ints[ix[49, 0] : ix[49, 1]]
    init_val = floats[ix[50, 0] : ix[50, 1]]
    n, k, d_k, dc, dl = meta[0], meta[1], meta[2], meta[3], meta[4]
    cpu_ch, new_v, new_s, n_layers = meta[5], meta[6], meta[7], meta[8]
    n_pend_max, n_write, disp, n_ops, first = meta[9], meta[10], meta[11], meta[12], meta[13]
    max_units = meta[14]
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
        target = np.empty(n_write, np.int64)
        head = np.empty(n_write, np.int64)
        tokv = np.zeros(dl, dt)
        mark = np.zeros(max_units, np.int64)  # per unit of the current block: its stamp
        stamp = 0
        for i in range(chunk * n_machines // n_chunks, (chunk + 1) * n_machines // n_chunks):
            for _ in range(n_steps):
                if cells[i, 4] != zero or cells[i, 5] != zero:
                    break  # halted or faulted: every further pass is a no-op
                for c in range(dc):
                    x[c] = zero
                x[cpu_ch] = one
                p = first
                for phase in range(2):
                    if phase == 1:
                        if disp < 0:
                            break
                        # The opcode the prefix fetched picks the program (see ``programs``).
                        code = x[disp]
                        p = n_ops
                        if code >= zero and code < n_ops and code == math.floor(code):
                            p = int(code)
                    for layer in range(n_layers):
                        for t in range(init_ptr[p, layer, 0], init_ptr[p, layer, 1]):
                            x[init_ch[t]] = init_val[t]  # constants of this program
                        n_pend = 0
                        # ---- read heads: decode the query's code, read that cell's channels.
                        for e in range(rh_ptr[p, layer, 0], rh_ptr[p, layer, 1]):
                            h = rh_list[e]
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
                        # ---- write heads: decode the key's code; the cell MLP on those cells.
                        nw = 0
                        for e in range(wh_ptr[p, layer, 0], wh_ptr[p, layer, 1]):
                            h = wh_list[e]
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
                                first_a = True
                                for b in range(a):
                                    if target[b] == j:
                                        first_a = False
                                if not first_a:
                                    continue
                                n_on = 0
                                for b in range(a, nw):
                                    if target[b] == j:
                                        n_on += 1
                                if n_on == 1 and h_cell[head[a], 2]:
                                    continue  # a write that keeps the cell's value
                                # Cell j's token: its embedding plus every write head on it.
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
                                e0, e1 = cell_ptr[p, layer, 0], cell_ptr[p, layer, 1]
                                if n_on == 1 and h_cell[head[a], 0] >= 0:  # its own cell MLP
                                    e0, e1 = h_cell[head[a], 0], h_cell[head[a], 1]
                            else:
                                vec = x
                                e0, e1 = cpu_ptr[p, layer, 0], cpu_ptr[p, layer, 1]
                            n_pend = 0
                            for e in range(e0, e1):
                                blk = blk_list[e]
                                u0, u1 = blk_unit[blk], blk_unit[blk + 1]
                                if blk_bank[blk]:
                                    s = zero
                                    for t in range(bkp[blk], bkp[blk + 1]):
                                        s += bkv[t] * vec[bkc[t]]
                                    lo, hi = 0, u1 - u0  # count of active units (a prefix)
                                    while lo < hi:
                                        mid = (lo + hi) // 2
                                        z = s + u_b1[u0 + mid]
                                        if z > zero or (z == zero and u_act[u0 + mid] == _STEP_GE):
                                            lo = mid + 1
                                        else:
                                            hi = mid
                                    o0, o1 = pf_out_ptr[blk], pf_out_ptr[blk + 1]
                                    row = pf_off[blk] + lo * (o1 - o0)
                                    for t in range(o0, o1):
                                        val = pf_vals[row + t - o0]
                                        if val != zero:
                                            pend_ch[n_pend] = pf_out[t]
                                            pend_val[n_pend] = val
                                            n_pend += 1
                                    continue
                                # Only the units that one non-zero input touches (and the few
                                # that are active on a zero input) can add anything. A small
                                # block evaluates every unit (an untouched one adds nothing).
                                scan = u1 - u0 > _SCAN_MIN
                                if scan:
                                    stamp += 1
                                    for f in range(in_ptr[blk], in_ptr[blk + 1]):
                                        if vec[in_ch[f]] != zero:
                                            for t in range(col_ptr[f], col_ptr[f + 1]):
                                                mark[col_unit[t] - u0] = stamp
                                for u in range(u0, u1):
                                    if scan and mark[u - u0] != stamp and u_always[u] == 0:
                                        continue
                                    pre = zero
                                    for t in range(w1p[u], w1p[u + 1]):
                                        pre += w1v[t] * vec[w1c[t]]
                                    pre = pre + u_b1[u]
                                    op = u_op[u]
                                    if op != _LINEAR:
                                        if op == _MUL and pre == zero:
                                            continue  # a closed gate: adds nothing
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
    "cpu_ptr",
    "cell_ptr",
    "rh_list",
    "wh_list",
    "blk_list",
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
    "pf_out_ptr",
    "pf_out",
    "pf_vals",
    "consts",
    "scalars",
    "h_fixed",
    "h_cell",
    "u_always",
    "in_ptr",
    "in_ch",
    "col_ptr",
    "col_unit",
    "init_ptr",
    "init_ch",
    "init_val",
]


def pack(program: tuple) -> SparseProgram:
    """``(meta, ints, floats, index)``: every array of ``program`` as a view of one buffer
    (``index`` rows: start, end, shape); its ``generated`` kernel is kept."""
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
    out = SparseProgram(
        (
            meta,
            np.ascontiguousarray(np.concatenate([a.ravel() for a in ints])),
            np.ascontiguousarray(np.concatenate([a.ravel() for a in floats])),
            index,
        )
    )
    out.generated = getattr(program, "generated", None)
    return out


PARALLEL_MIN_BATCH = 64
"""Below this many machines a call runs on one thread (starting threads costs more)."""


def run(cells: np.ndarray, n_steps: int, program: tuple, budget: float = 0.0) -> int:
    """``n_steps`` forward passes on every machine of ``cells`` ``(B, N)``, in place.

    ``program`` is :func:`sparse_program` or (faster to call) its :func:`pack`. A
    machine's loop stops once it is halted or faulted (frozen: further passes are no-ops).
    A non-zero ``budget`` is then written to the FAULT cell of every machine still running
    (``Fault.BUDGET_EXHAUSTED``, as :func:`algind_gym.machine.interpreter.run` does).
    From :data:`PARALLEL_MIN_BATCH` machines on, chunks of machines run on numba's threads
    (``NUMBA_NUM_THREADS``), one such launch at a time per process and none in a child
    forked after its parent launched (:func:`algind_gym.cpu.threads.parallel_launch`);
    results do not depend on it.

    Returns -1, or (running nothing) the flat index of the first non-finite cell.
    """
    if len(program) != 4:
        program = pack(program)
    gen = getattr(program, "generated", None)
    n_chunks = 1
    if cells.shape[0] >= PARALLEL_MIN_BATCH and numba is not None:
        threads = numba.get_num_threads()
        if threads > 1:
            n_chunks = min(cells.shape[0], 8 * threads)
    if gen is not None:
        module, consts, tables, fb, ib = gen
        if cells.dtype != consts.dtype:
            raise TypeError(f"cells are {cells.dtype}, the program was built for {consts.dtype}")
        args = (cells, n_steps, cells.dtype.type(budget), consts, tables, fb, ib)
        if n_chunks > 1:
            with parallel_launch() as ok:
                if ok:
                    return int(module.run_parallel(*args, n_chunks))
        return int(module.run(*args, 1))
    args = (cells, n_steps, *program)
    if n_chunks > 1:
        with parallel_launch() as ok:  # one parallel launch per process (cpu/threads.py)
            if ok:
                return int(_run_parallel(*args, n_chunks, cells.dtype.type(budget)))
    return int(_run(*args, 1, cells.dtype.type(budget)))
