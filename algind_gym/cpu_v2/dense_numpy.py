"""The dense pass on numpy, planned once per model: the inference path on CPU.

:class:`NumpyDense` runs the transformer of :class:`~algind_gym.cpu_v2.dense.DensePass`
(embedding; per layer ``x = x + Attention(x)`` and ``x = x + MLP(x)`` over the CPU token and
every cell token; unembedding) with the same matrices, rearranged once so that a pass at
batch 1 is fewer and larger numpy calls: at batch 1 most of the pass was the cost of the
calls themselves (about 290 Python-level calls per pass; a small matmul or ufunc costs
about 1 us whatever its size). Only matmuls and elementwise ufuncs run in the pass; no
gather, ``where`` or ``index_select``. What is rearranged, and why each is exact (the
chamber's rules, :mod:`algind_gym.cpu_v2.chamber`: a pre-activation has at most two
non-zero terms that are not small integers, so its rounding does not depend on the order
of summation; every hidden value is finite):

1. **One input matmul per side and layer.** The CPU token's MLP blocks of a layer (the
   concatenated MLP and every step bank) read their pre-activations with one matmul, their
   input matrices side by side (``P_in W_1`` and each bank's one-hot ``P_in``): a column is
   the same dot product wherever it sits.
2. **Products and quotients over the whole hidden layer.** The concatenated MLP gets a
   multiplier and a divisor pre-activation for every unit, ``W_1b x + b_1b`` for its mul
   (div) units and ``0 . x + 1 = 1`` for the others; ``z * 1`` and ``z / 1`` are ``z`` in
   IEEE arithmetic (inf and NaN included), so one multiply and one divide replace one per
   group, and the units are ordered by activation so that each activation is one ufunc.
3. **Steps.** A step bank's units are reordered, ``step_ge`` units first, each kind padded
   to the group's widest: two comparisons instead of a per-unit mask (its ``W_2 h`` is a
   sum of small integers, exact in any order; a padded unit has a zero ``W_2`` column).
   A bank's units share one ``W_1`` row, so ``w . x`` is one column of the input matmul
   (:class:`_Bank`); a small group (:data:`SMALL_BANK`) joins the concatenated MLP.
4. **One output matmul per layer side** over ``[h | bank outputs]`` against the stacked
   ``W_2 P_out`` and the banks' ``P_out``, where every channel that two of those blocks
   write receives only integers (steps and constants times integer weights, checked at
   build time with a bound far below ``2**24``); otherwise one matmul per block, summed
   in the order of the torch pass.
5. **Heads.** A head's value matmul reads the cell channels of ``W_V``'s non-zero rows
   (a view ``x[..., lo:hi]``; the other rows are zero weights, whose terms are zeros), the
   write heads' ``W_O`` only its non-zero columns (a skipped column adds nothing, and the
   sign of a zero in a channel is restored by the sign-bit channel), and a write head's
   sink scores, like its fixed queries (:meth:`DensePass._fixed_codes`), are computed
   once; read heads that share one sink key score it as one more key column. Hard attention is ``(s == max s) * (max s > sink)``, the rule of the torch pass.
   (The gate must act on the weights, not on the heads' output: a query that matches no
   cell ties every cell at score 0, and the sum of every cell could overflow.)
6. **Unembedding folded in.** When the last layer's cell MLP is the last block on the
   cell tokens, its ``W_2`` is multiplied by the unembedding's one-hot projection onto
   ``new.v``/``new.s`` (each entry of the product is one entry of ``W_2``): the pass
   computes the two channels the unembedding reads.

7. **Channel ranges.** Each block's matrices keep only the span of residual channels
   that holds its non-zero input rows (output columns): ``W x`` over the span has the same
   non-zero terms, and the channels outside an output span receive nothing, where the
   torch pass adds a zero. Both can change only the sign of a zero, in a value channel
   whose sign bit is carried separately; the compiler allots channels layer by layer,
   so the spans are short (a layer's outputs are one span of about 10-80 of 350).

Buffers for the cell tokens are kept per batch size (a pass writes only the value and sign
channels of the embedding). A layer this plan does not cover (keys that depend on the
values, step banks on the cell tokens: only after a weight mutation) runs the generic code
of :class:`DensePass` instead. The tests compare this pass with the torch one bit for bit.
"""

