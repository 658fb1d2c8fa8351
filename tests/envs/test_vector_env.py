"""The batched vector environment: one CPU call per step, next-step autoreset."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import algind_gym  # noqa: F401
from algind_gym.cpu import kernel, make_backend, threads
from algind_gym.envs import AlgIndVectorEnv, vector
from tests.envs.actions_helper import random_actions


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


@pytest.mark.parametrize(
    ("task", "kw"),
    [
        ("DotProduct", {"observation_mode": "tables"}),
        ("Sort", {"observation_mode": "compact", "data_window": 3}),
        ("TrainLinearRegression", {"observation_mode": "tables"}),  # custom scorer
        ("Mean", {"action_encoding": "multidiscrete"}),
        # the numba kernel reports exact write ranges: autoresets rewrite only those
        ("MatVec", {"backend": "transformer"}),
        ("Max", {"backend": "transformer", "observation_mode": "tables"}),
        # the vector env's calls on the parallel kernel driver, sync's on one thread
        ("MatVec", {"backend": "parallel"}),
    ],
)
def test_vector_env_equals_sync_through_autoresets(task, kw, monkeypatch):
    # every autoreset seeds its generators together, as a large vector env does
    monkeypatch.setattr(vector, "BATCH_SEEDING", 1 if task != "Mean" else 10**9)
    kw = {"backend": "reference", "n_examples": 2, "max_calls": 3, **kw}
    sync_kw, parallel_calls = kw, []
    if kw["backend"] == "parallel":
        monkeypatch.setattr(threads, "PARALLEL_MIN_ROWS", 2)  # read when a model is built
        run_parallel = kernel.fused_run_parallel
        monkeypatch.setattr(
            kernel,
            "fused_run_parallel",
            lambda *a: parallel_calls.append(a[0].shape[0]) or run_parallel(*a),
        )
        sync_kw = {**kw, "backend": make_backend("transformer", threads=1)}
        kw = {**kw, "backend": make_backend("transformer", threads=threads.max_threads())}
    env_id = f"AlgInd/{task}-v0"
    sync = gym.make_vec(env_id, num_envs=4, vectorization_mode="sync", **sync_kw)
    vect = gym.make_vec(env_id, num_envs=4, vectorization_mode="vector_entry_point", **kw)
    o1, _ = sync.reset(seed=3)
    o2, _ = vect.reset(seed=3)
    for k in o1:
        np.testing.assert_array_equal(o1[k], o2[k], err_msg=k)
    first = vect.unwrapped.envs[0]
    first.action_space.seed(0)
    rng = np.random.default_rng(1)
    resets = 0
    for _ in range(10):
        acts = random_actions(first, rng, 4)
        s1, s2 = sync.step(acts), vect.step(acts)
        for k in s1[0]:
            np.testing.assert_array_equal(s1[0][k], s2[0][k], err_msg=k)
        for x, y in zip(s1[1:4], s2[1:4], strict=True):
            np.testing.assert_array_equal(x, y)
        for key in ("success", "program", "fault", "error", "length", "step_instructions"):
            np.testing.assert_array_equal(s1[4][key], s2[4][key], err_msg=key)
        resets += int((s1[2] | s1[3]).sum())
    assert resets >= 4  # episodes ended and the next steps autoreset them
    if sync_kw is not kw and threads.max_threads() > 1:  # the vector env's 8 rows ran parallel
        assert parallel_calls and set(parallel_calls) == {8}


def test_autoreset_follows_a_workspace_reset_that_initialises_more(monkeypatch):
    """If ``Workspace.reset`` writes more than the inputs (e.g. seeded values in the
    outputs), the vector env's in-place reset notices and copies it, so parity holds."""
    from algind_gym.tasks.workspace import Workspace

    plain = Workspace.reset

    def noisy(self):
        state = plain(self)
        x = np.stack([np.asarray(ex["x"], dtype=float) for ex in self.examples])
        self.image.write(state, "out", x * 3.0 + 1.0)
        return state

    monkeypatch.setattr(Workspace, "reset", noisy)
    kw = {"backend": "reference", "n_examples": 2, "max_calls": 2}
    sync = gym.make_vec("AlgInd/VectorAdd-v0", num_envs=3, vectorization_mode="sync", **kw)
    vect = gym.make_vec(
        "AlgInd/VectorAdd-v0", num_envs=3, vectorization_mode="vector_entry_point", **kw
    )
    sync.reset(seed=0)
    vect.reset(seed=0)
    sub = vect.unwrapped.envs[0].encode("zipmap", ["&s_sub", "x", "y", "out"])
    for _ in range(5):
        s1, s2 = sync.step(np.full(3, sub)), vect.step(np.full(3, sub))
        for k in s1[0]:
            np.testing.assert_array_equal(s1[0][k], s2[0][k], err_msg=k)
    assert vect.unwrapped._fresh._fast is False


