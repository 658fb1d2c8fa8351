"""Registry-driven checks: every registered ``AlgInd/<Task>-v0`` gets every test.

A new task is tested the moment it is registered (the Minigrid habit). Environments run
with K = 2 examples at their shortest training length to keep the suite fast; the
reference and Transformer backends are compared on the same actions.
"""

from __future__ import annotations

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import algind_gym  # noqa: F401  (registers the environments)
from algind_gym.envs.actions import HALT
from envs_registry import algind_env_ids

IDS = algind_env_ids()
FAST = {"backend": "reference", "n_examples": 2}
MODES = ("state", "compact", "tables")


def short_lengths(env_id: str) -> tuple[int]:
    """The task's shortest training length (at least 1): every env here runs at it."""
    from algind_gym.tasks import get_task

    return (max(min(get_task(gym.spec(env_id).kwargs["task"]).train_lengths), 1),)


def make(env_id: str, **kw) -> gym.Env:
    return gym.make(env_id, **{**FAST, "lengths": short_lengths(env_id), **kw})


def valid_actions(env) -> np.ndarray:
    return np.flatnonzero(env.unwrapped.action_masks())


def rollout(env, seed: int, n_steps: int, action_seed: int = 0):
    """Reset with ``seed``, then take valid non-HALT actions drawn by ``action_seed``."""
    rng = np.random.default_rng(action_seed)
    obs, info = env.reset(seed=seed)
    out = [(obs, 0.0, False, False, info["program"])]
    for _ in range(n_steps):
        choices = valid_actions(env)[:-1]  # drop HALT (last)
        obs, r, term, trunc, info = env.step(int(rng.choice(choices)))
        out.append((obs, r, term, trunc, info["program"]))
        if term or trunc:
            break
    return out


def assert_same(a, b):
    assert len(a) == len(b)
    for (o1, *rest1), (o2, *rest2) in zip(a, b, strict=True):
        assert o1.keys() == o2.keys()
        for k in o1:
            np.testing.assert_array_equal(o1[k], o2[k], err_msg=k)
        assert rest1 == rest2


def test_every_task_is_registered():
    from algind_gym.tasks import list_tasks

    assert {f"AlgInd/{t.name}-v0" for t in list_tasks()} <= set(IDS)
    assert len(IDS) >= 32
    spec = gym.spec("AlgInd/DotProduct-v0")
    assert spec.reward_threshold is not None and spec.kwargs["max_calls"] == 6
    assert spec.max_episode_steps is None  # the env truncates at max_calls itself
    assert spec.vector_entry_point is not None


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("env_id", IDS)
def test_gymnasium_check_env(env_id, mode):
    env = make(env_id, render_mode="ansi", observation_mode=mode)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=mode != "state")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("env_id", IDS)
def test_sb3_check_env(env_id, mode):
    env = make(env_id, observation_mode=mode)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if mode == "tables":  # 2-D tables are meant for a custom (e.g. transformer) policy
            warnings.filterwarnings("ignore", message=".*unconventional shape.*")
        sb3_check_env(env.unwrapped, warn=True)


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_rollout(env_id):
    assert_same(rollout(make(env_id), 7, 4), rollout(make(env_id), 7, 4))
    first = make(env_id).reset(seed=1)[0]["cells"]
    other = make(env_id).reset(seed=2)[0]["cells"]
    assert not np.array_equal(first, other), "different seeds should give different examples"


@pytest.mark.parametrize("env_id", IDS)
def test_backends_give_identical_trajectories(env_id):
    ref = rollout(make(env_id, backend="reference"), 3, 3)
    cpu = rollout(make(env_id, backend="transformer"), 3, 3)
    assert_same(ref, cpu)


@pytest.mark.parametrize("env_id", IDS)
def test_pickle_round_trip_mid_episode(env_id):
    env = make(env_id).unwrapped
    for a in valid_actions(env)[:-1]:  # a first call that leaves the episode running
        env.reset(seed=5)
        if not any(env.step(int(a))[2:4]):
            break
    clone = pickle.loads(pickle.dumps(env))
    b = int(valid_actions(env)[-2])
    o1, r1, t1, u1, i1 = env.step(b)
    o2, r2, t2, u2, i2 = clone.step(b)
    assert (r1, t1, u1, i1["program"]) == (r2, t2, u2, i2["program"])
    for k in o1:
        np.testing.assert_array_equal(o1[k], o2[k])


@pytest.mark.parametrize("env_id", IDS)
def test_render_modes(env_id):
    env = make(env_id, render_mode="ansi")
    env.reset(seed=0)
    text = env.render()
    assert env_id in text and "pointer table" in text and "program so far" in text
    env = make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    img = env.render()
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.max() > 0


@pytest.mark.parametrize("env_id", IDS)
def test_make_vec_sync_and_vector_agree(env_id):
    kw = {**FAST, "lengths": short_lengths(env_id)}
    sync = gym.make_vec(env_id, num_envs=3, vectorization_mode="sync", **kw)
    vect = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point", **kw)
    assert type(vect).__name__ == "AlgIndVectorEnv"
    _o1, _ = sync.reset(seed=11)
    _o2, _ = vect.reset(seed=11)
    masks = vect.unwrapped.action_masks()
    rng = np.random.default_rng(0)
    for _ in range(8):  # long enough for episodes to end and autoreset
        acts = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
        s1, s2 = sync.step(acts), vect.step(acts)
        for k in s1[0]:
            np.testing.assert_array_equal(s1[0][k], s2[0][k], err_msg=k)
        for x, y in zip(s1[1:4], s2[1:4], strict=True):
            np.testing.assert_array_equal(x, y)
        for key in ("success", "calls", "program", "fault", "error", "length", "potential"):
            np.testing.assert_array_equal(s1[4][key], s2[4][key], err_msg=key)
        np.testing.assert_array_equal(s1[4]["action_mask"], s2[4]["action_mask"])


@pytest.mark.parametrize("env_id", IDS)
def test_masks_are_exact(env_id):
    env = make(env_id).unwrapped
    env.reset(seed=0)
    table, image = env.actions, env.ws.image
    inputs = {a.name for a in env.task.args if a.role == "in"}
    mask = env.action_masks()
    for i, (s, binds) in enumerate(table.candidates):
        skill = table.skills[s]
        slots = env.library.get(skill).slots
        writes_input = any(
            slots[j].role in ("out", "inout") and env.ws.pointer_names[p] in inputs
            for j, p in enumerate(binds)
        )
        expected = image.check_action(skill, list(binds)) is None and not writes_input
        assert mask[i] == expected, (skill, binds)
    assert mask[table.halt_index]
    # a masked action costs the penalty and leaves every machine unchanged
    masked = np.flatnonzero(~mask)
    if masked.size:
        before = env.state.cells.copy()
        _, r, term, _trunc, info = env.step(int(masked[0]))
        assert r == -env.invalid_penalty and not term and "invalid action" in info["error"]
        np.testing.assert_array_equal(before, env.state.cells)
    # unmasked actions run without a binding (type) fault
    rng = np.random.default_rng(0)
    for a in rng.choice(
        np.flatnonzero(mask[:-1]), size=min(5, int(mask[:-1].sum())), replace=False
    ):
        env.reset(seed=0)
        _, _, _, _, info = env.step(int(a))
        assert info["error"] is None or "fault" in info["error"], info["error"]
        skill, _ = env.decode(int(a))
        assert skill != HALT
