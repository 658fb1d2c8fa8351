"""``numpy.random.default_rng(seed)`` for many seeds at once.

A vector env's autoreset needs, per resetting sub-environment, the draws of the generator
``default_rng(example_seed)`` that a single environment's :class:`Workspace
<algind_gym.tasks.workspace.Workspace>` builds (so that both draw the same examples).
Building one costs more than drawing the examples, almost all of it numpy's
``SeedSequence`` hashing, and setting a kept generator's state costs a few microseconds
per sub-environment. This module computes both in compiled loops (numba):

* the seeding: NumPy's ``SeedSequence`` for an integer entropy and no spawn key, then
  ``PCG64``'s seeding (``pcg_setseq_128_srandom_r``) from four generated 64-bit words, in
  128-bit arithmetic on 64-bit halves (:func:`pcg64_states`);
* the draws: :func:`uniform_doubles` runs PCG64 itself from those states (the 128-bit LCG
  step, then the XSL-RR output of the new state; ``random``'s double is the output's top
  53 bits times 2**-53) and scales segments as ``Generator.uniform`` does (``low + (high -
  low) * u``), for all seeds in one call. The vector env uses it for the tasks whose
  examples are U(-1, 1) draws (:data:`~algind_gym.tasks.batched.UNIFORM_DRAWS`; their
  uninitialised values follow from the same generator).

Other tasks draw through a ``numpy.random.Generator`` kept per vector env whose PCG64
state :class:`Reseedable` sets from :func:`pcg64_states`. Both give ``default_rng(seed)``'s
numbers bit for bit (``tests/envs/test_seeding.py`` compares states and doubles for
thousands of seeds and sizes). Because a future numpy could change its seeding or its
PCG64 output, :func:`exact` compares both with this process's numpy once per process; the
vector env uses :func:`uniform_doubles` only while it holds, and numpy's own generators
otherwise. Without numba the same loops run in Python (slowly; the env then keeps numpy's
generators as well).
"""

from __future__ import annotations

import numpy as np

_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R = 0xCA01F9DD, 0x4973F715
_POOL = 4
_MASK128 = (1 << 128) - 1
_PCG_MULT = (0x2360ED051FC65DA4 << 64) | 0x4385DF649FCCF645


def _consts(init: int, mult: int, n: int) -> list[int]:
    """The running hash constant of NumPy's ``hashmix``: its value at each of ``n`` calls."""
    out, c = [], init
    for _ in range(n):
        out.append(c)
        c = (c * mult) & 0xFFFFFFFF
    out.append(c)
    return out


# hashmix xors the value with the constant, advances the constant, multiplies by it
_A = np.array(_consts(_INIT_A, _MULT_A, _POOL + _POOL * (_POOL - 1)), dtype=np.uint64)
_B = np.array(_consts(_INIT_B, _MULT_B, 8), dtype=np.uint64)


