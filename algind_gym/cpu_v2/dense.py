"""The dense forward pass over the stacked layers, in torch (autograd) or numpy (inference).

:class:`DensePass` runs the transformer as written: the embedding of every cell as a token,
then per layer ``x = x + Attention(x)`` and ``x = x + MLP(x)`` over the CPU token and every
cell token, with the matrices of :mod:`algind_gym.cpu_v2.stacked` (one multi-head attention
per kind of head, one concatenated MLP and a few batched step banks per side). Attention
scores are ``(x W_Q)(x W_K)^T`` over all cell tokens and the sink, hard attention keeps the
maximum, values are ``x W_V W_O``; MLPs are ``W_2 act(W_1 x + b_1)`` (bilinear units
multiply or divide two pre-activations). Only matmuls, elementwise activations and
comparisons: no gathers, no ``where``.

One thing is computed once instead of per pass, and only where it is a constant: the
address-code heads' keys ``x W_K`` over the cell tokens (read heads) and queries ``x W_Q``
(write heads). Those matrices read only the cells' constant channels (address code,
``one``), and the cell tokens are still the embedding when they are used, so the result
depends on the compiled weights and the layout alone; :meth:`DensePass._fixed_codes`
computes it with the same matmul on an all-zero state and falls back to the per-pass
matmul for any head whose matrix has a weight on the value or sign channel.

On numpy, the inference path on CPU, a call runs the same matrices rearranged once by
:class:`~algind_gym.cpu_v2.dense_numpy.NumpyDense` (fewer, larger calls: at batch 1 most
of the pass was the cost of the calls themselves; see that module for what is rearranged
and why it is exact); the methods here are its generic code for what it does not plan
(keys that depend on the values, after a weight mutation). torch (autograd) runs the
code below as written; it runs on numpy arrays too (the ``_TorchOps`` / ``_NumpyOps`` shims
name the few calls that differ). numpy's matmul of a skinny ``(1024, 37) @ (37, 11)`` took 12 us
against torch's 73 us on this machine (``experiments/bench_cpu.py`` prints the dense
figures, ``experiments/profile_dense.py`` the time of each block). Both give the same
bits: every output of a matmul has the same non-zero terms in either (see the exactness
note of :mod:`algind_gym.cpu_v2.stacked`), and the tests compare them.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from algind_gym.cpu_v2.blocks import ACTIVATIONS, OPS, Circuit
from algind_gym.cpu_v2.dense_numpy import NumpyDense
from algind_gym.cpu_v2.stacked import (
    StackedBanks,
    StackedHeads,
    StackedLayer,
    StackedMLP,
    stack_circuit,
)

ID, STEP_GE, STEP_GT, SATURATE, NONFINITE = (ACTIVATIONS.index(a) for a in ACTIVATIONS)
LINEAR, MUL, DIV = (OPS.index(o) for o in OPS)


class _TorchOps:
    einsum = staticmethod(torch.einsum)
    isfinite = staticmethod(torch.isfinite)
    signbit = staticmethod(torch.signbit)

    @staticmethod
    def cat(xs: list) -> torch.Tensor:
        return torch.cat(xs, -1)

    @staticmethod
    def amax(x: torch.Tensor) -> torch.Tensor:
        return x.amax(-1, keepdim=True)

    @staticmethod
    def expand(x: torch.Tensor, shape: tuple) -> torch.Tensor:
        return x.expand(shape)

    @staticmethod
    def permute(x: torch.Tensor, axes: tuple) -> torch.Tensor:
        return x.permute(axes)

    @staticmethod
    def cast(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return x.to(like.dtype)

    @staticmethod
    def array(x: np.ndarray, dtype, device, is_bool: bool = False) -> torch.Tensor:
        dt = torch.bool if is_bool else dtype
        return torch.as_tensor(np.ascontiguousarray(x), dtype=dt, device=device)


class _NumpyOps:
    einsum = staticmethod(np.einsum)
    isfinite = staticmethod(np.isfinite)
    signbit = staticmethod(np.signbit)

    @staticmethod
    def cat(xs: list) -> np.ndarray:
        return np.concatenate(xs, -1)

    @staticmethod
    def amax(x: np.ndarray) -> np.ndarray:
        return x.max(-1, keepdims=True)

    @staticmethod
    def expand(x: np.ndarray, shape: tuple) -> np.ndarray:
        return np.broadcast_to(x, shape)

    @staticmethod
    def permute(x: np.ndarray, axes: tuple) -> np.ndarray:
        return x.transpose(axes)

    @staticmethod
    def cast(x: np.ndarray, like: np.ndarray) -> np.ndarray:
        return x.astype(like.dtype)

    @staticmethod
    def array(x: np.ndarray, dtype, device, is_bool: bool = False) -> np.ndarray:
        return np.ascontiguousarray(x, dtype=bool if is_bool else dtype)


class DensePass:
    """The dense pass of a compiled circuit on one array library (module docstring).

    Args:
        circuit: the compiled model.
        dtype: ``torch.float32``/``torch.float64`` for ``lib="torch"``, a numpy float dtype
            for ``lib="numpy"``.
        lib: ``"torch"`` or ``"numpy"``.
        device: the torch device (ignored by numpy).
    """

    def __init__(self, circuit: Circuit, dtype, lib: str = "torch", device="cpu") -> None:
        if lib not in ("torch", "numpy"):
            raise ValueError(f"lib must be 'torch' or 'numpy', got {lib!r}")
        self.ops = _TorchOps if lib == "torch" else _NumpyOps
        self.numpy = lib == "numpy"
        self.big = float(
            np.finfo(np.float32 if dtype in (torch.float32, np.float32) else np.float64).max
        )

        def t(x, is_bool: bool = False):
            return self.ops.array(x, dtype, device, is_bool)

        c = circuit
        self.constants = t(c.cell_constants[:, 2:])  # every cell channel but v and s
        cpu0 = np.zeros(len(c.cpu))
        cpu0[c.cpu["cpu"]] = 1
        self.cpu0 = t(cpu0[None])
        self.new_v, self.new_s = c.cell["new.v"], c.cell["new.s"]
        self.layers = [_convert(layer, t) for layer in stack_circuit(c)]
        self.fixed = self._fixed_codes(t(np.zeros((1, c.cell_constants.shape[0]))))
        self._plan: NumpyDense | None = None  # numpy: the planned pass

    def _fixed_codes(self, zero_cells) -> list[tuple]:
        """Per layer, ``(keys, queries)``: the read heads' ``x W_K`` and the write heads'
        ``x W_Q`` over the cell tokens, computed once here wherever they are fixed.

        They are fixed where the cell tokens are still the embedding (no earlier layer has
        written to them) and the matrix ignores the value and sign channels (the address-
        code heads only read the code and constant channels): then ``x W`` depends only on
        the compiled weights and the cells' constant embedding. They are computed by the
        same matmul on the embedding of an all-zero state, whose value and sign entries
        differ from a real state's only where they meet zero weights, so every non-zero
        term, and hence every score, is the same. ``None`` where this does not hold (a
        weight on the value channel, e.g. after a mutation): the pass computes it.
        """
        x = self.embed(zero_cells)
        out, untouched = [], True
        for layer in self.layers:
            keys = queries = None
            if untouched and layer.reads is not None:
                keys = _fixed(x, layer.reads, layer.reads.W_K)
            if untouched and layer.writes is not None:
                queries = _fixed(x, layer.writes, layer.writes.W_Q)
            out.append((keys, queries))
            untouched = untouched and layer.writes is None and not layer.mlps["cell"]
        return out

    def embed(self, cells):
        """Cell tokens ``(B, N, D_cell)``: value, sign bit, constants, zero work channels."""
        b, n = cells.shape
        ops = self.ops
        sign = ops.cast(ops.signbit(cells), cells)
        consts = ops.expand(self.constants, (b, n, self.constants.shape[-1]))
        return ops.cat([cells[..., None], sign[..., None], consts])

    def stream(self, cells) -> tuple:
        """The final value and sign-bit channels of every cell token, each ``(B, N)``."""
        if self.numpy:
            return self.planned().stream(cells)
        xl = self.embed(cells)
        xc = self.ops.expand(self.cpu0, (cells.shape[0], self.cpu0.shape[-1]))
        for layer, (keys, queries) in zip(self.layers, self.fixed, strict=True):
            dc = self._read(layer.reads, xc, xl, keys) if layer.reads is not None else None
            if layer.writes is not None:
                xl = xl + self._write(layer.writes, xc, xl, queries)
            if dc is not None:
                xc = xc + dc
            if layer.mlps["cpu"]:
                xc = xc + self._mlp_sum(layer.mlps["cpu"], xc)
            if layer.mlps["cell"]:
                xl = xl + self._mlp_sum(layer.mlps["cell"], xl)
        return xl[..., self.new_v], xl[..., self.new_s]

    def __call__(self, cells):
        """One forward pass: the new cells ``(1 - 2 sign) * |value|`` (numpy or torch)."""
        if self.numpy:
            return self.planned()(cells)
        v, s = self.stream(cells)
        return (1 - 2 * s) * abs(v)

    def planned(self) -> NumpyDense:
        """The numpy pass planned from these matrices (built on first use, from the
        fixed codes as they are then)."""
        if self._plan is None:
            self._plan = NumpyDense(self)
        return self._plan

    # ------------------------------------------------------------------ blocks
    def _read(self, h: StackedHeads, xc, xl, keys=None):
        """Read heads: queries from the CPU token ``xc (B, D_cpu)``, keys on the cell tokens
        ``xl (B, N, D_cell)`` (or the fixed ``keys``) and the sink; hard attention; the CPU
        token's update."""
        b, n, n_heads = xc.shape[0], xl.shape[1], h.n_heads
        q = (xc @ h.W_Q).reshape(b, n_heads, -1)  # (B, H, d_k)
        if h.cell_shared is not None:
            kt = keys if keys is not None else _lin(xl, h.cell_shared).swapaxes(1, 2)
            scores = q @ kt  # (B, H, N)
        else:
            k = keys if keys is not None else _lin(xl, h.W_K)
            k = self.ops.expand(k, (b, n, k.shape[-1])).reshape(b, n, n_heads, -1)
            scores = self.ops.einsum("bnhd,bhd->bhn", k, q)
        sink = (q * h.k_sink).sum(-1)[..., None]
        hit = (scores == self.ops.amax(scores)) & (scores > sink)  # hard attention
        att = self.ops.cast(hit, xl)
        # att (x W_V W_O) computed as (att x) W_V W_O: one live term either way.
        return (att @ xl).reshape(b, -1) @ h.W_VO

    def _write(self, h: StackedHeads, xc, xl, queries=None):
        """Write heads: queries from every cell token (or the fixed ``queries``), keys on the
        CPU token and the sink; a cell attends to each head whose score beats the sink's;
        the cell tokens' update."""
        b, n, n_heads = xc.shape[0], xl.shape[1], h.n_heads
        k = (xc @ h.W_K).reshape(b, n_heads, -1)  # (B, H, d_k)
        if h.cell_shared is not None:
            qs = queries if queries is not None else _lin(xl, h.cell_shared).swapaxes(1, 2)
            scores, sink = k @ qs, h.k_sink @ qs  # (B, H, N)
        else:
            qs = queries if queries is not None else _lin(xl, h.W_Q)
            qs = self.ops.expand(qs, (b, n, qs.shape[-1])).reshape(b, n, n_heads, -1)
            scores = self.ops.einsum("bnhd,bhd->bhn", qs, k)
            sink = self.ops.einsum("bnhd,hd->bhn", qs, h.k_sink)
        att = self.ops.cast(scores > sink, xl)
        values = (xc @ h.W_VO).reshape(b, n_heads, -1)  # (B, H, D_cell)
        return att.swapaxes(1, 2) @ values

    def _activation(self, kind: int, z):
        if kind == ID:
            return z
        if kind == STEP_GE:
            return self.ops.cast(z >= 0, z)
        if kind == STEP_GT:
            return self.ops.cast(z > 0, z)
        if kind == SATURATE:
            return z.clip(-self.big, self.big)
        return self.ops.cast(~self.ops.isfinite(z), z)

    def _activation_inplace(self, kind: int, z: np.ndarray) -> None:
        """:meth:`_activation` on a numpy slice, written into the slice (no new arrays)."""
        if kind == STEP_GE:
            np.greater_equal(z, 0, out=z)
        elif kind == STEP_GT:
            np.greater(z, 0, out=z)
        elif kind == SATURATE:
            np.clip(z, -self.big, self.big, out=z)
        elif kind == NONFINITE:
            np.logical_not(np.isfinite(z), out=z)

    def _mlp(self, m: StackedMLP, x):
        """``W_2 act(W_1 x + b_1)`` of the concatenated non-bank blocks."""
        xi = _lin(x, m.P_in) if m.P_in is not None else x
        pre = _lin(xi, m.W_1) + m.b_1
        pre_b = _lin(xi, m.W_1b) + m.b_1b if m.n_linear < pre.shape[-1] else None
        if self.numpy:  # every group's activation in place on its slice of ``pre``
            for op, act, lo, hi in m.groups:
                z = pre[..., lo:hi]
                if op == MUL:
                    np.multiply(z, pre_b[..., lo - m.n_linear : hi - m.n_linear], out=z)
                elif op == DIV:
                    np.divide(z, pre_b[..., lo - m.n_linear : hi - m.n_linear], out=z)
                self._activation_inplace(act, z)
            h = pre
        else:
            parts = []
            for op, act, lo, hi in m.groups:
                z = pre[..., lo:hi]
                if op == MUL:
                    z = z * pre_b[..., lo - m.n_linear : hi - m.n_linear]
                elif op == DIV:
                    z = z / pre_b[..., lo - m.n_linear : hi - m.n_linear]
                parts.append(self._activation(act, z))
            h = self.ops.cat(parts) if len(parts) > 1 else parts[0]
        return _lin(h, m.W_2) if m.P_out is None else _lin(_lin(h, m.W_2), m.P_out)

    def _banks(self, m: StackedBanks, x):
        """``G`` step banks side by side: ``x P_in`` per bank, steps, ``W_2`` per bank
        (as ``G`` matmuls over every token of ``x``, the tokens as columns)."""
        lead = tuple(x.shape[:-1])
        g, _, n_in = m.W_1.shape
        xi = self.ops.permute(_lin(x, m.P_in).reshape(-1, g, n_in), (1, 2, 0))  # (G, n_in, tokens)
        pre = m.W_1 @ xi + m.b_1  # (G, H, tokens)
        h = self.ops.cast((pre > 0) | ((pre == 0) & m.ge), pre)  # step_gt or step_ge
        y = self.ops.permute(m.W_2 @ h, (2, 0, 1)).reshape(*lead, -1)  # (..., G n_out)
        return _lin(y, m.P_out)

    def _mlp_sum(self, mlps: list, x):
        """The sum of a side's MLP outputs (the concatenated blocks, then each bank group)."""
        total = None
        for m in mlps:
            y = self._mlp(m, x) if isinstance(m, StackedMLP) else self._banks(m, x)
            total = y if total is None else total + y
        return total


