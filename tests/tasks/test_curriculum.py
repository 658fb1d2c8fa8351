"""The built-in curriculum: names, splits, levels, determinism, reference-solution hygiene."""

from __future__ import annotations

import numpy as np
import pytest

from algind_gym.skills import builtin_library
from algind_gym.tasks import get_task, list_tasks
from algind_gym.tasks.reference import HELPERS, REFERENCE_SOLUTIONS, skills_used

BRIEF = {
    1: "VectorAdd VectorSub VectorMul Scale Square ReLU Abs Negate",
    2: "Sum Max Min Mean DotProduct SumOfSquares",
    3: "MatVec VecMat OuterProduct",
    4: "LinearLayer MSE",
    5: "MLPLayer LinearGradient",
    6: "SGDStep",
    7: "TrainLinearRegression",
}
ALGORITHMIC = (
    "Copy Reverse DuplicatedInput RepeatCopy PrefixSum ArgMax CountEqual Sort ReversedAddition"
)
TASKS = [t.name for t in list_tasks() if t.name in REFERENCE_SOLUTIONS]


def test_every_task_of_the_brief_is_registered():
    for level, names in BRIEF.items():
        for n in names.split():
            assert get_task(n).level == level and get_task(n).track == "numeric"
    for n in ALGORITHMIC.split():
        assert get_task(f"AlgInd/{n}-v0").track == "algorithmic"
    assert set(TASKS) == set(REFERENCE_SOLUTIONS)


@pytest.mark.parametrize("name", TASKS)
def test_length_splits(name):
    t = get_task(name)
    big = max(t.train_lengths)
    assert any(n >= 4 * big for n in t.test_lengths) and any(n >= 8 * big for n in t.test_lengths)
    if t.track == "algorithmic":
        assert big <= 16 and min(t.test_lengths) >= 64


@pytest.mark.parametrize("name", TASKS)
def test_generator_is_seeded(name):
    t = get_task(name)
    n = t.train_lengths[-1]
    a = t.generator(np.random.default_rng(3), n)
    b = t.generator(np.random.default_rng(3), n)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert set(t.inputs) <= set(a) and set(t.oracle(a)) >= {
        x.name for x in t.args if x.role == "out"
    }


@pytest.mark.parametrize("name", TASKS)
def test_reference_uses_only_lower_levels(name):
    t = get_task(name)
    allowed = {s.name for s in builtin_library()} | set(HELPERS)
    stack, seen = list(t.prerequisites), set()
    while stack:
        p = stack.pop()
        if p not in seen:
            seen.add(p)
            assert get_task(p).level < t.level
            stack.extend(get_task(p).prerequisites)
    for skill in skills_used(name):
        assert skill in allowed or skill in t.prerequisites, f"{name} uses {skill}"
