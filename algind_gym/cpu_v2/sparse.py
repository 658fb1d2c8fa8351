"""The compiled matrices of a :class:`~algind_gym.cpu_v2.blocks.Circuit` in sparse form.

:func:`sparse_layers` reads every matrix (through :mod:`algind_gym.cpu_v2.assemble`, the
functions that build the dense matrices) into small records, one per head and per MLP block,
in channel coordinates of the residual stream:

* :class:`SparseHead`: the non-zeros of the CPU-side matrix (``W_Q`` of a read head,
  ``W_K`` of a write head) as ``(channel, component, weight)``, the ``W_V W_O`` copies, the
  sink's key and the cell tokens' keys (read) or queries (write), a constant table;
* :class:`SparseBlock`: per hidden unit its row of ``W_1`` (and ``W_1b``), biases, op,
  activation and column of ``W_2``; a step bank adds its input row and the prefix sums of
  its ``W_2``.

These records are what :mod:`algind_gym.cpu_v2.specialise` partially evaluates and what
:mod:`algind_gym.cpu_v2.kernel` flattens into the arrays of its loop. Every weight in them
is read off a compiled matrix: change a matrix entry and they change with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from algind_gym.cpu_v2.assemble import assemble_head, assemble_mlp, sparse_mlp
from algind_gym.cpu_v2.blocks import Circuit

ID, STEP_GE, STEP_GT, SATURATE, NONFINITE = range(5)
"""Activation codes (the order of :data:`~algind_gym.cpu_v2.blocks.ACTIVATIONS`)."""
LINEAR, MUL, DIV = range(3)
"""Op codes (the order of :data:`~algind_gym.cpu_v2.blocks.OPS`)."""
DECODE, NEVER = -1, -2
"""``SparseHead.fixed`` of a head whose query depends on the stream (decoded per pass) and
of a constant head that never beats the sink; a constant head's entry is the cell it selects."""


@dataclass(eq=False)
class SparseHead:
    """One hard-attention head (see the module docstring)."""

    name: str
    kind: str
    q: list[tuple[int, int, float]]
    v: list[tuple[int, int]]
    sink: np.ndarray
    table: np.ndarray
    fixed: int = DECODE
    cell: list | None = None
    """A write head's cell MLP for a cell that it alone selects (``None``: the layer's)."""
    keeps_cell: bool = False
    """Whether a cell that this write head alone selects keeps its value (see
    :mod:`algind_gym.cpu_v2.specialise`): the kernel then skips the cell's MLP."""


@dataclass(eq=False)
class SparseUnit:
    """One hidden unit: ``W_2[:, u] * act(pre)`` with ``pre = w1 . x + b1`` (op ``linear``)
    or ``(w1 . x + b1) op (w1b . x + b1b)``; ``w1``, ``w1b``, ``w2`` are (channel, weight)."""

    op: int
    act: int
    b1: float
    b1b: float
    w1: tuple[tuple[int, float], ...]
    w1b: tuple[tuple[int, float], ...]
    w2: tuple[tuple[int, float], ...]


@dataclass(eq=False)
class SparseBlock:
    """One MLP block; a bank also has its input row, output channels and prefix sums."""

    name: str
    side: str
    units: list[SparseUnit]
    bank: bool = False
    bank_w: tuple[tuple[int, float], ...] = ()
    outs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    prefix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))


@dataclass
class SparseLayer:
    """A layer's read heads, write heads, CPU-token MLP blocks and cell-token MLP blocks."""

    name: str
    read: list[SparseHead] = field(default_factory=list)
    write: list[SparseHead] = field(default_factory=list)
    cpu: list[SparseBlock] = field(default_factory=list)
    cell: list[SparseBlock] = field(default_factory=list)
    init: list[tuple[int, float]] = field(default_factory=list)
    """``(channel, value)``: constants the kernel writes into the CPU token's stream when
    it reaches this layer (see :mod:`algind_gym.cpu_v2.specialise`)."""