def _fixed(x, h: StackedHeads, w):
    """``x W`` of the cell side of heads ``h`` (``(1, d_k, N)`` for a shared matrix, as the
    pass uses it, else ``(1, N, H d_k)``), or ``None`` if ``W`` reads the value or sign
    channel (see :meth:`DensePass._fixed_codes`)."""
    w = h.cell_shared if h.cell_shared is not None else w
    if bool((w[:2] != 0).any()):
        return None
    out = _lin(x, w)
    if h.cell_shared is None:
        return out
    kt = out.swapaxes(1, 2)
    return kt.contiguous() if isinstance(kt, torch.Tensor) else np.ascontiguousarray(kt)


def _lin(x, w):
    """``x @ w`` for ``x`` of any rank as one 2-d matmul over the rows of ``x`` (numpy
    would otherwise run one small matmul per leading index)."""
    if x.ndim == 2:
        return x @ w
    return (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[-1])


def _convert(layer: StackedLayer, t) -> StackedLayer:
    """``layer`` with every array converted by ``t`` (a bank's ``ge`` flags as booleans)."""

    def conv(obj):
        if obj is None:
            return None
        values = {}
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if isinstance(v, np.ndarray):
                v = t(v, is_bool=f.name == "ge")
            values[f.name] = v
        return dataclasses.replace(obj, **values)

    mlps = {side: [conv(m) for m in ms] for side, ms in layer.mlps.items()}
    return StackedLayer(layer.name, conv(layer.reads), conv(layer.writes), mlps)
