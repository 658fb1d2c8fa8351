"""The helper tasks (CountLE, CarryIn, Digit10) are tasks, and the reference helpers solve them.

The reference helpers of :mod:`algind_gym.tasks.reference` are the compositions that Sort and
ReversedAddition call; the helper tasks must accept exactly those programs (same signature,
same semantics) at every training and test length, from the skills of lower levels only.
"""

from __future__ import annotations

import pytest

from algind_gym.tasks import Workspace, compile_task_program, get_task, list_tasks
from algind_gym.tasks.helper_tasks import HELPER_TASKS
from algind_gym.tasks.reference import HELPERS, build_reference_library

POOL = {"c": "tmp_s0", "d": "tmp_s1", "e": "tmp_v0"}


def _program(name):
    """The helper's steps as a program over the task's pointer table (10 -> constant ten,
    the helper's temporaries -> the scratch pool's buffers of the same shape)."""
    return [
        (s, ["ten" if b == 10 else POOL.get(b, b) for b in bs]) for s, bs in HELPERS[name]["steps"]
    ]


def test_every_reference_helper_is_a_task():
    assert set(HELPERS) == set(HELPER_TASKS)
    names = {t.name for t in list_tasks()}
    assert set(HELPER_TASKS) <= names


@pytest.mark.parametrize("name", HELPER_TASKS)
def test_helper_program_solves_its_task_at_every_length(name):
    task = get_task(name)
    lib = build_reference_library(task.prerequisites)
    for p in task.prerequisites:
        assert get_task(p).level < task.level
    for length in (*task.train_lengths, *task.test_lengths):
        ws = Workspace(lib, task, length, batch=16, seed=length)
        state = ws.reset()
        ws.run_program(state, _program(name))
        assert ws.score(state).accuracy == 1.0, (name, length)
    # compiled into a skill, it has the reference helper's signature
    skill = compile_task_program(lib.copy(), task, _program(name))
    ref = lib.copy()
    h = HELPERS[name]
    ref_skill = ref.compose(name, h["args"], h["steps"], temps=h["temps"], description="ref")
    assert skill.signature == ref_skill.signature


NEAR_MISSES = {
    "CarryIn": [("s_max", ["t", "t", "out"])],  # forgets the carry
    "Digit10": [("s_max", ["q", "q", "out"])],  # forgets the wrap-around
    "CountLE": [("len", ["v", "out"])],  # counts everything
}


@pytest.mark.parametrize("name", HELPER_TASKS)
def test_a_near_miss_fails_on_some_examples(name):
    task = get_task(name)
    lib = build_reference_library(task.prerequisites)
    ws = Workspace(lib, task, task.train_lengths[-1], batch=16, seed=0)
    state = ws.reset()
    results = ws.run_program(state, NEAR_MISSES[name])
    assert all(r.error is None for r in results)
    assert 0.0 < ws.score(state).accuracy < 1.0
