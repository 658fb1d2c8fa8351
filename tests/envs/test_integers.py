"""The compiled reset draws equal ``Generator.integers`` bit for bit, generator states included."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import algind_gym  # noqa: F401  (registers the environments)
from algind_gym.envs import integers
from algind_gym.envs.integers import SEED_HIGH, GeneratorTable, reset_draws

HIGHS = [1, 2, 3, 5, 6, 7, 1000, 2**31 + 3, 2**32 - 1, 2**32, 2**32 + 1, 3**39, SEED_HIGH]


def _same_states(mine, want) -> bool:
    def plain(x):
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return x.tolist() if isinstance(x, np.ndarray) else x

    pairs = zip(mine, want, strict=True)
    return all(plain(a.bit_generator.state) == plain(b.bit_generator.state) for a, b in pairs)


def _numpy(gens, high):
    return [(int(g.integers(high)), int(g.integers(SEED_HIGH))) for g in gens]


@pytest.mark.parametrize("high", HIGHS)
def test_reset_draws_equal_generator_integers_and_leave_the_same_states(high):
    seeds = np.random.default_rng(high % 1000).integers(2**63 - 1, size=1500).tolist()
    mine = [np.random.default_rng(s) for s in seeds]
    want = [np.random.default_rng(s) for s in seeds]
    for rnd in range(3):  # later rounds start with a buffered half word pending (or not)
        got = reset_draws(mine, high)
        assert got is not None
        idx, got_seeds = got
        assert list(zip(idx.tolist(), got_seeds, strict=True)) == _numpy(want, high), rnd
        assert _same_states(mine, want)
        if rnd == 1:  # an odd number of 32-bit draws in between
            for g in (*mine, *want):
                g.integers(9)


@pytest.mark.parametrize(
    "kind",
    [np.random.PCG64, np.random.PCG64DXSM, np.random.MT19937, np.random.Philox, np.random.SFC64],
)
def test_every_numpy_bit_generator(kind):
    mine = [np.random.Generator(kind(s)) for s in range(200)]
    want = [np.random.Generator(kind(s)) for s in range(200)]
    table, slots = GeneratorTable(400), np.arange(200) * 2
    for high in (6, 2**32 + 5):
        idx, seeds = reset_draws(mine, high, table, slots)
        assert list(zip(idx.tolist(), seeds, strict=True)) == _numpy(want, high)
    assert _same_states(mine, want)


def test_the_table_follows_replaced_generators():
    table, slots = GeneratorTable(3), np.array([2, 0])
    gens = [np.random.default_rng(1), np.random.default_rng(2)]
    first = reset_draws(gens, 4, table, slots)
    gens = [np.random.default_rng(1), gens[1]]  # slot 2 gets a new generator
    again = reset_draws(gens, 4, table, slots)
    assert again[1][0] == first[1][0]  # the new generator was drawn from, not the old one
    assert table.generators[2] is gens[0]


def test_other_generators_are_not_drawn_from():
    class MyGenerator(np.random.Generator):
        pass

    gens = [np.random.default_rng(1), MyGenerator(np.random.PCG64(2))]
    before = [g.bit_generator.state for g in gens]
    assert reset_draws(gens, 6) is None
    assert reset_draws([np.random.default_rng(1)], 0) is None  # high out of range
    assert [g.bit_generator.state for g in gens] == before  # nothing was drawn


def test_exact_catches_a_different_algorithm(monkeypatch):
    monkeypatch.setattr(integers, "_EXACT", None)
    assert integers.exact() is True
    draw = integers._draw_pairs

    def biased(f32, f64, states, first_high, second_high, out):
        draw(f32, f64, states, first_high, second_high, out)
        out[:, 0] = (out[:, 0] + 1) % first_high

    monkeypatch.setattr(integers, "_EXACT", None)
    monkeypatch.setattr(integers, "_draw_pairs", biased)
    assert integers.exact() is False
    assert reset_draws([np.random.default_rng(1)], 6) is None  # numpy draws instead


@pytest.mark.parametrize("generator", ["mt19937", "subclass"])
def test_vector_env_equals_sync_with_other_generators(generator):
    """Sub-environments whose ``np_random`` is another numpy bit generator (drawn from in
    the compiled call) or a Generator subclass (numpy draws): same trajectories as sync."""

    class Sub(np.random.Generator):
        pass

    def make(i):
        bg = np.random.MT19937(i) if generator == "mt19937" else np.random.PCG64(i)
        return np.random.Generator(bg) if generator == "mt19937" else Sub(bg)

    kw = {"backend": "reference", "n_examples": 2, "max_calls": 2}
    outs = []
    for mode in ("sync", "vector_entry_point"):
        env = gym.make_vec("AlgInd/Sum-v0", num_envs=6, vectorization_mode=mode, **kw)
        env.reset(seed=1)
        subs = [e.unwrapped for e in env.envs] if mode == "sync" else env.unwrapped.envs
        for i, e in enumerate(subs):
            e.np_random = make(i)
        mask = np.flatnonzero(subs[0].action_masks())
        rng, seq, ends = np.random.default_rng(4), [], 0
        for _ in range(8):
            obs, _, term, trunc, info = env.step(rng.choice(mask, size=6))
            seq.append((obs, info["length"].copy()))
            ends += int((term | trunc).sum())
        assert ends >= 12
        outs.append(seq)
    for (a, la), (b, lb) in zip(*outs, strict=True):
        np.testing.assert_array_equal(la, lb)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
