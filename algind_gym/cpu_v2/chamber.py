"""The chamber: small named builders that turn functions into blocks (tracr's ``chamber``).

Every builder returns units or a block and says what it computes and why it is exact.
Exactness rules the builders keep (the executors rely on them):

* a pre-activation ``w . x + b`` has at most two non-zero terms that are not small
  integers, so its one rounding does not depend on the summation order, and weights are
  0, +/-1 or small integers, so products with them are exact (and FMA changes nothing);
* a value channel may lose the sign of a zero in a sum (``-0 + 0 = +0``), so every value
  is carried with its sign bit in a second channel (``.v`` / ``.s``), and no unit lets the
  sign of a zero in a ``.v`` channel change anything but a zero;
* a unit whose result can overflow is saturated (``saturate``) before it enters a sum,
  and its overflow is reported by a ``nonfinite`` unit on the same pre-activation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from algind_gym.cpu_v2.blocks import MLP, Head, Unit


def code(j: int, k: int) -> np.ndarray:
    """The +/-1 address code of cell ``j`` (``2 * bit - 1``, least significant bit first)."""
    return 2.0 * ((j >> np.arange(k)) & 1) - 1.0


def code_channels(name: str, k: int) -> list[str]:
    return [f"code.{name}.{i}" for i in range(k)]


# ------------------------------------------------------------------------ units
def const(out: dict[str, float]) -> Unit:
    """A constant: ``act(0 . x + 1) = 1`` times the output weights."""
    return Unit(out=out, w={}, b=1.0)


def linear(out: str, w: dict[str, float], b: float = 0.0, act: str = "identity") -> Unit:
    """``out = act(w . x + b)``."""
    return Unit(out={out: 1.0}, w=w, b=b, act=act)


def step(out: str, w: dict[str, float], b: float = 0.0, strict: bool = False, weight=1.0):
    """``out += weight * [w . x + b >= 0]`` (``> 0`` if ``strict``); exact 0/1."""
    return Unit(out={out: weight}, w=w, b=b, act="step_gt" if strict else "step_ge")


def both(out: str, flags: Iterable[str], negated: Iterable[str] = ()) -> Unit:
    """AND of 0/1 channels (``negated`` ones inverted), one step unit: exact."""
    flags, negated = list(flags), list(negated)
    w = {f: 1.0 for f in flags} | {f: -1.0 for f in negated}
    return step(out, w, b=-float(len(flags)))


def product(out: str, gate: dict[str, float], value: dict[str, float], gate_b=0.0, value_b=0.0):
    """Gated (GLU) unit ``out += (gate . x + gate_b) * (value . x + value_b)``.

    With a 0/1 gate this is a select term: exact, the value being finite.
    """
    return Unit(out={out: 1.0}, w=gate, b=gate_b, op="mul", w2=value, b2=value_b)


def equals_zero(out: str, x: str) -> list[Unit]:
    """``[x == 0]`` as ``[x >= 0] + [-x >= 0] - 1`` (the constant comes from :func:`const`)."""
    return [step(out, {x: 1.0}), step(out, {x: -1.0})]


def select(out: str, choices: Iterable[tuple[str, str | float]]) -> list[Unit]:
    """``out = sum_i gate_i * value_i`` for one-hot gates: exactly one live term.

    A value is a channel name or a constant.
    """
    units = []
    for gate, value in choices:
        if isinstance(value, str):
            units.append(product(out, {gate: 1.0}, {value: 1.0}))
        elif value != 0:
            units.append(product(out, {gate: 1.0}, {}, value_b=float(value)))
    return units


def signed_select(out: str, choices: Iterable[tuple[str, str | None]]) -> list[Unit]:
    """:func:`select` of a value and its sign bit (``None``: a constant 0 / positive)."""
    units = []
    for gate, value in choices:
        if value is not None:
            units += select(f"{out}.v", [(gate, f"{value}.v")])
            units += select(f"{out}.s", [(gate, f"{value}.s")])
    return units


# ------------------------------------------------------------------------ banks
def step_bank(
    name: str,
    w: dict[str, float],
    points: list[tuple[float, bool, dict[str, float]]],
    doc: str = "",
) -> MLP:
    """A piecewise-constant function of ``s = w . x``: ``sum_i delta_i [s >= t_i]``
    (``[s > t_i]`` where ``strict``), points sorted by ``(t, strict)``.

    Each step's output is a small-integer vector ``delta_i``, so ``W_2 h`` is exact in any
    order; the active units always form a prefix (see :class:`~algind_gym.cpu_v2.blocks.MLP`).
    """
    points = sorted(points, key=lambda p: (p[0], p[1]))
    units = [
        Unit(out=dict(delta), w=dict(w), b=-float(t), act="step_gt" if strict else "step_ge")
        for t, strict, delta in points
    ]
    return MLP(name, "cpu", units, bank=True, doc=doc)


def integer_bank(
    name: str, w: dict[str, float], lo: int, hi: int, outputs: Callable[[int], dict[str, float]]
) -> MLP:
    """``outputs(m)`` where ``s = w . x`` equals the integer ``m`` in ``[lo, hi]``, else 0.

    Two steps per integer: ``+outputs(m)`` at ``s >= m`` and ``-outputs(m)`` at ``s > m``.
    This is the address decoder: the outputs are an ``ok`` flag and the +/-1 code of ``m``;
    a fractional, negative or too large address gives ``ok = 0`` and the zero code.
    """
    points = []
    for m in range(lo, hi + 1):
        out = outputs(m)
        points.append((m, False, out))
        points.append((m, True, {k: -v for k, v in out.items()}))
    return step_bank(name, w, points, doc=f"[{' + '.join(w)} == m] for m in [{lo}, {hi}]")


def code_outputs(prefix: str, k: int, ok: str | None = None, offset: int = 0):
    """``outputs`` for :func:`integer_bank`: the code of ``m + offset`` (and an ok flag)."""

    def f(m: int) -> dict[str, float]:
        out = dict(zip(code_channels(prefix, k), code(m + offset, k), strict=True))
        if ok:
            out[ok] = 1.0
        return out

    return f


# ------------------------------------------------------------------------ heads
def read_head(name: str, k: int, query: str | int, dst: str, src=("v", "s")) -> Head:
    """CPU token reads cell ``query`` (a code-channel prefix, or a constant address).

    Score of cell ``j`` is ``code(j) . q = K - 2 hamming``, the sink's is ``K - 1/2``: the
    cell whose code equals the query wins; a zero query (no valid address) reads the sink
    (value 0). Values: ``src`` channels of the cell into ``dst.<src>`` of the CPU token.
    """
    e = np.eye(k + 1)
    if isinstance(query, str):
        q = {c: e[i] for i, c in enumerate(code_channels(query, k))} | {"cpu": e[k]}
    else:
        q = {"cpu": np.append(code(query, k), 1.0)}
    keys = {f"code.{i}": e[i] for i in range(k)}
    v = [(s, f"{dst}.{s}") if len(src) > 1 else (s, dst) for s in src]
    return Head(name, "read", q, keys, (k - 0.5) * e[k], v)


def write_head(name: str, k: int, target: str | int, values: list[tuple[str, str]]) -> Head:
    """Every cell attends to the CPU token's write head ``name`` iff its code equals the
    target's (a code-channel prefix or a constant address), else to the sink (value 0).

    ``values`` are ``(CPU channel, cell channel)`` copies (value, sign bit, gate).
    """
    e = np.eye(k + 1)
    q = {f"code.{i}": e[i] for i in range(k)} | {"one": e[k]}
    if isinstance(target, str):
        keys = {c: e[i] for i, c in enumerate(code_channels(target, k))}
    else:
        keys = {"cpu": np.append(code(target, k), 0.0)}
    return Head(name, "write", q, keys, (k - 0.5) * e[k], values)
