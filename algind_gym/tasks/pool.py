"""The machine's working memory: a scratch pool and constants derived from a task's signature.

The paper's composition is task agnostic, so the machine, not the task author, offers the
temporaries a program needs. Every :class:`~algind_gym.tasks.workspace.Workspace` puts into
its pointer table, after the task's arguments (and the task's own optional ``scratch``):

* **pool scratch**: ``scratch_per_shape`` buffers (default
  :data:`DEFAULT_SCRATCH_PER_SHAPE` = 2) of every distinct *shape class*:

  - one class per distinct vector shape among the arguments: ``tmp_v0, tmp_v1, ...``;
  - one class per distinct matrix shape among the arguments: ``tmp_m0, tmp_m1, ...``;
  - one class per transpose of a matrix argument whose shape is not already a class:
    ``tmp_mT0, tmp_mT1, ...``;
  - scalars, always: ``tmp_s0, tmp_s1, ...``.

  Numbering runs over classes in the order their first argument appears in the signature,
  ``scratch_per_shape`` consecutive numbers per class: with two vector classes (LinearLayer:
  ``b`` has ``W.rows`` elements, ``x`` has ``W.cols``) ``tmp_v0, tmp_v1`` are shaped like
  ``b`` and ``tmp_v2, tmp_v3`` like ``x``. Each pool buffer is a
  :class:`~algind_gym.skills.compose.Temp` whose shape is an expression over the arguments
  (``("b.size",)``, ``("W.cols", "W.rows")``), so it has the right size at every length
  and a compiled program can allocate it on the stack.
* **constants**: :data:`POOL_CONSTANTS` (``zero`` = 0 and ``one`` = 1), then any constants
  the task declares. Constants are read-only (:meth:`Workspace.is_writable`).

Two arguments are in the same shape class when their shapes agree at every training and
test length of the task (the generator and oracle are run once per length, with a fixed
seed, to find out; the result is cached per task). This uses the argument shapes only --
nothing about a solution -- so a user task needs no scratch declarations.

Pool names are reserved: a task may not use ``tmp_`` names or declare ``zero``/``one``
with other values (declaring them with their pool value is allowed and changes nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from algind_gym.skills.compose import Temp

if TYPE_CHECKING:
    from algind_gym.tasks.spec import TaskSpec

DEFAULT_SCRATCH_PER_SHAPE = 2
MAX_SCRATCH_PER_SHAPE = 16
"""Upper bound of ``scratch_per_shape`` (each buffer grows the pointer table and the
discrete action space polynomially)."""
POOL_CONSTANTS: dict[str, float] = {"zero": 0.0, "one": 1.0}
POOL_PREFIX = "tmp_"


def check_scratch_per_shape(value: object) -> int:
    """``value`` as an int in ``[0, MAX_SCRATCH_PER_SHAPE]``, else a ``ValueError`` saying so."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(
            f"scratch_per_shape must be an integer in [0, {MAX_SCRATCH_PER_SHAPE}], got {value!r}"
        )
    if not 0 <= int(value) <= MAX_SCRATCH_PER_SHAPE:
        raise ValueError(
            f"scratch_per_shape must be in [0, {MAX_SCRATCH_PER_SHAPE}], got {value} "
            "(buffers per shape class of the scratch pool)"
        )
    return int(value)


@dataclass(frozen=True)
class ShapeClass:
    """A shape offered by the pool: ``prefix`` (``v``, ``m``, ``mT``, ``s``), the buffer
    type and the shape expression over the task's arguments."""

    prefix: str
    type: str
    shape: tuple[str, ...]


_CLASSES: dict[int, tuple[TaskSpec, tuple[ShapeClass, ...]]] = {}


def _arg_shapes(task: TaskSpec, length: int) -> dict[str, tuple[int, ...]]:
    ex = task.generator(np.random.default_rng(0), length)
    values = {**task.oracle(ex), **ex}
    out = {}
    for a in task.args:
        if a.name not in values:
            raise ValueError(
                f"task {task.name}: argument {a.name!r} ({a.role}) is missing from the "
                "generator's example (inputs) or the oracle's result (outputs)"
            )
        out[a.name] = np.shape(values[a.name])
    return out


