"""The programs the numba kernel runs, flattened into its arrays.

:func:`programs` gives the sparse layers (:mod:`algind_gym.cpu_v2.sparse`) of a compiled
circuit: by default one program per opcode value, a general program and the dispatch
prefix (the partial evaluation of :mod:`algind_gym.cpu_v2.specialise`), or the one general
program. :func:`sparse_program` flattens them for :func:`algind_gym.cpu_v2.kernel.run`
(the array layout is described there): each head and MLP block is stored once and listed
per (program, layer); units, banks and touch lists are indexed globally.
"""

from __future__ import annotations

import math

import numpy as np

from algind_gym.cpu_v2.blocks import Circuit
from algind_gym.cpu_v2.sparse import (
    DIV,
    ID,
    MUL,
    NONFINITE,
    SATURATE,
    STEP_GE,
    STEP_GT,
    SparseLayer,
    sparse_layers,
)
from algind_gym.cpu_v2.specialise import _Cache, dispatch_slice, specialise
from algind_gym.machine.isa import MAX_OPCODE


def programs(c: Circuit, dtype, specialised: bool = True) -> tuple[list, int]:
    """The sparse layers the kernel runs: ``([program, ...], dispatch channel)``.

    With ``specialised`` (and a circuit that fetches an ``op.v`` channel): one program per
    opcode value ``0..MAX_OPCODE``, then the general program (any other opcode value), then
    the dispatch prefix (:mod:`algind_gym.cpu_v2.specialise`); otherwise the one general
    program with every block of ``c`` and dispatch channel -1.
    """
    dt = np.dtype(dtype)
    layers = sparse_layers(c, dt)
    disp = c.cpu.index.get("op.v", -1)
    if not specialised or disp < 0:
        return [layers], -1
    skip = dispatch_slice(layers, disp)
    args = (layers, c.cell_constants, c.meta["n_bits"], len(c.cpu), c.cpu["cpu"], dt)
    cache = _Cache()
    unembed = (c.cell["new.v"], c.cell["new.s"])
    progs = [
        specialise(*args, dispatch=disp, opcode=op, skip=skip, cache=cache, unembed=unembed)
        for op in range(MAX_OPCODE + 1)
    ]
    progs.append(specialise(*args, skip=skip, cache=cache, unembed=unembed))
    prefix = [
        SparseLayer(
            la.name,
            read=[h for h in la.read if id(h) in skip],
            cpu=[b for b in la.cpu if id(b) in skip],
        )
        for la in layers
    ]
    return [*progs, prefix], disp


