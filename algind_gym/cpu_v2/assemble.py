"""Assemble blocks into weight matrices (dense) and their sparse forms (for the fast paths).

:func:`assemble_mlp` turns an :class:`~algind_gym.cpu_v2.blocks.MLP` into ``W_1`` (hidden x
input subspace), ``b_1``, the second pre-activation ``W_1b``/``b_1b`` of bilinear units and
``W_2`` (output subspace x hidden), plus the projections between the block's subspaces and
its side of the residual stream (tracr's input and output spaces). Hidden units are ordered
by (op, activation), so an executor applies each activation to one contiguous slice.

:func:`assemble_head` gives ``W_Q``, ``W_K``, the sink key, ``W_V`` and ``W_O``.

The sparse forms (:func:`sparse_mlp`) are read off the same matrices: for every unit the
non-zero entries of its rows of ``W_1``/``W_1b`` and of its column of ``W_2``; for a step bank
its thresholds and the prefix sums of its ``W_2`` columns. A change to an entry of a matrix
changes every executor in the same way.
"""

from __future__ import annotations

import numpy as np

from algind_gym.cpu_v2.blocks import ACTIVATIONS, MLP, OPS, Circuit, Head


def _space(c: Circuit, side: str):
    return c.cpu if side == "cpu" else c.cell


def assemble_mlp(c: Circuit, m: MLP) -> dict:
    """Dense matrices of an MLP block (see the module docstring); float64."""
    space = _space(c, m.side)
    units = sorted(m.units, key=lambda u: (OPS.index(u.op), ACTIVATIONS.index(u.act)))
    if m.bank:
        units = list(m.units)  # a bank keeps its threshold order (it is one op and act kind)
    ins = sorted({space[n] for u in units for n in (*u.w, *u.w2)})
    outs = sorted({space[n] for u in units for n in u.out})
    pos_in = {ch: i for i, ch in enumerate(ins)}
    pos_out = {ch: i for i, ch in enumerate(outs)}
    h = len(units)
    w1, w1b = np.zeros((h, len(ins))), np.zeros((h, len(ins)))
    w2 = np.zeros((len(outs), h))
    b1, b1b = np.zeros(h), np.zeros(h)
    for i, u in enumerate(units):
        for name, w in u.w.items():
            w1[i, pos_in[space[name]]] += w
        for name, w in u.w2.items():
            w1b[i, pos_in[space[name]]] += w
        for name, w in u.out.items():
            w2[pos_out[space[name]], i] += w
        b1[i], b1b[i] = u.b, u.b2
    groups = []  # (op, act, start, end)
    for i, u in enumerate(units):
        key = (OPS.index(u.op), ACTIVATIONS.index(u.act))
        if groups and groups[-1][:2] == key:
            groups[-1] = (*key, groups[-1][2], i + 1)
        else:
            groups.append((*key, i, i + 1))
    return {
        "in": np.asarray(ins, dtype=np.int64),
        "out": np.asarray(outs, dtype=np.int64),
        "W_1": w1,
        "b_1": b1,
        "W_1b": w1b,
        "b_1b": b1b,
        "W_2": w2,
        "op": np.asarray([OPS.index(u.op) for u in units], dtype=np.int64),
        "act": np.asarray([ACTIVATIONS.index(u.act) for u in units], dtype=np.int64),
        "groups": groups,
        "bank": m.bank,
        "side": m.side,
    }


def assemble_head(c: Circuit, h: Head) -> dict:
    """``W_Q`` (query side x d_k), ``W_K`` (key side x d_k), ``k_sink``, ``W_V``, ``W_O``."""
    qs, ks = (c.cpu, c.cell) if h.kind == "read" else (c.cell, c.cpu)
    wq, wk = np.zeros((len(qs), c.d_k)), np.zeros((len(ks), c.d_k))
    for name, row in h.q.items():
        wq[qs[name]] = row
    for name, row in h.k.items():
        wk[ks[name]] = row
    wv, wo = np.zeros((len(ks), len(h.v))), np.zeros((len(h.v), len(qs)))
    for j, (src, dst) in enumerate(h.v):
        wv[ks[src], j] = 1.0
        wo[j, qs[dst]] = 1.0
    return {
        "W_Q": wq,
        "W_K": wk,
        "k_sink": np.asarray(h.k_sink, dtype=np.float64),
        "W_V": wv,
        "W_O": wo,
    }


def sparse_mlp(a: dict) -> dict:
    """Sparse form of an assembled MLP: per unit, CSR rows of ``W_1``/``W_1b`` and columns
    of ``W_2`` in stream coordinates; a bank adds its thresholds and ``W_2`` prefix sums."""
    ins, outs = a["in"], a["out"]

    def csr(w: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows, cols = np.nonzero(w)  # row-major order: the entries of each row together
        ptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(w)))])
        return ptr.astype(np.int64), index[cols].astype(np.int64), w[rows, cols]

    out = {
        "w1": csr(a["W_1"], ins),
        "w1b": csr(a["W_1b"], ins),
        "w2": csr(a["W_2"].T, outs),
        "b_1": a["b_1"],
        "b_1b": a["b_1b"],
        "op": a["op"],
        "act": a["act"],
    }
    if a["bank"]:
        # Active units of a sorted bank are a prefix: unit i is active iff s + b_i >= 0
        # (> 0 for step_gt); W_2 h is then prefix[count] (sums of small integers: exact).
        out["prefix"] = np.vstack([np.zeros(len(outs)), np.cumsum(a["W_2"].T, axis=0)])
        out["out"] = outs
        row = a["W_1"][0] if len(a["W_1"]) else np.zeros(len(ins))
        nz = np.flatnonzero(row)
        out["bank_w"] = (ins[nz], row[nz])
        assert np.abs(out["prefix"]).max(initial=0) < 2**20 and np.all(
            out["prefix"] == np.round(out["prefix"])
        ), "bank outputs must be small integers (exact prefix sums)"
    return out
