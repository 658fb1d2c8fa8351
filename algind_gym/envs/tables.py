"""The task-agnostic ``"tables"`` observation: a pointer table, a skill table, masks.

Layout and meaning do not depend on the task or the library, so one policy network can act
in every task and at every curriculum level: rows are padded to fixed caps and every
feature is a fixed column. A policy scores skill rows to pick a skill and, for each of its
slots, attends over pointer rows to pick the entry to bind (the paper's alpha and W^in).

Keys (all ``Box``; caps ``P = pointer_cap``, ``S = skill_cap``, ``A = arity_cap``,
``C = class_cap``):

``pointers`` ``(P, 18)`` float32, row ``p`` = pointer-table entry ``p`` (zero rows: padding):
    0-4 type one-hot (empty, scalar, vector, matrix, skill);
    5-9 role one-hot (input, output, scratch, constant, skill; :data:`POINTER_ROLES`);
    10-11 ``log2(1 + rows)``, ``log2(1 + cols)``;
    12 for a skill entry, 1 + its row in ``skills`` (0 otherwise);
    13-15 ``symlog`` of the mean, min and max of its data over the K machines
    (``symlog(v) = sign(v) log(1 + |v|)``; 0 for skills and empty buffers);
    16 outputs only: the fraction of its elements already right, over the K machines;
    17 1 once an earlier call of this episode bound it to a written (out/inout) slot.
``skills`` ``(S, 8 + 8 A)`` float32, row ``s`` = skill ``s`` of the action space (skill
    ``s`` is component 0 value ``s`` of the multidiscrete encoding; HALT is
    ``n_skills``, always valid):
    0 present; 1-3 kind one-hot (atomic, combinator, composed); 4 level (0 for atomic
    skills and combinators, 1 + the largest level of its dependencies for a composed one);
    5 arity (slots, the weights slot included); 6 has a weights slot; 7 calls of it so far
    this episode; then per slot ``j < A``: 5 type one-hot (none, scalar, vector, matrix,
    skill) and 3 role one-hot (in, out, inout).
``skill_mask`` ``(S,)`` int8: 1 iff the skill has a valid binding (every slot accepts some
    entry).
``slot_class`` ``(S, A)`` int8: the binding class of slot ``j`` of skill ``s`` (-1: no slot).
    A slot's valid entries depend only on its type and on whether it writes, so slots share
    classes (far smaller than an ``(S, A, P)`` mask).
``class_mask`` ``(C, P)`` int8: ``class_mask[c, p] = 1`` iff entry ``p`` may be bound to a
    slot of class ``c``.
``globals`` ``(4,)`` float32: calls made, calls left, the potential (fraction of output
    elements right), ``log2(1 + length)``.

Exactness: ``(s, p_0..p_{k-1})`` is a valid action (the discrete mask) iff
``skill_mask[s]`` and ``class_mask[slot_class[s, j], p_j]`` for every ``j`` -- the rule
factorises per slot, so the component masks are exact, not a superset.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from algind_gym.envs.actions import POINTER_ROLES, ActionTable
from algind_gym.skills.library import SkillLibrary
from algind_gym.skills.signature import base_type

TYPES = ("empty", "scalar", "vector", "matrix", "skill")
SLOT_ROLES = ("in", "out", "inout")
KINDS = ("atomic", "combinator", "composed")
POINTER_FEATURES = 18
SKILL_FEATURES = 8
SLOT_FEATURES = len(TYPES) + len(SLOT_ROLES)
GLOBAL_FEATURES = 4
DEFAULT_CAPS = {"pointer_cap": 128, "skill_cap": 64, "arity_cap": 8, "class_cap": 32}


def symlog(v: np.ndarray) -> np.ndarray:
    return np.sign(v) * np.log1p(np.abs(v))


def skill_levels(library: SkillLibrary) -> dict[str, int]:
    """0 for atomic skills and combinators; 1 + max over dependencies for composed ones."""
    levels: dict[str, int] = {}
    for key in library.keys():  # noqa: SIM118 (dependencies precede dependents)
        sk = library.get(key)
        deps = [levels.get(library.get(d).key, 0) for d in sk.dependencies]
        levels[key] = 1 + max(deps, default=0) if sk.kind == "composed" else 0
    return levels


class TableSpec:
    """Static parts of the tables observation of one (library, task) action table.

    Args:
        actions: the environment's action table.
        library: the library (kinds, levels).
        pointer_cap, skill_cap, arity_cap, class_cap: the padded sizes; a cap smaller than
            the task needs raises ``ValueError`` naming the cap and the size needed.
    """

    def __init__(
        self,
        actions: ActionTable,
        library: SkillLibrary,
        *,
        pointer_cap: int,
        skill_cap: int,
        arity_cap: int,
        class_cap: int,
    ) -> None:
        P, S, A = pointer_cap, skill_cap, arity_cap
        n_p, n_s = actions.n_pointers, len(actions.skills)
        classes: dict[tuple[str, bool], int] = {}
        slot_class = np.full((S, A), -1, dtype=np.int8)
        class_rows: list[np.ndarray] = []
        for s, slots in enumerate(actions.slots):
            for j, a in enumerate(slots):
                c = classes.setdefault((a.type, a.role in ("out", "inout")), len(classes))
                if c == len(class_rows):
                    class_rows.append(actions.slot_accepts[s][j])
                elif not np.array_equal(class_rows[c], actions.slot_accepts[s][j]):
                    raise AssertionError(f"slot class {a.type}/{a.role} has two binding masks")
                if j < A and s < S:
                    slot_class[s, j] = c
        need = {
            "pointer_cap": n_p,
            "skill_cap": n_s,
            "arity_cap": actions.max_arity,
            "class_cap": len(classes),
        }
        caps = {"pointer_cap": P, "skill_cap": S, "arity_cap": A, "class_cap": class_cap}
        for name, n in need.items():
            if n > caps[name]:
                raise ValueError(
                    f"table cap {name}={caps[name]} is smaller than this task needs ({n}); "
                    f"pass {name}={n} or more (observation_mode='tables')"
                )
        self.caps, self.n_pointers, self.n_skills = caps, n_p, n_s
        self.class_mask = np.zeros((class_cap, P), dtype=np.int8)
        for c, row in enumerate(class_rows):
            self.class_mask[c, :n_p] = row
        self.slot_class = slot_class
        self.skill_mask = np.zeros(S, dtype=np.int8)
        self.skill_mask[:n_s] = [acc.any(axis=1).all() for acc in actions.slot_accepts]

        pointers = np.zeros((P, POINTER_FEATURES), dtype=np.float32)
        for p in range(n_p):
            t = base_type(actions.pointer_types[p])
            pointers[p, TYPES.index(t)] = 1.0
            pointers[p, 5 + POINTER_ROLES.index(actions.pointer_roles[p])] = 1.0
            if t == "skill":
                key = actions.pointer_names[p][1:]
                if key in actions.skills:
                    pointers[p, 12] = 1 + actions.skills.index(key)
        self.pointers = pointers  # shape features are per length: see :meth:`shapes`

        levels = skill_levels(library)
        skills = np.zeros((S, SKILL_FEATURES + SLOT_FEATURES * A), dtype=np.float32)
        for s, key in enumerate(actions.skills):
            sk = library.get(key)
            skills[s, 0] = 1.0
            skills[s, 1 + KINDS.index(sk.kind)] = 1.0
            skills[s, 4] = levels[key]
            skills[s, 5] = len(sk.slots)
            skills[s, 6] = float(sk.weights is not None)
            for j, a in enumerate(sk.slots):
                o = SKILL_FEATURES + SLOT_FEATURES * j
                skills[s, o + TYPES.index(base_type(a.type))] = 1.0
                skills[s, o + len(TYPES) + SLOT_ROLES.index(a.role)] = 1.0
        self.skills = skills
        self.written_slot = [
            np.array([a.role in ("out", "inout") for a in slots], dtype=bool)
            for slots in actions.slots
        ]

    def spaces(self) -> dict[str, spaces.Box]:
        P, S, A, C = (self.caps[k] for k in ("pointer_cap", "skill_cap", "arity_cap", "class_cap"))
        f32 = np.finfo(np.float32).max
        return {
            "pointers": spaces.Box(-f32, f32, (P, POINTER_FEATURES), np.float32),
            "skills": spaces.Box(-f32, f32, (S, SKILL_FEATURES + SLOT_FEATURES * A), np.float32),
            "skill_mask": spaces.Box(0, 1, (S,), np.int8),
            "slot_class": spaces.Box(-1, C - 1, (S, A), np.int8),
            "class_mask": spaces.Box(0, 1, (C, P), np.int8),
            "globals": spaces.Box(-f32, f32, (GLOBAL_FEATURES,), np.float32),
        }

    def allows(self, skill: int, bindings: tuple[int, ...]) -> bool:
        """Whether the component masks allow ``(skill index, bindings)``."""
        if not self.skill_mask[skill]:
            return False
        return all(self.class_mask[self.slot_class[skill, j], p] for j, p in enumerate(bindings))