from __future__ import annotations

import numpy as np

from algind_gym.cpu_v2.blocks import OPS
from algind_gym.cpu_v2.stacked import StackedBanks, StackedHeads, StackedLayer, StackedMLP

STEP_GE, STEP_GT, SATURATE, NONFINITE = 1, 2, 3, 4
LINEAR, MUL, DIV = (OPS.index(o) for o in OPS)
EXACT_SUM = 2.0**20
"""Bound on the sum of integer terms that one output matmul may merge (float32 keeps every
integer up to ``2**24`` exactly)."""
SMALL_BANK = 128
"""A step bank group with at most this many units (padding included) joins the concatenated
MLP as plain step units (item 3)."""


class _MLPSide:
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
        self.inp = _span(w_in.any(0))  # item 7: the channels the side reads
        self.W_in = np.ascontiguousarray(w_in[:, self.inp], dtype)
        self.b_in = np.ascontiguousarray(np.concatenate(b_in)[:, None], dtype)
        # the unembedding's projection (item 6): each entry of W_2 U is one entry of W_2
        outs = [w if unembed is None else w[:, unembed] for w in w_out]
        self.unembedded = unembed is not None
        self.merged = _can_merge(w_out, bound)
        if self.merged:
            outs = [np.concatenate(outs, 0)]
        self.out = _span(np.concatenate(outs, 0).any(0)) if unembed is None else slice(None)
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


class _ReadHeads:
    """Read heads with fixed, shared cell keys (module docstring, item 5): queries from the
    CPU token ``xc (D_cpu, B)``, keys on the cell tokens ``xl (D_cell, B N)``."""

    def __init__(self, h: StackedHeads, keys: np.ndarray, d_cell: int) -> None:
        self.n, self.d_k = h.n_heads, keys.shape[1]
        self.inp = _span(h.W_Q.any(1))
        self.W_Q = np.ascontiguousarray(h.W_Q.T[:, self.inp])
        self.keys = np.ascontiguousarray(keys[0])
        self.k_sink = np.ascontiguousarray(h.k_sink[:, None, :])  # (H, 1, d_k)
        self.n_cells = self.keys.shape[1]
        if (h.k_sink == h.k_sink[0]).all():  # one sink key for all heads: one more column
            self.keys = np.ascontiguousarray(np.concatenate([self.keys, h.k_sink[:1].T], 1))
        vo = h.W_VO.reshape(self.n, d_cell, -1)  # rows: head-major (H D_cell, D_cpu)
        rows = np.flatnonzero((vo != 0).any((0, 2)))
        self.lo, self.hi = (int(rows[0]), int(rows[-1]) + 1) if len(rows) else (0, 1)
        vo = vo[:, self.lo : self.hi].reshape(-1, vo.shape[2]).T  # (D_cpu, H c)
        self.out = _span(vo.any(1))
        self.W_VO = np.ascontiguousarray(vo[self.out])

    def __call__(self, xc: np.ndarray, xl: np.ndarray) -> np.ndarray:
        """The CPU token's update on the channels ``self.out``."""
        b = xc.shape[1]
        q = (self.W_Q @ xc[self.inp]).reshape(self.n, self.d_k, b)
        scores = q.transpose(2, 0, 1) @ self.keys  # (B, H, N), or N + 1 with the sink
        if scores.shape[2] > self.n_cells:
            scores, sink = scores[..., : self.n_cells], scores[..., self.n_cells :]
        else:
            sink = (self.k_sink @ q).transpose(2, 0, 1)  # (B, H, 1)
        top = scores.max(-1, keepdims=True)
        att = np.equal(scores, top, out=scores)  # hard attention, in place
        att *= top > sink  # the sink wins ties: no cell is attended
        values = xl[self.lo : self.hi].reshape(self.hi - self.lo, b, -1).transpose(1, 2, 0)
        return self.W_VO @ (att @ values).reshape(b, -1).T


