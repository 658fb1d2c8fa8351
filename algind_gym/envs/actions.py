"""Action encodings and exact action masks of :class:`~algind_gym.envs.SkillCompositionEnv`.

An action is the paper's hard alpha plus W^in: one skill of the library and, for each of its
slots, a pointer-table entry to load into that slot. Two encodings:

``"discrete"`` (default)
    One index per *candidate* ``(skill, bindings)`` tuple, plus HALT as the last index.
    Candidates are the tuples whose every binding has the slot's base kind (a data slot
    gets a vector, matrix or scalar entry as its kind says, a skill slot an entry of a
    skill with exactly the argument types it calls). The mask is exact for the rule an
    action must satisfy to run: every binding is accepted by
    :func:`~algind_gym.skills.signature.accepts` (e.g. a vector slot takes a matrix, a
    matrix slot does not take a vector) and no written slot (role ``out``/``inout``)
    names a task input, so the examples' inputs are never overwritten. An unmasked action
    runs; a masked one is refused with the invalid-action penalty.

``"multidiscrete"``
    ``[skill (HALT last), pointer for slot 0, ..., pointer for slot max_arity - 1]``;
    components beyond a skill's arity are ignored. Its mask (sb3-contrib convention: the
    per-component masks concatenated) is the exact *projection* of the set of valid actions
    onto each component: a component value is allowed iff some valid action uses it. A
    factorised mask cannot express "slot 1 depends on the skill", so an in-mask
    multidiscrete action can still be invalid; it then costs the invalid-action penalty.

Candidates are the same at every length of a task (types and roles do not depend on it),
so the tables are built once per environment.

The binding rule lives in one place, :meth:`ActionTable.binding_error`: the masks are
built from the same per-slot table (:attr:`ActionTable.slot_accepts`) that it reads, and
``encode`` raises its message, which names the slot, the pointer given, its type and role,
and what the slot accepts.

Pointer roles (:data:`POINTER_ROLES`): ``input`` (a task ``in`` argument), ``output``
(``out``/``inout``: scored), ``scratch`` (a buffer without a fixed value), ``constant`` (a
buffer with a fixed value) and ``skill`` (a skill reference).
"""

from __future__ import annotations

import itertools
import math
import weakref
from dataclasses import dataclass

import numpy as np

from algind_gym.skills.image import MachineImage
from algind_gym.skills.signature import ArgSpec, accepts, base_type
from algind_gym.tasks.spec import TaskSpec

HALT = "HALT"
POINTER_ROLES = ("input", "output", "scratch", "constant", "skill")
"""Role of a pointer-table entry (see the module docstring)."""


def pointer_roles(image: MachineImage, task: TaskSpec) -> tuple[str, ...]:
    """The role (:data:`POINTER_ROLES`) of every pointer-table entry of ``image``."""
    arg_roles = {a.name: ("input" if a.role == "in" else "output") for a in task.args}
    roles = []
    for p in image.pointers:
        if p.skill is not None or base_type(p.type) == "skill":
            roles.append("skill")
        elif p.name in arg_roles:
            roles.append(arg_roles[p.name])
        elif p.name in image.buffers and image.buffers[p.name][1].value is not None:
            roles.append("constant")
        else:
            roles.append("scratch")
    return tuple(roles)


class ActionSpaceTooLarge(ValueError):
    """A task's discrete action space exceeds ``max_candidates`` (raised while building it)."""