def sparse_program(c: Circuit, dtype, specialised: bool = True, progs=None) -> tuple:
    """Flatten the programs of :func:`programs` into the kernel's arrays (see the module
    docstring): heads and blocks are stored once and listed per (program, layer).
    ``progs``: the result of :func:`programs` if already computed."""
    dt = np.dtype(dtype)
    progs, disp = progs or programs(c, dt, specialised)
    n_layers = len(progs[0])
    # ------------------------------------------------------------- heads
    head_ix: dict[int, int] = {}
    q_ptr, q_ch, q_comp, q_w = [0], [], [], []
    v_ptr, v_src, v_dst = [0], [], []
    sink, table_id, tables, table_keys, h_fixed, h_cell = [], [], [], {}, [], []
    blk_list: list[int] = []

    def head(h) -> int:
        if id(h) not in head_ix:
            head_ix[id(h)] = len(h_fixed)
            for ch, comp, w in h.q:
                q_ch.append(ch)
                q_comp.append(comp)
                q_w.append(w)
            q_ptr.append(len(q_ch))
            for src, dst in h.v:
                v_src.append(src)
                v_dst.append(dst)
            v_ptr.append(len(v_src))
            sink.append(h.sink)
            key = h.table.tobytes()
            if key not in table_keys:
                table_keys[key] = len(tables)
                tables.append(h.table)
            table_id.append(table_keys[key])
            h_fixed.append(h.fixed)
            cell = (-1, -1, 0)
            if h.cell is not None:  # its cell MLP when it alone selects a cell
                cell = (len(blk_list), len(blk_list) + len(h.cell), int(h.keeps_cell))
                blk_list.extend(block(b) for b in h.cell)
            h_cell.append(cell)
        return head_ix[id(h)]

    # ------------------------------------------------------------- MLP blocks
    blk_ix: dict[int, int] = {}
    blk_bank, blk_unit = [], [0]
    u_op, u_act, u_b1, u_b1b = [], [], [], []
    w1, w1b, w2 = ([0], [], []), ([0], [], []), ([0], [], [])
    bkp, bkc, bkv = [0], [], []
    pf_off, pf_out_ptr, pf_out, pf_vals = [], [0], [], []

    def csr(store, pairs) -> None:
        for ch, w in pairs:
            store[1].append(ch)
            store[2].append(w)
        store[0].append(len(store[1]))

    def block(b) -> int:
        if id(b) not in blk_ix:
            blk_ix[id(b)] = len(blk_bank)
            blk_bank.append(int(b.bank))
            for u in b.units:
                u_op.append(u.op)
                u_act.append(u.act)
                u_b1.append(u.b1)
                u_b1b.append(u.b1b)
                csr(w1, u.w1)
                csr(w1b, u.w1b)
                csr(w2, u.w2)
            blk_unit.append(len(u_op))
            csr((bkp, bkc, bkv), b.bank_w)
            pf_off.append(len(pf_vals))
            if b.bank:
                pf_out.extend(int(ch) for ch in b.outs)
                pf_vals.extend(b.prefix.ravel().tolist())
            pf_out_ptr.append(len(pf_out))
        return blk_ix[id(b)]

    # ------------------------------------------------------------- per (program, layer)
    shape = (len(progs), n_layers, 2)
    rh, wh, cpu_b, cell_b, init = (np.zeros(shape, np.int64) for _ in range(5))
    init_ch, init_val = [], []
    rh_list, wh_list = [], []
    n_pend, n_write, max_units = 1, 1, 1
    for p, prog in enumerate(progs):
        for li, la in enumerate(prog):
            init[p, li] = (len(init_ch), len(init_ch) + len(la.init))
            init_ch.extend(ch for ch, _ in la.init)
            init_val.extend(v for _, v in la.init)
            for ptr, items, out in ((rh, la.read, rh_list), (wh, la.write, wh_list)):
                ptr[p, li] = (len(out), len(out) + len(items))
                out.extend(head(h) for h in items)
                for h in items:
                    for b in h.cell or ():
                        n_pend = max(n_pend, sum(len(u.w2) for u in b.units))
                        max_units = max(max_units, len(b.units))
            for ptr, items in ((cpu_b, la.cpu), (cell_b, la.cell)):
                ptr[p, li] = (len(blk_list), len(blk_list) + len(items))
                blk_list.extend(block(b) for b in items)
                adds = sum(
                    len(b.outs) if b.bank else sum(len(u.w2) for u in b.units) for b in items
                )
                n_pend = max(n_pend, adds)
                for b in items:
                    if not b.bank:
                        max_units = max(max_units, len(b.units))
            n_pend = max(n_pend, sum(len(h.v) for h in la.read))
            n_write = max(n_write, len(la.write))
    touch = _touch_lists(blk_unit, u_op, u_act, u_b1, w1[0], w1[1])

    i64 = np.int64

    def arr(x, t=i64):
        return np.ascontiguousarray(np.asarray(x, dtype=t))

    n_ops = len(progs) - 2 if disp >= 0 else 0
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
            n_pend,  # bound on one layer's pending adds
            n_write,  # bound on one layer's write heads
            disp,  # the opcode channel (-1: one program, no dispatch)
            n_ops,  # programs 0..n_ops-1: opcode values; n_ops: general
            len(progs) - 1 if disp >= 0 else 0,  # the program run first
            max_units,  # bound on the units of one (non-bank) block
        ],
        dtype=i64,
    )
    return (
        meta,
        arr(rh),
        arr(wh),
        arr(cpu_b),
        arr(cell_b),
        arr(rh_list),
        arr(wh_list),
        arr(blk_list),
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
        arr(bkp),
        arr(bkc),
        arr(bkv, dt),
        arr(pf_off),
        arr(pf_out_ptr),
        arr(pf_out),
        arr(pf_vals, dt),
        arr(c.cell_constants, dt),
        arr([0.0, 1.0, np.finfo(dt).max], dt),
        arr(h_fixed),
        arr(h_cell),
        *(arr(a) for a in touch),
        arr(init),
        arr(init_ch),
        arr(init_val, dt),
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
        if u_op[u] == DIV:
            on = True
        elif u_op[u] == MUL:
            on = b != 0  # the kernel skips a closed gate (pre == 0)
        else:
            act = u_act[u]
            on = {
                ID: b != 0,
                SATURATE: b != 0,
                STEP_GE: b >= 0,
                STEP_GT: b > 0,
                NONFINITE: not math.isfinite(b),
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
