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

1. **One input matmul per side and layer.** The MLP blocks of one side of a layer (the
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
   once; read heads that share one sink key score it as one more key column. Hard
   attention is ``(s == max s) * (max s > sink)``, the rule of the torch pass (the gate
   must act on the weights, not on the heads' output: a query that matches no cell ties
   every cell at score 0, and the sum of every cell could overflow).
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

The MLP sublayers (items 1-4, 7) are :class:`~algind_gym.cpu_v2.dense_mlp.MLPSide`.
Buffers for the cell tokens are kept per batch size (a pass writes only the value and sign
channels of the embedding). What this plan does not cover (keys that depend on the values,
a bank unit with a ``W_1`` row of its own: only after a weight mutation) runs the generic
code of :class:`DensePass` instead. The tests compare this pass with the torch one bit
for bit.
"""

from __future__ import annotations

import numpy as np

from algind_gym.cpu_v2.dense_mlp import MLPSide, shared_bank_rows, span
from algind_gym.cpu_v2.stacked import StackedBanks, StackedHeads, StackedLayer


class _ReadHeads:
    """Read heads with fixed, shared cell keys (module docstring, item 5): queries from the
    CPU token ``xc (D_cpu, B)``, keys on the cell tokens ``xl (D_cell, B N)``."""

    def __init__(self, h: StackedHeads, keys: np.ndarray, d_cell: int) -> None:
        self.n, self.d_k = h.n_heads, keys.shape[1]
        self.inp = span(h.W_Q.any(1))
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
        self.out = span(vo.any(1))
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
        self.inp = span(h.W_K.any(1) | h.W_VO.any(1))
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
            sides.append(MLPSide(blocks, d, dtype, big, unembed) if planned else blocks)
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
            if isinstance(cpu, MLPSide):
                xc[cpu.out] += cpu(xc)
            elif cpu is not None:
                xc += g._mlp_sum(cpu, xc.T).T
            if isinstance(cell, MLPSide) and cell.unembedded:
                y = cell(xl)
                v, s = xl[self.new_v] + y[0], xl[self.new_s] + y[1]
                return v.reshape(b, n), s.reshape(b, n)
            if isinstance(cell, MLPSide):
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


def _rows(xl: np.ndarray, b: int) -> np.ndarray:
    """Cell tokens ``(D_cell, B N)`` as the generic pass holds them, ``(B, N, D_cell)``."""
    return xl.reshape(len(xl), b, -1).transpose(1, 2, 0)
