"""``Generator.integers(high)`` of many generators in one compiled call.

At every autoreset, :meth:`SkillCompositionEnv.reset
<algind_gym.envs.composition.SkillCompositionEnv.reset>` draws twice from the
sub-environment's ``np_random``: the length (``integers(len(lengths))``) and the example
seed (``integers(2**63 - 1)``). Two numpy calls per resetting sub-environment cost more
than the draws; :func:`reset_draws` makes both draws of all resetting sub-environments in
one compiled call, on the generators themselves: each generator stays the single source
of its random stream and ends in the state the two numpy calls leave it in.

How: every numpy bit generator offers its raw outputs through its documented ``ctypes``
interface (``bit_generator.ctypes``: the C functions ``next_uint32`` and ``next_uint64``
and the address of the state they advance). The compiled loop calls those functions and
applies what ``Generator.integers`` applies for a scalar ``int64`` draw on ``[0, high)``
(numpy's ``random_bounded_uint64_fill``, unmasked: nothing drawn for ``high == 1``;
Lemire's bounded method on ``next_uint32`` for a range below ``2**32``, which uses the
bit generator's own buffered half words; on ``next_uint64`` with a 128-bit product above).
Since numpy could change that algorithm, :func:`exact` compares both draws with numpy's
once per process (values and the generators' states afterwards, for several seeds and
ranges and with a buffered half word pending); :func:`reset_draws` returns None when it
does not hold, when numba is missing, or for a generator that is not a plain
``numpy.random.Generator`` over one of numpy's bit generators, and the caller draws with
numpy. ``tests/envs/test_integers.py`` compares values and states over thousands of seeds.

Unlike ``Generator.integers``, the loop does not take the bit generators' locks: a vector
env's generators are not shared between threads.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import numpy as np

SEED_HIGH = 2**63 - 1
"""The example seed's draw: ``np_random.integers(SEED_HIGH)``."""

_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF
_BIT_GENERATORS = (
    np.random.PCG64,
    np.random.PCG64DXSM,
    np.random.MT19937,
    np.random.Philox,
    np.random.SFC64,
)

try:  # numba is a dependency; without it reset_draws returns None (numpy draws)
    import numba
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    COMPILED = True
except ImportError:  # pragma: no cover
    COMPILED = False


if COMPILED:

    def _call_codegen(bits: int):
        """Code of ``call(function_address, state_address)``: the C function ``uint{bits}_t
        f(void *state)`` (a bit generator's ``next_uint32``/``next_uint64``) called."""

        def codegen(context, builder, signature, args):
            vp = ir.IntType(8).as_pointer()
            fnty = ir.FunctionType(ir.IntType(bits), [vp])
            f = builder.inttoptr(args[0], fnty.as_pointer())
            return builder.call(f, [builder.inttoptr(args[1], vp)])

        return codegen

    @intrinsic
    def _next32(typingctx, fn, state):
        return types.uint32(types.uint64, types.uint64), _call_codegen(32)

    @intrinsic
    def _next64(typingctx, fn, state):
        return types.uint64(types.uint64, types.uint64), _call_codegen(64)

    @numba.njit(cache=True, nogil=True)
    def _mul_hi64(a, b):
        """The high 64 bits of the 128-bit product of two uint64."""
        m, s32 = np.uint64(_M32), np.uint64(32)
        a0, a1, b0, b1 = a & m, a >> s32, b & m, b >> s32
        lo = a0 * b0
        mid1 = a1 * b0 + (lo >> s32)
        mid2 = a0 * b1 + (mid1 & m)
        return a1 * b1 + (mid1 >> s32) + (mid2 >> s32)

    @numba.njit(cache=True, nogil=True)
    def _integers(f32, f64, state, high):
        """``Generator.integers(high)`` (int64, ``0 < high < 2**63``) on the bit generator
        at ``state``, as numpy's ``random_bounded_uint64_fill`` draws it (unmasked)."""
        rng = np.uint64(high - 1)
        if rng == 0:
            return np.int64(0)
        m32 = np.uint64(_M32)
        if rng <= m32:
            if rng == m32:
                return np.int64(_next32(f32, state))
            excl = rng + np.uint64(1)  # buffered_bounded_lemire_uint32
            m = np.uint64(_next32(f32, state)) * excl
            left = m & m32
            if left < excl:
                threshold = (m32 - rng) % excl
                while left < threshold:
                    m = np.uint64(_next32(f32, state)) * excl
                    left = m & m32
            return np.int64(m >> np.uint64(32))
        excl = rng + np.uint64(1)  # bounded_lemire_uint64 (rng < 2**64 - 1 here)
        x = _next64(f64, state)
        left = x * excl
        if left < excl:
            threshold = (np.uint64(_M64) - rng) % excl
            while left < threshold:
                x = _next64(f64, state)
                left = x * excl
        return np.int64(_mul_hi64(x, excl))

    @numba.njit(cache=True, nogil=True)
    def _draw_pairs(f32, f64, states, first_high, second_high, out):
        """Per generator ``i``: ``out[i] = (integers(first_high), integers(second_high))``."""
        for i in range(states.shape[0]):
            out[i, 0] = _integers(f32[i], f64[i], states[i], first_high)
            out[i, 1] = _integers(f32[i], f64[i], states[i], second_high)


