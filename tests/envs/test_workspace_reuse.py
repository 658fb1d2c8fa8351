"""A single environment's reset refills a copy of the first workspace of a length instead of
building a new one: same machines and examples as a new workspace, and old snapshots keep
their own workspace."""

from __future__ import annotations

import numpy as np

from algind_gym.envs import SkillCompositionEnv
from algind_gym.tasks.workspace import Workspace


def test_reset_gives_what_a_new_workspace_gives():
    env = SkillCompositionEnv("MatVec", backend="reference", n_examples=3)
    for seed in range(6):
        env.reset(seed=seed)
        length, example_seed = env._ws_recipe
        new = Workspace(
            env.library,
            env.task,
            length,
            batch=3,
            seed=example_seed,
            dtype=env.dtype,
            capacity=env.max_length,
        )
        a, b = env.state.cells, new.reset().cells
        assert a.tobytes() == b.tobytes()
        for x, y in zip(env.ws.expected, new.expected, strict=True):
            np.testing.assert_array_equal(x["out"], y["out"])
    assert env.ws.image is env._workspaces[env.ws.length].image  # shared, not rebuilt


def test_a_snapshot_survives_later_resets():
    env = SkillCompositionEnv("DotProduct", backend="reference", n_examples=2)
    env.reset(seed=0, options={"length": 4})
    env.step(env.encode("zipmap", ["&s_mul", "x", "y", "tmp_v0"]))
    snap = env.snapshot()
    cells, want = env.state.cells.copy(), env._want.copy()
    for seed in range(1, 4):
        env.reset(seed=seed, options={"length": 4})  # same length: a copy of the same first
    assert env.ws is not snap["ws"]
    env.restore(snap)
    assert env.state.cells.tobytes() == cells.tobytes()
    np.testing.assert_array_equal(env._want, want)