def test_workspace_refill_equals_a_new_workspace():
    from algind_gym.skills.builtin import builtin_library
    from algind_gym.tasks import get_task
    from algind_gym.tasks.workspace import Workspace

    lib, task = builtin_library(), get_task("DotProduct")
    ws = Workspace(lib, task, 4, batch=3, seed=1, capacity=8)
    ws.refill(7)
    new = Workspace(lib, task, 4, batch=3, seed=7, capacity=8)
    np.testing.assert_array_equal(ws.reset().cells, new.reset().cells)
    for a, b in zip(ws.expected, new.expected, strict=True):
        np.testing.assert_array_equal(a["out"], b["out"])


def test_sub_environments_keep_their_own_methods():
    """A sub-environment's episode scalars live in the vector env's arrays; snapshot,
    restore and pickling still see (and change) exactly that episode."""
    import pickle

    from algind_gym.envs import SkillCompositionEnv

    env = AlgIndVectorEnv(2, "DotProduct", backend="reference", n_examples=2, max_calls=4)
    env.reset(seed=0)
    first = env.envs[0]
    mul = first.encode("zipmap", ["&s_mul", "x", "y", "tmp_v0"])
    snap = first.snapshot()
    _, _, _, _, info = env.step(np.array([mul, mul]))
    assert info["calls"].tolist() == [1, 1] and first.t == 1 and len(first.history) == 1
    clone = pickle.loads(pickle.dumps(first))
    assert type(clone) is SkillCompositionEnv
    assert (clone.t, clone.program_text(), clone.potential) == (
        1,
        first.program_text(),
        first.potential,
    )
    first.restore(snap)  # back to the start of its episode, in the vector env's arrays too
    assert env._columns.t[0] == 0 and env._columns.history[0] == [] and first.t == 0
    _, _, _, _, info = env.step(np.array([mul, mul]))
    assert info["calls"].tolist() == [1, 2]
    assert info["program"][0] == info["program"][1].splitlines()[0]


def test_padded_columns_widen_and_give_copies():
    """``_want`` and ``_out_fraction`` of a sub-environment are rows of padded arrays: a
    wider value widens the array (other rows keep theirs), reading gives a copy."""
    from algind_gym.envs.columns import EpisodeColumns

    c = EpisodeColumns(3, k=2)
    c.put("want", "want_width", [0, 2], np.arange(8.0).reshape(2, 2, 2))
    c.put("want", "want_width", [1], np.full((1, 2, 3), 7.0))
    assert c.want.shape == (3, 2, 3) and c.want_width.tolist() == [2, 3, 2]
    np.testing.assert_array_equal(c.want[2, :, :2], [[4.0, 5.0], [6.0, 7.0]])
    env = AlgIndVectorEnv(2, "DotProduct", backend="reference", n_examples=2, max_calls=2)
    env.reset(seed=0)
    sub = env.envs[1]
    want = sub._want
    assert want.shape == (2, 1)  # DotProduct: one output cell per machine
    want[:] = 99.0  # a copy: the column is unchanged
    assert not (env._columns.want[1] == 99.0).any()
    sub._out_fraction = np.array([0.25, 0.5])  # wider than before: the array widens
    np.testing.assert_array_equal(sub._out_fraction, [0.25, 0.5])
    assert env.envs[0]._out_fraction.shape == (1,)


def test_info_action_mask_is_the_constant_mask_read_only():
    env = AlgIndVectorEnv(3, "VectorAdd", backend="reference", n_examples=2, max_calls=2)
    _, info = env.reset(seed=0)
    masks = env.action_masks()
    np.testing.assert_array_equal(info["action_mask"], masks)
    with pytest.raises(ValueError, match="read-only"):
        info["action_mask"][0, 0] = not info["action_mask"][0, 0]
    _, _, _, _, info = env.step(np.full(3, env.envs[0].actions.halt_index))
    np.testing.assert_array_equal(info["action_mask"], masks)
    masks[:] = False  # action_masks() gives a copy
    assert info["action_mask"].any()
