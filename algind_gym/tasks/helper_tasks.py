"""Helper tasks: the compositions that reference solutions call, as curriculum tasks.

Some algorithmic reference solutions (:mod:`algind_gym.tasks.reference`) call small
compositions that were not tasks -- ``CountLE`` (Sort), ``CarryIn`` and ``Digit10``
(ReversedAddition). A curriculum runner learns skills only by solving tasks, so without a
task for each helper those algorithms could never be learned from the atomic skills. Each
helper is therefore a task of its own here, with a generator, an oracle and a level one
above its own prerequisites, and the same name and signature as the helper, so a learned
``CountLE`` skill is called exactly like the reference helper.

* ``CarryIn`` (level 1): ``out = t + [prev >= 10]`` on scalars, ``prev`` in [0, 20),
  ``t`` in [0, 19) (a digit sum); ``scan(&CarryIn, t, zero, q)`` propagates the carry.
* ``Digit10`` (level 1): ``out = q - 10 [q >= 10]``, the last decimal digit of q in [0, 20).
* ``CountLE`` (level 3, after ``Sum``): ``out = #{i : v[i] <= s}`` for digits v and s.

The two scalar tasks ignore ``length`` (every length draws fresh scalars); their lengths
only multiply the examples a solution is verified on. Their temporaries come from the
machine's scratch pool (``tmp_s0``, ``tmp_s1``, ``tmp_v0``; :mod:`algind_gym.tasks.pool`);
the two scalar tasks declare the constant ``ten`` their compositions need.
"""

from __future__ import annotations

import numpy as np

from algind_gym.skills.signature import ArgSpec
from algind_gym.tasks.batched import batched
from algind_gym.tasks.spec import EXACT, TaskSpec, register_task

S, V = "scalar", "vector"
SCALAR_SPLIT = {"train_lengths": (1, 2, 3, 4), "test_lengths": (8, 16)}
ALGO_SPLIT = {"train_lengths": (1, 2, 4, 8, 16), "test_lengths": (64, 128)}
HELPER_TASKS = ("CarryIn", "Digit10", "CountLE")


def _carry_in_gen(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {"prev": np.float64(rng.integers(0, 20)), "t": np.float64(rng.integers(0, 19))}


def _digit10_gen(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {"q": np.float64(rng.integers(0, 20))}


def _count_le_gen(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "v": rng.integers(0, 10, size=n).astype(np.float64),
        "s": np.float64(rng.integers(0, 10)),
    }


def register_helper_tasks() -> None:
    """Register the helper tasks (idempotent; called when :mod:`algind_gym.tasks` loads)."""
    from algind_gym.tasks.spec import _REGISTRY

    if "CarryIn" in _REGISTRY:
        return
    register_task(
        TaskSpec(
            "CarryIn",
            "Digit sum plus the carry from the previous position: out = t + 1 if prev >= 10, "
            "else out = t.",
            (ArgSpec("prev", S), ArgSpec("t", S), ArgSpec("out", S, "out")),
            _carry_in_gen,
            lambda e: {"out": np.float64(e["t"] + (e["prev"] >= 10))},
            EXACT,
            level=1,
            track="algorithmic",
            constants={"ten": 10.0},
            **SCALAR_SPLIT,
            **batched("CarryIn"),
        )
    )
    register_task(
        TaskSpec(
            "Digit10",
            "Last decimal digit of a number q in [0, 20): out = q - 10 if q >= 10, else q.",
            (ArgSpec("q", S), ArgSpec("out", S, "out")),
            _digit10_gen,
            lambda e: {"out": np.float64(e["q"] % 10)},
            EXACT,
            level=1,
            track="algorithmic",
            constants={"ten": 10.0},
            **SCALAR_SPLIT,
            **batched("Digit10"),
        )
    )
    register_task(
        TaskSpec(
            "CountLE",
            "Count the elements of v that are less than or equal to s.",
            (ArgSpec("v", V), ArgSpec("s", S), ArgSpec("out", S, "out")),
            _count_le_gen,
            lambda e: {"out": np.float64(np.count_nonzero(e["v"] <= e["s"]))},
            EXACT,
            level=3,
            track="algorithmic",
            prerequisites=("Sum",),
            **ALGO_SPLIT,
            **batched("CountLE"),
        )
    )
