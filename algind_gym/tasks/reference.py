"""Reference solutions: every task as a composition over lower levels, shipped as data.

They prove that each level is solvable from the one below: a solution's steps call only
atomic skills, combinators, *helpers* (small compositions defined here, compiled into the
library just before the first task that needs them) and the skills of the task's
prerequisites, which have lower levels. Bindings are pointer-table names of the task's
workspace (arguments, the machine's scratch pool ``tmp_*`` and constants ``zero``/``one``,
see :mod:`algind_gym.tasks.pool`, the few scratch buffers and constants a task still
declares, ``&skill``), so each step is exactly an action an agent could take.

**Tests and docs only**: agents and the curriculum runner never read this module.
"""

from __future__ import annotations

from collections.abc import Sequence

from algind_gym.skills.builtin import builtin_library
from algind_gym.skills.library import SkillLibrary
from algind_gym.tasks.spec import TaskSpec, get_task, list_tasks
from algind_gym.tasks.workspace import compile_task_program

S, V = "scalar", "vector"

# name -> (args, temps, steps, description); bindings as in SkillLibrary.compose
HELPERS: dict[str, dict] = {
    "CountLE": {
        "args": [("v", V), ("s", S), ("out", S)],
        "temps": [("e", V, ["v.size"])],
        "steps": [("mapc", ["&s_le", "v", "s", "e"]), ("Sum", ["e", "out"])],
        "description": "Count the elements of v that are <= s.",
    },
    "CarryIn": {
        "args": [("prev", S), ("t", S), ("out", S)],
        "temps": [("c", S, [])],
        "steps": [("s_le", [10, "prev", "c"]), ("s_add", ["t", "c", "out"])],
        "description": "Digit sum plus the carry from the previous position: "
        "out = t + [prev >= 10].",
    },
    "Digit10": {
        "args": [("q", S), ("out", S)],
        "temps": [("c", S, []), ("d", S, [])],
        "steps": [
            ("s_le", [10, "q", "c"]),
            ("s_mul", ["c", 10, "d"]),
            ("s_sub", ["q", "d", "out"]),
        ],
        "description": "Last decimal digit of q in [0, 20): out = q - 10 [q >= 10].",
    },
}

