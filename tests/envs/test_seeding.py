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


def _python(monkeypatch) -> None:
    """Run the uncompiled loops (what a process without numba runs)."""
    for name in ("_words", "_mul_hi64", "_step", "_states", "_doubles", "_draw"):
        monkeypatch.setattr(seeding, name, getattr(seeding, f"{name}_py"))
    monkeypatch.setattr(seeding, "COMPILED", False)


@pytest.mark.parametrize("words", ["compiled", "python"])
def test_pcg64_states_equal_default_rng(monkeypatch, words):
    if words == "python":  # the fallback without numba computes the same words
        _python(monkeypatch)
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


def test_uniform_doubles_equal_default_rng_random_bit_for_bit():
    """Thousands of seeds (edges included) and sizes: every double equals numpy's."""
    rng = np.random.default_rng(7)
    seeds = (
        EDGES + rng.integers(2**63 - 1, size=3000).tolist() + rng.integers(2**32, size=300).tolist()
    )
    sizes = [1, 2, 3, 17, 64, 281, 1000]
    for size in sizes:
        got = seeding.uniform_doubles(np.array(seeds, dtype=np.uint64), size)
        assert got.shape == (len(seeds), size)
        for i, s in enumerate(seeds if size <= 64 else seeds[:400]):
            assert got[i].tobytes() == np.random.default_rng(s).random(size).tobytes(), (s, size)
    assert seeding.uniform_doubles(np.zeros(0, dtype=np.uint64), 5).shape == (0, 5)


def test_uniform_doubles_scaled_equal_generator_uniform():
    """``affine`` segments give ``Generator.uniform``'s values of the same doubles."""
    seeds = EDGES + np.random.default_rng(8).integers(2**63 - 1, size=500).tolist()
    ends, affine = np.array([3, 10, 12]), np.array([[-1.0, 2.0], [-1e3, 2e3], [0.0, 1.0]])
    got = seeding.uniform_doubles(np.array(seeds, dtype=np.uint64), 12, ends, affine)
    for i, s in enumerate(seeds):
        g = np.random.default_rng(s)
        want = [g.uniform(-1, 1, 3), g.uniform(-1000, 1000, 7), g.random(2)]
        assert np.concatenate(want).tobytes() == got[i].tobytes(), s


def test_uniform_doubles_python_loops_agree(monkeypatch):
    seeds = [*EDGES, 12345]
    want = seeding.uniform_doubles(np.array(seeds, dtype=np.uint64), 9)
    _python(monkeypatch)
    got = seeding.uniform_doubles(np.array(seeds, dtype=np.uint64), 9)
    assert got.tobytes() == want.tobytes()


def test_exact_is_checked_against_numpy_and_catches_a_difference(monkeypatch):
    monkeypatch.setattr(seeding, "_EXACT", None)
    assert seeding.exact() is True
    # a numpy whose PCG64 output differed: the check must say so (and callers fall back)
    wrong = seeding._draw

    def off_by_one_ulp(seeds, a, b, ends, affine, out):
        wrong(seeds, a, b, ends, affine, out)
        out[:, -1] = np.nextafter(out[:, -1], 2.0)

    monkeypatch.setattr(seeding, "_EXACT", None)
    monkeypatch.setattr(seeding, "_draw", off_by_one_ulp)
    assert seeding.exact() is False

    def fused(seeds, a, b, ends, affine, out):  # e.g. a compiler that fused low + span * u
        wrong(seeds, a, b, ends, affine, out)
        if ends.size > 1:
            out[:, ends[0] :] = np.nextafter(out[:, ends[0] :], 0.0)

    monkeypatch.setattr(seeding, "_EXACT", None)
    monkeypatch.setattr(seeding, "_draw", fused)
    assert seeding.exact() is False
    monkeypatch.setattr(seeding, "_EXACT", None)
    monkeypatch.setattr(seeding, "_draw", wrong)
    monkeypatch.setattr(seeding, "_states", lambda seeds, a, b, out: out.fill(0))
    assert seeding.exact() is False


def test_vector_env_falls_back_to_numpy_generators_with_the_same_trajectories(monkeypatch):
    """With the self-check failing (:func:`seeding.exact` false), autoresets draw through
    numpy's generators again: observations equal ``SyncVectorEnv``'s through autoresets."""
    import gymnasium as gym

    import algind_gym  # noqa: F401
    from algind_gym.envs import vector

    monkeypatch.setattr(seeding, "_EXACT", False)

    def unreachable(seeds, size):
        raise AssertionError("the compiled doubles were used although exact() is false")

    monkeypatch.setattr(vector, "uniform_doubles", unreachable)
    kw = {"backend": "reference", "n_examples": 2, "max_calls": 2}
    outs = []
    for mode in ("sync", "vector_entry_point"):
        env = gym.make_vec("AlgInd/VectorAdd-v0", num_envs=20, vectorization_mode=mode, **kw)
        obs, _ = env.reset(seed=5)
        seq, rng = [obs], np.random.default_rng(2)
        mask = np.flatnonzero(env.unwrapped.envs[0].action_masks()) if mode != "sync" else None
        if mask is None:
            mask = np.flatnonzero(env.envs[0].unwrapped.action_masks())
        ends = 0
        for _ in range(6):
            obs, _, term, trunc, _ = env.step(rng.choice(mask, size=20))
            seq.append(obs)
            ends += int((term | trunc).sum())
        assert ends >= 20  # max_calls=2: at least one autoreset per env
        outs.append(seq)
    for a, b in zip(*outs, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
