"""The solve API: one interface, verified results, a JSON schema, clear errors."""

from __future__ import annotations

import gc
import json

import numpy as np
import pytest

from agents import (
    AGENTS,
    Agent,
    SolveContext,
    SolveResult,
    register_agent,
    solve,
    validate_result,
    verification_lengths,
    verify_program,
)
from algind_gym.skills import builtin_library
from algind_gym.tasks import EXACT, ArgSpec, TaskSpec, get_task, register_task, unregister_task


def test_random_search_solves_vector_add_and_verifies_every_length():
    r = solve("VectorAdd", agent="random", budget=500, seed=0)
    assert r.success
    assert set(r.generalisation) == {str(n) for n in verification_lengths(get_task("VectorAdd"))}
    assert all(v == 1.0 for v in r.generalisation.values())
    assert 0 < r.actions_evaluated <= 500
    assert r.instructions > 0 and r.env_steps >= r.actions_evaluated
    assert "zipmap" in r.program_text and r.disassembly
    validate_result(r.to_dict())


def test_verification_lengths_include_8x_training():
    task = get_task("DotProduct")
    assert 8 * max(task.train_lengths) in verification_lengths(task)


def test_same_seed_same_result_and_json_round_trip():
    a = solve("AlgInd/VectorAdd-v0", agent="random", budget=300, seed=3)
    b = solve("VectorAdd", agent="random", budget=300, seed=3)
    assert a.comparable() == b.comparable()
    back = SolveResult.from_dict(json.loads(a.to_json()))
    assert back.comparable() == a.comparable()


def test_wrong_program_fails_verification():
    # out = x - y is not VectorAdd: every length scores 0
    acc = verify_program(
        builtin_library(), get_task("VectorAdd"), [("zipmap", ["&s_sub", "x", "y", "out"])]
    )
    assert max(acc.values()) < 1.0


def test_exhausted_budget_is_a_failed_result_not_an_error():
    r = solve("DotProduct", agent="random", budget=5, seed=0)
    assert not r.success and r.actions_evaluated == 5 and not r.interrupted
    validate_result(r.to_dict())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"budget": 0}, "budget must be a positive integer"),
        ({"budget": -3}, "budget must be a positive integer"),
        ({"agent": "nosuch"}, "unknown agent 'nosuch'"),
        ({"agent": "random", "bogus": 1}, "has no option"),
        ({"library": "missing-library.json"}, "no skill library file"),
    ],
)
def test_bad_arguments_get_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        solve("VectorAdd", **{"budget": 10, **kwargs})


def test_unknown_task_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown task 'Nope'.*VectorAdd"):
        solve("Nope", budget=10)


def test_ctrl_c_returns_best_so_far_marked_interrupted():
    class Interrupted(Agent):
        def search(self, ctx: SolveContext):
            ctx.charge(actions=1)
            ctx.offer([("zipmap", ["&s_add", "x", "y", "out"])], 1.0)
            raise KeyboardInterrupt

    r = solve("VectorAdd", agent=Interrupted(), budget=10)
    assert r.interrupted and r.success and r.actions_evaluated == 1
    validate_result(r.to_dict())


def test_search_runs_with_the_heap_frozen_and_solve_restores_it():
    seen = []

    class Records(Agent):
        def search(self, ctx: SolveContext):
            seen.append(gc.get_freeze_count())
            raise KeyboardInterrupt  # the heap is unfrozen on the way out too

    assert gc.get_freeze_count() == 0
    solve("VectorAdd", agent=Records(), budget=10)
    assert seen[0] > 0 and gc.get_freeze_count() == 0
    gc.freeze()  # an outer freeze (a caller's own, or a solve inside a solve) is kept
    try:
        frozen = gc.get_freeze_count()
        solve("VectorAdd", agent=Records(), budget=10)
        # not frozen again (that would add the objects solve made), nor unfrozen after
        assert 0 < seen[1] <= frozen and 0 < gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()


def test_registering_an_agent_is_one_line_and_user_tasks_work():
    @register_agent("test-first-valid")
    class FirstValid(Agent):
        def search(self, ctx):
            env = ctx.make_env()
            env.reset(seed=0)
            for a in np.flatnonzero(env.action_masks())[:-1]:
                env.reset(seed=0)
                _, _, _, _, info = env.step(int(a))
                ctx.charge(actions=1, env_steps=1)
                if info["success"]:
                    return env.program
            return None

    task = register_task(
        TaskSpec(
            name="TestNegate",
            description="Negate every element.",
            args=(ArgSpec("x", "vector"), ArgSpec("out", "vector", "out")),
            generator=lambda rng, n: {"x": rng.integers(-9, 10, size=n).astype(np.float64)},
            oracle=lambda ex: {"out": -ex["x"]},
            tolerance=EXACT,
            train_lengths=(1, 3),
            test_lengths=(16,),
        )
    )
    try:
        r = solve(task, agent="test-first-valid", budget=2000)
        assert r.success and r.agent == "test-first-valid"
        assert r.program[0][0].startswith("map")
    finally:
        unregister_task("TestNegate")
        del AGENTS["test-first-valid"]


def test_schema_rejects_a_broken_result():
    d = solve("VectorAdd", agent="random", budget=50, seed=0).to_dict()
    d["generalisation"] = {"x": 2.0}
    with pytest.raises(ValueError, match="not a valid SolveResult"):
        validate_result(d)