# task -> {"helpers": [...], "steps": [(skill, [pointer names])]}
REFERENCE_SOLUTIONS: dict[str, dict] = {
    # level 1
    "VectorAdd": {"steps": [("zipmap", ["&s_add", "x", "y", "out"])]},
    "VectorSub": {"steps": [("zipmap", ["&s_sub", "x", "y", "out"])]},
    "VectorMul": {"steps": [("zipmap", ["&s_mul", "x", "y", "out"])]},
    "Scale": {"steps": [("mapc", ["&s_mul", "x", "s", "out"])]},
    "Square": {"steps": [("zipmap", ["&s_mul", "x", "x", "out"])]},
    "ReLU": {"steps": [("mapc", ["&s_max", "x", "zero", "out"])]},
    "Abs": {
        "steps": [("map", ["&s_neg", "x", "tmp_v0"]), ("zipmap", ["&s_max", "x", "tmp_v0", "out"])]
    },
    "Negate": {"steps": [("map", ["&s_neg", "x", "out"])]},
    # level 2
    "Sum": {"steps": [("fold", ["&s_add", "x", "zero", "out"])]},
    "Max": {"steps": [("reduce", ["&s_max", "x", "out"])]},
    "Min": {"steps": [("reduce", ["&s_min", "x", "out"])]},
    "Mean": {
        "steps": [
            ("fold", ["&s_add", "x", "zero", "tmp_s0"]),
            ("len", ["x", "tmp_s1"]),
            ("s_div", ["tmp_s0", "tmp_s1", "out"]),
        ]
    },
    "DotProduct": {
        "steps": [
            ("VectorMul", ["x", "y", "tmp_v0"]),
            ("fold", ["&s_add", "tmp_v0", "zero", "out"]),
        ]
    },
    "SumOfSquares": {
        "steps": [("Square", ["x", "tmp_v0"]), ("fold", ["&s_add", "tmp_v0", "zero", "out"])]
    },
    # level 3
    "MatVec": {"steps": [("map_rows", ["&DotProduct", "W", "x", "out"])]},
    "VecMat": {
        "steps": [
            ("transpose", ["W", "tmp_mT0"]),
            ("map_rows", ["&DotProduct", "tmp_mT0", "x", "out"]),
        ]
    },
    "OuterProduct": {"steps": [("outer", ["&Scale", "x", "y", "out"])]},
    # level 4
    # tmp_v0, tmp_v1 are shaped like b (W.rows elements), tmp_v2, tmp_v3 like x (W.cols)
    "LinearLayer": {
        "steps": [("MatVec", ["W", "x", "tmp_v0"]), ("VectorAdd", ["tmp_v0", "b", "out"])]
    },
    "MSE": {
        "steps": [
            ("VectorSub", ["pred", "target", "tmp_v0"]),
            ("Square", ["tmp_v0", "tmp_v0"]),
            ("Mean", ["tmp_v0", "out"]),
        ]
    },
    # level 5
    "MLPLayer": {
        "steps": [("LinearLayer", ["W", "b", "x", "tmp_v0"]), ("ReLU", ["tmp_v0", "out"])]
    },
    "LinearGradient": {
        "steps": [
            ("LinearLayer", ["W", "b", "x", "tmp_v0"]),  # z = W x + b
            ("VectorSub", ["tmp_v0", "y", "tmp_v1"]),  # r = z - y
            ("len", ["tmp_v1", "tmp_s0"]),  # m
            ("s_div", ["two", "tmp_s0", "tmp_s1"]),  # c = 2 / m
            ("Scale", ["tmp_s1", "tmp_v1", "gb"]),
            ("OuterProduct", ["gb", "x", "gW"]),
        ]
    },
    # level 6
    "SGDStep": {
        "steps": [
            ("LinearGradient", ["W", "b", "x", "y", "tmp_m0", "tmp_v0"]),  # gW, gb
            ("Scale", ["lr", "tmp_m0", "tmp_m0"]),
            ("VectorSub", ["W", "tmp_m0", "W"]),
            ("Scale", ["lr", "tmp_v0", "tmp_v0"]),
            ("VectorSub", ["b", "tmp_v0", "b"]),
        ]
    },
    # level 7
    "TrainLinearRegression": {
        "steps": [("repeat", ["&SGDStep", "steps", "W", "b", "X", "Y", "lr"])]
    },
    # algorithmic track
    "Copy": {"steps": [("copy", ["x", "out"])]},
    "Reverse": {
        "steps": [
            ("iota", ["tmp_v0"]),  # i
            ("len", ["x", "tmp_s0"]),  # n
            ("s_sub", ["tmp_s0", "one", "tmp_s1"]),  # n - 1
            ("mapc", ["&s_sub", "tmp_v0", "tmp_s1", "tmp_v1"]),  # i - (n - 1)
            ("map", ["&s_neg", "tmp_v1", "tmp_v0"]),  # n - 1 - i
            ("gather", ["x", "tmp_v0", "out"]),
        ]
    },
    "DuplicatedInput": {
        "steps": [
            # x has 2n elements (tmp_v0, tmp_v1), out n (tmp_v2, tmp_v3)
            ("iota", ["tmp_v2"]),
            ("mapc", ["&s_mul", "tmp_v2", "two", "tmp_v3"]),
            ("gather", ["x", "tmp_v3", "out"]),
        ]
    },
    "PrefixSum": {"steps": [("scan", ["&s_add", "x", "zero", "out"])]},
    "RepeatCopy": {
        "steps": [
            ("iota", ["tmp_v0"]),  # i
            ("scatter", ["x", "tmp_v0", "out"]),  # out[i] = x[i]
            ("len", ["x", "tmp_s0"]),  # n
            ("mapc", ["&s_add", "tmp_v0", "tmp_s0", "tmp_v1"]),  # u = i + n
            ("Reverse", ["tmp_v1", "tmp_v0"]),  # v = 2n - 1 - i
            ("scatter", ["x", "tmp_v0", "out"]),
            ("mapc", ["&s_add", "tmp_v1", "tmp_s0", "tmp_v0"]),  # w = i + 2n
            ("scatter", ["x", "tmp_v0", "out"]),
        ]
    },
    "ReversedAddition": {
        "helpers": ["CarryIn", "Digit10"],
        "steps": [
            ("VectorAdd", ["a", "b", "tmp_v0"]),  # t
            ("scan", ["&CarryIn", "tmp_v0", "zero", "tmp_v1"]),  # q[i] = t[i] + carry into i
            ("map", ["&Digit10", "tmp_v1", "out"]),
        ],
    },
    "CountEqual": {"steps": [("mapc", ["&s_eq", "x", "v", "tmp_v0"]), ("Sum", ["tmp_v0", "out"])]},
    "ArgMax": {
        "steps": [
            ("Max", ["x", "tmp_s0"]),
            ("mapc", ["&s_eq", "x", "tmp_s0", "tmp_v0"]),  # indicator of the maxima
            ("PrefixSum", ["tmp_v0", "tmp_v1"]),
            ("CountEqual", ["tmp_v1", "zero", "out"]),  # positions before the first maximum
        ]
    },
    "Sort": {
        "helpers": ["CountLE"],
        "steps": [
            ("iota", ["vals"]),  # the digits 0..9
            ("mapv", ["&CountEqual", "vals", "x", "c"]),  # c[v] = #{x == v}
            ("PrefixSum", ["c", "C"]),  # C[v] = #{x <= v}
            ("iota", ["tmp_v0"]),  # i
            ("mapv", ["&CountLE", "tmp_v0", "C", "out"]),  # out[k] = #{v : C[v] <= k}
        ],
    },
}


