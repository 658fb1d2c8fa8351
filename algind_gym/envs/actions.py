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
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from algind_gym.skills.image import MachineImage
from algind_gym.skills.signature import accepts, base_type
from algind_gym.tasks.spec import TaskSpec

HALT = "HALT"


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
    """Per skill, the boolean ``(arity, n_pointers)`` binding mask."""

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
        if skill == HALT:
            return True
        s = self.skills.index(skill)
        if len(bindings) != self.arity[s]:
            return False
        acc = self.slot_accepts[s]
        return all(0 <= p < self.n_pointers and acc[j, p] for j, p in enumerate(bindings))


def build_action_table(
    image: MachineImage, task: TaskSpec, max_candidates: int = 200_000
) -> ActionTable:
    """Enumerate candidate actions for ``task`` on ``image`` (see the module docstring)."""
    library = image.library
    pointers = image.pointers
    inputs = {a.name for a in task.args if a.role == "in"}
    skills = tuple(k for k in library.keys() if k in image.programs)  # noqa: SIM118 (iterating a library yields skills)
    arity, accepts_all, candidates, valid = [], [], [], []
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
            for pi, p in enumerate(pointers):
                pkind = base_type(p.type)
                if kind == "skill":
                    ok = pkind == "skill" and accepts(slot.type, p.type)
                else:
                    ok = pkind == kind or {pkind, kind} == {"vector", "matrix"}
                if ok:
                    opts.append(pi)
            choices.append(opts)
        for binds in itertools.product(*choices):
            candidates.append((si, tuple(binds)))
            valid.append(all(acc[j, p] for j, p in enumerate(binds)))
            if len(candidates) > max_candidates:
                raise ValueError(
                    f"task {task.name}: more than {max_candidates} candidate actions; "
                    "use action_encoding='multidiscrete' or a smaller library"
                )
    return ActionTable(
        skills=skills,
        arity=tuple(arity),
        max_arity=max(arity, default=0),
        n_pointers=len(pointers),
        candidates=tuple(candidates),
        valid=np.array(valid, dtype=bool),
        slot_accepts=tuple(accepts_all),
    )
