"""`Workspace`: a task at one length as a batch of machines; the one way to run an action.

Given a library, a task, a length and K examples, a workspace

1. generates K examples with ``numpy.random.default_rng(seed)`` (same seed, same inputs),
2. builds a :class:`~algind_gym.skills.image.MachineImage`: every library skill block plus
   memory sized for the task at that length, and a pointer table with, in this order, the
   task's arguments, its scratch buffers, its constants and one ``&name@version`` entry
   per skill -- everything an action can bind,
3. writes each example's inputs into its machine (:meth:`Workspace.reset`),
4. runs actions (:meth:`Workspace.execute`, which is
   :meth:`~algind_gym.skills.image.MachineImage.execute`: bind W^in, top-level call, run),
5. reads outputs and scores them against the oracle (:meth:`Workspace.score`).

The environments (``algind_gym.envs``), ``verify-tasks`` and the curriculum runner all use
this class, so an action means the same thing everywhere. A solved program becomes a skill
with :func:`compile_task_program`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from algind_gym.machine.isa import Fault
from algind_gym.machine.state import MachineState
from algind_gym.skills.compose import temp_shape
from algind_gym.skills.image import (
    Buffer,
    ExecResult,
    MachineImage,
    build_image,
    default_stack_size,
)
from algind_gym.skills.library import Skill, SkillLibrary
from algind_gym.tasks.spec import Example, TaskSpec

Action = tuple[str, Sequence[int | str]]


@dataclass
class Score:
    """Per-example scores of a batch.

    Attributes:
        fraction: fraction of output elements within tolerance (0 for a faulted machine).
        success: all elements within tolerance and no fault.
        faults: fault codes.
    """

    fraction: np.ndarray
    success: np.ndarray
    faults: np.ndarray

    @property
    def accuracy(self) -> float:
        """Fraction of examples solved."""
        return float(np.mean(self.success)) if self.success.size else 1.0


def _shape_of(value: np.ndarray) -> tuple[int, int]:
    v = np.asarray(value)
    if v.ndim == 0:
        return 1, 1
    if v.ndim == 1:
        return v.shape[0], 1
    return v.shape[0], v.shape[1]


class Workspace:
    """A task at one length on K machines (see the module docstring).

    Args:
        library: the skills an action may call.
        task: the task.
        length: the instance length.
        batch: K, the number of examples (machines).
        seed: seeds the example generator.
        dtype: cell dtype (float64 by default, float32 also supported).
        capacity: lay the machines out (memory, stack, instruction budget) as for this
            length when it is larger than ``length``; every length up to it then shares one
            layout. The environments use it; results do not depend on it.

    Example:
        >>> from algind_gym.skills.builtin import builtin_library
        >>> from algind_gym.tasks import get_task
        >>> ws = Workspace(builtin_library(), get_task("VectorAdd"), length=3, batch=2, seed=0)
        >>> state = ws.reset()
        >>> _ = ws.execute(state, "zipmap", ws.bind(["&s_add", "x", "y", "out"]))
        >>> ws.score(state).success.tolist()
        [True, True]
    """

    def __init__(
        self,
        library: SkillLibrary,
        task: TaskSpec,
        length: int,
        *,
        batch: int = 1,
        seed: int = 0,
        dtype=np.float64,
        capacity: int | None = None,
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.library, self.task, self.length, self.batch, self.dtype = (
            library,
            task,
            length,
            batch,
            dtype,
        )
        rng = np.random.default_rng(seed)
        self.examples: list[Example] = [task.generator(rng, length) for _ in range(batch)]
        self.expected: list[Example] = [task.oracle(ex) for ex in self.examples]
        buffers = _task_buffers(task, self.examples, self.expected)
        self.capacity = length if capacity is None else max(length, int(capacity))
        memory = stack = None
        if self.capacity > length:
            # Lay the machines out as for the capacity length, so that every length up to
            # it shares one layout (the vector env batches them; observations keep a size).
            probe = task.generator(np.random.default_rng(0), self.capacity)
            cells = sum(b.size for b in _task_buffers(task, [probe], [task.oracle(probe)]))
            memory, stack = cells, default_stack_size(cells)
        self.image: MachineImage = build_image(
            library, buffers, memory_size=memory, stack_size=stack
        )
        self.max_steps = task.budget(self.capacity)

    # --------------------------------------------------------------- pointers
    @property
    def pointer_names(self) -> list[str]:
        return [p.name for p in self.image.pointers]

    def bind(self, names: Sequence[int | str]) -> list[int]:
        """Pointer-table indices for names (``"x"``, ``"zero"``, ``"&s_add"``); ints pass."""
        return [
            n if isinstance(n, (int, np.integer)) else self.image.pointer_index(n) for n in names
        ]

    def can_bind(self, pointer: int, skill: str, slot: int) -> bool:
        """The type-compatibility predicate (see :func:`algind_gym.skills.signature.accepts`)."""
        return self.image.can_bind(pointer, skill, slot)

    def binding_mask(self, skill: str) -> np.ndarray:
        """Boolean ``(n_slots, n_pointers)`` mask of the entries each slot of ``skill`` accepts."""
        return self.image.binding_mask(skill)

    # ------------------------------------------------------------------ state
    def reset(self) -> MachineState:
        """Fresh machines holding the examples' inputs (outputs and scratch zeroed)."""
        state = self.image.new_state(self.batch, self.dtype)
        for a in self.task.args:
            if a.role in ("in", "inout"):
                self.image.write(
                    state,
                    a.name,
                    np.stack([np.asarray(ex[a.name], dtype=np.float64) for ex in self.examples]),
                )
        return state

    def execute(
        self,
        state: MachineState,
        skill: str,
        bindings: Sequence[int],
        backend="reference",
        max_steps: int | None = None,
        mode: int = 0,
    ) -> ExecResult:
        """Run one action on all K machines; a bad action or a fault never raises."""
        return self.image.execute(
            state,
            skill,
            bindings,
            backend,
            self.max_steps if max_steps is None else max_steps,
            mode,
        )

    def run_program(
        self, state: MachineState, steps: Sequence[Action], backend="reference"
    ) -> list[ExecResult]:
        """Execute ``(skill, bindings)`` steps in order (bindings by name or index)."""
        results = []
        for skill, names in steps:
            try:
                bindings = self.bind(names)
            except KeyError as e:
                bindings = [-1] * len(names)
                del e
            results.append(self.execute(state, skill, bindings, backend))
            if not (state.faults == Fault.NONE).any():
                break
        return results

    # ---------------------------------------------------------------- outputs
    def outputs(self, state: MachineState) -> dict[str, np.ndarray]:
        """The output and inout arguments of every machine, shape ``(K, *shape)``."""
        return {n: self.image.read(state, n) for n in self.task.outputs}

    def score(self, state: MachineState) -> Score:
        """Score every machine against the oracle (a faulted machine scores 0)."""
        outs = self.outputs(state)
        faults = state.faults.copy()
        frac = np.zeros(self.batch)
        ok = np.zeros(self.batch, dtype=bool)
        for k, ex in enumerate(self.examples):
            mine = {n: v[k] for n, v in outs.items()}
            f, s = self.task.score_example(ex, mine)
            frac[k] = 0.0 if faults[k] else f
            ok[k] = s and not faults[k]
        return Score(frac, ok, faults)

    # ---- env-fast: in-place refill for the vector env's autoreset (owned by algind_gym.envs) ----
    def refill(self, seed: int) -> None:
        """Draw new examples from ``seed`` at the same length, keeping the image.

        Afterwards the workspace holds what ``Workspace(library, task, length, seed=seed,
        ...)`` would, without rebuilding the image (layout, linked code, pointer table):
        the same generator and oracle calls as the constructor, in the same order.
        :meth:`reset` then gives fresh machines for the new examples.

        Raises:
            ValueError: the new examples' shapes differ from the image's buffers.
        """
        rng = np.random.default_rng(seed)
        examples = [self.task.generator(rng, self.length) for _ in range(self.batch)]
        expected = [self.task.oracle(ex) for ex in examples]
        for ex, want in zip(examples, expected, strict=True):
            for arg in self.task.args:
                v = want[arg.name] if arg.role == "out" else ex[arg.name]
                buf = self.image.buffers[arg.name][1]
                if _shape_of(v) != (buf.rows, buf.cols):
                    raise ValueError(
                        f"task {self.task.name}: examples from seed {seed} do not fit this "
                        f"workspace's buffer {arg.name!r}; build a new Workspace instead"
                    )
        self.examples, self.expected = examples, expected

    # ---- end env-fast block ----


