"""The MLP sublayers of the planned numpy dense pass (:mod:`algind_gym.cpu_v2.dense_numpy`).

:class:`MLPSide` is every MLP block of one side of a layer (the concatenated MLP and the
step banks of :mod:`algind_gym.cpu_v2.stacked`) on tokens as columns: one input matmul,
the elementwise units, the banks' steps and one or more output matmuls. Items 1-4 and 7
of :mod:`algind_gym.cpu_v2.dense_numpy` say what is rearranged and why it is exact.
"""

from __future__ import annotations

import numpy as np

from algind_gym.cpu_v2.blocks import OPS
from algind_gym.cpu_v2.stacked import StackedBanks, StackedMLP

STEP_GE, STEP_GT, SATURATE, NONFINITE = 1, 2, 3, 4
LINEAR, MUL, DIV = (OPS.index(o) for o in OPS)
EXACT_SUM = 2.0**20
"""Bound on the sum of integer terms that one output matmul may merge (float32 keeps every
integer up to ``2**24`` exactly)."""
SMALL_BANK = 128
"""A step bank group with at most this many units (padding included) joins the concatenated
MLP as plain step units (item 3)."""


class MLPSide:
    """Every MLP block of one side of a layer, on tokens as columns ``x (D, T)``: one input
    matmul, the elementwise units, the banks' steps and one or more output matmuls
    (module docstring, items 1-4). ``None`` attributes mark what the side lacks."""

    def __init__(self, blocks: list, d: int, dtype, big: float, unembed=None) -> None:
        general = [m for m in blocks if isinstance(m, StackedMLP)]
        self.big = big
        w_in, b_in, w_out, bound = [], [], [], []  # (d, k) / (k,) / (k, d) / (k,) pieces
        self.acts: list[tuple[int, int, int]] = []
        self.mul = self.div = None
        self.h = 0
        units = _mlp_units(general[0], d) if general else None
        big_banks = []
        for g in (m for m in blocks if isinstance(m, StackedBanks)):
            small = _bank_units(g, d) if g.W_1.shape[0] * g.W_1.shape[1] <= SMALL_BANK else None
            if small is not None and (units is None or _can_merge(*_outputs(units, small))):
                units = small if units is None else _join(units, small)
            else:
                big_banks.append(g)
        if units is not None:
            self._general(units, w_in, b_in, w_out, bound)
        self.banks = []
        z = self.h
        for g in big_banks:
            bank = _Bank(g, sum(w.shape[1] for w in w_in), z, dtype)
            self.banks.append(bank)
            w_in.append(bank.w_in)
            b_in.append(np.zeros(bank.w_in.shape[1]))
            w_out.append(g.P_out)
            # a bank's output is a sum of its W_2 entries over 0/1 steps
            whole = bool((np.round(g.W_2) == g.W_2).all())
            sums = np.abs(g.W_2).sum(-1).reshape(-1)
            bound.append(sums if whole else np.full(len(sums), np.inf))
            z += g.P_out.shape[0]
        self.width_z = z
        w_in = np.concatenate(w_in, 1).T  # (K, d)
        self.inp = span(w_in.any(0))  # the channels the side reads (its span)
        self.W_in = np.ascontiguousarray(w_in[:, self.inp], dtype)
        self.b_in = np.ascontiguousarray(np.concatenate(b_in)[:, None], dtype)
        # the unembedding's projection (item 6): each entry of W_2 U is one entry of W_2
        outs = [w if unembed is None else w[:, unembed] for w in w_out]
        self.unembedded = unembed is not None
        self.merged = _can_merge(w_out, bound)
        if self.merged:
            outs = [np.concatenate(outs, 0)]
        self.out = span(np.concatenate(outs, 0).any(0)) if unembed is None else slice(None)
        self.W_out = [np.ascontiguousarray(w.T[self.out], dtype) for w in outs]  # (d_out, k)
        edges = np.cumsum([0] + [w.shape[1] for w in self.W_out])
        self.spans = list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))

    def _general(self, units: dict, w_in, b_in, w_out, bound) -> None:
        """The concatenated MLP's columns, ordered by activation (item 2)."""
        order = np.argsort(units["act"] * len(OPS) + units["op"], kind="stable")
        ops, acts, w1, b1 = (units[k][..., order] for k in ("op", "act", "W_1", "b_1"))
        wb, b1b = units["W_1b"], units["b_1b"]
        self.h = len(order)
        w_in.append(w1)
        b_in.append(b1)
        for kind in (MUL, DIV):
            if (ops == kind).any():
                setattr(self, "mul" if kind == MUL else "div", sum(w.shape[1] for w in w_in))
                w_in.append(np.where(ops == kind, wb[:, order], 0.0))
                b_in.append(np.where(ops == kind, b1b[order], 1.0))
        for act in (STEP_GE, STEP_GT, SATURATE, NONFINITE):
            idx = np.flatnonzero(acts == act)
            if len(idx):
                self.acts.append((act, int(idx[0]), int(idx[-1]) + 1))
        w_out.append(units["W_2"][order])
        bound.append(units["bound"][order])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The sum of the side's MLP outputs for tokens ``x`` ``(D, T)`` on the channels
        ``self.out``."""
        pre = self.W_in @ x[self.inp]
        pre += self.b_in
        h = self.h
        z = np.empty((self.width_z, x.shape[1]), pre.dtype) if self.banks else pre
        if h:
            hid = pre[:h]
            if self.mul is not None:
                np.multiply(hid, pre[self.mul : self.mul + h], out=hid)
            if self.div is not None:
                np.divide(hid, pre[self.div : self.div + h], out=hid)
            for act, lo, hi in self.acts:
                v = hid[lo:hi]
                if act == STEP_GE:
                    np.greater_equal(v, 0, out=v)
                elif act == STEP_GT:
                    np.greater(v, 0, out=v)
                elif act == SATURATE:
                    np.maximum(v, -self.big, out=v)
                    np.minimum(v, self.big, out=v)
                else:
                    np.logical_not(np.isfinite(v), out=v)
            if self.banks:
                z[:h] = hid
        for bank in self.banks:
            bank(pre, z)
        if self.merged:
            return self.W_out[0] @ z[: self.width_z]
        total = None
        for (lo, hi), w in zip(self.spans, self.W_out, strict=True):
            y = w @ z[lo:hi]
            total = y if total is None else total + y
        return total


def _mlp_units(m: StackedMLP, d: int) -> dict:
    """The concatenated MLP's units: ``W_1``/``W_1b`` ``(d, h)`` on the whole side (a one-hot
    ``P_in`` folded in: every entry is one entry of ``W_1``), biases, op and activation per
    unit, ``W_2 P_out`` ``(h, d)`` and each hidden value's bound (see :func:`_can_merge`)."""
    p_in = m.P_in if m.P_in is not None else np.eye(d)
    h = len(m.b_1)
    wb = np.zeros((d, h))
    wb[:, m.n_linear :] = p_in @ m.W_1b
    ops, acts = np.zeros(h, int), np.zeros(h, int)
    for op, act, lo, hi in m.groups:
        ops[lo:hi], acts[lo:hi] = op, act
    w1 = p_in @ m.W_1
    steps = (acts == STEP_GE) | (acts == STEP_GT)
    consts = (ops == LINEAR) & (acts == 0) & ~w1.any(0) & (np.round(m.b_1) == m.b_1)
    return {
        "W_1": w1,
        "b_1": m.b_1,
        "W_1b": wb,
        "b_1b": np.concatenate([np.zeros(m.n_linear), m.b_1b]),
        "op": ops,
        "act": acts,
        "W_2": m.W_2 if m.P_out is None else m.W_2 @ m.P_out,
        "bound": np.where(steps, 1.0, np.where(consts, np.abs(m.b_1), np.inf)),
    }