def reference_solution(task: str) -> list[tuple[str, list[str]]]:
    """The reference program of ``task`` as ``(skill, [pointer names])`` steps."""
    return [(s, list(b)) for s, b in REFERENCE_SOLUTIONS[task]["steps"]]


def skills_used(task: str) -> set[str]:
    """Names of the skills a reference solution calls or passes, helpers expanded."""
    out: set[str] = set()
    entry = REFERENCE_SOLUTIONS[task]
    steps = list(entry["steps"])
    for h in entry.get("helpers", []):
        steps += HELPERS[h]["steps"]
    for skill, bindings in steps:
        out.add(skill)
        out.update(b[1:] for b in bindings if isinstance(b, str) and b.startswith("&"))
    return out - set(entry.get("helpers", []))


def add_helper(library: SkillLibrary, name: str) -> None:
    """Compile helper ``name`` into ``library`` unless it is already there."""
    if name in library:
        return
    h = HELPERS[name]
    library.compose(name, h["args"], h["steps"], temps=h["temps"], description=h["description"])


def add_reference_skill(library: SkillLibrary, task: TaskSpec, *, verify: bool = False) -> None:
    """Compile the reference solution of ``task`` (and its helpers) into ``library``.

    ``verify=False`` by default: every reference solution is checked at its lengths by
    ``tests/tasks/test_reference.py``, and tests build these libraries many times, so the
    per-skill check of :func:`compile_task_program` (a few hundred ms) is skipped here.
    """
    for h in REFERENCE_SOLUTIONS[task.name].get("helpers", []):
        add_helper(library, h)
    compile_task_program(library, task, reference_solution(task.name), verify=verify)


def build_reference_library(
    tasks: Sequence[str] | None = None, library: SkillLibrary | None = None
) -> SkillLibrary:
    """The built-in library plus the reference skills of ``tasks`` (default: all built-in
    tasks with a reference solution) and of everything they require, in curriculum order."""
    lib = builtin_library() if library is None else library
    wanted = set(REFERENCE_SOLUTIONS) if tasks is None else _closure(tasks)
    for t in list_tasks():
        if t.name in wanted and t.name in REFERENCE_SOLUTIONS and t.name not in lib:
            add_reference_skill(lib, t)
    return lib


def reference_library_for(task: str) -> SkillLibrary:
    """The library a reference solution of ``task`` runs against: built-ins, the reference
    skills of its prerequisites (transitively) and its helpers -- not the task's own skill."""
    lib = build_reference_library(get_task(task).prerequisites)
    for h in REFERENCE_SOLUTIONS[task].get("helpers", []):
        add_helper(lib, h)
    return lib


def _closure(tasks: Sequence[str]) -> set[str]:
    out: set[str] = set()
    stack = list(tasks)
    while stack:
        t = stack.pop()
        if t not in out:
            out.add(t)
            stack.extend(get_task(t).prerequisites)
    return out
