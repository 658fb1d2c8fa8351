"""Abstract values of the CPU token's channels for :mod:`algind_gym.cpu_v2.specialise`.

A channel's abstract value is ``(lo, hi, c)``: ``c`` is its exact value (a scalar of the
state's dtype) when it is a constant, else ``None`` and the value lies in ``[lo, hi]``.

Constants are computed with the kernel's operations, in its order, in the state's dtype
(:func:`unit_output` mirrors the unit loop of :mod:`algind_gym.cpu_v2.kernel`), so a folded
constant is bit-identical to what the kernel would compute. Intervals are kept only when
both bounds are integers of magnitude below ``2**20`` (otherwise ``[-inf, inf]``): such
bounds are exact in float32 and float64, and rounding is monotone, so the rounded sum of
terms within their bounds stays within the rounded sum of the bounds. A step unit is
decided by an interval only then.

A value that is not a constant may carry a fourth entry, a tag: ``"bool"`` (a step unit's
output: exactly 0 or 1) or ``("cell", j, part)``: the value of cell ``j`` (``part`` 0, equal
up to the sign of a zero) or its sign bit (``part`` 1, equal). A read head copying cell
``j`` sets it; it survives an add into a channel that is the constant 0, a ``W_2`` weight
of 1 and a unit that copies one input (``1 * x + 0``, or a product whose gate is the
constant 1), none of which changes a value but for the sign of a zero.
"""

from __future__ import annotations

import math

import numpy as np

from algind_gym.cpu_v2.sparse import (
    DIV,
    ID,
    LINEAR,
    MUL,
    NONFINITE,
    SATURATE,
    STEP_GE,
    STEP_GT,
    SparseBlock,
    SparseUnit,
)

ZERO = object()
"""A unit whose output is exactly zero (it adds nothing, like the kernel's skipped units)."""
_INF = math.inf
_SMALL = 2.0**20
UNKNOWN = (-_INF, _INF, None)


def tag(a) -> object:
    """The tag of abstract value ``a`` (``None`` if it has none)."""
    return a[3] if a is not ZERO and len(a) > 3 else None


def interval(lo: float, hi: float) -> tuple:
    ok = all(math.isfinite(b) and b == math.floor(b) and abs(b) < _SMALL for b in (lo, hi))
    return (lo, hi, None) if ok else UNKNOWN


def _mul_bounds(a: tuple, b: tuple) -> tuple:
    if a[:2] == (0.0, 0.0) or b[:2] == (0.0, 0.0):
        return interval(0.0, 0.0)
    if not all(map(math.isfinite, (*a[:2], *b[:2]))):
        return UNKNOWN
    ps = [p * q for p in a[:2] for q in b[:2]]
    return interval(min(ps), max(ps))


class Stream:
    """The abstract CPU token stream (one abstract value per channel)."""

    def __init__(self, n: int, dt) -> None:
        self.dt = np.dtype(dt)
        self.v = [self.const(0.0) for _ in range(n)]

    def const(self, value) -> tuple:
        c = self.dt.type(value)
        return (float(c), float(c), c)

    def set_const(self, ch: int, value) -> None:
        self.v[ch] = self.const(value)

    def known(self, ch: int) -> bool:
        return self.v[ch][2] is not None

    def values(self) -> np.ndarray:
        """The constant channels' values (others 0): for a query that reads only constants."""
        return np.asarray([a[2] if a[2] is not None else 0.0 for a in self.v], self.dt)

    @staticmethod
    def is_const(a) -> bool:
        return a is not ZERO and a[2] is not None

    def scale_const(self, a: tuple, w: float):
        return self.dt.type(w) * a[2]

    def scale(self, a: tuple, w: float) -> tuple:
        """``w * a`` (a ``W_2`` entry times a unit's output)."""
        if a[2] is not None:
            return self.const(self.scale_const(a, w))
        if w == 1.0 and tag(a) is not None:
            return a
        return _mul_bounds((w, w, None), a)

    def add(self, ch: int, a: tuple) -> None:
        """``x[ch] += a`` (the kernel's pending add)."""
        b = self.v[ch]
        if a[2] is None and tag(a) is not None and b[2] is not None and b[2] == 0:
            self.v[ch] = a  # 0 + a: a, up to the sign of a zero
        elif a[2] is not None and b[2] is not None:
            self.v[ch] = self.const(b[2] + a[2])
        elif math.isfinite(a[0] + a[1] + b[0] + b[1]):
            self.v[ch] = interval(a[0] + b[0], a[1] + b[1])
        else:
            self.v[ch] = UNKNOWN

    def head_value(self, consts: np.ndarray, src: int, j: int) -> tuple:
        """What a read head copies from cell ``j`` (``j < 0``: an unknown cell or the sink)."""
        if src == 0:  # the cell's value
            return UNKNOWN if j < 0 else (*UNKNOWN, ("cell", j, 0))
        if src == 1:  # its sign bit
            return (0.0, 1.0, None, "bool" if j < 0 else ("cell", j, 1))
        if j >= 0:
            return self.const(consts[j, src])
        col = consts[:, src]
        return interval(min(0.0, float(col.min())), max(0.0, float(col.max())))

    def dot(self, terms: tuple, b: float) -> tuple:
        """``sum_t w_t x[ch_t] + b`` in the kernel's order (a pre-activation)."""
        dt = self.dt
        if all(self.v[ch][2] is not None for ch, _ in terms):
            s = dt.type(0.0)
            for ch, w in terms:
                s += dt.type(w) * self.v[ch][2]
            return self.const(s + dt.type(b))
        lo = hi = b
        for ch, w in terms:
            a = _mul_bounds((w, w, None), self.v[ch])
            lo, hi = lo + a[0], hi + a[1]
        return interval(lo, hi) if math.isfinite(lo + hi) else UNKNOWN