@dataclass(frozen=True)
class ActionTable:
    """Every candidate action of a (library, task) pair and its validity."""

    skills: tuple[str, ...]
    """Skill keys in action order; index ``len(skills)`` is HALT."""
    arity: tuple[int, ...]
    max_arity: int
    n_pointers: int
    candidates: tuple[tuple[int, tuple[int, ...]], ...]
    """``(skill index, bindings)`` per discrete action (HALT excluded)."""
    valid: np.ndarray
    """Boolean per candidate: passes the exact binding rule."""
    slot_accepts: tuple[np.ndarray, ...]
    """Per skill, the boolean ``(arity, n_pointers)`` binding mask (the one rule)."""
    slots: tuple[tuple[ArgSpec, ...], ...] = ()
    """Per skill, its slots (arguments, then weights)."""
    pointer_names: tuple[str, ...] = ()
    pointer_types: tuple[str, ...] = ()
    pointer_roles: tuple[str, ...] = ()

    @property
    def n_discrete(self) -> int:
        return len(self.candidates) + 1

    @property
    def halt_index(self) -> int:
        return len(self.candidates)

    def discrete_mask(self) -> np.ndarray:
        return np.append(self.valid, True)

    def multidiscrete_nvec(self) -> np.ndarray:
        return np.array([len(self.skills) + 1] + [self.n_pointers] * self.max_arity, dtype=np.int64)

    def multidiscrete_mask(self) -> np.ndarray:
        mask = self.__dict__.get("_md_mask")
        if mask is None:
            mask = self._multidiscrete_mask()
            object.__setattr__(self, "_md_mask", mask)
        return mask.copy()

    def _multidiscrete_mask(self) -> np.ndarray:
        skill_ok = np.zeros(len(self.skills) + 1, dtype=bool)
        skill_ok[-1] = True
        slots = np.zeros((self.max_arity, self.n_pointers), dtype=bool)
        for (s, binds), ok in zip(self.candidates, self.valid, strict=True):
            if ok:
                skill_ok[s] = True
                for j, p in enumerate(binds):
                    slots[j, p] = True
        slots[:, 0] |= ~slots.any(axis=1)  # unused components: any value, say entry 0
        return np.concatenate([skill_ok, slots.ravel()])

    def decode_discrete(self, index: int) -> tuple[str, tuple[int, ...]]:
        if index == self.halt_index:
            return HALT, ()
        s, binds = self.candidates[index]
        return self.skills[s], binds

    def decode_multidiscrete(self, action: np.ndarray) -> tuple[str, tuple[int, ...]]:
        s = int(action[0])
        if s == len(self.skills):
            return HALT, ()
        return self.skills[s], tuple(int(p) for p in action[1 : 1 + self.arity[s]])

    def is_valid(self, skill: str, bindings: tuple[int, ...]) -> bool:
        """Whether ``(skill key, bindings)`` may run (:meth:`binding_error` is None)."""
        return skill == HALT or self.binding_error(skill, bindings) is None

    def binding_error(self, skill: str, bindings) -> str | None:
        """None if ``(skill key, bindings)`` passes the binding rule, else a message naming
        the slot, the pointer given (name, type, role) and what the slot accepts."""
        if skill == HALT:
            return None if len(bindings) == 0 else f"HALT takes no bindings, got {len(bindings)}"
        if skill not in self.skills:
            return f"skill {skill!r} is not installed in this environment's image"
        s = self.skills.index(skill)
        slots = self.slots[s]
        if len(bindings) != self.arity[s]:
            names = ", ".join(f"{a.name}: {a.type}" for a in slots)
            return f"{skill} takes {self.arity[s]} binding(s) ({names}), got {len(bindings)}"
        acc = self.slot_accepts[s]
        for j, p in enumerate(bindings):
            if isinstance(p, (bool, np.bool_)) or not isinstance(p, (int, np.integer)):
                return f"{self._slot(s, j)}: binding must be a pointer-table index, got {p!r}"
            if not 0 <= p < self.n_pointers:
                return (
                    f"{self._slot(s, j)}: pointer {int(p)} is outside the pointer table "
                    f"(0..{self.n_pointers - 1}); {self._accepted(s, j)}"
                )
            if not acc[j, p]:
                name, ptype, role = (
                    self.pointer_names[p],
                    self.pointer_types[p],
                    self.pointer_roles[p],
                )
                slot = slots[j]
                if accepts(slot.type, ptype):
                    why = f"the slot writes its argument and a {role} entry is read-only"
                else:
                    why = f"a {slot.type} slot does not take a {ptype}"
                return (
                    f"{self._slot(s, j)}: pointer {int(p)} {name!r} ({ptype}, {role}) "
                    f"cannot bind: {why}; {self._accepted(s, j)}"
                )
        return None

    def _slot(self, s: int, j: int) -> str:
        a = self.slots[s][j]
        return f"{self.skills[s]} slot {j} {a.name!r} ({a.type}, {a.role})"

    def _accepted(self, s: int, j: int) -> str:
        ok = [self.pointer_names[p] for p in np.flatnonzero(self.slot_accepts[s][j])]
        if not ok:
            return "no entry of this pointer table fits it"
        more = f" and {len(ok) - 12} more" if len(ok) > 12 else ""
        return f"it accepts {', '.join(ok[:12])}{more}"

    def candidate_index(self, skill: str, bindings: tuple[int, ...]) -> int | None:
        """The discrete index of ``(skill key, bindings)``; None if it is not a candidate."""
        if skill == HALT:
            return self.halt_index
        index = self.__dict__.get("_index")
        if index is None:
            index = {c: i for i, c in enumerate(self.candidates)}
            object.__setattr__(self, "_index", index)
        if skill not in self.skills:
            return None
        return index.get((self.skills.index(skill), tuple(int(p) for p in bindings)))


