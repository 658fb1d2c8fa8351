"""The candidate *ops* of the gradient composer (what one entry of alpha selects).

An op is what one entry of the paper's alpha (equation 2) selects. Data slots are mixed
softly (W^in), but a skill-typed slot (a combinator's ``f``) and the shape of a data slot
are structural: a mixture of two skills' code or of a 3-vector and a 4-vector is not a
value the machine can hold. So an op fixes a library skill, a skill pointer for each of its
skill-typed slots, and a *shape class* (type, rows, cols) for each data slot; W^in is then a
softmax over the workspace buffers of that class. A combinator therefore appears once per
compatible ``f`` (``zipmap[&s_add]``, ``zipmap[&s_mul]``, ...). Written slots (role ``out`` or
``inout``) never bind a task input or a constant, as in the environments' action mask (a
constant becomes an immediate value when a program is compiled into a skill).

The batched differentiable step that runs the ops is
:class:`~agents.gradient.step.SoftStep` (re-exported here).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from agents.gradient.step import SoftStep, StepRun
from algind_gym.skills.image import MachineImage
from algind_gym.skills.library import SkillLibrary
from algind_gym.skills.signature import accepts, base_type
from algind_gym.tasks import TaskSpec

ShapeClass = tuple[str, int, int]
"""``(type, rows, cols)`` of a buffer: buffers of one class can be mixed elementwise."""

__all__ = [
    "Op",
    "ShapeClass",
    "Slot",
    "SoftStep",
    "StepRun",
    "buffer_classes",
    "enumerate_ops",
    "to_outputs",
]


@dataclass(frozen=True)
class Slot:
    """One slot of an op: a skill pointer (``skill`` set) or a mixed data slot."""

    name: str
    role: str
    skill: str | None = None
    shape: ShapeClass | None = None
    candidates: tuple[str, ...] = ()
    """Workspace buffers of the slot's shape class it may read/write (W^in's support)."""

    @property
    def written(self) -> bool:
        return self.skill is None and self.role in ("out", "inout")


@dataclass(frozen=True)
class Op:
    """A skill with its skill-typed arguments and data shape classes fixed (see module doc)."""

    skill: str
    slots: tuple[Slot, ...]

    @property
    def label(self) -> str:
        fs = [s.skill for s in self.slots if s.skill is not None]
        return f"{self.skill}[{','.join(fs)}]" if fs else self.skill

    @property
    def full_label(self) -> str:
        """The label plus every data slot's shape: unique among the ops of one task."""
        shapes = [f"{s.shape[1]}x{s.shape[2]}" for s in self.slots if s.shape is not None]
        return f"{self.label}({','.join(shapes)})"

    @property
    def data_slots(self) -> list[int]:
        return [j for j, s in enumerate(self.slots) if s.skill is None]

    def writes(self, names: set[str]) -> bool:
        """Whether some written slot may bind one of ``names``."""
        return any(s.written and names & set(s.candidates) for s in self.slots)


def buffer_classes(image: MachineImage) -> dict[str, ShapeClass]:
    """The shape class of every data buffer of a workspace image."""
    return {name: (buf.type, buf.rows, buf.cols) for name, (_, buf) in image.buffers.items()}


def enumerate_ops(
    library: SkillLibrary,
    task: TaskSpec,
    image: MachineImage,
    skills: list[str] | None = None,
    max_ops: int = 400,
    read_from: dict[ShapeClass, list[str]] | None = None,
    no_inout: bool = False,
    outputs: set[str] | None = None,
) -> list[Op]:
    """Every op of ``library`` (latest versions, or only ``skills``, which then also limits
    the skills a combinator's ``f`` may take) on a workspace ``image``.

    ``read_from`` (dataflow restriction): the buffers a reading slot may load, per shape
    class (e.g. the inputs and constants, plus what earlier steps wrote); a reading slot's
    candidates are those, and a shape class with none is no option for it, so an op that
    could only read uninitialised memory is not enumerated. None: every buffer is readable.
    ``no_inout``: leave out skills with a slot that is both read and written.
    ``outputs``: keep only ops that can write one of these, their written slots bound to
    them only (:func:`to_outputs`; a last step's ops); ``max_ops`` counts the ops kept.

    Raises:
        ValueError: when more than ``max_ops`` ops arise (restrict ``skills``).
    """
    classes = buffer_classes(image)
    # inputs and constants (the task's and the pool's) are read-only: never an output
    protected = {name for name, (_, buf) in image.buffers.items() if buf.read_only}
    protected |= {a.name for a in task.args if a.role == "in"} | set(task.constants)
    skill_ptrs = [p for p in image.pointers if p.skill is not None]
    wanted = {library.get(s).key for s in skills} if skills is not None else None
    ops: list[Op] = []
    for sk in library.latest():
        if wanted is not None and sk.key not in wanted:
            continue
        if sk.key not in image.programs or not sk.slots:
            continue
        if no_inout and any(slot.role == "inout" for slot in sk.slots):
            continue
        choices: list[list[Slot]] = []
        for slot in sk.slots:
            opts: list[Slot] = []
            if base_type(slot.type) == "skill":
                for p in skill_ptrs:
                    if wanted is not None and p.skill not in wanted:
                        continue
                    if accepts(slot.type, p.type):
                        opts.append(Slot(slot.name, slot.role, skill=p.skill))
            else:
                by_class: dict[ShapeClass, list[str]] = {}
                for name, cls in classes.items():
                    if not accepts(slot.type, cls[0]):
                        continue
                    if slot.role in ("out", "inout") and name in protected:
                        continue
                    by_class.setdefault(cls, []).append(name)
                if read_from is not None and slot.role == "in":
                    # a reading slot loads only readable buffers
                    by_class = {
                        cls: list(names)
                        for cls, names in read_from.items()
                        if names and accepts(slot.type, cls[0])
                    }
                elif read_from is not None and slot.role == "inout":
                    # read and written in place: readable and writable
                    by_class = {
                        cls: [n for n in names if n in read_from.get(cls, ())]
                        for cls, names in by_class.items()
                    }
                    by_class = {cls: names for cls, names in by_class.items() if names}
                for cls, names in by_class.items():
                    opts.append(Slot(slot.name, slot.role, shape=cls, candidates=tuple(names)))
            choices.append(opts)
        for combo in itertools.product(*choices):
            op = Op(sk.key, tuple(combo))
            if outputs is not None:
                op = to_outputs(op, outputs)
                if op is None:
                    continue
            ops.append(op)
            if len(ops) > max_ops:
                raise ValueError(
                    f"task {task.name}: more than {max_ops} candidate ops; pass skills=[...] "
                    "to the gradient composer to restrict the library"
                )
    return ops


def to_outputs(op: Op, outputs: set[str]) -> Op | None:
    """``op`` for the last step: each written slot that may bind a task output binds only
    the outputs (a last step's write to scratch could not change the result); None when no
    written slot may bind one."""
    if not op.writes(outputs):
        return None
    slots = tuple(
        replace(s, candidates=tuple(c for c in s.candidates if c in outputs))
        if s.written and outputs & set(s.candidates)
        else s
        for s in op.slots
    )
    return Op(op.skill, slots)