def shape_classes(task: TaskSpec) -> tuple[ShapeClass, ...]:
    """The pool's shape classes of ``task`` in pool order (see the module docstring)."""
    hit = _CLASSES.get(id(task))
    if hit is not None and hit[0] is task:
        return hit[1]
    lengths = sorted(set(task.train_lengths) | set(task.test_lengths))
    per_length = [_arg_shapes(task, n) for n in lengths]

    def profile(name: str, transpose: bool = False) -> tuple:
        shapes = [s[name] for s in per_length]
        return tuple(s[::-1] if transpose else s for s in shapes)

    seen: set[tuple] = set()
    vectors, matrices, transposes = [], [], []
    for a in task.args:
        if a.type == "vector" and ("v", profile(a.name)) not in seen:
            seen.add(("v", profile(a.name)))
            vectors.append(ShapeClass("v", "vector", (f"{a.name}.size",)))
        elif a.type == "matrix" and ("m", profile(a.name)) not in seen:
            seen.add(("m", profile(a.name)))
            matrices.append(ShapeClass("m", "matrix", (f"{a.name}.rows", f"{a.name}.cols")))
    for a in task.args:
        if a.type == "matrix" and ("m", profile(a.name, True)) not in seen:
            seen.add(("m", profile(a.name, True)))
            transposes.append(ShapeClass("mT", "matrix", (f"{a.name}.cols", f"{a.name}.rows")))
    classes = (*vectors, *matrices, *transposes, ShapeClass("s", "scalar", ()))
    _CLASSES[id(task)] = (task, classes)
    return classes


def scratch_pool(
    task: TaskSpec, scratch_per_shape: int = DEFAULT_SCRATCH_PER_SHAPE
) -> tuple[Temp, ...]:
    """The pool's scratch buffers of ``task`` as temporaries, in pointer-table order.

    Example:
        >>> from algind_gym.tasks import get_task
        >>> for t in scratch_pool(get_task("VecMat"), 1):  # VecMat(x, W) -> out
        ...     print(t.name, t.type, t.shape)
        tmp_v0 vector ('x.size',)
        tmp_v1 vector ('out.size',)
        tmp_m0 matrix ('W.rows', 'W.cols')
        tmp_mT0 matrix ('W.cols', 'W.rows')
        tmp_s0 scalar ()
    """
    k = check_scratch_per_shape(scratch_per_shape)
    counters: dict[str, int] = {}
    out = []
    for c in shape_classes(task):
        for _ in range(k):
            i = counters.get(c.prefix, 0)
            counters[c.prefix] = i + 1
            out.append(Temp(f"{POOL_PREFIX}{c.prefix}{i}", c.type, c.shape))
    return tuple(out)


def pool_constants(task: TaskSpec) -> dict[str, float]:
    """``zero``, ``one``, then the task's own constants (name -> value)."""
    for name, v in task.constants.items():
        if name in POOL_CONSTANTS and float(v) != POOL_CONSTANTS[name]:
            raise ValueError(
                f"task {task.name}: constant {name!r} = {v} clashes with the machine's "
                f"constant {name} = {POOL_CONSTANTS[name]}; rename it"
            )
    return {**POOL_CONSTANTS, **{n: float(v) for n, v in task.constants.items()}}


def check_reserved_names(task: TaskSpec) -> None:
    """Raise ``ValueError`` if the task uses a name reserved for the pool."""
    for name in [a.name for a in task.args] + [t.name for t in task.scratch]:
        if name.startswith(POOL_PREFIX) or name in POOL_CONSTANTS:
            raise ValueError(
                f"task {task.name}: {name!r} is reserved for the machine's scratch pool or "
                f"constants (names starting with {POOL_PREFIX!r}, {', '.join(POOL_CONSTANTS)}); "
                "rename it"
            )
