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
  read yet -- what a program computed but has not used;
* symmetry (:meth:`Dataflow.canonical`): the machine's scratch buffers of one shape
  class (``tmp_v0, tmp_v1, ...``, :mod:`algind_gym.tasks.pool`) are interchangeable --
  renaming them in a program gives a program computing the same outputs -- so only
  programs that start using them in index order need be searched: an action may write a
  pool buffer already written, or the lowest-numbered one never written, not another;
* constant reads (:attr:`Dataflow.reads_only_constants`): actions whose every read is a
  constant compute the same value on every example;
* completion (:meth:`Dataflow.completes`): the last step of a shortest program writes an
  output (else the program before it had the same outputs) and reads something of every
  earlier step that wrote no output and whose results nothing read yet (else that step
  could be dropped).

Tree search prunes with def-use, independence, symmetry, constant reads and, at the last
step, completion (:meth:`agents.tree.SearchTree.candidates`);
:class:`agents.priors.DataflowPrior` scores with fresh values.

The boolean tables :attr:`Dataflow.reads` and :attr:`Dataflow.writes` (candidates x
entries) are also kept as bit sets, one ``uint64`` word per 64 entries per candidate, so
that each rule a search asks for at every node is a few word operations per candidate
rather than a pass over the whole boolean table.
"""

from __future__ import annotations

import itertools
import re
import weakref

import numpy as np

from agents.result import Program
from algind_gym.envs.actions import ActionTable
from algind_gym.skills.library import SkillLibrary
from algind_gym.tasks import TaskSpec
from algind_gym.tasks.pool import POOL_PREFIX, pool_constants, scratch_pool

_POOL_NAME = re.compile(rf"{POOL_PREFIX}(?:v|m|mT|s)\d+")


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
        constants = pool_constants(task)  # the machine's zero and one, then the task's own
        given = set(task.inputs) | set(constants)
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
        self.writes_output_entries = np.zeros(p, dtype=bool)
        self.writes_output_entries[outputs] = True
        read_only = [self.index[c] for c in constants if c in self.index]
        self.writes_constant = self.writes[:, read_only].any(axis=1)
        const = np.zeros(p, dtype=bool)
        const[read_only] = True
        self.reads_only_constants = self.reads.any(axis=1) & ~(self.reads & ~const).any(axis=1)
        self.scratch_classes = _scratch_classes(task, pointer_names, self.index)
        self.read_bits, self.write_bits = _pack(self.reads), _pack(self.writes)
        self._steps: dict[tuple, tuple[list[int], list[int]]] = {}
        """Cache: a program step ``(skill, names)`` -> the entries it reads and writes."""
        self._write_bit: dict[int, np.ndarray] = {}
        self._cache: dict[str, dict[tuple[int, ...], np.ndarray]] = {}
        """Cache: entry -> per candidate, whether it writes that entry."""

    def _mask(self, entries) -> np.ndarray:
        """The bit set (words) of ``entries`` (indices or a boolean mask over entries)."""
        flags = np.zeros(len(self.index), dtype=bool)
        flags[entries] = True
        return _pack(flags[None])[0]

    def _bit(self, bits: np.ndarray, entry: int) -> np.ndarray:
        """Per candidate: whether ``entry``'s bit is set in ``bits``."""
        return (bits[:, entry // 64] >> np.uint64(entry % 64)) & np.uint64(1) != 0

    def _by_written(self, name: str, program: Program, compute) -> np.ndarray:
        """``compute(program)``, cached (read-only) per set of entries ``program`` writes
        (what :meth:`readable` and :meth:`canonical` depend on)."""
        cache = self._cache.setdefault(name, {})
        key = tuple(sorted({w for _, writes in self._rows(program) for w in writes}))
        hit = cache.get(key)
        if hit is None:
            if len(cache) >= CACHE_SIZE:
                cache.clear()
            hit = cache[key] = compute(program)
            hit.flags.writeable = False
        return hit

    def canonical(self, program: Program) -> np.ndarray:
        """Per candidate: its writes to the pool's scratch buffers keep ``program``'s first
        uses in index order within every shape class (module docstring). Each class's
        buffers never written by ``program`` may only be written lowest-numbered first.
        Read-only (cached per set of written entries)."""
        return self._by_written("canonical", program, self._canonical)

    def _canonical(self, program: Program) -> np.ndarray:
        keep = np.ones(len(self.writes), dtype=bool)
        if not self.scratch_classes:
            return keep
        written = np.zeros(len(self.index), dtype=bool)
        for _, writes in self._rows(program):
            written[writes] = True
        for members in self.scratch_classes:
            unused = [m for m in members if not written[m]]
            if len(unused) < 2:
                continue
            # the unused buffers an action writes must be a prefix of them in index order
            w = [self._writes_entry(m) for m in unused]
            for before, after in itertools.pairwise(w):
                keep &= ~(after & ~before)
        return keep

    def _writes_entry(self, entry: int) -> np.ndarray:
        """Per candidate: whether it writes ``entry`` (cached)."""
        hit = self._write_bit.get(entry)
        if hit is None:
            hit = self._write_bit[entry] = self._bit(self.write_bits, entry)
        return hit

    def _entry(self, name: str) -> int:
        """Index of an entry; a skill reference may omit its version (``&s_add``)."""
        if name not in self.index and name.startswith("&"):
            name = "&" + self.library.get(name[1:]).key
        return self.index[name]

    def _rows(self, program: Program) -> list[tuple[list[int], list[int]]]:
        """Per step, the entries it reads and writes."""
        out = []
        for skill, names in program:
            key = (skill, tuple(names))
            step = self._steps.get(key)
            if step is None:
                reads, writes = [], []
                for slot, name in zip(self.library.get(skill).slots, names, strict=True):
                    i = self._entry(name)
                    if slot.role in ("in", "inout"):
                        reads.append(i)
                    if slot.role in ("out", "inout"):
                        writes.append(i)
                step = self._steps[key] = (reads, writes)
            out.append(step)
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
        turns it into an immediate operand, which nothing can write). Read-only (cached
        per set of written entries)."""
        return self._by_written("readable", program, self._readable)

    def _readable(self, program: Program) -> np.ndarray:
        undefined = self._mask(~self.defined(program))
        return ~_hits(self.read_bits, undefined) & ~self.writes_constant

    def dependent(self, action: int) -> np.ndarray:
        """Per candidate: conflicts with ``action`` (one writes what the other reads or
        writes), so the two orders may differ."""
        ra, wa = self.read_bits[action], self.write_bits[action]
        return _hits(self.write_bits, ra | wa) | _hits(self.read_bits, wa)

    def unconsumed(self, program: Program) -> list[list[int]]:
        """The entries written by each step of ``program`` that wrote no output and none of
        whose written entries a later step reads: a step whose work nothing used yet.

        In a shortest program every step writes an output or is read by a later one
        (otherwise dropping it leaves the outputs as they were), so the last step must read
        something of every such step (overwrites are ignored: a conservative test).
        """
        rows = self._rows(program)
        outputs = {i for i, w in enumerate(self.writes_output_entries) if w}
        out = []
        for k, (_, writes) in enumerate(rows):
            if outputs.intersection(writes):
                continue
            if any(set(writes).intersection(r) for r, _ in rows[k + 1 :]):
                continue
            out.append(sorted(set(writes)))
        return out

    def completes(self, program: Program) -> np.ndarray:
        """Per candidate: it could be the last step of a shortest program extending
        ``program``: it writes an output and reads an entry of every unconsumed step
        (:meth:`unconsumed`)."""
        keep = self.writes_output.copy()
        for writes in self.unconsumed(program):
            keep &= _hits(self.read_bits, self._mask(writes))
        return keep

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


CACHE_SIZE = 4096
"""Entries per cache of :meth:`Dataflow.readable` and :meth:`Dataflow.canonical` (cleared when
full: a dataflow is shared by every search over its action table)."""


def _pack(flags: np.ndarray) -> np.ndarray:
    """Boolean rows ``(n, entries)`` as bit sets ``(n, words)`` of ``uint64`` (entry ``j``
    is bit ``j % 64`` of word ``j // 64``)."""
    n, p = flags.shape
    words = max(1, -(-p // 64))
    padded = np.zeros((n, words * 64), dtype=np.uint64)
    padded[:, :p] = flags
    shifts = np.arange(64, dtype=np.uint64)
    return (padded.reshape(n, words, 64) << shifts).sum(axis=2, dtype=np.uint64)


def _hits(bits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per row of ``bits``: whether it shares a set bit with ``mask`` (both bit sets)."""
    if bits.shape[1] == 1:
        return (bits[:, 0] & mask[0]) != 0
    return ((bits & mask) != 0).any(axis=1)


def _scratch_classes(
    task: TaskSpec, pointer_names: list[str], index: dict[str, int]
) -> list[list[int]]:
    """The pool's scratch entries grouped by shape class, each group in index order (empty
    when the pointer table's pool is not the one :func:`scratch_pool` lays out)."""
    names = [n for n in pointer_names if _POOL_NAME.fullmatch(n)]
    per_shape = sum(1 for n in names if n.startswith(f"{POOL_PREFIX}s"))
    if not names or per_shape == 0:
        return []
    pool = scratch_pool(task, per_shape)
    if sorted(t.name for t in pool) != sorted(names):
        return []
    groups: dict[tuple, list[int]] = {}
    for t in pool:
        groups.setdefault((t.type, tuple(t.shape)), []).append(index[t.name])
    return [sorted(g) for g in groups.values() if len(g) > 1]


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
