"""The vector env's autoreset rewrites only what an episode wrote (:mod:`algind_gym.envs.fresh`),
and the rows it leaves are byte for byte the machines ``Workspace.reset`` builds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import algind_gym  # noqa: F401
from algind_gym.envs import AlgIndVectorEnv
from algind_gym.envs.fresh import FreshRows


def _assert_fresh(env: AlgIndVectorEnv, ids) -> None:
    """The rows of sub-environments ``ids`` equal a fresh machine of their workspace, bit for
    bit, over the whole row."""
    k = env.k
    for i in ids:
        want = env.envs[i].ws.reset().cells
        got = env.machines.cells[i * k : (i + 1) * k]
        diff = got.view(np.uint8) != want.view(np.uint8)
        if diff.any():
            m, byte = np.argwhere(diff)[0]
            cell = env.machines.layout.describe(int(byte // got.itemsize))
            pytest.fail(f"env {i}, machine {m}: cell {cell} differs from a fresh machine")


def _random_episodes(env: AlgIndVectorEnv, rng, steps: int) -> dict[str, int]:
    """Random valid actions for ``steps`` steps, HALT one time in ten (uniform over the valid
    actions it would be one in thousands); after every step the envs that autoreset in it are
    compared with fresh machines. Returns counts of what happened."""
    n, first = env.num_envs, env.envs[0]
    valid = np.flatnonzero(first.action_masks())
    seen = {"resets": 0, "faults": 0, "halts": 0, "ranged": 0}
    ended = np.zeros(n, dtype=bool)
    for _ in range(steps):
        fresh = env._fresh
        w = fresh.written.reshape(n, env.k, 4)
        # resets this step that skip part of the stack (the shortcut, not whole rows)
        top = w[:, :, 1].max(axis=1) + 1
        seen["ranged"] += int((ended & (top < fresh.pointers_start)).sum())
        acts = rng.choice(valid, size=n)
        acts[rng.random(n) < 0.1] = first.actions.halt_index
        _, _, term, trunc, info = env.step(acts)
        _assert_fresh(env, np.flatnonzero(ended))
        seen["resets"] += int(ended.sum())
        ended = term | trunc
        seen["faults"] += int(np.not_equal(info["fault"], None).sum())
        seen["halts"] += int((acts == first.actions.halt_index).sum())
    return seen


@pytest.mark.parametrize(
    ("task", "seed"), [("DotProduct", 0), ("Sort", 1), ("MatVec", 2), ("Max", 3)]
)
def test_autoreset_rows_are_fresh_machines_after_random_episodes(task, seed):
    """Random episodes on the numba kernel (exact write ranges), ending by HALT, faults,
    success and the call limit: every autoreset leaves fresh machines, whole rows compared."""
    env = AlgIndVectorEnv(16, task, backend="transformer", n_examples=3, max_calls=4)
    env.reset(seed=seed)
    seen = _random_episodes(env, np.random.default_rng(seed), 40)
    assert env._fresh._ranged and env._fresh._fast  # the shortcut was on throughout
    assert seen["resets"] >= 40 and seen["halts"] >= 5 and seen["ranged"] >= 10, seen
    if task == "DotProduct":
        assert seen["faults"] >= 1, seen


def test_the_numpy_path_gives_the_same_rows(monkeypatch):
    """Without the compiled loop (no numba), the union of the rows' ranges is restored with
    numpy: also fresh machines."""
    from algind_gym.envs import fresh

    monkeypatch.setattr(fresh, "COMPILED", False)
    env = AlgIndVectorEnv(8, "DotProduct", backend="transformer", n_examples=2, max_calls=4)
    env.reset(seed=4)
    seen = _random_episodes(env, np.random.default_rng(4), 20)
    assert env._fresh._fast and seen["ranged"] >= 10, seen


def test_a_restored_sub_environment_is_reset_whole():
    """A sub-environment restored to a snapshot of an earlier episode holds cells that the
    write ranges never saw: its next autoreset still leaves fresh machines."""
    env = AlgIndVectorEnv(2, "DotProduct", backend="transformer", n_examples=2, max_calls=8)
    env.reset(seed=0)
    first = env.envs[0]
    halt = first.actions.halt_index
    fold = first.encode("fold", ["&s_add", "x", "zero", "tmp_s0"])
    env.step(np.array([fold, fold]))
    snap = first.snapshot()  # the stack and the scratch are written here
    assert not np.array_equal(first.state.cells, first.ws.reset().cells)
    env.step(np.array([halt, halt]))
    env.step(np.array([halt, halt]))  # autoreset: a new episode
    _assert_fresh(env, [0, 1])
    first.restore(snap)
    assert env._fresh.untracked[0] and not env._fresh.untracked[1]
    env.step(np.array([halt, halt]))
    env.step(np.array([halt, halt]))  # autoreset again, env 0 whole
    _assert_fresh(env, [0, 1])
    assert not env._fresh.untracked.any()


@pytest.mark.parametrize("backend", ["reference", "transformer-torch"])
def test_backends_without_write_ranges_restore_whole_rows(backend):
    env = AlgIndVectorEnv(4, "VectorAdd", backend=backend, n_examples=2, max_calls=3)
    env.reset(seed=1)
    seen = _random_episodes(env, np.random.default_rng(1), 12)
    assert seen["resets"] >= 4 and seen["ranged"] == 0, seen


def test_fresh_rows_marks_whole_rows_and_checks_every_length_once():
    env = AlgIndVectorEnv(3, "Sum", backend="transformer", n_examples=2, max_calls=2)
    env.reset(seed=5)
    fresh: FreshRows = env._fresh
    assert (fresh.written[:, 0] > fresh.written[:, 1]).all()  # all fresh after reset
    add = env.envs[0].encode("fold", ["&s_add", "x", "zero", "out"])
    env.step(np.full(3, add))
    assert (fresh.written[:, 1] >= fresh.registers_end).all()  # the calls used the stack
    assert (fresh.written[:, 2] <= fresh.written[:, 3]).all()  # and wrote memory and slots
    for _ in range(6):
        env.step(np.full(3, add))
    assert fresh._checked  # each length seen was compared with Workspace.reset once


def _env_with_templates(n: int) -> AlgIndVectorEnv:
    """A vector env whose :class:`FreshRows` has planned ``n`` lengths' fresh rows."""
    env = AlgIndVectorEnv(8, "DotProduct", backend="transformer", n_examples=2, max_calls=4)
    env.reset(seed=0)
    halt = np.full(8, env.envs[0].actions.halt_index)
    for _ in range(200):
        if env._fresh._templates.shape[0] >= n:
            break
        env.step(halt)
    assert env._fresh._fast and env._fresh._templates.shape[0] >= n
    return env


