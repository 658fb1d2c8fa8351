"""The three kinds of block of the Transformer CPU, over a residual stream with named channels.

tracr's model (``tracr/craft``), adapted to a CPU: the residual stream is a vector space
whose basis directions have names, and a model is a series of blocks, each one's output
added to the stream. There are two kinds of position and each uses its own channels:

* one **CPU token**, which reads cells, decodes and executes the instruction;
* one **cell token** per cell of the machine state.

A third position, the **sink**, holds a single constant channel; its key gives every hard
attention its "nothing matches" score, and its value is zero (an attention sink).

Blocks:

* :class:`Head` (attention): scores ``(x W_Q) . (x W_K)``, hard attention (the one
  position with the highest score; the sink wins ties), value ``x W_V`` mapped by ``W_O``.
  A *read* head queries from the CPU token and keys on the cells; a *write* head queries
  from every cell and keys on the CPU token. ``W_V W_O`` copies named channels.
* :class:`MLP`: hidden units ``h = act(w . x + b)`` or, for a *bilinear* unit,
  ``h = act((w . x + b) op (w2 . x + b2))`` with ``op`` one of ``mul`` (a gated/GLU
  product) or ``div`` (the divide unit: ``x * (1/y)`` is not ``x / y`` in IEEE arithmetic);
  the output is ``W_2 h``. Activations come from :data:`ACTIVATIONS`.

A :class:`Layer` is one attention sublayer (several heads) and one MLP sublayer (several
MLP blocks side by side, which is one MLP with a block-diagonal weight); either may be
empty. Everything here is data: :mod:`algind_gym.cpu_v2.circuit` builds it and the executors
(:mod:`algind_gym.cpu_v2.model`, :mod:`algind_gym.cpu_v2.kernel`) run it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ACTIVATIONS = ("identity", "step_ge", "step_gt", "saturate", "nonfinite")
"""``identity``; ``step_ge`` = [z >= 0]; ``step_gt`` = [z > 0]; ``saturate`` = z clamped to
the finite range of the dtype (exact on finite z: it keeps an overflow out of later sums,
where ``0 * inf`` would be NaN); ``nonfinite`` = [z is inf or NaN]."""

OPS = ("linear", "mul", "div")
"""How a hidden unit combines its pre-activations (see :class:`MLP`)."""

SIDES = ("cpu", "cell")


@dataclass
class Unit:
    """One hidden unit of an MLP: ``out += W_2[:, unit] * act(pre)``.

    ``pre`` is ``w . x + b`` (``op="linear"``) or ``(w . x + b) op (w2 . x + b2)``.
    """

    out: dict[str, float]
    w: dict[str, float]
    b: float = 0.0
    act: str = "identity"
    op: str = "linear"
    w2: dict[str, float] = field(default_factory=dict)
    b2: float = 0.0


@dataclass
class MLP:
    """An MLP block on one side (``"cpu"`` or ``"cell"``).

    ``bank=True`` marks a *step bank*: every unit is a step of the same pre-activation
    ``w . x`` with its own bias, sorted so that the active units always form a prefix; the
    sparse executors evaluate it by binary search over the thresholds and a prefix sum of
    the columns of ``W_2`` (the same function, computed in O(log H + outputs)).
    """

    name: str
    side: str
    units: list[Unit]
    bank: bool = False
    doc: str = ""


@dataclass
class Head:
    """A hard-attention head (see the module docstring).

    Attributes:
        kind: ``"read"`` (query: CPU token, keys: cells) or ``"write"`` (query: cells,
            keys: the CPU token).
        q: rows of ``W_Q`` by query-side channel (each a vector of ``d_k``).
        k: rows of ``W_K`` by key-side channel.
        k_sink: the sink's key.
        v: ``W_V W_O`` as ``(source channel, destination channel)`` copies.
    """

    name: str
    kind: str
    q: dict[str, np.ndarray]
    k: dict[str, np.ndarray]
    k_sink: np.ndarray
    v: list[tuple[str, str]]


@dataclass
class Layer:
    """One attention sublayer and one MLP sublayer (either may be empty)."""

    name: str
    heads: list[Head] = field(default_factory=list)
    mlps: list[MLP] = field(default_factory=list)


class Stream:
    """Named channels of one side of the residual stream (tracr's ``VectorSpaceWithBasis``)."""

    def __init__(self, side: str) -> None:
        self.side = side
        self.names: list[str] = []
        self.index: dict[str, int] = {}

    def add(self, *names: str) -> None:
        for name in names:
            if name in self.index:
                raise ValueError(f"{self.side} channel {name!r} declared twice")
            self.index[name] = len(self.names)
            self.names.append(name)

    def __getitem__(self, name: str) -> int:
        try:
            return self.index[name]
        except KeyError:
            raise KeyError(f"no {self.side} channel {name!r}") from None

    def __len__(self) -> int:
        return len(self.names)


@dataclass
class Circuit:
    """A compiled model: the two channel spaces, the embedding constants and the layers."""

    cpu: Stream
    cell: Stream
    layers: list[Layer]
    d_k: int
    cell_constants: np.ndarray
    """``(n_cells, len(cell))`` embedding of everything but the value and its sign bit."""
    meta: dict = field(default_factory=dict)

    def check(self) -> None:
        """The assembler's checks: every channel a block reads or writes exists on its side,
        every activation and op is known, every bank is sorted."""
        for layer in self.layers:
            for h in layer.heads:
                qs, ks = (self.cpu, self.cell) if h.kind == "read" else (self.cell, self.cpu)
                for name in h.q:
                    qs[name]
                for name in h.k:
                    ks[name]
                for src, dst in h.v:
                    ks[src]
                    qs[dst]
            for m in layer.mlps:
                space = self.cpu if m.side == "cpu" else self.cell
                for u in m.units:
                    if u.act not in ACTIVATIONS or u.op not in OPS:
                        raise ValueError(f"{m.name}: unknown activation/op {u.act}/{u.op}")
                    for name in (*u.w, *u.w2, *u.out):
                        space[name]
                if m.bank:
                    keys = [(-u.b, u.act == "step_gt") for u in m.units]
                    if keys != sorted(keys) or len({tuple(u.w.items()) for u in m.units}) > 1:
                        raise ValueError(f"bank {m.name}: units must share w and be sorted")

    # ----------------------------------------------------------------- reporting
    @property
    def n_blocks(self) -> int:
        """Attention and MLP sublayers that are not empty."""
        return sum(bool(la.heads) + bool(la.mlps) for la in self.layers)

    @property
    def d_model(self) -> int:
        """Channels of the residual stream: CPU token, cell tokens, the sink's one channel."""
        return len(self.cpu) + len(self.cell) + 1

    def matrices(self) -> dict[str, np.ndarray]:
        """Every weight matrix by name (``layer.head.W_Q``, ``layer.mlp.W_1``, ...)."""
        from algind_gym.cpu_v2.assemble import assemble_head, assemble_mlp

        out = {}
        for layer in self.layers:
            for h in layer.heads:
                for key, value in assemble_head(self, h).items():
                    out[f"{layer.name}.{h.name}.{key}"] = value
            for m in layer.mlps:
                a = assemble_mlp(self, m)
                for key in ("W_1", "b_1", "W_1b", "b_1b", "W_2"):
                    out[f"{layer.name}.{m.name}.{key}"] = a[key]
        return out

    def describe(self) -> str:
        """A report: blocks, heads, d_model, parameters and non-zeros per matrix."""
        mats = self.matrices()
        n_params = sum(m.size for m in mats.values())
        nnz = sum(int(np.count_nonzero(m)) for m in mats.values())
        heads = sum(len(la.heads) for la in self.layers)
        units = sum(len(m.units) for la in self.layers for m in la.mlps)
        lines = [
            f"Transformer CPU for {self.meta.get('n_cells', '?')} cells",
            f"  layers {len(self.layers)} (blocks: {self.n_blocks} = "
            f"{sum(bool(la.heads) for la in self.layers)} attention + "
            f"{sum(bool(la.mlps) for la in self.layers)} MLP), heads {heads}, "
            f"hidden units {units}",
            f"  d_model {self.d_model} (CPU token {len(self.cpu)}, cell tokens "
            f"{len(self.cell)}, sink 1), d_k {self.d_k}",
            f"  parameters {n_params:,} (non-zero {nnz:,})",
        ]
        for layer in self.layers:
            hs = ", ".join(h.name for h in layer.heads) or "-"
            ms = ", ".join(f"{m.name}[{len(m.units)}]" for m in layer.mlps) or "-"
            lines.append(f"  {layer.name}: attention ({len(layer.heads)} heads: {hs}); MLP {ms}")
        lines.append("  matrix                                        shape        non-zeros")
        for name, m in mats.items():
            lines.append(f"    {name:44s} {m.shape!s:12s} {int(np.count_nonzero(m)):>8,}")
        return "\n".join(lines)
