"""Episode limits, search support (snapshots, state keys), encode-time errors, bad input.

Programs here bind only task arguments and built-in skills (no declared scratch or
constants), so they hold whatever scratch pool the workspace offers.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import algind_gym  # noqa: F401
from algind_gym.envs import SkillCompositionEnv
from algind_gym.envs.actions import HALT

FAST = {"backend": "reference", "n_examples": 3}
ADD = ("zipmap", ["&s_add", "x", "y", "out"])
SUB = ("zipmap", ["&s_sub", "x", "y", "out"])


def make(**kw) -> gym.Env:
    return gym.make("AlgInd/VectorAdd-v0", **{**FAST, **kw})


# ------------------------------------------------------------------ episode limits
def test_make_max_calls_lets_a_ten_call_program_finish():
    env = make(max_calls=12)
    assert env.unwrapped.max_calls == 12 and env.spec.max_episode_steps is None
    env.reset(seed=0)
    sub, add = env.unwrapped.encode(*SUB), env.unwrapped.encode(*ADD)
    for t in range(9):
        _, _, term, trunc, info = env.step(sub)
        assert not term and not trunc, t
    _, _, term, trunc, info = env.step(add)
    assert term and not trunc and info["success"] and info["calls"] == 10


def test_default_limit_truncates_the_same_program():
    env = make()
    env.reset(seed=0)
    sub = env.unwrapped.encode(*SUB)
    flags = [env.step(sub)[3] for _ in range(6)]
    assert flags == [False] * 5 + [True]


def test_stepping_a_finished_episode_warns_and_changes_nothing():
    env = make().unwrapped
    env.reset(seed=0)
    env.step(env.encode(*ADD))
    before = env.state.cells.copy()
    with pytest.warns(UserWarning, match="already returned terminated = True"):
        _, r, term, trunc, info = env.step(env.encode(*SUB))
    assert (r, term, trunc, info["calls"]) == (0.0, True, False, 1)
    np.testing.assert_array_equal(before, env.state.cells)


# ------------------------------------------------------------------ snapshots
def test_snapshot_restore_round_trips_through_truncation():
    env = make(max_calls=3)
    env.reset(seed=0)
    sub = env.unwrapped.encode(*SUB)
    env.step(sub)
    snap = env.unwrapped.snapshot()
    cells = env.unwrapped.state.cells.copy()
    first = [env.step(sub) for _ in range(2)]
    assert [s[3] for s in first] == [False, True]
    for _ in range(2):  # a snapshot restores any number of times, also after the end
        env.unwrapped.restore(snap)
        np.testing.assert_array_equal(env.unwrapped.state.cells, cells)
        assert env.unwrapped.t == 1
        again = [env.step(sub) for _ in range(2)]
        assert [s[1:4] for s in again] == [s[1:4] for s in first]
        for a, b in zip(first, again, strict=True):
            for k in a[0]:
                np.testing.assert_array_equal(a[0][k], b[0][k])


def test_snapshot_costs_about_the_data_and_shares_the_code():
    env = SkillCompositionEnv("LinearGradient", **FAST)
    env.reset(seed=0)
    a = int(np.flatnonzero(env.action_masks()[:-1])[0])
    env.step(a)
    s1, s2 = env.snapshot(), env.snapshot()
    assert s1["base"] is s2["base"]  # the fresh machine (code) is shared
    stored = s1["values"].nbytes + s1["cols"].nbytes
    code = env.ws.image.layout.block("code").size * env.n_examples * 8
    assert stored < env.state.cells.nbytes - code, (stored, env.state.cells.nbytes)


def test_equal_state_keys_for_programs_that_compute_the_same_data():
    env = make().unwrapped
    env.reset(seed=4)
    env.step(env.encode(*ADD))
    key_a, cells_a = env.state_key(), env.state.cells.copy()
    env.reset(seed=4)
    env.step(env.encode(*SUB))
    key_sub = env.state_key()
    env.step(env.encode(*ADD))
    key_b = env.state_key()
    assert key_a == key_b and hash(key_a) == hash(key_b)
    assert not np.array_equal(cells_a, env.state.cells)  # instruction counters differ
    assert key_sub != key_a
    env.reset(seed=5)  # other examples, other data
    env.step(env.encode(*ADD))
    assert env.state_key() != key_a


# ------------------------------------------------------------------ encode errors
@pytest.mark.parametrize(
    ("skill", "bindings", "must_say"),
    [
        ("zipmap", ["x", "x", "y", "out"], ["slot 0 'f'", "'x'", "vector", "input", "accepts"]),
        ("zipmap", ["&s_add", "x", "y", "x"], ["slot 3 'out'", "'x'", "read-only", "accepts"]),
        ("transpose", ["x", "out"], ["slot 0 'M'", "'x'", "a matrix slot", "no entry"]),
        ("zipmap", ["&s_add", "x", "nope", "out"], ["slot 2 'y'", "no pointer entry 'nope'"]),
        ("zipmap", ["&s_add", "x", 999, "out"], ["slot 2 'y'", "999", "outside"]),
        ("zipmap", ["&s_add", "x"], ["takes 4 binding(s)", "f:", "out: vector", "got 2"]),
        ("nosuch", ["x"], ["unknown skill 'nosuch'"]),
    ],
)
def test_encode_errors_name_the_slot_and_what_it_accepts(skill, bindings, must_say):
    env = SkillCompositionEnv("VectorAdd", **FAST)
    with pytest.raises(ValueError) as err:
        env.encode(skill, bindings)
    for text in must_say:
        assert text in str(err.value), (text, str(err.value))


@pytest.mark.parametrize("task", ["VectorAdd", "MatVec", "Sort"])
@pytest.mark.parametrize("encoding", ["discrete", "multidiscrete"])
def test_encode_accepts_exactly_the_unmasked_candidates(task, encoding):
    env = SkillCompositionEnv(task, action_encoding=encoding, **FAST)
    table = env.actions
    valid = table.discrete_mask()
    names = table.pointer_names
    for i, (s, binds) in enumerate(table.candidates):
        try:
            a = env.encode(table.skills[s], [names[p] for p in binds])
        except ValueError as e:
            assert not valid[i], e
            assert "slot" in str(e)
            continue
        assert valid[i]
        assert env.decode(a) == (table.skills[s], binds)
        if encoding == "discrete":
            assert a == i
    assert env.decode(env.encode(HALT, [])) == (HALT, ())


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"backend": "gpu"}, "backend must be one of .*transformer.*reference"),
        ({"observation_mode": "pixels"}, "observation_mode must be one of"),
        ({"max_calls": -1}, "max_calls must be >= 1"),
        ({"max_calls": 10**9}, r"max_calls must be >= 1 and <= 1000"),
        ({"max_calls": 2.5}, "max_calls must be an integer"),
    ],
)
def test_bad_constructor_arguments_fail_at_make(kw, match):
    with pytest.raises(ValueError, match=match):
        gym.make("AlgInd/VectorAdd-v0", **kw)


@pytest.mark.parametrize(
    ("length", "match"),
    [("abc", "must be an integer"), (2.7, "must be an integer"), (10**6, "<= 1024"), (-1, ">= 0")],
)
def test_bad_reset_lengths_are_refused(length, match):
    env = make()
    with pytest.raises(ValueError, match=r"length.*" + match):
        env.reset(seed=0, options={"length": length})