@pytest.fixture(scope="module")
def planned():
    return _env_with_templates(3)


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_the_compiled_restore_rewrites_every_cell_inside_the_write_ranges(planned, data):
    """The soundness contract of :func:`restore_rows`, cell by cell: a machine that held the
    fresh row of one length, with arbitrary values in the registers, in the cells of its
    write ranges (stack up to its top, memory, the slots between ``lo`` and ``hi``, ends
    inside slot runs included) and, when ``held`` is unknown, in the pointer table, becomes
    exactly the fresh row of the new length: no dirty cell is missed."""
    fresh = planned._fresh
    from algind_gym.envs.fresh import restore_rows

    templates, p, width = fresh._templates, fresh._templates.shape[0], fresh._templates.shape[1]
    n = data.draw(st.integers(1, 6))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    old = rng.integers(p, size=n)
    new = rng.integers(p, size=n)
    cells = templates[old].copy()
    written = np.empty((n, 4), dtype=np.int64)
    held = np.where(rng.random(n) < 0.7, old, -1)
    slot_cols = fresh.slot_cols
    for r in range(n):
        top = int(rng.integers(fresh.registers_end - 1, fresh.pointers_start + 3))
        if data.draw(st.booleans()):
            lo, hi = 2**63 - 1, -1  # nothing written in memory or slots
        else:
            lo = int(rng.integers(fresh.memory_start, width))
            hi = int(rng.integers(lo, width))
        stack = (fresh.registers_end, top) if top >= fresh.registers_end else (2**63 - 1, -1)
        written[r] = (*stack, lo, hi)
        dirty = np.zeros(width, dtype=bool)
        dirty[: fresh.registers_end] = True  # every step rewrites registers
        dirty[fresh.registers_end : min(top, fresh.pointers_start - 1) + 1] = True
        if top >= fresh.pointers_start or held[r] < 0:
            dirty[fresh.pointers_start : fresh.memory_start] = True
        dirty[fresh.memory_start : fresh.code_start] = True  # the data: always rewritten
        if lo <= hi:
            dirty[slot_cols[(slot_cols >= lo) & (slot_cols <= hi)]] = True
        cells[r, dirty] = rng.normal(size=int(dirty.sum())) * 1e3
    restore_rows(
        cells,
        np.arange(n),
        written,
        templates,
        new,
        held,
        fresh._diff,
        fresh._n_diff,
        fresh.registers_end,
        fresh.pointers_start,
        fresh.memory_start,
        fresh.code_start,
        fresh.slot_runs,
    )
    for r in range(n):
        bad = np.flatnonzero(cells[r].view(np.uint64) != templates[new[r]].view(np.uint64))
        assert bad.size == 0, (r, planned.machines.layout.describe(int(bad[0])))
