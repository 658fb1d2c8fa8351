"""Behaviour of SkillCompositionEnv a user relies on: rewards, episode ends, lengths,
snapshots, encodings, bad input."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

import algind_gym  # noqa: F401
from algind_gym.envs import SkillCompositionEnv
from algind_gym.envs.actions import HALT


def env_for(task="DotProduct", **kw) -> SkillCompositionEnv:
    return SkillCompositionEnv(task, **{"backend": "reference", "n_examples": 3, **kw})


def solve_dot(env):
    mul = env.encode("zipmap", ["&s_mul", "x", "y", "tmp_v0"])
    add = env.encode("fold", ["&s_add", "tmp_v0", "zero", "out"])
    return mul, add


def test_dense_reward_is_potential_difference_minus_call_cost():
    env = env_for(call_cost=0.05)
    env.reset(seed=0)
    mul, add = solve_dot(env)
    _, r1, term1, trunc1, info1 = env.step(mul)
    assert (r1, term1, trunc1) == (pytest.approx(-0.05), False, False)
    assert info1["potential"] == 0.0 and info1["program"] == "zipmap@1(&s_mul@1, x, y, tmp_v0)"
    _, r2, term2, _, info2 = env.step(add)
    assert r2 == pytest.approx(1.0 - 0.05) and term2 and info2["success"]
    assert info2["calls"] == 2 and info2["instructions"] > 0


def test_sparse_reward_only_on_success():
    env = env_for(reward_mode="sparse", call_cost=0.0)
    env.reset(seed=0)
    mul, add = solve_dot(env)
    assert env.step(mul)[1] == 0.0
    assert env.step(add)[1] == 1.0


def test_solution_generalises_to_test_lengths():
    env = env_for()
    for length in (*env.task.test_lengths, 0):
        env.reset(seed=1, options={"length": length})
        mul, add = solve_dot(env)
        env.step(mul)
        _, _, term, _, info = env.step(add)
        assert term and info["success"] and info["length"] == length


def test_fault_ends_episode_with_penalty_and_never_raises():
    env = env_for("Mean")
    env.reset(seed=0)
    # 1 / 0 -> DIVISION_BY_ZERO inside the skill
    a = env.encode("s_div", ["one", "zero", "out"])
    _, r, term, trunc, info = env.step(a)
    assert term and not trunc and info["fault"] == "DIVISION_BY_ZERO"
    assert r == pytest.approx(-env.call_cost - env.fault_penalty)


def test_halt_terminates_and_call_limit_truncates():
    env = env_for(max_calls=2)
    env.reset(seed=0)
    _, r, term, trunc, _ = env.step(env.encode(HALT, []))
    assert term and not trunc and r == 0.0
    env.reset(seed=0)
    mul, _ = solve_dot(env)
    env.step(mul)
    _, _, term, trunc, _ = env.step(mul)
    assert trunc and not term


def test_out_of_space_action_raises_gymnasium_error():
    env = env_for()
    env.reset(seed=0)
    with pytest.raises(gym.error.InvalidAction, match="not in the action space"):
        env.step(env.action_space.n + 5)
    with pytest.raises(RuntimeError, match="reset"):
        env_for().step(0)


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match="reward_mode must be one of"):
        env_for(reward_mode="shaped")
    with pytest.raises(ValueError, match="action_encoding"):
        env_for(action_encoding="box")
    with pytest.raises(KeyError, match="no task 'Nope'"):
        env_for("Nope")
    with pytest.raises(ValueError, match="n_examples must be >= 1"):
        env_for(n_examples=0)


def test_snapshot_restore_replays_exactly():
    env = env_for()
    env.reset(seed=0)
    mul, add = solve_dot(env)
    env.step(mul)
    snap = env.snapshot()
    first = env.step(add)
    env.restore(snap)
    again = env.step(add)
    assert first[1:4] == again[1:4]
    for k in first[0]:
        np.testing.assert_array_equal(first[0][k], again[0][k])
    env.restore(snap)  # a snapshot can be restored any number of times
    assert env.t == 1 and env.program == [("zipmap@1", ["&s_mul@1", "x", "y", "tmp_v0"])]


def test_multidiscrete_encoding_and_projected_mask():
    env = env_for(action_encoding="multidiscrete")
    env.reset(seed=0)
    mul, add = solve_dot(env)
    assert env.action_space.contains(mul)
    env.step(mul)
    _, _, term, _, info = env.step(add)
    assert term and info["success"]
    mask = env.action_masks()
    assert mask.shape == (int(env.action_space.nvec.sum()),)
    nskills = len(env.actions.skills) + 1
    assert mask[:nskills].all() == env.actions.valid.any() or mask[nskills - 1]
    # a multidiscrete action that is in the projected mask but invalid as a whole is refused
    bad = np.array(mul)
    bad[1] = env.ws.bind(["x"])[0]  # a vector where zipmap expects a skill
    env.reset(seed=0)
    _, r, term, _, info = env.step(bad)
    assert r == -env.invalid_penalty and not term and "invalid action" in info["error"]


def test_compact_observation_is_length_independent():
    env = env_for(observation_mode="compact", data_window=4)
    o_short, _ = env.reset(seed=0, options={"length": 1})
    o_long, _ = env.reset(seed=0, options={"length": 64})
    assert env.observation_space.contains(o_short) and env.observation_space.contains(o_long)
    data = o_long["data"].reshape(env.observation_shapes["data"])
    x = env.ws.pointer_names.index("x")
    np.testing.assert_array_equal(data[0, x], env.ws.examples[0]["x"][:4].astype(np.float32))


def test_state_observation_shows_registers_pointers_and_memory():
    env = env_for()
    obs, _ = env.reset(seed=0)
    cells = obs["cells"].reshape(env.observation_shapes["cells"])
    lay = env.ws.image.layout
    n_reg = len(lay.register_names)
    assert cells.shape[0] == env.n_examples
    np.testing.assert_array_equal(cells[:, :n_reg], env.state.cells[:, :n_reg].astype(np.float32))
    types = obs["pointer_types"]
    assert set(np.unique(types)) <= {1.0, 2.0, 3.0, 4.0}
    assert (obs["calls"] == -1).all()


def test_user_task_gets_an_environment():
    from algind_gym.tasks import EXACT, ArgSpec, TaskSpec, register_task, unregister_task
    from envs_registry import register_task_env

    task = TaskSpec(
        name="Double",
        description="out = 2 x",
        args=(ArgSpec("x", "vector"), ArgSpec("out", "vector", "out")),
        generator=lambda rng, n: {"x": rng.integers(0, 9, size=n).astype(float)},
        oracle=lambda ex: {"out": 2 * ex["x"]},
        tolerance=EXACT,
        train_lengths=(1, 2),
        test_lengths=(8, 16),
        track="user",
    )
    register_task(task, replace=True)
    try:
        env_id = register_task_env(task)
        env = gym.make(env_id, backend="reference", n_examples=2)
        env.reset(seed=0)
        a = env.unwrapped.encode("zipmap", ["&s_add", "x", "x", "out"])
        assert env.step(a)[4]["success"]
    finally:
        unregister_task("Double")
        gym.registry.pop("AlgInd/Double-v0", None)


def test_make_with_module_prefix_in_a_fresh_interpreter():
    code = (
        "import gymnasium as gym; env = gym.make('algind_gym:AlgInd/DotProduct-v0', "
        "backend='reference'); print(env.reset(seed=0)[0]['cells'].shape)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().startswith("(")