def _words_py(lo: np.ndarray, hi: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``SeedSequence([lo, hi]).generate_state(8, uint32)`` per seed (uint64 math masked to
    32 bits, so numba and numpy compute the same)."""
    n = lo.shape[0]
    out = np.zeros((n, 8), dtype=np.uint64)
    m = np.uint64(0xFFFFFFFF)
    s16 = np.uint64(16)
    for r in range(n):
        pool = np.zeros(4, dtype=np.uint64)
        k = 0
        for i in range(4):
            v = lo[r] if i == 0 else (hi[r] if i == 1 else np.uint64(0))
            v = ((v ^ a[k]) * a[k + 1]) & m
            pool[i] = v ^ (v >> s16)
            k += 1
        for src in range(4):
            for dst in range(4):
                if src != dst:
                    v = ((pool[src] ^ a[k]) * a[k + 1]) & m
                    v = v ^ (v >> s16)
                    x = (np.uint64(_MIX_L) * pool[dst] - np.uint64(_MIX_R) * v) & m
                    pool[dst] = x ^ (x >> s16)
                    k += 1
        for i in range(8):
            v = ((pool[i % 4] ^ b[i]) * b[i + 1]) & m
            out[r, i] = v ^ (v >> s16)
    return out


_M32 = 0xFFFFFFFF
_MULT_HI, _MULT_LO = _PCG_MULT >> 64, _PCG_MULT & ((1 << 64) - 1)


def _mul_hi64_py(a, b):
    """The high 64 bits of the 128-bit product of two uint64 (32-bit limbs)."""
    m = np.uint64(_M32)
    s32 = np.uint64(32)
    a0, a1, b0, b1 = a & m, a >> s32, b & m, b >> s32
    lo = a0 * b0
    mid1 = a1 * b0 + (lo >> s32)
    mid2 = a0 * b1 + (mid1 & m)
    return a1 * b1 + (mid1 >> s32) + (mid2 >> s32)


def _step_py(sh, sl, ih, il, mh, ml):
    """One PCG64 LCG step: ``state * mult + inc`` mod 2**128, as (high, low) uint64."""
    lo = sl * ml
    hi = _mul_hi64(sl, ml) + sl * mh + sh * ml
    lo2 = lo + il
    carry = np.uint64(1) if lo2 < lo else np.uint64(0)
    return hi + ih + carry, lo2


def _states_py(seeds, a, b, out):
    """Per seed, ``(state_hi, state_lo, inc_hi, inc_lo)`` of ``default_rng(seed)``'s PCG64
    into ``out`` (``(n, 4)`` uint64): :func:`_words_py`, then ``pcg_setseq_128_srandom_r``."""
    w = _words(seeds & np.uint64(_M32), seeds >> np.uint64(32), a, b)
    mh, ml = np.uint64(_MULT_HI), np.uint64(_MULT_LO)
    s32, one = np.uint64(32), np.uint64(1)
    for r in range(seeds.shape[0]):
        s0 = w[r, 0] | (w[r, 1] << s32)  # (the initial state, high word first)
        s1 = w[r, 2] | (w[r, 3] << s32)
        i0 = w[r, 4] | (w[r, 5] << s32)
        i1 = w[r, 6] | (w[r, 7] << s32)
        ih, il = (i0 << one) | (i1 >> np.uint64(63)), (i1 << one) | one  # inc = seq << 1 | 1
        lo = s1 + il  # state 0, one step (state = inc), add the seed, one step
        hi = s0 + ih + (one if lo < s1 else np.uint64(0))
        hi, lo = _step(hi, lo, ih, il, mh, ml)
        out[r, 0], out[r, 1], out[r, 2], out[r, 3] = hi, lo, ih, il


def _doubles_py(states, ends, affine, out):
    """Per row ``r``, the next ``out.shape[1]`` doubles ``u`` of a PCG64 in state
    ``states[r]`` (``random``'s ``next_double``: a step, the XSL-RR output of the new
    state, its top 53 bits / 2**53), each written as ``low + span * u`` with ``(low, span)
    = affine[i]`` for the columns ``ends[i - 1] .. ends[i]`` (``Generator.uniform``'s
    formula; ``(0, 1)`` gives ``u`` itself)."""
    mh, ml = np.uint64(_MULT_HI), np.uint64(_MULT_LO)
    s58, s11, s64 = np.uint64(58), np.uint64(11), np.uint64(64)
    scale = 1.0 / 9007199254740992.0
    for r in range(out.shape[0]):
        sh, sl, ih, il = states[r, 0], states[r, 1], states[r, 2], states[r, 3]
        j = 0
        for seg in range(ends.shape[0]):
            low, span = affine[seg, 0], affine[seg, 1]
            while j < ends[seg]:
                sh, sl = _step(sh, sl, ih, il, mh, ml)
                x, rot = sh ^ sl, sh >> s58
                x = (x >> rot) | (x << ((s64 - rot) & np.uint64(63)))
                out[r, j] = low + span * (np.float64(x >> s11) * scale)
                j += 1


def _draw_py(seeds, a, b, ends, affine, out):
    """:func:`_states_py` and :func:`_doubles_py` in one call."""
    states = np.empty((seeds.shape[0], 4), dtype=np.uint64)
    _states(seeds, a, b, states)
    _doubles(states, ends, affine, out)


try:  # numba is a dependency; without it the same loops run (slowly) in Python
    import numba

    _jit = numba.njit(cache=True, nogil=True, error_model="numpy")
    _words = _jit(_words_py)
    _mul_hi64 = _jit(_mul_hi64_py)
    _step = _jit(_step_py)
    _states = _jit(_states_py)
    _doubles = _jit(_doubles_py)
    _draw = _jit(_draw_py)
    COMPILED = True
except ImportError:  # pragma: no cover
    _words, _mul_hi64, _step = _words_py, _mul_hi64_py, _step_py
    _states, _doubles, _draw = _states_py, _doubles_py, _draw_py
    COMPILED = False


def _state_words(seeds: np.ndarray) -> np.ndarray:
    """``(n, 4)`` uint64: per seed of ``seeds`` (uint64), PCG64's ``state`` and ``inc`` as
    high and low 64-bit words."""
    out = np.empty((seeds.shape[0], 4), dtype=np.uint64)
    with np.errstate(over="ignore"):  # (wrapping is intended; numpy warns without numba)
        _states(seeds, _A, _B, out)
    return out


def pcg64_states(seeds: np.ndarray) -> list[tuple[int, int]]:
    """``(state, inc)`` of ``default_rng(s).bit_generator`` for each seed ``s`` in
    ``[0, 2**64)``.

    ``SeedSequence(s)``: the entropy words of ``s`` (32 bits each, low first; a seed below
    2**32 has one, and the pool's missing words hash 0 either way, so the second word 0
    gives the same pool), mixed into a pool of 4 and hashed into 8 output words; PCG64
    takes them as four 64-bit words: the initial state and sequence, 128 bits each, and
    seeds itself with ``pcg_setseq_128_srandom_r`` (128-bit arithmetic on 64-bit halves,
    compiled with the hashing in one pass).
    """
    seeds = np.asarray(seeds, dtype=np.uint64).reshape(-1)
    return [((sh << 64) | sl, (ih << 64) | il) for sh, sl, ih, il in _state_words(seeds).tolist()]


_UNIT_ENDS = np.zeros(1, dtype=np.int64)
_UNIT = np.array([[0.0, 1.0]])


def uniform_doubles(
    seeds: np.ndarray,
    size: int,
    ends: np.ndarray | None = None,
    affine: np.ndarray | None = None,
) -> np.ndarray:
    """``(n, size)``: row ``i`` is ``default_rng(seeds[i]).random(size)``, bit for bit, for
    all seeds in one compiled pass (:func:`pcg64_states`' seeding, then PCG64's steps and
    XSL-RR output). Use only where :func:`exact` is true.

    ``ends``, ``affine``: write ``low + span * u`` instead of ``u`` (what
    ``Generator.uniform(low, low + span)`` computes from the same double), ``(low, span) =
    affine[i]`` for the columns ``ends[i - 1] .. ends[i]`` (``ends`` increasing, the last
    one ``size``); default: ``u`` itself.
    """
    seeds = np.asarray(seeds, dtype=np.uint64).reshape(-1)
    out = np.empty((seeds.shape[0], size))
    if ends is None:
        ends, affine = _UNIT_ENDS + size, _UNIT
    if COMPILED:
        _draw(seeds, _A, _B, ends, affine, out)
    else:  # pragma: no cover
        with np.errstate(over="ignore"):
            _draw(seeds, _A, _B, ends, affine, out)
    return out


_EXACT: bool | None = None
_CHECK_SEEDS = (0, 1, 12345, 2**32 - 1, 2**32 + 7, 2**63 - 2, 2**64 - 1)


def exact() -> bool:
    """Whether :func:`uniform_doubles` and :func:`pcg64_states` give what this process's
    numpy gives: checked once per process on a few seeds against ``default_rng(seed)``
    (the generator's state; 67 doubles of ``random``, and of ``uniform(-1, 1, 30)`` then
    ``uniform(-1000, 1000, 37)`` through ``affine``, bit for bit). Callers fall back to
    numpy's own generators when it is false (a numpy that changed its seeding, PCG64's
    output or ``uniform``'s formula must not silently change trajectories)."""
    global _EXACT
    if _EXACT is None:
        seeds = np.array(_CHECK_SEEDS, dtype=np.uint64)
        plain = uniform_doubles(seeds, 67)
        ends, affine = np.array([30, 67]), np.array([[-1.0, 2.0], [-1000.0, 2000.0]])
        scaled = uniform_doubles(seeds, 67, ends, affine)
        states = pcg64_states(seeds)
        ok = True
        for i, s in enumerate(_CHECK_SEEDS):
            g = np.random.default_rng(s)
            st = g.bit_generator.state
            ok &= (st["bit_generator"], st["state"]["state"], st["state"]["inc"]) == (
                "PCG64",
                *states[i],
            )
            ok &= g.random(67).tobytes() == plain[i].tobytes()
            g = np.random.default_rng(s)
            want = np.concatenate([g.uniform(-1, 1, 30), g.uniform(-1000, 1000, 37)])
            ok &= want.tobytes() == scaled[i].tobytes()
        _EXACT = bool(ok)
    return _EXACT


class LazyStates:
    """:func:`pcg64_states` of ``seeds``, computed on the first lookup (the vector env's
    groups whose task draws with :func:`uniform_doubles` look up none)."""

    def __init__(self, seeds: list[int]) -> None:
        self.seeds = seeds
        self.states: list[tuple[int, int]] | None = None

    def __getitem__(self, i: int) -> tuple[int, int]:
        if self.states is None:
            self.states = pcg64_states(np.array(self.seeds, dtype=np.uint64))
        return self.states[i]


class Reseedable:
    """A ``numpy.random.Generator`` whose PCG64 state is set from :func:`pcg64_states`."""

    def __init__(self) -> None:
        self.bit_generator = np.random.PCG64(0)
        self.generator = np.random.Generator(self.bit_generator)

    def seeded(self, state: tuple[int, int]) -> np.random.Generator:
        """The generator, in the state ``default_rng(seed)`` starts in (``state`` is that
        seed's entry of :func:`pcg64_states`)."""
        self.bit_generator.state = {
            "bit_generator": "PCG64",
            "state": {"state": state[0], "inc": state[1]},
            "has_uint32": 0,
            "uinteger": 0,
        }
        return self.generator
