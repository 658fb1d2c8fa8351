"""Which pointer-table entries each action reads and writes, and what follows from it.

A skill's slots have roles (``in``, ``out``, ``inout``), so every candidate action
``(skill, bindings)`` reads the entries bound to its ``in``/``inout`` slots and writes
those bound to its ``out``/``inout`` slots. From these tables, with no machine run:

* def-use (:meth:`Dataflow.readable`): after a program, the *defined* entries are the
  task's inputs, its constants, skill references, and whatever a step wrote; an action
  reading an undefined entry reads the machines' initial contents, not a computed value;
  and constants are read-only;
* independence (:meth:`Dataflow.dependent`): two actions commute when neither writes an
  entry the other reads or writes;
* fresh values (:meth:`Dataflow.fresh_reads`): entries a step wrote that no later step
  read yet -- what a program computed but has not used.

Tree search prunes with the first two (:meth:`agents.tree.SearchTree.candidates`);
:class:`agents.priors.DataflowPrior` scores with the third.
"""

from __future__ import annotations

import weakref

import numpy as np

from agents.result import Program
from algind_gym.envs.actions import ActionTable
from algind_gym.skills.library import SkillLibrary
from algind_gym.tasks import TaskSpec


class Dataflow:
    """Read and write tables of every candidate action of an action table.

    Args:
        library: the skills (their slot roles).
        task: the task (its inputs and constants are defined from the start).
        table: the environment's action table.
        pointer_names: the pointer-table entries, by index (skill references start
            with ``&``).
    """

    def __init__(
        self, library: SkillLibrary, task: TaskSpec, table: ActionTable, pointer_names: list[str]
    ) -> None:
        self.library, self.table = library, table
        self.index = {n: i for i, n in enumerate(pointer_names)}
        given = set(task.inputs) | set(task.constants)
        self.defined_at_root = np.array([n.startswith("&") or n in given for n in pointer_names])
        n, p = len(table.candidates), len(pointer_names)
        self.reads = np.zeros((n, p), dtype=bool)
        self.writes = np.zeros((n, p), dtype=bool)
        outputs = [self.index[o] for o in task.outputs]
        for row, (si, binds) in enumerate(table.candidates):
            slots = library.get(table.skills[si]).slots
            for slot, ptr in zip(slots, binds, strict=True):
                self.reads[row, ptr] |= slot.role in ("in", "inout")
                self.writes[row, ptr] |= slot.role in ("out", "inout")
        self.writes_output = self.writes[:, outputs].any(axis=1)
        constants = [self.index[c] for c in task.constants if c in self.index]
        self.writes_constant = self.writes[:, constants].any(axis=1)

    def _entry(self, name: str) -> int:
        """Index of an entry; a skill reference may omit its version (``&s_add``)."""
        if name not in self.index and name.startswith("&"):
            name = "&" + self.library.get(name[1:]).key
        return self.index[name]

    def _rows(self, program: Program) -> list[tuple[list[int], list[int]]]:
        """Per step, the entries it reads and writes."""
        out = []
        for skill, names in program:
            reads, writes = [], []
            for slot, name in zip(self.library.get(skill).slots, names, strict=True):
                i = self._entry(name)
                if slot.role in ("in", "inout"):
                    reads.append(i)
                if slot.role in ("out", "inout"):
                    writes.append(i)
            out.append((reads, writes))
        return out

    def defined(self, program: Program) -> np.ndarray:
        """Entries holding a given or computed value after ``program``."""
        d = self.defined_at_root.copy()
        for _, writes in self._rows(program):
            d[writes] = True
        return d

    def readable(self, program: Program) -> np.ndarray:
        """Per candidate: reads only defined entries after ``program`` and writes no
        constant (a constant is a value the task gives; a program compiled into a skill
        turns it into an immediate operand, which nothing can write)."""
        return ~(self.reads & ~self.defined(program)).any(axis=1) & ~self.writes_constant

    def dependent(self, action: int) -> np.ndarray:
        """Per candidate: conflicts with ``action`` (one writes what the other reads or
        writes), so the two orders may differ."""
        ra, wa = self.reads[action], self.writes[action]
        return (self.writes & (ra | wa)).any(axis=1) | (self.reads & wa).any(axis=1)

    def fresh(self, program: Program) -> np.ndarray:
        """Entries written by a step of ``program`` and read by no later step."""
        f = np.zeros(len(self.index), dtype=bool)
        for reads, writes in self._rows(program):
            f[reads] = False
            f[writes] = True
        return f

    def fresh_reads(self, program: Program) -> np.ndarray:
        """Per candidate: how many fresh entries (:meth:`fresh`) it reads."""
        return (self.reads & self.fresh(program)).sum(axis=1)


_CACHE: dict[tuple, tuple[weakref.ref, Dataflow]] = {}


def dataflow_of(
    library: SkillLibrary, task: TaskSpec, table: ActionTable, pointer_names: list[str]
) -> Dataflow:
    """The :class:`Dataflow` of an action table (built once per live table and task)."""
    key = (id(table), task.name, tuple(pointer_names))
    hit = _CACHE.get(key)
    if hit is None or hit[0]() is not table:
        for k in [k for k, (ref, _) in _CACHE.items() if ref() is None]:
            del _CACHE[k]
        hit = (weakref.ref(table), Dataflow(library, task, table, list(pointer_names)))
        _CACHE[key] = hit
    return hit[1]
