"""What the generated kernel knows, at build time, of the CPU token's channels: constants and
functions of a step bank's count.

:mod:`algind_gym.cpu_v2.codegen` writes a program's operations in order. Along the way,
:class:`ChannelValues` follows each CPU channel's value where the weights alone determine
it: a constant (the zero or one a pass starts from, a layer's folded constants, a constant
unit's add), or a *function of one step bank's count* ``c`` (a channel that was constant
before the bank's prefix-sum row was added to it, or an MLP unit's output added to it whose
inputs are such channels: its value is known for every ``c`` in ``0..n_units``, computed
here with the kernel's operations in the state's dtype). Any other write makes the channel
unknown.

A decoded head whose query reads only such channels (at least one a function of a count
``c``, all of the same bank) selects a cell that is a function of ``c`` alone:
:meth:`ChannelValues.head_targets` computes it for every ``c`` with
:func:`~algind_gym.cpu_v2.sparse.fixed_target` (the decode of the kernel: the query's signs
pick the cell, which is read if its score beats the sink's, in the dtype), so the generated
code looks the cell up by the count instead of decoding the query (the address decoders
feed most decoded heads: operand fields, operand addresses, the opcode fetch). Exact by
construction: the same operations on the same values, done once per count at build time.
"""

from __future__ import annotations

import numpy as np

from algind_gym.cpu_v2.sparse import (
    DIV,
    ID,
    LINEAR,
    MUL,
    NEVER,
    NONFINITE,
    SATURATE,
    STEP_GE,
    STEP_GT,
    SparseHead,
    SparseUnit,
    fixed_targets,
)


class BankFunction:
    """A channel's value as a function of bank count ``count`` (a variable of the generated
    source): ``values[c]`` for each count ``c``."""

    def __init__(self, count: str, values: np.ndarray) -> None:
        self.count, self.values = count, values


class ChannelValues:
    """Known values of the CPU channels in one generated function (see the module docstring).

    ``start(ch)`` is a channel's value before the function writes it: a constant, a
    :class:`BankFunction` or ``None`` (unknown)."""

    def __init__(self, dt: np.dtype, start) -> None:
        self.dt, self.start = np.dtype(dt), start
        self.known: dict[int, object] = {}
        self.written: set[int] = set()

    def value(self, ch: int):
        return self.known.get(ch) if ch in self.written else self.start(ch)

    def forget(self, ch: int) -> None:
        """Channel ``ch`` is written with a value not followed here."""
        self.written.add(ch)
        self.known.pop(ch, None)

    def set(self, ch: int, value) -> None:
        self.written.add(ch)
        self.known[ch] = value

    def add_constant(self, ch: int, v) -> None:
        """``x = x + v`` for a constant ``v`` (before the write: :meth:`value`)."""
        cur = self.value(ch)
        v = self.dt.type(v)
        if isinstance(cur, BankFunction):
            self.set(ch, BankFunction(cur.count, cur.values + v))
        elif cur is not None:
            self.set(ch, self.dt.type(cur) + v)
        else:
            self.forget(ch)

    def add_bank(self, ch: int, count: str, column: np.ndarray) -> None:
        """``x = x + v if v != 0 else x`` with ``v = column[c]`` for bank count ``c``."""
        cur = self.value(ch)
        column = np.asarray(column, self.dt)
        if (isinstance(cur, BankFunction) and cur.count != count) or cur is None:
            self.forget(ch)
            return
        base = cur.values if isinstance(cur, BankFunction) else np.full(len(column), cur, self.dt)
        self.set(ch, BankFunction(count, np.where(column != 0, base + column, base)))

    def add_unit(self, ch: int, w, h) -> None:
        """``x = x + w * h if h != 0 else x`` (``w`` None: ``x + h``) for a unit's output
        ``h`` (:meth:`unit_value`, or ``None``: unknown)."""
        cur = self.value(ch)
        parts = [v for v in (cur, h) if isinstance(v, BankFunction)]
        if cur is None or h is None or len({f.count for f in parts}) > 1:
            self.forget(ch)
            return
        with np.errstate(all="ignore"):
            if not parts:
                hw = h if w is None else self.dt.type(w) * h
                self.set(ch, cur + hw if h != 0 else cur)
                return
            base, hv = self._vector(cur, parts), self._vector(h, parts)
            hw = hv if w is None else self.dt.type(w) * hv
            self.set(ch, BankFunction(parts[0].count, np.where(hv != 0, base + hw, base)))

    def _vector(self, v, parts) -> np.ndarray:
        size = len(parts[0].values)
        return v.values if isinstance(v, BankFunction) else np.full(size, v, self.dt)

    def unit_value(self, u: SparseUnit):
        """The output of unit ``u`` on the CPU token (``act(pre)``, with a product's gate),
        computed with the kernel's operations: a constant, a :class:`BankFunction` or
        ``None`` (unknown)."""
        ins = [self.value(ch) for ch, _ in (*u.w1, *u.w1b)]
        parts = [v for v in ins if isinstance(v, BankFunction)]
        if any(v is None for v in ins) or len({f.count for f in parts}) > 1:
            return None
        size = len(parts[0].values) if parts else 1
        dt = self.dt

        def dot(terms, b):
            acc = np.zeros(size, dt)
            for ch, w in terms:
                v = self.value(ch)
                acc = acc + dt.type(w) * (v.values if isinstance(v, BankFunction) else v)
            return acc + dt.type(b)

        with np.errstate(all="ignore"):
            pre = dot(u.w1, u.b1)
            if u.op == LINEAR:
                v = pre
            elif u.op in (MUL, DIV):
                pb = dot(u.w1b, u.b1b)
                v = pre * pb if u.op == MUL else pre / pb
            else:
                return None
            one, zero = dt.type(1.0), dt.type(0.0)
            if u.act == STEP_GE:
                v = np.where(v >= 0, one, zero)
            elif u.act == STEP_GT:
                v = np.where(v > 0, one, zero)
            elif u.act == SATURATE:
                big = np.finfo(dt).max
                v = np.where(v > big, big, np.where(v < -big, -big, v))
            elif u.act == NONFINITE:
                v = np.where(np.isfinite(v), zero, one)
            elif u.act != ID:
                return None
            if u.op == MUL:  # a closed gate
                v = np.where(pre == 0, zero, v)
        v = np.asarray(v, dt)
        return BankFunction(parts[0].count, v) if parts else dt.type(v[0])

    def head_targets(self, h: SparseHead, n: int, k: int) -> tuple[str, np.ndarray] | None:
        """``(count, targets)``: the cell decoded head ``h`` selects for each bank count (-1:
        none), when its query reads only constants and functions of one bank's count; else
        ``None``."""
        chans = sorted({ch for ch, _, _ in h.q})
        vals = {ch: self.value(ch) for ch in chans}
        funcs = [v for v in vals.values() if isinstance(v, BankFunction)]
        if not funcs or any(v is None for v in vals.values()):
            return None
        if len({f.count for f in funcs}) > 1:
            return None
        xs = np.zeros((len(funcs[0].values), max(chans) + 1), self.dt)  # a row per count
        for ch, v in vals.items():
            xs[:, ch] = v.values if isinstance(v, BankFunction) else v
        t = fixed_targets(h, xs, n, k, self.dt)
        return funcs[0].count, np.where(t == NEVER, -1, t).astype(np.int64)
