"""The compiled blocks as torch tensors, and the two ways torch evaluates them.

:class:`TorchCircuit` holds every matrix of a :class:`~algind_gym.cpu_v2.blocks.Circuit` as
tensors of the model's dtype. Its two forward passes run the same blocks:

* :meth:`TorchCircuit.dense`: the transformer as written (:mod:`algind_gym.cpu_v2.dense`
  over the stacked layers of :mod:`algind_gym.cpu_v2.stacked`), on torch tensors so that
  autograd works; :class:`~algind_gym.cpu_v2.model.TransformerCPU` runs the same pass on
  numpy arrays when no gradient is needed.
* :meth:`TorchCircuit.fused`: the same blocks using their sparsity. A read head's hard
  attention is resolved by decoding its query's +/-1 code (the argmax of the scores is the
  cell whose code has the query's signs); a write head's by decoding its key, and the
  cell MLP runs only on the (at most seven) cells the write heads select, since on every
  other cell its input holds no write and its output is the old value.

Two facts keep the positions that are skipped exact, not approximate: a read head's query
is zero on every token but the CPU token (its channels live there), so elsewhere it reads
the sink, whose value is zero; a write head's key is zero on every token but the CPU
token. The CPU token's MLPs run on the CPU token only, the cell MLP on cell tokens only
(their input channels are zero on the other positions). The tests compare the two passes.

The embedding of a cell is ``(value, sign bit, address code, protected flag, 1, 0 ...)``;
the unembedding reads ``(1 - 2 sign) * |value|``, which restores the sign of a zero that a
sum lost (see :mod:`algind_gym.cpu_v2.chamber`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from algind_gym.cpu_v2.assemble import assemble_head, assemble_mlp
from algind_gym.cpu_v2.blocks import Circuit
from algind_gym.cpu_v2.dense import DensePass

ID, STEP_GE, STEP_GT, SATURATE, NONFINITE = range(5)
LINEAR, MUL, DIV = range(3)


class _Unembed(torch.autograd.Function):
    """``(1 - 2 s) * |v|``; it equals ``v`` up to the sign of a zero, so the gradient is 1."""

    @staticmethod
    def forward(ctx, v: Tensor, s: Tensor) -> Tensor:
        return (1 - 2 * s) * v.abs()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


def activation(kind: int, z: Tensor) -> Tensor:
    """The activations of :data:`~algind_gym.cpu_v2.blocks.ACTIVATIONS` (by index)."""
    if kind == ID:
        return z
    if kind == STEP_GE:
        return (z >= 0).to(z.dtype)
    if kind == STEP_GT:
        return (z > 0).to(z.dtype)
    if kind == SATURATE:
        big = torch.finfo(z.dtype).max
        return z.clamp(-big, big)
    return (~torch.isfinite(z)).to(z.dtype)


class _MLP:
    def __init__(self, a: dict, dt: torch.dtype, space: int, device) -> None:
        def t(x):
            return torch.as_tensor(np.ascontiguousarray(x), dtype=dt, device=device)

        p_in = np.zeros((space, len(a["in"])))
        p_in[a["in"], np.arange(len(a["in"]))] = 1
        p_out = np.zeros((len(a["out"]), space))
        p_out[np.arange(len(a["out"])), a["out"]] = 1
        self.p_in, self.p_out = t(p_in), t(p_out)
        self.w1, self.b1 = t(a["W_1"].T), t(a["b_1"])
        self.w1b, self.b1b = t(a["W_1b"].T), t(a["b_1b"])
        self.w2 = t(a["W_2"].T)
        self.groups = a["groups"]
        # A step bank mixes [z >= 0] and [z > 0] units: one elementwise step whose kind
        # is a per-unit constant (ge_mask), instead of one slice per unit.
        self.ge_mask = None
        if a["bank"]:
            self.ge_mask = torch.as_tensor(a["act"] == STEP_GE, device=device)
        self.bilinear = any(op != LINEAR for op, *_ in self.groups)

    def __call__(self, x: Tensor) -> Tensor:
        xi = x @ self.p_in
        pre = xi @ self.w1 + self.b1
        if self.ge_mask is not None:
            h = ((pre > 0) | ((pre == 0) & self.ge_mask)).to(pre.dtype)
            return (h @ self.w2) @ self.p_out
        pre_b = xi @ self.w1b + self.b1b if self.bilinear else None
        parts = []
        for op, act, lo, hi in self.groups:
            z = pre[..., lo:hi]
            if op == MUL:
                z = z * pre_b[..., lo:hi]
            elif op == DIV:
                z = z / pre_b[..., lo:hi]
            parts.append(activation(act, z))
        h = torch.cat(parts, -1) if len(parts) > 1 else parts[0]
        return (h @ self.w2) @ self.p_out


class TorchCircuit:
    """Tensors of one compiled circuit (see the module docstring)."""

    def __init__(self, circuit: Circuit, dtype: torch.dtype, device="cpu") -> None:
        c = circuit
        self.circuit = c
        self.dtype, self.device = dtype, device
        self.n_cells = c.meta["n_cells"]
        self.k = c.meta["n_bits"]
        self.dc, self.dl = len(c.cpu), len(c.cell)

        def t(x, dt=dtype):
            return torch.as_tensor(np.ascontiguousarray(x), dtype=dt, device=device)

        self._dense: DensePass | None = None  # built on first use

        self.constants = t(c.cell_constants[:, 2:])  # every cell channel but v and s
        cpu0 = np.zeros(self.dc)
        cpu0[c.cpu["cpu"]] = 1
        self.cpu0 = t(cpu0)
        self.powers = t(2.0 ** np.arange(self.k), torch.int64)
        self.layers = []
        for layer in c.layers:
            reads = [assemble_head(c, h) for h in layer.heads if h.kind == "read"]
            writes = [assemble_head(c, h) for h in layer.heads if h.kind == "write"]
            cpu_mlps = [
                _MLP(assemble_mlp(c, m), dtype, self.dc, device)
                for m in layer.mlps
                if m.side == "cpu"
            ]
            cell_mlps = [
                _MLP(assemble_mlp(c, m), dtype, self.dl, device)
                for m in layer.mlps
                if m.side == "cell"
            ]
            entry = {"cpu_mlps": cpu_mlps, "cell_mlps": cell_mlps, "reads": None, "writes": None}
            if reads:
                entry["reads"] = self._heads(reads, t, c.cell_constants)
            if writes:
                entry["writes"] = self._heads(writes, t, c.cell_constants)
            self.layers.append(entry)
        self.new_v, self.new_s = c.cell["new.v"], c.cell["new.s"]

    def _heads(self, heads: list[dict], t, constants: np.ndarray) -> dict:
        side = "W_K" if heads[0]["W_Q"].shape[0] == self.dc else "W_Q"
        out = {
            "W_Q": t(np.stack([h["W_Q"] for h in heads])),  # (H, D_query, d_k)
            "W_K": t(np.stack([h["W_K"] for h in heads])),  # (H, D_key, d_k)
            "k_sink": t(np.stack([h["k_sink"] for h in heads])),  # (H, d_k)
            "W_VO": t(np.stack([h["W_V"] @ h["W_O"] for h in heads])),  # (H, D_key, D_query)
        }
        # Keys of cell tokens (read heads) and queries of cell tokens (write heads) depend
        # only on the constant part of the cell embedding; the fused pass uses them by index.
        cells = np.concatenate([np.zeros((len(constants), 2)), constants[:, 2:]], 1)
        out["cell_side"] = t(np.stack([cells @ h[side] for h in heads]))  # (H, N, d_k)
        return out

    # --------------------------------------------------------------------- embedding
    def embed_cells(self, cells: Tensor) -> Tensor:
        """Cell tokens ``(B, N, D_cell)``: value, sign bit, constants, zero work channels."""
        b = cells.shape[0]
        sign = torch.signbit(cells).to(cells.dtype)
        consts = self.constants.expand(b, -1, -1)
        return torch.cat([cells[..., None], sign[..., None], consts], -1)

    def unembed(self, v: Tensor, s: Tensor) -> Tensor:
        if torch.is_grad_enabled() and v.requires_grad:
            return _Unembed.apply(v, s)
        return (1 - 2 * s) * v.abs()

    # ------------------------------------------------------------------------- dense
    def dense(self, cells: Tensor) -> Tensor:
        """The forward pass as a transformer (:class:`~algind_gym.cpu_v2.dense.DensePass`
        on torch tensors): ``(B, N)``."""
        if self._dense is None:
            self._dense = DensePass(self.circuit, self.dtype, "torch", self.device)
        return self.unembed(*self._dense.stream(cells))

    # ------------------------------------------------------------------------- fused
    def _decode(self, code: Tensor) -> Tensor:
        """Cell index whose +/-1 code has the signs of ``code[..., :K]`` (the argmax)."""
        return ((code[..., : self.k] > 0).to(torch.int64) * self.powers).sum(-1)

    def _tokens(self, cells: Tensor, index: Tensor) -> Tensor:
        """Cell tokens of the cells ``index`` ``(B, H)``: ``(B, H, D_cell)``."""
        v = torch.gather(cells, 1, index)
        consts = self.constants[index]
        return torch.cat([v[..., None], torch.signbit(v).to(v.dtype)[..., None], consts], -1)

    def fused(self, cells: Tensor) -> Tensor:
        """The same blocks with attention resolved by decoding (module docstring)."""
        b, n = cells.shape
        xc = self.cpu0.expand(b, -1)
        out = cells
        for entry in self.layers:
            r = entry["reads"]
            if r is not None:
                q = torch.einsum("bc,hcd->bhd", xc, r["W_Q"])
                j = self._decode(q)
                inside = j < n
                j = j.clamp(max=n - 1)
                key = r["cell_side"][torch.arange(q.shape[1], device=q.device), j]  # (B, H, d_k)
                hit = inside & ((key * q).sum(-1) > (q * r["k_sink"]).sum(-1))
                tokens = self._tokens(cells, j)
                values = torch.einsum("bhc,hcq->bhq", tokens, r["W_VO"])
                xc = xc + (hit.to(xc.dtype)[..., None] * values).sum(1)
            w = entry["writes"]
            if w is not None:
                k = torch.einsum("bc,hcd->bhd", xc, w["W_K"])
                j = self._decode(k)
                inside = j < n
                j = j.clamp(max=n - 1)
                heads = torch.arange(k.shape[1], device=k.device)
                qj = w["cell_side"][heads, j]
                hit = inside & ((qj * k).sum(-1) > (qj * w["k_sink"]).sum(-1))
                values = torch.einsum("bc,hcq->bhq", xc, w["W_VO"])
                # Token of each selected cell: every write head that selects that cell.
                same = ((j[:, :, None] == j[:, None, :]) & hit[:, None, :]).to(xc.dtype)
                tokens = self._tokens(cells, j) + same @ values
                for m in entry["cell_mlps"]:
                    tokens = tokens + m(tokens)
                new = self.unembed(tokens[..., self.new_v], tokens[..., self.new_s])
                out = cells.scatter(1, j, new)
            if entry["cpu_mlps"]:
                xc = xc + sum(m(xc) for m in entry["cpu_mlps"])
        return out
