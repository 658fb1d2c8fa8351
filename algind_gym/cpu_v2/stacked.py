"""Every layer of a compiled circuit as one multi-head attention and a few wide MLPs.

The dense pass (:meth:`~algind_gym.cpu_v2.layers.TorchCircuit.dense`) is the transformer as
written, and this module gives it the shape a transformer library would use: per layer,

* the read heads (queries from the CPU token) are **one** multi-head attention: ``W_Q`` of
  every head side by side ``(D_cpu, H d_k)``, ``W_K`` side by side ``(D_cell, H d_k)``
  (one ``(D_cell, d_k)`` matrix when every head has the same one, as the address-code heads
  do), the sinks' keys ``(H, d_k)`` and ``W_V W_O`` of every head stacked
  ``(H D_cell, D_cpu)``; the write heads (queries from the cell tokens) likewise;
* the MLP blocks of one side that are not step banks are **one** MLP: their hidden units
  concatenated (sorted by op and activation, so each activation is applied to one slice),
  ``W_1`` and ``W_2`` block-structured over the union of the blocks' input and output
  channels;
* the step banks (the address decoders, one to two thousand units each on a 1024-cell
  machine) are **batched** MLPs: banks of similar width are padded to the same width and
  stacked ``(G, n_in, H)`` / ``(G, H, n_out)``, as a multi-head layer stacks its heads.
  One block-diagonal ``W_2`` over all of them would be mostly zeros (1.8 million entries
  in layer 2 of that machine against 0.14 million stacked); a padded unit has a zero
  column of ``W_2``, so it adds nothing.

Inputs and outputs of an MLP are the one-hot projections ``P_in`` (stream -> the block's
input channels) and ``P_out`` (its output channels -> stream), tracr's input and output
spaces; ``P_in W_1`` and ``W_2 P_out`` are the MLP's full matrices, kept factored because
``W_2 P_out`` would be ``hidden x d_model``.

Everything is read off :func:`~algind_gym.cpu_v2.assemble.assemble_head` and
:func:`~algind_gym.cpu_v2.assemble.assemble_mlp`, the matrices every executor uses, so a
change to one compiled weight changes this pass like the others. Exactness: each output
channel of a matmul here has the same non-zero terms as in the per-block pass (the added
terms are products with zero weights), and every hidden value is finite (the circuit
guards non-finite candidates with ``saturate``/``nonfinite`` units), so a zero weight
times a hidden value is a zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from algind_gym.cpu_v2.assemble import assemble_head, assemble_mlp
from algind_gym.cpu_v2.blocks import ACTIVATIONS, OPS, Circuit, Head, Layer

FOLD_MAX = 1 << 15
"""A concatenated MLP's ``P_in W_1`` (``W_2 P_out``) is stored as one matrix when it has at
most this many entries (fewer operations per pass), else factored."""
STEP_GE = ACTIVATIONS.index("step_ge")
LINEAR = OPS.index("linear")


@dataclass
class StackedHeads:
    """All read (or all write) heads of a layer as one multi-head attention (float64).

    ``W_Q`` and ``W_K`` are ``(D_query, H d_k)`` / ``(D_key, H d_k)``; the cell side is one
    ``(D_cell, d_k)`` matrix in ``cell_shared`` when all heads share it; ``W_VO`` is
    ``(H D_key, D_query)`` for read heads and ``(D_key, H D_query)`` for write heads (the
    shapes its matmul needs).
    """

    n_heads: int
    W_Q: np.ndarray
    W_K: np.ndarray
    k_sink: np.ndarray
    W_VO: np.ndarray
    cell_shared: np.ndarray | None


@dataclass
class StackedMLP:
    """Non-bank MLP blocks of one side concatenated (see the module docstring).

    ``groups``: ``(op, act, start, end)`` slices of the hidden units; the bilinear units
    (``op`` mul or div) come last, from ``n_linear`` on, and ``W_1b``/``b_1b`` hold only
    their second pre-activation. ``P_in`` (``P_out``) is ``None`` where it is folded into
    ``W_1`` and ``W_1b`` (``W_2``): see :data:`FOLD_MAX`.
    """

    P_in: np.ndarray | None
    W_1: np.ndarray
    b_1: np.ndarray
    W_1b: np.ndarray
    b_1b: np.ndarray
    W_2: np.ndarray
    P_out: np.ndarray | None
    groups: list[tuple[int, int, int, int]]
    n_linear: int


@dataclass
class StackedBanks:
    """``G`` step banks of similar width, padded to ``H`` units and stacked.

    The matrices act on columns (tokens as columns, ``y = W_2 act(W_1 x + b_1)``):
    ``P_in`` is ``(D, G n_in)``, ``W_1`` ``(G, H, n_in)``, ``b_1`` and ``ge`` ``(G, H, 1)``
    (``ge``: 1 where the unit is ``step_ge``, 0 for ``step_gt``), ``W_2`` ``(G, n_out, H)``
    and ``P_out`` ``(G n_out, D)``. (numpy's ``(1, H) @ (H, n_out)`` with a long ``H`` and
    a short ``n_out`` took 2-6x the time of ``(n_out, H) @ (H, 1)``.)
    """

    P_in: np.ndarray
    W_1: np.ndarray
    b_1: np.ndarray
    ge: np.ndarray
    W_2: np.ndarray
    P_out: np.ndarray


@dataclass
class StackedLayer:
    """One layer: its attention (read and write heads) and its MLPs per side."""

    name: str
    reads: StackedHeads | None = None
    writes: StackedHeads | None = None
    mlps: dict[str, list] = field(default_factory=lambda: {"cpu": [], "cell": []})


def stack_heads(c: Circuit, heads: list[Head]) -> StackedHeads | None:
    """One multi-head attention from ``heads`` (all read or all write heads)."""
    if not heads:
        return None
    kind = heads[0].kind
    mats = [assemble_head(c, h) for h in heads]
    cell_side = "W_K" if kind == "read" else "W_Q"
    cell_w = [m[cell_side] for m in mats]
    shared = all(np.array_equal(cell_w[0], w) for w in cell_w)
    w_q = np.concatenate([m["W_Q"] for m in mats], 1)
    w_k = np.concatenate([m["W_K"] for m in mats], 1)
    vo = [m["W_V"] @ m["W_O"] for m in mats]  # (D_key, D_query) per head
    w_vo = np.concatenate(vo, 0) if kind == "read" else np.concatenate(vo, 1)
    return StackedHeads(
        n_heads=len(heads),
        W_Q=w_q,
        W_K=w_k,
        k_sink=np.stack([m["k_sink"] for m in mats]),
        W_VO=w_vo,
        cell_shared=cell_w[0] if shared else None,
    )


def _one_hot_in(channels: list[np.ndarray], width: int, d: int) -> np.ndarray:
    """``(d, len(channels) * width)``: block ``g`` maps its input channels to its slots."""
    p = np.zeros((d, len(channels) * width))
    for g, chans in enumerate(channels):
        p[chans, g * width + np.arange(len(chans))] = 1.0
    return p


def stack_mlp(c: Circuit, blocks: list, side: str) -> StackedMLP | None:
    """The non-bank blocks of one side of a layer as one MLP."""
    if not blocks:
        return None
    d = len(c.cpu if side == "cpu" else c.cell)
    mats = [assemble_mlp(c, m) for m in blocks]
    ins = sorted({int(i) for a in mats for i in a["in"]})
    outs = sorted({int(o) for a in mats for o in a["out"]})
    pos_in = {ch: i for i, ch in enumerate(ins)}
    pos_out = {ch: i for i, ch in enumerate(outs)}
    units = []  # (op, act, block, unit)
    for b, a in enumerate(mats):
        units += [(int(a["op"][u]), int(a["act"][u]), b, u) for u in range(len(a["op"]))]
    units.sort(key=lambda t: (t[0] != LINEAR, t[0], t[1], t[2], t[3]))
    h = len(units)
    w1, w1b = np.zeros((len(ins), h)), np.zeros((len(ins), h))
    w2 = np.zeros((h, len(outs)))
    b1, b1b = np.zeros(h), np.zeros(h)
    groups: list[tuple[int, int, int, int]] = []
    for i, (op, act, b, u) in enumerate(units):
        a = mats[b]
        rows_in = [pos_in[int(ch)] for ch in a["in"]]
        rows_out = [pos_out[int(ch)] for ch in a["out"]]
        w1[rows_in, i] = a["W_1"][u]
        w1b[rows_in, i] = a["W_1b"][u]
        w2[i, rows_out] = a["W_2"][:, u]
        b1[i], b1b[i] = a["b_1"][u], a["b_1b"][u]
        if groups and groups[-1][:2] == (op, act):
            groups[-1] = (op, act, groups[-1][2], i + 1)
        else:
            groups.append((op, act, i, i + 1))
    n_linear = sum(op == LINEAR for op, *_ in units)
    p_in = _one_hot_in([np.asarray(ins, dtype=np.int64)], len(ins), d)
    p_out = np.zeros((len(outs), d))
    p_out[np.arange(len(outs)), outs] = 1.0
    fold_in, fold_out = d * h <= FOLD_MAX, h * d <= FOLD_MAX
    return StackedMLP(
        P_in=None if fold_in else p_in,
        W_1=p_in @ w1 if fold_in else w1,
        b_1=b1,
        W_1b=(p_in @ w1b if fold_in else w1b)[:, n_linear:],
        b_1b=b1b[n_linear:],
        W_2=w2 @ p_out if fold_out else w2,
        P_out=None if fold_out else p_out,
        groups=groups,
        n_linear=n_linear,
    )


def bank_groups(widths: list[int]) -> list[list[int]]:
    """Group banks (by index) so that padding at most doubles any bank: widest first, a
    bank joins the current group while it is at least half the group's widest.

    Example:
        >>> bank_groups([2042, 1010, 32, 19])
        [[0], [1], [2, 3]]
    """
    order = sorted(range(len(widths)), key=lambda i: -widths[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and 2 * widths[i] >= widths[groups[-1][0]]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def stack_banks(c: Circuit, banks: list, side: str) -> list[StackedBanks]:
    """The step banks of one side of a layer as batched MLPs (see :func:`bank_groups`)."""
    d = len(c.cpu if side == "cpu" else c.cell)
    mats = [assemble_mlp(c, m) for m in banks]
    out = []
    for group in bank_groups([len(a["b_1"]) for a in mats]):
        ms = [mats[i] for i in group]
        g, h = len(ms), max(len(a["b_1"]) for a in ms)
        n_in, n_out = max(len(a["in"]) for a in ms), max(len(a["out"]) for a in ms)
        w1, w2 = np.zeros((g, h, n_in)), np.zeros((g, n_out, h))
        b1, ge = np.zeros((g, h, 1)), np.zeros((g, h, 1))
        p_out = np.zeros((g * n_out, d))
        for j, a in enumerate(ms):
            hj = len(a["b_1"])
            w1[j, :hj, : len(a["in"])] = a["W_1"]
            w2[j, : len(a["out"]), :hj] = a["W_2"]
            b1[j, :hj, 0] = a["b_1"]
            ge[j, :hj, 0] = a["act"] == STEP_GE
            p_out[j * n_out + np.arange(len(a["out"])), a["out"]] = 1.0
        out.append(
            StackedBanks(
                P_in=_one_hot_in([a["in"] for a in ms], n_in, d),
                W_1=w1,
                b_1=b1,
                ge=ge,
                W_2=w2,
                P_out=p_out,
            )
        )
    return out


def stack_layer(c: Circuit, layer: Layer) -> StackedLayer:
    """The stacked form of one layer (see the module docstring)."""
    out = StackedLayer(
        layer.name,
        reads=stack_heads(c, [h for h in layer.heads if h.kind == "read"]),
        writes=stack_heads(c, [h for h in layer.heads if h.kind == "write"]),
    )
    for side in ("cpu", "cell"):
        blocks = [m for m in layer.mlps if m.side == side]
        general = stack_mlp(c, [m for m in blocks if not m.bank], side)
        out.mlps[side] = [general] if general is not None else []
        out.mlps[side] += stack_banks(c, [m for m in blocks if m.bank], side)
    return out


def stack_circuit(c: Circuit) -> list[StackedLayer]:
    """Every layer of ``c`` in stacked form."""
    return [stack_layer(c, layer) for layer in c.layers]