def unit_output(u: SparseUnit, x: Stream, dt) -> object:
    """A hidden unit's output ``act(pre)``: :data:`ZERO`, a constant or an interval."""
    copied = _copied(u, x)
    if copied is not None:
        return ZERO if copied[:2] == (0.0, 0.0) else copied
    pre = x.dot(u.w1, u.b1)
    if u.op != LINEAR:
        if u.op == MUL and pre[:2] == (0.0, 0.0):
            return ZERO  # a closed gate (the kernel skips it)
        pb = x.dot(u.w1b, u.b1b)
        if pre[2] is not None and pb[2] is not None:
            with np.errstate(all="ignore"):
                pre = x.const(pre[2] * pb[2] if u.op == MUL else pre[2] / pb[2])
        elif u.op == MUL:
            pre = _mul_bounds(pre, pb)
        else:
            assert u.op == DIV
            pre = UNKNOWN
    lo, hi, c = pre
    one = x.const(1.0)
    if u.act == ID:
        out = pre
    elif u.act in (STEP_GE, STEP_GT):
        strict = u.act == STEP_GT
        if (lo > 0) if strict else (lo >= 0):
            return one
        if (hi <= 0) if strict else (hi < 0):
            return ZERO
        out = (0.0, 1.0, None, "bool")
    elif u.act == SATURATE:
        if c is not None:
            big = np.finfo(x.dt).max
            out = x.const(big if c > big else (-big if c < -big else c))
        else:
            out = pre
    else:
        assert u.act == NONFINITE
        if c is not None:
            return ZERO if math.isfinite(c) else one
        if math.isfinite(lo) and math.isfinite(hi):
            return ZERO
        out = (0.0, 1.0, None)
    if out[:2] == (0.0, 0.0):
        return ZERO
    return out


def _copied(u: SparseUnit, x: Stream):
    """The tagged input a unit copies (``act(1 * x + 0)`` with ``act`` the identity or the
    saturation, which keeps a finite value; or a product whose gate is the constant 1), or
    ``None``."""
    if u.act not in (ID, SATURATE):
        return None
    if u.op == LINEAR:
        terms, b = u.w1, u.b1
    elif u.op == MUL and x.dot(u.w1, u.b1)[2] == 1.0:
        terms, b = u.w1b, u.b1b
    else:
        return None
    if len(terms) != 1 or terms[0][1] != 1.0 or b != 0.0:
        return None
    a = x.v[terms[0][0]]
    return a if a[2] is None and tag(a) is not None else None


def bank_output(b: SparseBlock, x: Stream, dt) -> tuple[bool, list]:
    """A step bank's adds: ``(True, [(channel, value)])`` when its input is constant (the
    kernel's binary search, done here), else ``(False, [(channel, interval)])``."""
    s = x.dot(b.bank_w, 0.0)
    width = len(b.outs)
    if s[2] is not None:
        zero = x.dt.type(0.0)
        lo, hi = 0, len(b.units)
        while lo < hi:
            mid = (lo + hi) // 2
            z = s[2] + x.dt.type(b.units[mid].b1)
            if z > zero or (z == zero and b.units[mid].act == STEP_GE):
                lo = mid + 1
            else:
                hi = mid
        row = b.prefix[lo] if width else np.zeros(0)
        vals = [x.dt.type(v) for v in row]
        return True, [(int(ch), float(v)) for ch, v in zip(b.outs, vals, strict=True) if v != 0]
    lo_b, hi_b = b.prefix.min(axis=0), b.prefix.max(axis=0)
    return False, [
        (int(ch), interval(float(lo_b[t]), float(hi_b[t]))) for t, ch in enumerate(b.outs)
    ]
