"""Every reference solution at every length, on the interpreter and the Transformer CPU.

Default run: each task at its largest training length on the reference interpreter and at
its smallest test length on the Transformer CPU (the long regression task at its smallest
training length, also on the Transformer CPU). The long runs use the CPU because the
interpreter takes 5-25 s each on them, and the CPU is checked bit for bit against the
interpreter here (``test_transformer_cpu_matches_interpreter``) and by the fuzz suites.
``-m slow``: every training and test length on the reference interpreter, and the CPU
against the interpreter at every length.
"""

from __future__ import annotations

import numpy as np
import pytest

from algind_gym.tasks import Workspace, get_task, list_tasks
from algind_gym.tasks.reference import (
    REFERENCE_SOLUTIONS,
    reference_library_for,
    reference_solution,
)

TASKS = [t.name for t in list_tasks() if t.name in REFERENCE_SOLUTIONS]
SLOW_TASKS = {"TrainLinearRegression"}
_LIBS: dict = {}


def _lib(name):
    if name not in _LIBS:
        _LIBS[name] = reference_library_for(name)
    return _LIBS[name]


def _run(name, length, backend, batch=2, seed=0):
    ws = Workspace(_lib(name), get_task(name), length, batch=batch, seed=seed)
    state = ws.reset()
    results = ws.run_program(state, reference_solution(name), backend)
    assert all(r.error is None for r in results), [r.error for r in results]
    return ws, state


def _cases():
    """Default: largest training length on the interpreter, smallest test length on the
    Transformer CPU (the regression task: its smallest training length, on the CPU)."""
    for name in TASKS:
        t = get_task(name)
        if name in SLOW_TASKS:
            cases = [(t.train_lengths[0], "transformer")]
        else:
            cases = [(t.train_lengths[-1], "reference"), (t.test_lengths[0], "transformer")]
        for n, backend in cases:
            yield pytest.param(name, n, backend, id=f"{name}-{n}-{backend}")


def _all_lengths():
    """Every training and test length, marked slow."""
    for name in TASKS:
        t = get_task(name)
        for n in t.train_lengths + t.test_lengths:
            yield pytest.param(name, n, id=f"{name}-{n}", marks=[pytest.mark.slow])


@pytest.mark.parametrize("name, length, backend", list(_cases()))
def test_reference_solution(name, length, backend):
    ws, state = _run(name, length, backend)
    score = ws.score(state)
    assert (state.faults == 0).all() and score.accuracy == 1.0, score


@pytest.mark.parametrize("name, length", list(_all_lengths()))
def test_reference_solution_all_lengths(name, length):
    ws, state = _run(name, length, "reference")
    assert ws.score(state).accuracy == 1.0


def _cpu_cases():
    """Default: smallest training length (not the regression task); the rest is slow."""
    for name in TASKS:
        t = get_task(name)
        for n in t.train_lengths + t.test_lengths:
            fast = n == t.train_lengths[0] and name not in SLOW_TASKS
            yield pytest.param(name, n, id=f"{name}-{n}", marks=[] if fast else [pytest.mark.slow])


@pytest.mark.parametrize("name, length", list(_cpu_cases()))
def test_transformer_cpu_matches_interpreter(name, length):
    """Identical results: the whole final state, bit for bit, and accuracy 1.0."""
    _, ref = _run(name, length, "reference")
    ws, cpu = _run(name, length, "transformer")
    np.testing.assert_array_equal(cpu.cells, ref.cells)
    assert ws.score(cpu).accuracy == 1.0
