"""The batched vector environment: one CPU call per step, next-step autoreset."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import algind_gym  # noqa: F401
from algind_gym.envs import AlgIndVectorEnv


def test_metadata_declares_next_step_autoreset():
    env = gym.make_vec("AlgInd/VectorAdd-v0", num_envs=2, backend="reference")
    assert env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP


def test_autoreset_on_the_step_after_an_episode_ends():
    env = AlgIndVectorEnv(2, "VectorAdd", backend="reference", n_examples=2)
    env.reset(seed=0)
    solve = env.envs[0].encode("zipmap", ["&s_add", "x", "y", "out"])
    halt = env.envs[0].actions.halt_index
    _, r, term, trunc, info = env.step(np.array([solve, halt]))
    assert term.tolist() == [True, True] and not trunc.any() and r[0] == pytest.approx(0.99)
    assert info["success"].tolist() == [True, False]
    _obs, r, term, _trunc, info = env.step(np.array([solve, solve]))  # both are reset instead
    assert r.tolist() == [0.0, 0.0] and not term.any() and info["calls"].tolist() == [0, 0]
    _, r, term, _, _ = env.step(np.array([solve, solve]))
    assert term.all()


def test_all_machines_live_in_one_batch():
    env = AlgIndVectorEnv(4, "DotProduct", backend="reference", n_examples=3)
    env.reset(seed=0)
    machines = env.machines
    assert machines.batch == 12
    # each sub-environment's state is a view of the shared rows
    assert np.shares_memory(env.envs[2].state.cells, machines.cells)
    np.testing.assert_array_equal(env.envs[2].state.cells, machines.cells[6:9])


def test_lengths_beyond_the_shared_layout_get_a_clear_error():
    env = AlgIndVectorEnv(2, "VectorAdd", backend="reference", n_examples=2, max_length=8)
    with pytest.raises(ValueError, match="max_length >= 64"):
        env.reset(seed=0, options={"length": 64})
    env = AlgIndVectorEnv(2, "VectorAdd", backend="reference", n_examples=2, max_length=64)
    env.reset(seed=0, options={"length": 64})