_FUNCTIONS: dict[type, tuple[int, int]] = {}


def _functions(bit_generator) -> tuple[int, int]:
    """The addresses of a bit generator class's ``next_uint32`` and ``next_uint64``."""
    kind = type(bit_generator)
    found = _FUNCTIONS.get(kind)
    if found is None:
        c = bit_generator.ctypes
        found = _FUNCTIONS[kind] = (
            ctypes.cast(c.next_uint32, ctypes.c_void_p).value,
            ctypes.cast(c.next_uint64, ctypes.c_void_p).value,
        )
    return found


class GeneratorTable:
    """The ``ctypes`` addresses (``next_uint32``, ``next_uint64``, state) of ``n`` slots'
    generators, looked up once per generator object: a slot whose generator is replaced
    (a reset with a seed builds a new one) is looked up again."""

    def __init__(self, n: int) -> None:
        self.generators: list = [None] * n
        self.addresses = np.zeros((3, n), dtype=np.uint64)

    def lookup(self, slots: Sequence[int], generators: Sequence) -> bool:
        """Record the generators of ``slots``; False if one cannot be drawn from here (not
        a plain ``numpy.random.Generator`` over one of numpy's bit generators)."""
        known, addresses = self.generators, self.addresses
        for i, g in zip(slots, generators, strict=True):
            if known[i] is g:
                continue
            if type(g) is not np.random.Generator:
                return False
            bg = g.bit_generator
            if type(bg) not in _BIT_GENERATORS:
                return False
            addresses[0, i], addresses[1, i] = _functions(bg)
            addresses[2, i] = bg.ctypes.state_address
            known[i] = g  # (holds the generator: its state stays at that address)
        return True

    def draw(self, slots: np.ndarray, high: int) -> np.ndarray:
        """``(n, 2)`` int64: per slot, ``integers(high)`` then ``integers(SEED_HIGH)`` from
        its generator (recorded by :meth:`lookup`), in one compiled call."""
        a = self.addresses[:, slots]
        out = np.empty((len(slots), 2), dtype=np.int64)
        _draw_pairs(a[0], a[1], a[2], high, SEED_HIGH, out)
        return out


def _pairs(generators: Sequence[np.random.Generator], high: int) -> np.ndarray | None:
    """:meth:`GeneratorTable.draw` of ``generators``; None where it does not apply."""
    table = GeneratorTable(len(generators))
    slots = np.arange(len(generators))
    return table.draw(slots, high) if table.lookup(slots.tolist(), generators) else None


def reset_draws(
    generators: Sequence[np.random.Generator],
    high: int,
    table: GeneratorTable | None = None,
    slots: np.ndarray | None = None,
) -> tuple[np.ndarray, list[int]] | None:
    """Per generator ``g`` of ``generators``, ``int(g.integers(high))`` and then
    ``int(g.integers(2**63 - 1))`` (a length index and an example seed, as
    :meth:`SkillCompositionEnv.reset` draws them), in one compiled call that advances every
    generator as those two calls would; returns the first draws as an int64 array and the
    seeds as a list. None (nothing drawn) where it does not apply: ``high`` outside ``[1,
    2**63)``, no numba, a failed :func:`exact`, or a generator that is not a
    ``numpy.random.Generator`` over one of numpy's bit generators. ``table``, ``slots``:
    a :class:`GeneratorTable` that keeps the generators' addresses between calls, and the
    generators' slots in it (default: looked up for this call only).
    """
    if not (COMPILED and 1 <= high <= SEED_HIGH and exact()):
        return None
    if table is None:
        out = _pairs(generators, high)
    elif table.lookup(slots.tolist(), generators):
        out = table.draw(slots, high)
    else:
        out = None
    if out is None:
        return None
    return out[:, 0], out[:, 1].tolist()


_EXACT: bool | None = None


def exact() -> bool:
    """Whether the compiled draws equal ``Generator.integers``' in this process: checked
    once per process (values and the generators' states afterwards) for several seeds, the
    first draw's ``high`` from 1 to 9, 2**31, 2**32 - 1, 2**32, 2**32 + 1 and 10**12, with
    and without a buffered half word pending (a prior ``integers(5)``)."""
    global _EXACT
    if _EXACT is None:
        _EXACT = COMPILED and _check()
    return _EXACT


def _check() -> bool:
    highs = [*range(1, 10), 2**31, 2**32 - 1, 2**32, 2**32 + 1, 10**12]
    for high in highs:
        for pending in (False, True):
            mine = [np.random.default_rng(s) for s in range(20)]
            numpys = [np.random.default_rng(s) for s in range(20)]
            if pending:
                for g in (*mine, *numpys):
                    g.integers(5)
            got = _pairs(mine, high)
            want = [(int(g.integers(high)), int(g.integers(SEED_HIGH))) for g in numpys]
            if got is None or got.tolist() != [list(w) for w in want]:
                return False
            if any(
                a.bit_generator.state != b.bit_generator.state
                for a, b in zip(mine, numpys, strict=True)
            ):
                return False
    return True