def _bank_units(g: StackedBanks, d: int) -> dict:
    """A small bank group's units as plain step units of the concatenated MLP (its padding
    dropped): one call less per group; each unit keeps its own ``W_1`` row and bias."""
    n_g, n_h, n_in = g.W_1.shape
    n_out = g.W_2.shape[1]
    cols, b1, acts, rows = [], [], [], []
    for j in range(n_g):
        for u in range(n_h):
            if not (g.W_1[j, u].any() or g.b_1[j, u, 0] or g.W_2[j, :, u].any()):
                continue  # padding: adds nothing
            cols.append(g.P_in[:, j * n_in : (j + 1) * n_in] @ g.W_1[j, u])
            b1.append(g.b_1[j, u, 0])
            acts.append(STEP_GE if g.ge[j, u, 0] else STEP_GT)
            rows.append(g.W_2[j, :, u] @ g.P_out[j * n_out : (j + 1) * n_out])
    h = len(b1)
    return {
        "W_1": np.stack(cols, 1) if h else np.zeros((d, 0)),
        "b_1": np.asarray(b1, dtype=float),
        "W_1b": np.zeros((d, h)),
        "b_1b": np.zeros(h),
        "op": np.full(h, LINEAR),
        "act": np.asarray(acts, dtype=int),
        "W_2": np.stack(rows) if h else np.zeros((0, d)),
        "bound": np.ones(h),
    }


def _outputs(*units: dict) -> tuple[list, list]:
    """``(W_2 pieces, bounds)`` of unit sets, for :func:`_can_merge`."""
    return [u["W_2"] for u in units], [u["bound"] for u in units]


def _join(a: dict, b: dict) -> dict:
    """Two unit sets as one (their units side by side)."""
    return {k: np.concatenate([a[k], b[k]], 1 if a[k].ndim == 2 and k != "W_2" else 0) for k in a}


