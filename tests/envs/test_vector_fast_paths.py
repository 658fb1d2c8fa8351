"""The vector env's shortcuts give what the general code gives, bit for bit: scoring all
episode lengths in one compiled pass (:func:`score_envs`) against :func:`score_group` per
length, and ``"state"`` observations that take fresh pointer tables from a per-length table
against reading every machine's cells."""

from __future__ import annotations

import numpy as np
import pytest

import algind_gym  # noqa: F401
from algind_gym.envs import AlgIndVectorEnv, batch


def _steps(env: AlgIndVectorEnv, rng, n: int):
    valid = np.flatnonzero(env.envs[0].action_masks())
    halt = env.envs[0].actions.halt_index
    for _ in range(n):
        acts = rng.choice(valid, size=env.num_envs)
        acts[rng.random(env.num_envs) < 0.1] = halt
        yield env.step(acts)


@pytest.mark.parametrize("task", ["DotProduct", "Sort", "MatVec"])
def test_scoring_all_lengths_at_once_equals_scoring_per_length(task, monkeypatch):
    env = AlgIndVectorEnv(12, task, backend="transformer", n_examples=3, max_calls=4)
    env.reset(seed=3)
    c = env._columns
    ids = np.arange(env.num_envs)
    lengths_seen = set()
    for _ in _steps(env, np.random.default_rng(3), 15):
        lengths_seen.update(env._lengths.tolist())
        env._score(ids)
        fast = (c.scored_potential.copy(), c.scored_success.copy(), c.out_fraction.copy())
        with monkeypatch.context() as m:
            m.setattr(batch, "COMPILED", False)
            env._score(ids)
        slow = (c.scored_potential, c.scored_success, c.out_fraction)
        for a, b in zip(fast, slow, strict=True):
            assert a.tobytes() == b.tobytes()
    assert len(lengths_seen) >= 3


def test_observed_pointer_tables_equal_the_machines_cells():
    """Over random episodes with autoresets; then a machine whose pointer table a program
    wrote (its write range reaches the table) and a sub-environment restored outside the
    step: both are read from their cells."""
    env = AlgIndVectorEnv(6, "DotProduct", backend="transformer", n_examples=2, max_calls=4)
    obs, _ = env.reset(seed=1)
    builder = env.envs[0]._obs

    def plain():
        c = env._columns
        stacked = {**env._episode, "out_fraction": c.out_fraction, "t": c.t}
        stacked["potential"] = c.potential
        return builder.observe_many(env.envs, env._cells, env._lengths, stacked)

    assert env._pointer_tables(builder) is not None
    assert obs["cells"].tobytes() == plain()["cells"].tobytes()
    for out in _steps(env, np.random.default_rng(1), 20):
        assert out[0]["cells"].tobytes() == plain()["cells"].tobytes()
    fresh = env._fresh
    ptr = fresh.pointers_start
    env._cells[3, ptr + 1] = 123.0  # env 1, machine 1: as if a program wrote its table
    fresh.written[3, 1] = max(fresh.written[3, 1], ptr + 1)
    got = env._observe()["cells"]
    assert got.tobytes() == plain()["cells"].tobytes()
    assert 123.0 in got[1]
    env._cells[8, ptr + 2] = 77.0  # env 4, changed outside the tracked writes
    env._columns.untracked[4] = True
    got = env._observe()["cells"]
    assert got.tobytes() == plain()["cells"].tobytes()
    assert 77.0 in got[4]


def test_other_observation_modes_read_the_cells():
    env = AlgIndVectorEnv(2, "VectorAdd", backend="transformer", observation_mode="compact")
    env.reset(seed=0)
    assert env._pointer_tables(env.envs[0]._obs) is None