_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Per library: action tables by what they are built from (:func:`build_action_table`)."""


def build_action_table(
    image: MachineImage, task: TaskSpec, max_candidates: int = 200_000
) -> ActionTable:
    """Enumerate candidate actions for ``task`` on ``image`` (see the module docstring).

    A table depends only on the library's skills in the image, the pointer table's entries
    (name, type, skill, read-only, constant) and the task's arguments, never on a length or
    on examples, so it is built once per library and such inputs and then shared (read-only
    arrays): every environment of a task, and every sub-environment of a ``SyncVectorEnv``,
    gets the same table.
    """
    library = image.library
    key = (
        tuple(k for k in library.keys() if k in image.programs),  # noqa: SIM118
        pointer_roles(image, task),
        tuple((p.name, p.type, p.skill, p.read_only) for p in image.pointers),
        tuple(task.args),
        max_candidates,
    )
    tables = _TABLES.setdefault(library, {})
    table = tables.get(key)
    if table is None:
        if len(tables) >= 256:
            tables.clear()
        table = tables[key] = _build_action_table(image, task, max_candidates)
    return table


def _build_action_table(image: MachineImage, task: TaskSpec, max_candidates: int) -> ActionTable:
    library = image.library
    pointers = image.pointers
    inputs = {a.name for a in task.args if a.role == "in"}
    skills = tuple(k for k in library.keys() if k in image.programs)  # noqa: SIM118 (iterating a library yields skills)
    arity, accepts_all, candidates, valid = [], [], [], []
    kinds = [base_type(p.type) for p in pointers]
    for si, key in enumerate(skills):
        sk = library.get(key)
        slots = sk.slots
        arity.append(len(slots))
        acc = image.binding_mask(key) if slots else np.zeros((0, len(pointers)), dtype=bool)
        acc = acc & ~np.array(
            [[s.role in ("out", "inout") and p.name in inputs for p in pointers] for s in slots],
            dtype=bool,
        ).reshape(acc.shape)
        accepts_all.append(acc)
        choices = []
        for slot in slots:
            kind = base_type(slot.type)
            opts = []
            for pi, (p, pkind) in enumerate(zip(pointers, kinds, strict=True)):
                if kind == "skill":
                    ok = pkind == "skill" and accepts(slot.type, p.type)
                else:
                    ok = pkind == kind or {pkind, kind} == {"vector", "matrix"}
                if ok:
                    opts.append(pi)
            choices.append(opts)
        if len(candidates) + math.prod(len(c) for c in choices) > max_candidates:
            raise ActionSpaceTooLarge(
                f"task {task.name}: more than {max_candidates} candidate actions; "
                "use action_encoding='multidiscrete' or a smaller library"
            )
        combos = list(itertools.product(*choices))
        candidates.extend((si, binds) for binds in combos)
        if slots and combos:  # valid: every slot accepts its pointer
            b = np.array(combos, dtype=np.int64)
            valid.extend(acc[np.arange(len(slots)), b].all(axis=1).tolist())
        else:
            valid.extend([True] * len(combos))
    valid = np.array(valid, dtype=bool)
    for a in (valid, *accepts_all):
        a.flags.writeable = False  # shared by every env built from the same inputs
    return ActionTable(
        slots=tuple(library.get(k).slots for k in skills),
        pointer_names=tuple(p.name for p in pointers),
        pointer_types=tuple(p.type for p in pointers),
        pointer_roles=pointer_roles(image, task),
        skills=skills,
        arity=tuple(arity),
        max_arity=max(arity, default=0),
        n_pointers=len(pointers),
        candidates=tuple(candidates),
        valid=valid,
        slot_accepts=tuple(accepts_all),
    )
