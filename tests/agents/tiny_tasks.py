"""Two user tasks for the curriculum and benchmark tests (registered when imported, so that
``--import tests.agents.tiny_tasks`` brings them into benchmark workers too).

``AddTen`` (level 1) is one atomic call with the task's constant ``ten``;
``VectorAddTen`` (level 2) has no such constant, so from the atomic skills alone it cannot
be expressed in a few calls, but with the learned ``AddTen`` it is one call,
``map(&AddTen, x, out)``: a two-generation curriculum that runs in seconds.
"""

from __future__ import annotations

import numpy as np

from algind_gym.tasks import EXACT, ArgSpec, TaskSpec, get_task, register_task, unregister_task

TINY_TASKS = ("AddTen", "VectorAddTen")


def register() -> None:
    """Register both tasks (idempotent)."""
    try:
        get_task("AddTen")
        return
    except KeyError:
        pass
    register_task(
        TaskSpec(
            "AddTen",
            "Add ten to a scalar: out = x + 10.",
            (ArgSpec("x", "scalar"), ArgSpec("out", "scalar", "out")),
            lambda r, n: {"x": np.float64(r.integers(0, 10))},
            lambda e: {"out": np.float64(e["x"] + 10)},
            EXACT,
            train_lengths=(1, 2),
            test_lengths=(4,),
            level=1,
            track="user",
            constants={"ten": 10.0},
        )
    )
    register_task(
        TaskSpec(
            "VectorAddTen",
            "Add ten to every element: out[i] = x[i] + 10.",
            (ArgSpec("x", "vector"), ArgSpec("out", "vector", "out")),
            lambda r, n: {"x": r.integers(0, 10, size=n).astype(np.float64)},
            lambda e: {"out": e["x"] + 10},
            EXACT,
            train_lengths=(1, 2, 3),
            test_lengths=(8,),
            level=2,
            track="user",
            prerequisites=("AddTen",),
        )
    )


def unregister() -> None:
    for name in reversed(TINY_TASKS):
        unregister_task(name)


register()