def _can_merge(w_out: list[np.ndarray], bound: list[np.ndarray]) -> bool:
    """Whether one matmul may sum the blocks' outputs: every channel that two blocks write
    receives only integer terms (``bound``: the largest magnitude of each hidden value,
    ``inf`` where it may be any float) times integer weights, summing below
    :data:`EXACT_SUM`. (The sign of a zero sum does not depend on the order.)"""
    writes = np.stack([(w != 0).any(0) for w in w_out])
    shared = writes.sum(0) > 1
    total = np.zeros(int(shared.sum()))
    for w, b in zip(w_out, bound, strict=True):
        cols = w[:, shared]
        live = (cols != 0).any(1)
        if np.isinf(b[live]).any() or (cols != np.round(cols)).any():
            return False
        total += (np.abs(cols[live]) * b[live, None]).sum(0)
    return bool((total < EXACT_SUM).all())


def shared_bank_rows(g: StackedBanks) -> np.ndarray | None:
    """Each bank's common ``W_1`` row ``(G, n_in)``, or ``None`` if some unit of a bank has
    another row (a unit whose row, bias and ``W_2`` column are all zero, such as padding,
    is ignored: it adds nothing whatever its step)."""
    rows = np.zeros(g.W_1.shape[::2])
    for j in range(g.W_1.shape[0]):
        live = g.W_1[j].any(1) | (g.b_1[j, :, 0] != 0) | g.W_2[j].any(0)
        w = g.W_1[j, live]
        if len(w) and (w != w[0]).any():
            return None
        rows[j] = w[0] if len(w) else 0.0
    return rows


class _Bank:
    """A group of ``G`` stacked step banks (module docstring, item 3). Every unit of a bank
    shares its ``W_1`` row (:func:`shared_bank_rows`), so the input matmul computes each
    bank's ``s = w . x`` once (one column) and a unit's pre-activation is ``s + b``: the
    same bits as ``w . x + b`` per unit (the same at most two exact products). Units are
    ordered ``step_ge`` first, each kind padded to the group's widest."""

    def __init__(self, g: StackedBanks, row: int, zrow: int, dtype) -> None:
        n_g = g.W_1.shape[0]
        rows = shared_bank_rows(g)
        if rows is None:
            raise ValueError("a bank's units do not share their W_1 row")
        # (d, G): bank j's input column is P_in's block j times its row
        n_in = g.W_1.shape[2]
        self.w_in = np.stack(
            [g.P_in[:, j * n_in : (j + 1) * n_in] @ rows[j] for j in range(n_g)], 1
        )
        ge = g.ge[..., 0].astype(bool)
        n_ge, n_gt = int(ge.sum(1).max()), int((~ge).sum(1).max())
        b1 = np.zeros((n_g, n_ge + n_gt, 1))
        w2 = np.zeros((n_g, g.W_2.shape[1], n_ge + n_gt))
        for j in range(n_g):
            for kind, start in ((ge[j], 0), (~ge[j], n_ge)):
                idx = np.flatnonzero(kind)
                b1[j, start : start + len(idx)] = g.b_1[j, idx]
                w2[j, :, start : start + len(idx)] = g.W_2[j][:, idx]
        # W_2 h sums integers below 2**24 (steps are 0/1): float32 holds every partial sum
        # exactly, so a float64 pass may take the float32 matmul (half the bytes to read)
        small = (np.round(w2) == w2).all() and np.abs(w2).sum(-1).max(initial=0) < EXACT_SUM
        self.h_dtype = np.dtype(np.float32) if small else np.dtype(dtype)
        self.b_1, self.W_2 = b1.astype(dtype), w2.astype(self.h_dtype)
        self.n_ge, self.n_g, self.n_out = n_ge, n_g, g.W_2.shape[1]
        self.row, self.zrow = row, zrow

    def __call__(self, pre: np.ndarray, z: np.ndarray) -> None:
        """Steps of ``s + b`` from the rows ``pre[row:row+G]``, ``W_2 h`` into ``z``."""
        t = pre.shape[1]
        s = pre[self.row : self.row + self.n_g, None, :]  # (G, 1, T)
        p = s + self.b_1  # (G, H, T)
        h = np.empty(p.shape, self.h_dtype)
        np.greater_equal(p[:, : self.n_ge], 0, out=h[:, : self.n_ge])
        np.greater(p[:, self.n_ge :], 0, out=h[:, self.n_ge :])
        out = z[self.zrow : self.zrow + self.n_g * self.n_out].reshape(self.n_g, self.n_out, t)
        np.matmul(self.W_2, h, out=out)


def span(mask: np.ndarray) -> slice:
    """The shortest slice that holds every true entry of ``mask`` (channel spans)."""
    idx = np.flatnonzero(mask)
    return slice(int(idx[0]), int(idx[-1]) + 1) if len(idx) else slice(0, 0)
