""":func:`refill_group` (the vector env's autoreset) leaves every workspace exactly as
:meth:`Workspace.refill` does, for every built-in task: same examples, oracle outputs and
uninitialised values, bit for bit, although the oracle runs once on the whole group."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from algind_gym.envs.seeding import Reseedable, pcg64_states, uniform_doubles
from algind_gym.skills.builtin import builtin_library
from algind_gym.tasks import get_task
from algind_gym.tasks.batched import BATCHED, UNIFORM_DRAWS
from algind_gym.tasks.spec import TaskSpec
from algind_gym.tasks.workspace import Workspace, refill_group, shallow_copy

LIB = builtin_library()


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        x, y = np.asarray(a[name]), np.asarray(b[name])
        assert x.shape == y.shape and x.dtype == y.dtype, name
        assert x.tobytes() == y.tobytes(), name


def _check(task: TaskSpec, length: int, n: int, reseed: bool, doubles=None) -> None:
    proto = Workspace(LIB, task, length, batch=3, seed=0)
    seeds = [int(s) for s in np.random.default_rng(length + n).integers(2**63 - 1, size=n)]
    want = [shallow_copy(proto) for _ in range(n)]
    for ws, s in zip(want, seeds, strict=True):
        ws.refill(s)
    got = [shallow_copy(proto) for _ in range(n)]
    rngs = None
    if reseed:  # one generator reseeded per workspace, as the vector env does
        r = Reseedable()
        rngs = (r.seeded(st) for st in pcg64_states(np.array(seeds, dtype=np.uint64)))
    examples, expected, block = refill_group(got, seeds, rngs, doubles)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        _same(g.stacked_examples, w.stacked_examples)
        _same(g.stacked_expected, w.stacked_expected)
        assert g.uninitialised_block.tobytes() == w.uninitialised_block.tobytes()
        assert g.seed == w.seed
        _same({a: v[i] for a, v in examples.items()}, w.stacked_examples)
        _same({a: v[i] for a, v in expected.items()}, w.stacked_expected)
        assert block[i].tobytes() == w.uninitialised_block.tobytes()
        assert g.reset().cells.tobytes() == w.reset().cells.tobytes()


@pytest.mark.parametrize("name", sorted(BATCHED))
def test_refill_group_equals_refill_for_every_batched_task(name):
    task = get_task(name)
    for length in task.train_lengths:
        for n in (1, 5):
            _check(task, length, n, reseed=n > 1)
    _check(task, max(task.test_lengths), 3, reseed=True)


@pytest.mark.parametrize("name", sorted(UNIFORM_DRAWS))
def test_refill_group_with_compiled_doubles_equals_refill(name):
    """The vector env's path for U(-1, 1) tasks: all workspaces' doubles in one compiled
    call (:func:`uniform_doubles`) instead of a generator per workspace."""
    task = get_task(name)
    for length in (*task.train_lengths, max(task.test_lengths)):
        _check(task, length, 4, reseed=False, doubles=uniform_doubles)


def test_compiled_doubles_are_not_used_for_other_generators():
    """A task that draws other than U(-1, 1) draws through its generators (``doubles``
    would give the wrong numbers, so it must not be called)."""

    def boom(seeds, size):
        raise AssertionError("doubles called for a task that does not draw U(-1, 1) only")

    for name in ("Sort", "ReversedAddition", "TrainLinearRegression"):
        task = get_task(name)
        _check(task, task.train_lengths[0], 3, reseed=True, doubles=boom)
    base = get_task("VectorAdd")  # a user generator under a built-in name
    gen = BATCHED["VectorAdd"][0]
    _check(
        dataclasses.replace(base, batch_generator=lambda r, n, k: gen(r, n, k)), 4, 3, True, boom
    )


def test_refill_group_of_a_task_without_batched_functions():
    task = get_task("TrainLinearRegression")
    assert task.batch_generator is None
    _check(task, task.train_lengths[0], 3, reseed=True)


def test_a_user_batched_oracle_runs_per_workspace():
    """A task whose batched oracle is not the built-in one refills workspace by workspace
    (its oracle is called with K examples, as in a single environment)."""
    base = get_task("VectorAdd")
    calls = []

    def oracle(e):
        calls.append(e["x"].shape[0])
        return {"out": e["x"] + e["y"]}

    task = dataclasses.replace(base, batch_oracle=oracle)
    _check(task, 4, 4, reseed=True)
    assert set(calls) == {3}


def test_refill_group_names_a_bad_batched_generator():
    base = get_task("VectorAdd")
    gen = BATCHED["VectorAdd"][0]
    task = dataclasses.replace(base, batch_generator=lambda r, n, k: gen(r, n, k + 1))
    proto = Workspace(LIB, base, 4, batch=3, seed=0)
    proto.task = task
    with pytest.raises(ValueError, match="leading axis of 3"):
        refill_group([shallow_copy(proto)], [1])


def test_refill_group_drops_the_per_example_views_a_workspace_held():
    """Views built before (``examples``, ``expected``, ``uninitialised``) are the new
    examples' after a group refill, as after :meth:`Workspace.refill`."""
    task = get_task("VectorAdd")
    proto = Workspace(LIB, task, 4, batch=3, seed=0)
    got, want = shallow_copy(proto), shallow_copy(proto)
    for ws in (got, want):
        _ = ws.examples, ws.expected, ws.uninitialised  # (cached views of the old draw)
    refill_group([got], [77])
    want.refill(77)
    for g, w in zip(got.examples + got.expected, want.examples + want.expected, strict=True):
        _same(g, w)
    _same(got.uninitialised, want.uninitialised)


def test_refill_group_checks_new_shapes_after_shapes_that_fit():
    """The shape check runs once per shapes (as in :meth:`Workspace.refill`): examples of
    other shapes after ones that fit are still refused."""
    base = get_task("VectorAdd")
    proto = Workspace(LIB, base, 4, batch=3, seed=0)
    refill_group([shallow_copy(proto)], [1])
    refill_group([shallow_copy(proto)], [2])
    gen = BATCHED["VectorAdd"][0]
    ws = shallow_copy(proto)
    ws.task = dataclasses.replace(base, batch_generator=lambda r, n, k: gen(r, n + 1, k))
    with pytest.raises(ValueError, match="do not fit"):
        refill_group([ws], [3])