class _WriteHeads:
    """Write heads with fixed, shared cell queries (module docstring, item 5)."""

    def __init__(self, h: StackedHeads, queries: np.ndarray, d_cell: int) -> None:
        self.n, self.d_k = h.n_heads, queries.shape[1]
        self.inp = _span(h.W_K.any(1) | h.W_VO.any(1))
        self.W_K = np.ascontiguousarray(h.W_K.T[:, self.inp])
        self.queries = np.ascontiguousarray(queries[0])
        self.sink = h.k_sink @ self.queries  # (H, N): weights and layout only
        vo = h.W_VO.reshape(h.W_VO.shape[0], self.n, d_cell)  # columns: head-major
        cols = np.flatnonzero((vo != 0).any((0, 1)))
        self.lo, self.hi = (int(cols[0]), int(cols[-1]) + 1) if len(cols) else (0, 1)
        # rows (channel, head) of the values, as the update's matmul wants them
        vo = vo[:, :, self.lo : self.hi].transpose(0, 2, 1)
        self.W_VO = np.ascontiguousarray(vo.reshape(vo.shape[0], -1).T[:, self.inp])

    def __call__(self, xc: np.ndarray, xl: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``xl`` plus the heads' update, written into ``out`` ``(D_cell, B N)``."""
        b, c = xc.shape[1], self.hi - self.lo
        xc = xc[self.inp]
        k = (self.W_K @ xc).reshape(self.n, self.d_k, b).transpose(2, 0, 1)
        scores = k @ self.queries  # (B, H, N)
        att = np.greater(scores, self.sink, out=scores)
        values = (self.W_VO @ xc).reshape(c, self.n, b).transpose(2, 0, 1)  # (B, c, H)
        out[: self.lo], out[self.hi :] = xl[: self.lo], xl[self.hi :]
        dst = out[self.lo : self.hi].reshape(c, b, -1).transpose(1, 0, 2)  # a view
        np.add(xl[self.lo : self.hi].reshape(c, b, -1).transpose(1, 0, 2), values @ att, out=dst)
        return out


class NumpyDense:
    """The planned numpy form of a :class:`~algind_gym.cpu_v2.dense.DensePass` built for
    numpy (module docstring); its generic methods run what the plan does not cover. The
    CPU token is ``(D_cpu, B)`` and the cell tokens ``(D_cell, B N)``: tokens as columns,
    so that a channel is a contiguous row."""

    def __init__(self, generic) -> None:
        self.generic = generic
        self.new_v, self.new_s = generic.new_v, generic.new_s
        self.cpu0 = np.ascontiguousarray(generic.cpu0.T)
        self.constants = np.ascontiguousarray(generic.constants.T)  # (D_cell - 2, N)
        layers = generic.layers
        touches = [i for i, la in enumerate(layers) if la.writes or la.mlps["cell"]]
        last = touches[-1] if touches else -1
        self.plan = [
            self._layer(layer, keys, queries, i == last)
            for i, (layer, (keys, queries)) in enumerate(zip(layers, generic.fixed, strict=True))
        ]
        self._buffers: dict = {}

    def _layer(self, layer: StackedLayer, keys, queries, last: bool) -> tuple:
        dtype, big = self.cpu0.dtype, self.generic.big
        d_cpu, d_cell = len(self.cpu0), len(self.constants) + 2
        reads, writes = layer.reads, layer.writes
        if reads is not None and reads.cell_shared is not None and keys is not None:
            reads = _ReadHeads(reads, keys, d_cell)
        if writes is not None and writes.cell_shared is not None and queries is not None:
            writes = _WriteHeads(writes, queries, d_cell)
        sides = []
        for side, d in (("cpu", d_cpu), ("cell", d_cell)):
            blocks = layer.mlps[side]
            if not blocks:
                sides.append(None)
                continue
            planned = all(
                shared_bank_rows(m) is not None for m in blocks if isinstance(m, StackedBanks)
            )
            unembed = [self.new_v, self.new_s] if side == "cell" and last else None
            sides.append(_MLPSide(blocks, d, dtype, big, unembed) if planned else blocks)
        return reads, writes, *sides

    def _workspace(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The embedding (constants written once), a buffer for the cell tokens after a
        write and the CPU token, for this batch shape and dtype."""
        key = (cells.shape, cells.dtype)
        if key not in self._buffers:
            b, n = cells.shape
            emb = np.empty((len(self.constants) + 2, b * n), cells.dtype)
            emb[2:] = np.tile(self.constants, (1, b))
            xc = np.empty((len(self.cpu0), b), cells.dtype)
            self._buffers = {key: (emb, np.empty_like(emb), xc)}
        return self._buffers[key]

    def stream(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The final value and sign-bit channels of every cell token, each ``(B, N)``."""
        b, n = cells.shape
        emb, work, xc = self._workspace(cells)
        flat = cells.reshape(-1)
        emb[0] = flat
        np.signbit(flat, out=emb[1])
        xc[...] = self.cpu0
        xl, g = emb, self.generic
        for (reads, writes, cpu, cell), (keys, queries) in zip(self.plan, g.fixed, strict=True):
            dc = None
            if isinstance(reads, _ReadHeads):
                dc = reads(xc, xl)
            elif reads is not None:
                dc = g._read(reads, xc.T, _rows(xl, b), keys).T
            if isinstance(writes, _WriteHeads):
                xl = writes(xc, xl, work)
            elif writes is not None:
                update = g._write(writes, xc.T, _rows(xl, b), queries)
                xl = xl + update.transpose(2, 0, 1).reshape(len(xl), -1)
            if dc is not None:
                xc[reads.out if isinstance(reads, _ReadHeads) else slice(None)] += dc
            if isinstance(cpu, _MLPSide):
                xc[cpu.out] += cpu(xc)
            elif cpu is not None:
                xc += g._mlp_sum(cpu, xc.T).T
            if isinstance(cell, _MLPSide) and cell.unembedded:
                y = cell(xl)
                v, s = xl[self.new_v] + y[0], xl[self.new_s] + y[1]
                return v.reshape(b, n), s.reshape(b, n)
            if isinstance(cell, _MLPSide):
                xl = xl.copy()
                xl[cell.out] += cell(xl)
            elif cell is not None:
                xl = xl + g._mlp_sum(cell, xl.T).T
        return xl[self.new_v].reshape(b, n).copy(), xl[self.new_s].reshape(b, n).copy()

    def __call__(self, cells: np.ndarray) -> np.ndarray:
        """One forward pass: the new cells ``(1 - 2 sign) * |value|``."""
        with np.errstate(all="ignore"):  # a divide unit's 0/0 is guarded, as in torch
            v, s = self.stream(cells)
            out = np.abs(v)
            sign = s * -2
            sign += 1
            out *= sign
            return out


def _span(mask: np.ndarray) -> slice:
    """The shortest slice that holds every true entry of ``mask`` (item 7)."""
    idx = np.flatnonzero(mask)
    return slice(int(idx[0]), int(idx[-1]) + 1) if len(idx) else slice(0, 0)


def _rows(xl: np.ndarray, b: int) -> np.ndarray:
    """Cell tokens ``(D_cell, B N)`` as the generic pass holds them, ``(B, N, D_cell)``."""
    return xl.reshape(len(xl), b, -1).transpose(1, 2, 0)
