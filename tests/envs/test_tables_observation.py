"""The task-agnostic ``"tables"`` observation: one shape for every task, exact masks."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest

import algind_gym  # noqa: F401
from algind_gym.envs import SkillCompositionEnv
from algind_gym.envs.tables import symlog
from envs_registry import algind_env_ids

IDS = algind_env_ids()
FAST = {"backend": "reference", "n_examples": 2, "observation_mode": "tables"}


def allowed_by_components(obs, candidates) -> np.ndarray:
    """Whether the component masks allow each ``(skill, bindings)`` candidate."""
    out = np.zeros(len(candidates), dtype=bool)
    for i, (s, binds) in enumerate(candidates):
        out[i] = bool(obs["skill_mask"][s]) and all(
            obs["class_mask"][obs["slot_class"][s, j], p] for j, p in enumerate(binds)
        )
    return out


def test_one_shape_for_every_task_and_masks_equal_the_discrete_mask():
    space, sizes = None, {}
    for env_id in IDS:
        env = gym.make(env_id, **FAST)
        obs, info = env.reset(seed=0)
        if space is None:
            space = env.observation_space
        assert env.observation_space == space, env_id
        assert space.contains(obs), env_id
        sizes[env_id] = sum(v.nbytes for v in obs.values())
        table = env.unwrapped.actions
        allowed = allowed_by_components(obs, table.candidates)
        np.testing.assert_array_equal(allowed, info["action_mask"][:-1], err_msg=env_id)
        assert obs["skill_mask"][len(table.skills) :].sum() == 0  # padding never allowed
    assert len(set(sizes.values())) == 1
    assert sizes["AlgInd/LinearGradient-v0"] < 64 * 1024


def test_pointer_rows_describe_roles_data_and_progress():
    env = SkillCompositionEnv("VectorAdd", **FAST)
    obs, _ = env.reset(seed=3)
    names = list(env.actions.pointer_names)
    x, out, add = names.index("x"), names.index("out"), names.index("&s_add@1")
    p = obs["pointers"]
    assert p[x, 2] == 1 and p[x, 5] == 1  # a vector, an input
    assert p[out, 6] == 1 and p[add, 4] == 1 and p[add, 9] == 1  # output; skill, role skill
    assert env.actions.skills[int(p[add, 12]) - 1] == "s_add@1"
    xs = np.stack([ex["x"] for ex in env.ws.examples]).astype(np.float64)
    np.testing.assert_allclose(
        p[x, 13:16], symlog(np.array([xs.mean(), xs.min(), xs.max()])), rtol=1e-6
    )
    np.testing.assert_allclose(p[x, 10], np.log2(1 + env.ws.length))
    assert p[out, 17] == 0 and obs["globals"][0] == 0
    obs, _, term, _, _ = env.step(env.encode("zipmap", ["&s_add", "x", "y", "out"]))
    p = obs["pointers"]
    assert term and p[out, 16] == 1.0 and p[out, 17] == 1 and p[x, 17] == 0
    assert obs["skills"][env.actions.skills.index("zipmap@1"), 7] == 1
    assert obs["globals"][0] == 1 and obs["globals"][2] == 1.0
    assert p[len(names) :].sum() == 0  # padding rows are zero


def test_skill_rows_describe_kind_arity_and_slots():
    env = SkillCompositionEnv("VectorAdd", **FAST)
    obs, _ = env.reset(seed=0)
    s = env.actions.skills.index("zipmap@1")
    row = obs["skills"][s]
    assert row[0] == 1 and row[2] == 1 and row[5] == 4  # present, combinator, 4 slots
    out_slot = row[8 + 8 * 3 : 8 + 8 * 4]
    assert out_slot[2] == 1 and out_slot[6] == 1  # slot 3 is a vector, role out


@pytest.mark.parametrize("cap", ["pointer_cap", "skill_cap", "arity_cap", "class_cap"])
def test_a_cap_smaller_than_the_task_needs_is_refused(cap):
    with pytest.raises(ValueError, match=f"table cap {cap}=1 is smaller than this task needs"):
        SkillCompositionEnv("LinearGradient", **FAST, table_caps={cap: 1})
    with pytest.raises(ValueError, match="table_caps key"):
        SkillCompositionEnv("VectorAdd", **FAST, table_caps={"rows": 4})


@pytest.mark.parametrize("mode", ["state", "tables"])
def test_flatten_observation_gives_one_box(mode):
    from gymnasium.utils.env_checker import check_env
    from gymnasium.wrappers import FlattenObservation

    env = FlattenObservation(gym.make("AlgInd/VectorAdd-v0", **{**FAST, "observation_mode": mode}))
    assert (
        isinstance(env.observation_space, gym.spaces.Box) and len(env.observation_space.shape) == 1
    )
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    a = env.unwrapped.encode("zipmap", ["&s_add", "x", "y", "out"])
    obs, _, term, _, info = env.step(a)
    assert term and info["success"] and env.observation_space.contains(obs)
    with (
        warnings.catch_warnings()
    ):  # gymnasium asks for the unwrapped env; here the wrapper is tested
        warnings.filterwarnings("ignore", message=".*different from the unwrapped.*")
        check_env(env, skip_render_check=True)