def fixed_target(h: SparseHead, x: np.ndarray, n: int, k: int, dt) -> int:
    """The cell head ``h`` selects when the CPU token's stream is ``x`` (the kernel's
    arithmetic in dtype ``dt``), or :data:`NEVER`."""
    dt = np.dtype(dt)
    q = np.zeros(len(h.sink), dt)
    for ch, comp, w in h.q:
        q[comp] += dt.type(w) * x[ch]
    j = sum(1 << b for b in range(k) if q[b] > 0)
    if j >= n:
        return NEVER
    score, s_sink = dt.type(0.0), dt.type(0.0)
    for b in range(len(h.sink)):
        score += dt.type(h.table[j, b]) * q[b]
        other = q[b] if h.kind == "read" else dt.type(h.table[j, b])
        s_sink += dt.type(h.sink[b]) * other
    return int(j) if score > s_sink else NEVER


def fixed_targets(h: SparseHead, xs: np.ndarray, n: int, k: int, dt) -> np.ndarray:
    """:func:`fixed_target` for each row of ``xs`` at once: the same operations in the same
    order, element-wise over the rows in dtype ``dt`` (so the same bits), without a Python
    call per row."""
    dt = np.dtype(dt)
    q = np.zeros((len(xs), len(h.sink)), dt)
    for ch, comp, w in h.q:
        q[:, comp] += dt.type(w) * xs[:, ch]
    j = ((q[:, :k] > 0).astype(np.int64) << np.arange(k, dtype=np.int64)).sum(axis=1)
    inside = j < n
    rows = np.where(inside, j, 0)
    score, s_sink = np.zeros(len(xs), dt), np.zeros(len(xs), dt)
    for b in range(len(h.sink)):
        key = h.table[rows, b].astype(dt)
        score += key * q[:, b]
        s_sink += dt.type(h.sink[b]) * (q[:, b] if h.kind == "read" else key)
    return np.where(inside & (score > s_sink), j, NEVER)


def _pairs(ptr: np.ndarray, cols: np.ndarray, vals: np.ndarray, u: int):
    return tuple((int(cols[t]), float(vals[t])) for t in range(ptr[u], ptr[u + 1]))


def sparse_layers(c: Circuit, dtype) -> list[SparseLayer]:
    """Every head and MLP block of ``c`` in sparse form, layer by layer."""
    dt = np.dtype(dtype)
    n, k, cpu_ch = c.meta["n_cells"], c.meta["n_bits"], c.cpu["cpu"]
    one_hot = np.zeros(len(c.cpu), dt)
    one_hot[cpu_ch] = 1.0
    out = []
    for layer in c.layers:
        sl = SparseLayer(layer.name)
        for h in layer.heads:
            a = assemble_head(c, h)
            side, cell_side = ("W_Q", "W_K") if h.kind == "read" else ("W_K", "W_Q")
            rows, comps = np.nonzero(a[side])
            src, dst = np.nonzero(a["W_V"] @ a["W_O"])
            head = SparseHead(
                h.name,
                h.kind,
                [(int(r), int(q), float(a[side][r, q])) for r, q in zip(rows, comps, strict=True)],
                [(int(s), int(d)) for s, d in zip(src, dst, strict=True)],
                a["k_sink"],
                c.cell_constants @ a[cell_side],  # cell keys / queries: constants
            )
            # A head whose CPU-side matrix reads only the constant channel has a constant
            # query (register reads) or key (register writes): resolved here, once.
            if len(rows) and np.all(rows == cpu_ch):
                head.fixed = fixed_target(head, one_hot, n, k, dt)
            (sl.read if h.kind == "read" else sl.write).append(head)
        for m in layer.mlps:
            s = sparse_mlp(assemble_mlp(c, m))
            units = [
                SparseUnit(
                    int(s["op"][u]),
                    int(s["act"][u]),
                    float(s["b_1"][u]),
                    float(s["b_1b"][u]),
                    _pairs(*s["w1"], u),
                    _pairs(*s["w1b"], u),
                    _pairs(*s["w2"], u),
                )
                for u in range(len(s["op"]))
            ]
            blk = SparseBlock(m.name, m.side, units, bool(m.bank))
            if m.bank:
                cols, vals = s["bank_w"]
                blk.bank_w = tuple((int(a), float(b)) for a, b in zip(cols, vals, strict=True))
                blk.outs, blk.prefix = np.asarray(s["out"], np.int64), s["prefix"]
            (sl.cpu if m.side == "cpu" else sl.cell).append(blk)
        out.append(sl)
    return out
