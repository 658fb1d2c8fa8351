"""`TaskSpec` and the task registry.

A task is data plus three functions: a seeded ``generator(rng, length) -> example`` (a
dict of numpy arrays, one per input/inout argument, plus any hidden entries whose names
start with ``_``), an ``oracle(example) -> expected`` (one array per output/inout
argument) and a :class:`Tolerance`. Optionally a ``scorer(example, outputs) -> (fraction,
success)`` replaces the oracle comparison (used by ``TrainLinearRegression``, whose success
is a held-out loss, not matching a trajectory).

Batched examples: a workspace needs K examples of one length at every episode, so a task
may also give ``batch_generator(rng, length, k)`` (the K examples in one call, every array
with a leading axis of K) and ``batch_oracle(examples)`` (the oracle over that leading
axis). Both are optional and independent; :meth:`TaskSpec.draw` uses each one a task has
and falls back to K calls of the per-example function otherwise, so a user task with only
``generator`` and ``oracle`` works unchanged. A batched generator draws from the same
distribution as the per-example one but consumes the random stream in another order, so
its examples for a seed differ; every environment (single or vector) draws through
:meth:`TaskSpec.draw`, so they agree with each other.

Tolerances: integer tasks are exact (``Tolerance()``); real-valued tasks use
:data:`REAL` = ``|got - want| <= atol + rtol * |want|`` with ``rtol = 1e-6``,
``atol = 1e-9`` (values are O(1); the default workspace dtype is float64, and every
backend computes the same bits, so the slack only absorbs summation-order differences
between the oracle and the machine).

Working memory comes from the machine, not the task: every workspace offers a scratch
pool shaped from the signature and the constants ``zero`` and ``one``
(:mod:`algind_gym.tasks.pool`). ``scratch`` (temporary buffers whose shapes are dimension
expressions over the argument names, see :class:`~algind_gym.skills.compose.Temp`) and
``constants`` (named scalars) are an optional extra for what the pool does not cover.
When a program for the task is compiled into a skill
(:func:`algind_gym.tasks.workspace.compile_task_program`) the scratch buffers it uses
become stack temporaries and constants immediate values, so the skill is self-contained.

Lengths: :meth:`TaskSpec.check_length` accepts integers in ``[0, max_length]``
(``length_limit``, default 4x the largest training or test length) and refuses anything
else with a clear error; workspaces (and so the environments) call it at construction.

The registry holds built-in and user tasks; ids are ``AlgInd/<Name>-v0``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from algind_gym.skills.compose import Temp
from algind_gym.skills.signature import ArgSpec, base_type, check_name, format_signature
from algind_gym.tasks.pool import check_reserved_names, pool_constants

Example = dict[str, np.ndarray]


@dataclass(frozen=True)
class Tolerance:
    """Elementwise closeness: ``|got - want| <= atol + rtol * |want|`` (both 0: exact)."""

    rtol: float = 0.0
    atol: float = 0.0

    def close(self, got: np.ndarray, want: np.ndarray) -> np.ndarray:
        got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
        if self.rtol == 0 and self.atol == 0:
            return got == want
        return np.abs(got - want) <= self.atol + self.rtol * np.abs(want)

    @property
    def exact(self) -> bool:
        return self.rtol == 0 and self.atol == 0


EXACT = Tolerance()
REAL = Tolerance(rtol=1e-6, atol=1e-9)


@dataclass(frozen=True)
class TaskSpec:
    """One curriculum task (see the module docstring).

    Attributes:
        name: identifier; the environment id is ``AlgInd/<name>-v0``.
        description: natural language, shown to agents and description-based priors.
        args: the task's arguments in order, with roles ``in``/``out``/``inout``; this is
            also the signature of the skill that solving the task adds to the library.
        generator: ``(rng, length) -> example``.
        oracle: ``example -> {output name: expected array}``.
        tolerance: :data:`EXACT` for integer tasks, e.g. :data:`REAL` for reals.
        train_lengths / test_lengths: the length-generalisation split.
        level: curriculum level (a task's prerequisites have lower levels).
        track: ``"numeric"`` or ``"algorithmic"`` (free text for user tasks).
        prerequisites: names of tasks whose skills a solution may use.
        scratch: extra temporary buffers offered in the pointer table, besides the pool.
        constants: extra named scalar constants, besides ``zero`` and ``one``.
        max_steps: instruction budget of one action at a length (default
            ``100_000 + 5_000 * length``).
        scorer: optional ``(example, outputs) -> (fraction, success)``.
        length_limit: the largest length a workspace accepts (default: 4 x the largest
            training or test length); larger lengths are refused by :meth:`check_length`
            rather than left to run for minutes.
        batch_generator: optional ``(rng, length, k) -> examples``, K examples in one call
            (each array with a leading axis of K); see :meth:`draw`.
        batch_oracle: optional ``examples -> expected`` over a leading axis of K; it must
            agree with ``oracle`` on every example.
    """

    name: str
    description: str
    args: tuple[ArgSpec, ...]
    generator: Callable[[np.random.Generator, int], Example]
    oracle: Callable[[Example], Example]
    tolerance: Tolerance = EXACT
    train_lengths: tuple[int, ...] = (1, 2, 4, 8)
    test_lengths: tuple[int, ...] = (32, 64)
    level: int = 1
    track: str = "numeric"
    prerequisites: tuple[str, ...] = ()
    scratch: tuple[Temp, ...] = ()
    constants: dict[str, float] = field(default_factory=dict)
    max_steps: Callable[[int], int] | None = None
    scorer: Callable[[Example, Example], tuple[float, bool]] | None = None
    length_limit: int | None = None
    batch_generator: Callable[[np.random.Generator, int, int], Example] | None = None
    batch_oracle: Callable[[Example], Example] | None = None

    def __post_init__(self) -> None:
        check_name(self.name, "task name")
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "scratch", tuple(self.scratch))
        object.__setattr__(self, "train_lengths", tuple(self.train_lengths))
        object.__setattr__(self, "test_lengths", tuple(self.test_lengths))
        object.__setattr__(self, "prerequisites", tuple(self.prerequisites))
        names = [a.name for a in self.args] + [t.name for t in self.scratch] + list(self.constants)
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(
                f"task {self.name}: names used twice among args/scratch/constants: {dup}"
            )
        for a in self.args:
            if base_type(a.type) == "skill":
                raise ValueError(f"task {self.name}: argument {a.name!r} must be data, not a skill")
        if not any(a.role in ("out", "inout") for a in self.args):
            raise ValueError(f"task {self.name}: needs at least one out or inout argument")
        for c in self.constants:
            check_name(c, "constant name")
        check_reserved_names(self)
        pool_constants(self)  # a declared zero/one must have the pool's value
        if not self.train_lengths or not self.test_lengths:
            raise ValueError(f"task {self.name}: train_lengths and test_lengths must be non-empty")
        if self.length_limit is not None and (
            isinstance(self.length_limit, bool)
            or not isinstance(self.length_limit, int)
            or self.length_limit < max(*self.train_lengths, *self.test_lengths)
        ):
            raise ValueError(
                f"task {self.name}: length_limit must be an integer >= every training and "
                f"test length, got {self.length_limit!r}"
            )

    @property
    def env_id(self) -> str:
        return f"AlgInd/{self.name}-v0"

    @property
    def signature(self) -> str:
        return format_signature(self.name, self.args)

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.args if a.role in ("out", "inout"))

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.args if a.role in ("in", "inout"))

    @property
    def max_length(self) -> int:
        """The largest length :meth:`check_length` accepts (see ``length_limit``)."""
        if self.length_limit is not None:
            return int(self.length_limit)
        return 4 * max(*self.train_lengths, *self.test_lengths)

    def check_length(self, length: object, what: str = "length") -> int:
        """``length`` as an int if it is an integer in ``[0, max_length]``, else a
        ``ValueError`` naming ``what``, the value and the accepted range.

        Example:
            >>> from algind_gym.tasks import get_task
            >>> get_task("VectorAdd").check_length(2.7)
            Traceback (most recent call last):
            ...
            ValueError: length must be an integer in [0, 256] for task VectorAdd, got 2.7 (float)
        """
        ok = isinstance(length, (int, np.integer)) and not isinstance(length, bool)
        if not ok or not 0 <= int(length) <= self.max_length:
            kind = "" if ok else f" ({type(length).__name__})"
            hint = (
                f"; lengths above {self.max_length} are refused (raise TaskSpec.length_limit "
                "to allow them)"
                if ok and int(length) > self.max_length
                else ""
            )
            raise ValueError(
                f"{what} must be an integer in [0, {self.max_length}] for task {self.name}, "
                f"got {length!r}{kind}{hint}"
            )
        return int(length)

    def budget(self, length: int) -> int:
        """Instruction budget of one action at ``length``."""
        return int(self.max_steps(length) if self.max_steps else 100_000 + 5_000 * length)

    def draw(self, rng: np.random.Generator, length: int, k: int) -> tuple[Example, Example]:
        """K examples at ``length`` and their expected outputs, stacked.

        Returns:
            ``(examples, expected)``: dicts of arrays with a leading axis of ``k`` (float64
            where the task's values are), from :attr:`batch_generator` /
            :attr:`batch_oracle` when the task has them, else from ``k`` calls of
            :attr:`generator` / :attr:`oracle` in order (one random stream, ``rng``).

        Raises:
            ValueError: the K examples (or expected outputs) disagree on the shape of an
                entry, or a batched function returned the wrong leading axis.
        """
        if self.batch_generator is not None:
            examples = _checked(self.batch_generator(rng, length, k), k, self.name, "examples")
        else:
            examples = _stack([self.generator(rng, length) for _ in range(k)], self.name)
        if self.batch_oracle is not None:
            expected = _checked(self.batch_oracle(examples), k, self.name, "expected outputs")
        else:
            expected = _stack([self.oracle(ex) for ex in unstack(examples, k)], self.name)
        return examples, expected

    def score_example(self, example: Example, outputs: Example) -> tuple[float, bool]:
        """Fraction of output elements within tolerance, and whether all are."""
        if self.scorer is not None:
            frac, ok = self.scorer(example, outputs)
            return float(frac), bool(ok)
        want = self.oracle(example)
        hits, total = 0, 0
        for name in self.outputs:
            c = self.tolerance.close(outputs[name], want[name])
            hits += int(np.count_nonzero(c))
            total += c.size
        return (1.0 if total == 0 else hits / total), hits == total


def unstack(batch: Example, k: int) -> list[Example]:
    """The ``k`` examples of a stacked batch, as views (``batch[name][i]`` per example)."""
    items = list(batch.items())
    return [{n: v[i] for n, v in items} for i in range(k)]


def _stack(examples: list[Example], task: str) -> Example:
    out = {}
    for name in examples[0]:
        try:
            out[name] = np.stack([np.asarray(ex[name]) for ex in examples])
        except (ValueError, KeyError):
            raise ValueError(
                f"task {task}: examples disagree on the shape of {name!r} (every example of a "
                "length must have the same shapes)"
            ) from None
    return out


def _checked(batch: Example, k: int, task: str, what: str) -> Example:
    out = {n: np.asarray(v) for n, v in batch.items()}
    for n, v in out.items():
        if v.ndim == 0 or v.shape[0] != k:
            raise ValueError(
                f"task {task}: the batched function's {what} entry {n!r} has shape {v.shape}; "
                f"it needs a leading axis of {k} (one row per example)"
            )
    return out


_REGISTRY: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec, *, replace: bool = False) -> TaskSpec:
    """Add a task to the registry (``replace=True`` to redefine a name).

    Its prerequisites must already be registered and have a lower level.
    """
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"task {spec.name!r} is already registered; pass replace=True")
    for p in spec.prerequisites:
        if p not in _REGISTRY:
            raise ValueError(f"task {spec.name!r}: prerequisite {p!r} is not registered")
        if _REGISTRY[p].level >= spec.level:
            raise ValueError(
                f"task {spec.name!r} (level {spec.level}) cannot require {p!r} "
                f"(level {_REGISTRY[p].level}); prerequisites need a lower level"
            )
    _REGISTRY[spec.name] = spec
    return spec


def unregister_task(name: str) -> None:
    """Remove a task (for tests and notebooks); unknown names are ignored."""
    _REGISTRY.pop(name, None)


def get_task(name: str) -> TaskSpec:
    """A task by name or environment id (``AlgInd/<Name>-v0``)."""
    if name.startswith("AlgInd/") and name.endswith("-v0"):
        name = name[len("AlgInd/") : -len("-v0")]
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no task {name!r}; registered tasks: {', '.join(_REGISTRY)}") from None


def list_tasks(*, level: int | None = None, track: str | None = None) -> list[TaskSpec]:
    """Registered tasks in curriculum order (level, then registration order)."""
    order = {n: i for i, n in enumerate(_REGISTRY)}
    tasks = [
        t
        for t in _REGISTRY.values()
        if (level is None or t.level == level) and (track is None or t.track == track)
    ]
    return sorted(tasks, key=lambda t: (t.level, order[t.name]))
