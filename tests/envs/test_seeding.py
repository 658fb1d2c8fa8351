"""The vector env's batched seeding equals ``numpy.random.default_rng(seed)`` bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from algind_gym.envs import seeding
from algind_gym.envs.seeding import Reseedable, pcg64_states

EDGES = [0, 1, 2**32 - 1, 2**32, 2**32 + 1, 2**63 - 2, 2**64 - 1]


def _seeds() -> list[int]:
    return EDGES + np.random.default_rng(0).integers(2**63 - 1, size=300).tolist()


def _want(seed: int) -> tuple[int, int]:
    s = np.random.default_rng(seed).bit_generator.state["state"]
    return s["state"], s["inc"]


@pytest.mark.parametrize("words", ["compiled", "python"])
def test_pcg64_states_equal_default_rng(monkeypatch, words):
    if words == "python":  # the fallback without numba computes the same words
        monkeypatch.setattr(seeding, "_words", seeding._words_py)
    seeds = _seeds()
    got = pcg64_states(np.array(seeds, dtype=np.uint64))
    assert got == [_want(s) for s in seeds]


def test_reseedable_draws_what_default_rng_draws():
    r = Reseedable()
    for seed in (5, 2**40 + 3, 0):
        g = r.seeded(pcg64_states(np.array([seed], dtype=np.uint64))[0])
        want = np.random.default_rng(seed)
        np.testing.assert_array_equal(g.uniform(-1, 1, (3, 4)), want.uniform(-1, 1, (3, 4)))
        assert g.integers(2**63 - 1) == want.integers(2**63 - 1)
