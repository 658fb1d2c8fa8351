"""``numpy.random.default_rng(seed)`` for many seeds at once.

A vector env's autoreset needs, per resetting sub-environment, the generator
``default_rng(example_seed)`` that a single environment's :class:`Workspace
<algind_gym.tasks.workspace.Workspace>` builds (so that both draw the same examples).
Building one costs about as much as drawing the examples, almost all of it numpy's
``SeedSequence`` hashing. :func:`pcg64_states` computes the same hashing with array
operations for all seeds at once (NumPy's ``SeedSequence`` for an integer entropy and no
spawn key, then ``PCG64``'s seeding from four generated 64-bit words), and
:class:`Reseedable` puts a state into a generator kept per sub-environment. The result is
the generator ``default_rng(seed)`` returns, bit for bit (``tests/envs/test_seeding.py``
compares the states for many seeds).
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


try:  # numba is a dependency; without it the same loop runs (slowly) in Python
    import numba

    _words = numba.njit(cache=True, nogil=True)(_words_py)
except ImportError:  # pragma: no cover
    _words = _words_py


def pcg64_states(seeds: np.ndarray) -> list[tuple[int, int]]:
    """``(state, inc)`` of ``default_rng(s).bit_generator`` for each seed ``s`` in
    ``[0, 2**64)``.

    ``SeedSequence(s)``: the entropy words of ``s`` (32 bits each, low first; a seed below
    2**32 has one, and the pool's missing words hash 0 either way, so the second word 0
    gives the same pool), mixed into a pool of 4 and hashed into 8 output words; PCG64
    takes them as four 64-bit words: the initial state and sequence, 128 bits each.
    """
    seeds = np.asarray(seeds, dtype=np.uint64).reshape(-1)
    with np.errstate(over="ignore"):  # (wrapping is intended; numpy warns without numba)
        w = _words(seeds & np.uint64(0xFFFFFFFF), seeds >> np.uint64(32), _A, _B)
    u64 = (w[:, 0::2] | (w[:, 1::2] << np.uint64(32))).tolist()
    states = []
    for s0, s1, i0, i1 in u64:
        inc = ((((i0 << 64) | i1) << 1) | 1) & _MASK128
        # pcg_setseq_128_srandom_r: state 0, one step (state = inc), add the seed, one step
        state = ((((s0 << 64) | s1) + inc) * _PCG_MULT + inc) & _MASK128
        states.append((state, inc))
    return states


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