def _task_buffers(task: TaskSpec, examples: list[Example], expected: list[Example]) -> list[Buffer]:
    """Memory buffers of a task instance: arguments, scratch, constants (in that order)."""
    values = {**expected[0], **examples[0]}
    shapes: dict[str, tuple[int, int]] = {}
    buffers: list[Buffer] = []
    for a in task.args:
        if a.name not in values:
            raise ValueError(
                f"task {task.name}: argument {a.name!r} ({a.role}) is missing from the "
                "generator's example (inputs) or the oracle's result (outputs)"
            )
        rows, cols = _shape_of(values[a.name])
        shapes[a.name] = (rows, cols)
        buffers.append(Buffer(a.name, a.type, rows, cols))
    for ex, want in zip(examples, expected, strict=True):
        for a in task.args:
            v = want[a.name] if a.role == "out" else ex[a.name]
            if _shape_of(v) != shapes[a.name]:
                raise ValueError(f"task {task.name}: examples disagree on the shape of {a.name!r}")
    for t in task.scratch:
        rows, cols = temp_shape(t, shapes)
        buffers.append(Buffer(t.name, t.type, rows, cols))
    for c, v in task.constants.items():
        buffers.append(Buffer(c, "scalar", 1, 1, value=float(v)))
    return buffers


def compile_task_program(
    library: SkillLibrary,
    task: TaskSpec,
    steps: Sequence[tuple[str, Sequence[str]]],
    *,
    name: str | None = None,
    description: str | None = None,
) -> Skill:
    """Turn a program for ``task`` into a library skill with the task's signature.

    Bindings are pointer-table names: task arguments map to the skill's arguments, scratch
    buffers to stack temporaries (same shape expressions), constants to immediate values,
    and ``&skill`` entries to skill references.

    Args:
        library: receives the new skill (append-only).
        task: the solved task.
        steps: ``(skill, [pointer names])`` per step, e.g. from
            ``Workspace.pointer_names`` of the indices an agent chose.
        name: skill name (default: the task name).
        description: default: the task description.
    """
    consts = task.constants
    converted = []
    for skill, names in steps:
        converted.append(
            (skill, [consts[n] if isinstance(n, str) and n in consts else n for n in names])
        )
    return library.compose(
        name or task.name,
        list(task.args),
        converted,
        temps=list(task.scratch),
        description=description or task.description,
        infer_roles=False,
    )
