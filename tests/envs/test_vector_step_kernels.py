"""The vector env's compiled step loops against their plain Python (or numpy) versions, bit
for bit, and the step's bookkeeping columns against the sub-environments' own state."""

from __future__ import annotations

import numpy as np
import pytest

from algind_gym.envs import AlgIndVectorEnv, batch, columns
from algind_gym.envs.columns import EpisodeColumns, record_calls
from algind_gym.machine.isa import Fault
from tests.envs.actions_helper import random_actions

needs_numba = pytest.mark.skipif(not batch.COMPILED, reason="numba is not installed")


def _book_args(rng, n: int, dense: bool):
    c = EpisodeColumns(n, 3)
    c.t[:] = rng.integers(0, 5, n)
    c.instructions[:] = rng.integers(0, 100, n)
    c.potential[:] = rng.random(n)
    c.scored_potential[:] = rng.random(n)
    c.scored_success[:] = rng.random(n) < 0.3
    run = np.sort(rng.choice(n, size=n // 2, replace=False))
    halt = rng.random(run.size) < 0.2
    valid = ~halt & (rng.random(run.size) < 0.8)
    steps = rng.integers(0, 50, n)
    fault = np.where(rng.random(n) < 0.3, rng.choice([int(f) for f in Fault], n), 0)
    m = run.size
    out = (np.empty(m), np.empty(m, dtype=bool), np.empty(m, dtype=bool))
    numbers = (
        c.t, c.step_instructions, c.instructions, c.fault, c.potential, c.success, c.finished,
        c.terminated, c.truncated, c.scored_potential, c.scored_success,
    )  # fmt: skip
    return (run, halt, valid, steps, fault, *numbers, 0.1, 0.01, 0.5, dense, 5, *out)


@needs_numba
@pytest.mark.parametrize("dense", [True, False])
def test_book_numbers_compiled_equals_python(dense):
    """Rewards, ends and every column, for HALT, invalid actions, faults and successes."""
    rng = np.random.default_rng(0)
    a = _book_args(rng, 64, dense)
    b = tuple(x.copy() if isinstance(x, np.ndarray) else x for x in a)
    columns._book_numbers(*a)
    columns._book_numbers_py(*b)
    for x, y in zip(a, b, strict=True):
        if isinstance(x, np.ndarray):
            assert x.tobytes() == y.tobytes()
    reward, term, _ = a[-3:]
    halt, valid = a[1], a[2]
    assert term[halt].all() and (reward[halt] == 0).all()
    assert (reward[~halt & ~valid] == -0.1).all()


@needs_numba
def test_record_calls_compiled_equals_python(monkeypatch):
    rng = np.random.default_rng(1)
    n, max_calls, a, n_skills, n_ptr = 16, 6, 4, 5, 9
    ep = {
        "calls": np.full((n, max_calls, 1 + a), -1.0, np.float32),
        "skill_calls": np.zeros((n, n_skills), np.float32),
        "written": np.zeros((n, n_ptr), bool),
    }
    ex = np.sort(rng.choice(n, size=10, replace=False))
    at = rng.integers(0, max_calls, ex.size)
    skills = rng.integers(0, n_skills, ex.size)
    binds = rng.integers(0, n_ptr, (ex.size, a))
    arity = rng.integers(0, a + 1, ex.size)
    writes = rng.random((n_skills, a)) < 0.5
    fast = {k: v.copy() for k, v in ep.items()}
    record_calls(fast, ex, at, skills, binds, arity, writes)
    monkeypatch.setattr(columns, "_record_calls", None)
    record_calls(ep, ex, at, skills, binds, arity, writes)
    for k in ep:
        assert fast[k].tobytes() == ep[k].tobytes(), k
    i = 0  # the first call: [skill, pointers...] in its row, -1 after its arity
    row = fast["calls"][ex[i], at[i]]
    assert row[0] == skills[i] and (row[1 : 1 + arity[i]] == binds[i, : arity[i]]).all()
    assert (row[1 + arity[i] :] == -1).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_call_results_compiled_equals_numpy(dtype, monkeypatch):
    """Instructions summed over the K machines and the first fault code of each call."""
    rng = np.random.default_rng(2)
    cells = rng.integers(0, 1000, (24, 10)).astype(dtype)
    cells[:, 7] = np.where(rng.random(24) < 0.3, rng.integers(1, 6, 24), 0)
    rows = rng.permutation(24).reshape(6, 4)
    before = (cells[rows.ravel(), 3] - rng.integers(0, 50, 24)).astype(dtype)
    fast = batch.call_results(cells, rows, before, 3, 7)
    monkeypatch.setattr(batch, "COMPILED", False)
    slow = batch.call_results(cells, rows, before, 3, 7)
    for x, y in zip(fast, slow, strict=True):
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes()
    faults = cells[rows, 7]
    first = [next((int(f) for f in r if f), 0) for r in faults]
    assert fast[1].tolist() == first


def test_fault_texts_are_the_single_envs():
    for f in Fault:
        want = None if f == Fault.NONE else f"fault {f.name}"
        assert columns._FAULT_TEXTS[int(f)] == want


def test_infos_follow_the_sub_environments_through_restores():
    """``info["calls"]`` and ``info["program"]`` equal each sub-environment's history and
    program text, through autoresets, a sub-environment's own step and a restore."""
    env = AlgIndVectorEnv(4, "DotProduct", backend="transformer", n_examples=2, max_calls=4)
    env.reset(seed=5)
    first = env.envs[0]
    valid = np.flatnonzero(first.action_masks())
    rng = np.random.default_rng(5)
    snap = None

    def check(info):
        for i, e in enumerate(env.envs):
            assert info["calls"][i] == len(e.history)
            assert info["program"][i] == "\n".join(e._call_text(s, b) for s, b in e.history)

    ends = 0
    for t in range(14):
        if t == 4:
            snap = env.envs[2].snapshot()
        _, _, term, trunc, info = env.step(rng.choice(valid, size=4))
        ends += int((term | trunc).sum())
        check(info)
        if t == 8:
            env.envs[2].restore(snap)
            assert env._columns.n_calls[2] == len(env.envs[2].history)
            assert env._columns.text[2] is not None
        if t == 10 and not env.envs[1].finished:
            env.envs[1].step(int(rng.choice(valid)))  # its own step, outside the batch
            assert env._columns.n_calls[1] == len(env.envs[1].history)
    assert ends >= 2


@needs_numba
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bind_and_call_takes_descriptors_from_the_held_tables(dtype):
    """With the vector env's per-length pointer tables, binding writes the same cells and
    ranges as reading every machine's table; machines marked stale are read from their
    cells (a wrong table does not reach them), the others from the table."""
    from algind_gym.cpu.backend import empty_write_ranges

    env = AlgIndVectorEnv(10, "MatVec", backend="transformer", n_examples=3, dtype=dtype)
    env.reset(seed=4)
    rng = np.random.default_rng(4)
    valid = np.flatnonzero(env.envs[0].actions.valid)
    for _ in range(3):  # autoresets, several lengths
        env.step(rng.choice(valid, size=10))
    stale = env._held_tables()
    assert stale is not None
    ids = np.arange(10)
    acts = rng.choice(valid, size=10)
    args = (env._calltable, env._rows[ids], env._cand_skill[acts], env._cand_binds[acts])
    lay = env.machines.layout

    def bind(held):
        c, w = env._cells.copy(), empty_write_ranges(env._cells.shape[0])
        batch.bind_and_call(c, lay, *args, w, held)
        return c, w

    plain = bind(None)
    lengths = env._lengths[ids]
    for tables, marks, same in [
        (env._ptr_raw, stale[ids], True),
        (env._ptr_raw + 1, np.ones_like(stale[ids]), True),  # all stale: cells are read
        (env._ptr_raw + 1, np.zeros_like(stale[ids]), False),  # the (wrong) table is read
    ]:
        got = bind((tables, lengths, marks))
        assert (got[0].tobytes() == plain[0].tobytes()) is same
        assert got[1].tobytes() == plain[1].tobytes()


@pytest.mark.parametrize(
    "kw",
    [
        {"reward_mode": "sparse"},
        {"action_encoding": "multidiscrete", "invalid_penalty": 0.25},
    ],
)
def test_every_info_equals_sync_through_autoresets(kw):
    """Every info key (the mask aside) and the rewards of the vector env equal
    ``SyncVectorEnv``'s, step after step, through HALT, faults, invalid actions and
    autoresets."""
    import gymnasium as gym

    kw = {"backend": "transformer", "n_examples": 2, "max_calls": 3, **kw}
    sync = gym.make_vec("AlgInd/MatVec-v0", num_envs=5, vectorization_mode="sync", **kw)
    vect = gym.make_vec(
        "AlgInd/MatVec-v0", num_envs=5, vectorization_mode="vector_entry_point", **kw
    )
    sync.reset(seed=7)
    vect.reset(seed=7)
    first = vect.unwrapped.envs[0]
    first.action_space.seed(7)
    rng = np.random.default_rng(7)
    seen = {"invalid": 0, "fault": 0, "ended": 0}
    for _ in range(12):
        acts = random_actions(first, rng, 5)
        s1, s2 = sync.step(acts), vect.step(acts)
        for x, y in zip(s1[1:4], s2[1:4], strict=True):
            assert np.asarray(x).tobytes() == np.asarray(y).tobytes()
        for key in s1[4]:
            if key.startswith("_") or key == "action_mask":
                continue
            np.testing.assert_array_equal(s1[4][key], s2[4][key], err_msg=key)
        errors = [e or "" for e in s2[4]["error"]]
        seen["invalid"] += sum(e.startswith("invalid") for e in errors)
        seen["fault"] += sum(f is not None for f in s2[4]["fault"])
        seen["ended"] += int((s2[2] | s2[3]).sum())
    assert seen["ended"] >= 3
    if first.action_encoding == "multidiscrete":
        assert seen["invalid"] >= 1
