"""Search nodes shared by the tree-search agents: a node per distinct machine data.

:class:`SearchTree` owns an :class:`~agents.batched.ActionEvaluator` and the table of
nodes keyed by :func:`~agents.batched.state_key` (observational equivalence: partial
programs that leave the same data on every search example are one node, reached by the
first program found). :meth:`SearchTree.expand` evaluates a list of actions from a node
(one CPU call in batched mode), charges them to the solve's budget, creates or looks up
the children, offers each new program to the solve and verifies any that solves the
search examples. Faulting actions and actions that change nothing are not children.
Observational equivalence on finitely many examples can merge a right program with a wrong
one; when a node's own program solves the search examples but fails verification, other
programs reaching the same node are verified too (up to :data:`MAX_ALTERNATIVES`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from agents.api import BudgetExhausted, SolveContext
from agents.batched import ActionEvaluator, Outcome, key_slice
from agents.dataflow import Dataflow, dataflow_of
from agents.result import Program

MAX_ALTERNATIVES = 16
"""Programs verified per node whose first program solved the search examples but failed
verification (observational equivalence merges them; verification tells them apart)."""

OVERWRITE_EVIDENCE = 3
"""Confirmations after which the result memo takes a skill to overwrite its outputs whole
(its result then depends on the data it reads only)."""

FAULT_PATIENCE = 3
"""Faults (at different nodes, never a clean run) after which the fault memo drops an action."""


@dataclass(eq=False, slots=True)
class Node:
    """A distinct machine data state, and the first program found that reaches it."""

    key: bytes
    memory: np.ndarray
    program: Program
    potential: float
    success: bool
    depth: int
    action: int = -1
    value: float = 0.0
    """The search's value of the node's data (:class:`~agents.batched.ScalarValue`)."""
    """The last action of ``program`` (-1 at the root)."""
    edges: list[Edge] = field(default_factory=list)
    visits: int = 0
    expanded: int = 0
    order: np.ndarray | None = None
    priors: np.ndarray | None = None
    closed: bool = False
    """Nothing more to search below: at the depth limit, dead, or fully searched."""
    alternatives: int = 0
    """Other programs reaching this node that were verified (after its own failed)."""
    stats: object = field(default=None, repr=False)
    """An agent's statistics of the node's edges (MCTS: arrays for PUCT selection)."""
    contents: dict = field(default_factory=dict, repr=False)
    """Cache: pointer entry -> its buffer's bytes in ``memory``, and a tuple of entries ->
    the tuple of their bytes (for the memos' keys)."""


@dataclass(eq=False, slots=True)
class Edge:
    """An evaluated action from a node to its child, with MCTS statistics."""

    action: int
    prior: float
    child: Node
    n: int = 0
    w: float = 0.0


class Found(Exception):
    """Raised by :meth:`SearchTree.expand` when a program verifies on fresh inputs."""

    def __init__(self, program: Program) -> None:
        super().__init__("found")
        self.program = program


class SearchTree:
    """Nodes keyed by machine data, expanded through one evaluator (module docstring).

    Args:
        ctx: the solve's context.
        batched: evaluate a node's actions in one CPU call (or one at a time).
        lengths: the search examples' training lengths (see :class:`ActionEvaluator`).
        fault_memo: do not evaluate an action again where the entries it reads hold the
            same data as where it faulted before (it would fault again), nor an action
            that faulted at :data:`FAULT_PATIENCE` nodes and never ran without a fault
            (most such faults come from the shapes bound, e.g. an output shorter than an
            input, not from the data; a heuristic); skipped actions are not charged.
        result_memo: do not evaluate an action where every entry it binds (reads and
            writes) holds the same data as at a node where it was evaluated before and the
            data it would leave is already a node (a transposition) or the node's own (a
            no-op): a skill's run depends only on the data bound to its slots (its writes
            included, since a skill may leave part of an output as it was), so the result
            is known; skipped actions are not charged and add no edge. A skill seen
            :data:`OVERWRITE_EVIDENCE` times to leave the same written data from the same
            read data and different previous written data, and never otherwise, is taken to
            overwrite its outputs whole: then the data it reads alone decides (a
            heuristic, as the fault memo's patience is).
        chunk: the most actions one :meth:`expand` is given; batched mode builds the
            machines for that many children with the evaluator, before the search starts.
    """

    def __init__(
        self,
        ctx: SolveContext,
        *,
        batched: bool = True,
        lengths: Sequence[int] | None = None,
        fault_memo: bool = False,
        result_memo: bool = False,
        chunk: int = 1,
    ) -> None:
        self.ctx = ctx
        self.fault_memo = fault_memo
        self.result_memo = result_memo
        self._results: dict[tuple, tuple[bytes, ...]] = {}
        self._by_reads: dict[tuple, tuple[tuple[bytes, ...], tuple[bytes, ...]]] = {}
        self._overwrites: dict[str, int] = {}
        """Per skill: evidence that it overwrites what it writes (+1 per confirmation;
        -inf once refuted): the same action on the same read data gave the same written
        data from different previous written data."""
        self._action_entries: list[tuple] | None = None
        self._key_slices: dict[int, slice] | None = None
        self._buffer_mask: np.ndarray | None = None
        self.memo_skips = 0
        self._faulted: dict[int, set[tuple[bytes, ...]]] = {}
        """Per action: the contents of the entries it reads wherever it faulted."""
        self._fault_count: dict[int, int] = {}
        self._ran_clean: set[int] = set()
        self.fault_skips = 0
        self.ev = ActionEvaluator(ctx, batched=batched, lengths=lengths)
        self.ev.reserve(chunk)
        self._dataflow: Dataflow | None = None
        if fault_memo or result_memo:  # the memos read the tables: built before the search
            ev = self.ev
            self._dataflow = dataflow_of(ctx.library, ctx.task, ev.table, ev.pointer_names)
            self._build_entries()  # before the search starts (and the key slices)
        r = self.ev.root()
        self.root = Node(r.key, r.memory, [], r.potential, r.success, 0, value=r.value)
        self.nodes: dict[bytes, Node] = {r.key: self.root}
        self.started = time.perf_counter()  # the search proper, after building its machines
        self.faults = self.noops = self.transpositions = self.false_successes = 0
        self.verified = 0
        self.created: list[Node] = []
        """The nodes the last :meth:`expand` created (in action order)."""

    def expand(self, node: Node, actions: Sequence[int], priors: Sequence[float]) -> list[Edge]:
        """Evaluate ``actions`` from ``node`` and return the new edges (children).

        Charges every action evaluated; raises :class:`Found` with a program that verifies,
        or :class:`~agents.api.BudgetExhausted` once the budget is spent (after the batch's
        results are recorded, so nothing evaluated is lost).
        """
        ctx = self.ctx
        actions, priors = np.asarray(actions, dtype=np.int64).tolist(), list(priors)
        keep = list(range(len(actions)))
        if self.fault_memo:
            faulted, count, clean = self._faulted, self._fault_count, self._ran_clean
            entries, data = self._entries, self._data
            kept = []
            for i in keep:
                a = actions[i]
                reads = faulted.get(a)  # most actions never faulted: no key to build
                if reads is not None and data(node, entries(a)[2]) in reads:
                    continue
                if count.get(a, 0) >= FAULT_PATIENCE and a not in clean:
                    continue
                kept.append(i)
            self.fault_skips += len(keep) - len(kept)
            keep = kept
        if self.result_memo:
            before = len(keep)
            known = self._known_result
            keep = [i for i in keep if not known(node, actions[i])]
            self.memo_skips += before - len(keep)
        considered = len(actions)
        budget = max(ctx.remaining, 0)
        if len(keep) > budget:
            considered, keep = keep[budget], keep[:budget]
        actions, priors = [actions[i] for i in keep], [priors[i] for i in keep]
        outcomes = self.ev.evaluate(node.memory, actions)
        new: list[Edge] = []
        self.created: list[Node] = []
        found: Program | None = None
        fault_memo, result_memo, remember = self.fault_memo, self.result_memo, self._remember
        clean, child_of = self._ran_clean, self._child
        for o, p in zip(outcomes, priors, strict=True):
            if o.fault:
                if fault_memo:
                    action, reads = self._fault_key(node, o.action)
                    self._faulted.setdefault(action, set()).add(reads)
                    self._fault_count[action] = self._fault_count.get(action, 0) + 1
            else:
                clean.add(o.action)
                if result_memo:
                    remember(node, o)
            edge, created = child_of(node, o, float(p))
            if edge is None:
                continue
            new.append(edge)
            if created:
                self.created.append(edge.child)
            if edge.child.success and found is None:
                if created:
                    found = self._check(edge.child)
                elif edge.child.closed and edge.child.alternatives < MAX_ALTERNATIVES:
                    # another program reaching the data of a program that failed
                    # verification: the two agree on the search examples, maybe not elsewhere
                    edge.child.alternatives += 1
                    found = self._verify([*node.program, self.ev.step_names(o.action)])
        node.edges.extend(new)
        node.expanded += considered
        try:
            ctx.charge(
                actions=len(actions),
                env_steps=len(actions),
                instructions=sum(o.instructions for o in outcomes),
            )
        except BudgetExhausted:
            if found is not None:
                raise Found(found) from None
            raise
        if found is not None:
            raise Found(found)
        return new

    def _entries(self, action: int) -> tuple:
        """Pointer entries (buffers only) ``action`` binds, writes and reads, and its skill."""
        if self._action_entries is None:
            self._build_entries()
        return self._action_entries[action]

    def _build_entries(self) -> None:
        """:meth:`_entries` of every action at once, from the dataflow tables."""
        flow, is_buffer, table = self.dataflow, self._is_buffer, self.ev.table
        n = len(table.candidates)

        def per_action(mask: np.ndarray) -> list[tuple[int, ...]]:
            rows, cols = np.nonzero(mask & is_buffer)
            ends = np.searchsorted(rows, np.arange(n + 1)).tolist()
            cols = cols.tolist()
            return [tuple(cols[ends[a] : ends[a + 1]]) for a in range(n)]

        skills = [table.skills[s] for s, _ in table.candidates]
        bound = per_action(flow.reads | flow.writes)
        self._action_entries = list(
            zip(bound, per_action(flow.writes), per_action(flow.reads), skills, strict=True)
        )

    @property
    def _is_buffer(self) -> np.ndarray:
        """Per pointer entry: whether it names a buffer (of the memory block)."""
        if self._buffer_mask is None:
            names = self.ev.pointer_names
            self._buffer_mask = np.array([p in self.key_slices for p in range(len(names))])
        return self._buffer_mask

    @property
    def key_slices(self) -> dict[int, slice]:
        """Per pointer entry naming a buffer: the bytes of a node's key holding that
        buffer's contents on every search example (:func:`~agents.batched.key_slice`)."""
        if self._key_slices is None:
            ev, out = self.ev, {}
            rows, itemsize = ev.root_memory.shape[0], ev.root_memory.dtype.itemsize
            for p, name in enumerate(ev.pointer_names):
                if name in ev.image.buffers:
                    addr, buf = ev.image.buffers[name]
                    start = addr - ev.mem.start
                    out[p] = key_slice(slice(start, start + buf.size), rows, itemsize)
            self._key_slices = out
        return self._key_slices

    def _data(self, node: Node, ptrs: tuple[int, ...]) -> tuple[bytes, ...]:
        """The contents of entries ``ptrs`` at ``node``: slices of its key (cached with the
        node per tuple asked for)."""
        hit = node.contents.get(ptrs)
        if hit is None:
            key, slices = node.key, self.key_slices
            hit = node.contents[ptrs] = tuple([key[slices[p]] for p in ptrs])
        return hit

    def _remember(self, node: Node, o: Outcome) -> None:
        """Record an evaluated action's result for the result memo (the tables are built:
        the memo is on)."""
        bound, written, read, skill = self._action_entries[o.action]
        key, slices, data = o.key, self._key_slices, self._data
        result = tuple([key[slices[p]] for p in written])
        self._results[(o.action, data(node, bound))] = result
        key, prev = (o.action, data(node, read)), data(node, written)
        seen = self._by_reads.get(key)
        if seen is None:
            self._by_reads[key] = (prev, result)
        elif seen[0] != prev:
            agree = seen[1] == result
            self._overwrites[skill] = self._overwrites.get(skill, 0) + 1 if agree else -(2**31)

    def _known_result(self, node: Node, action: int) -> bool:
        """Whether the result memo says ``action`` at ``node`` is a no-op or a transposition."""
        if action not in self._ran_clean:
            return False  # never ran without a fault: nothing remembered
        bound, written, read, skill = self._action_entries[action]  # built: the memo is on
        data = self._data
        hit = self._results.get((action, data(node, bound)))
        if hit is None and self._overwrites.get(skill, 0) >= OVERWRITE_EVIDENCE:
            seen = self._by_reads.get((action, data(node, read)))
            hit = None if seen is None else seen[1]
        if hit is None:
            return False
        if hit == data(node, written):
            return True  # a no-op
        key, slices = bytearray(node.key), self._key_slices  # the key of the data it would leave
        for p, data in zip(written, hit, strict=True):
            key[slices[p]] = data
        return bytes(key) in self.nodes

    def _fault_key(self, node: Node, action: int) -> tuple[int, tuple[bytes, ...]]:
        """An action and the contents of the entries it reads at ``node``: what decides
        whether it faults (a skill's run depends only on the data bound to its slots)."""
        return action, self._data(node, self._entries(action)[2])

    def _child(self, node: Node, o: Outcome, prior: float) -> tuple[Edge | None, bool]:
        """The edge for an outcome (None: a fault or a no-op) and whether its child is new."""
        if o.fault:
            self.faults += 1
            return None, False
        if o.key == node.key:
            self.noops += 1
            return None, False
        child = self.nodes.get(o.key)
        created = child is None
        if created:
            program = [*node.program, self.ev.step_names(o.action)]
            child = Node(
                o.key,
                o.memory,
                program,
                o.potential,
                o.success,
                node.depth + 1,
                o.action,
                1.0 if o.success else o.value,
            )
            self.nodes[o.key] = child
            self.ctx.offer(program, o.potential)
        else:
            self.transpositions += 1
        return Edge(o.action, prior, child), created

    def _verify(self, program: Program) -> Program | None:
        """``program`` when it is right on fresh inputs at every length, else None."""
        self.verified += 1
        if all(v == 1.0 for v in self.ctx.verify(program).values()):
            return program
        self.false_successes += 1
        return None

    def _check(self, child: Node) -> Program | None:
        """Verify a node that solves the search examples; close it when it does not verify."""
        self.verified += 1
        if all(v == 1.0 for v in self.ctx.verify(child.program).values()):
            return child.program
        self.false_successes += 1
        child.closed = True
        return None

    def candidates(
        self,
        node: Node,
        *,
        dataflow: bool,
        commute: bool,
        symmetry: bool = False,
        constants: bool = False,
        last_step: bool = False,
    ) -> np.ndarray:
        """The valid actions worth evaluating from ``node`` (a subset of ``ev.valid_actions``).

        ``dataflow``: drop actions that read (``in``/``inout`` slot) an output or scratch
        buffer that no step of ``node.program`` wrote: they would read whatever the
        machines started with, never a computed value (a def-use rule, as a compiler's
        dataflow analysis applies). Defined at the root: the task's inputs, constants and
        skill references. Actions writing a constant are dropped too.

        ``commute``: partial-order reduction. Two actions are independent when neither
        writes a buffer the other reads or writes; their two orders give the same data.
        After the node's last action ``a``, an independent ``b`` with a smaller action
        index is dropped: that order is searched as ``b`` then ``a``. Any program can be
        reordered, by swapping adjacent independent steps, into one this rule keeps, so
        the rule alone loses no reachable data. Combined with transpositions (a node keeps
        the last action of the first program that reached it) it is a heuristic: a state
        whose canonical order passes through a node first reached in another order may be
        reached only by a longer program, or not at all.

        ``symmetry``: the pool's scratch buffers of one shape class are interchangeable,
        so a program may only start using them in index order: an action may write a
        written one or the lowest-numbered unwritten one
        (:meth:`~agents.dataflow.Dataflow.canonical`). Renaming the buffers of a program
        gives one this rule keeps and that computes the same outputs.

        ``constants``: drop actions that read only constants (``zero``, ``one``, the
        task's own): their result is one value on every example, which the search would
        have to spend an action on before using it; tasks that need a constant declare it.

        ``last_step``: the node's child would be the last step the search allows: keep
        only actions that could end a shortest program
        (:meth:`~agents.dataflow.Dataflow.completes`): they write an output (any other
        leaves the outputs, hence the score, as they were at ``node``) and read something
        of every earlier step whose results are unused (else a shorter program computes
        the same outputs, which the search space holds too).
        """
        ev = self.ev
        flow = self.dataflow
        rows = ev.valid_actions
        keep = np.ones(len(rows), dtype=bool)
        if dataflow:
            keep &= flow.readable(node.program)[rows]
        if commute and node.action >= 0:
            keep &= flow.dependent(node.action)[rows] | (rows > node.action)
        if symmetry:
            keep &= flow.canonical(node.program)[rows]
        if constants:
            keep &= ~flow.reads_only_constants[rows]
        if last_step:
            keep &= flow.completes(node.program)[rows]
        return rows[keep]

    @property
    def dataflow(self) -> Dataflow:
        """Read/write tables of the actions (:class:`~agents.dataflow.Dataflow`)."""
        if self._dataflow is None:
            ev = self.ev
            self._dataflow = dataflow_of(
                self.ctx.library, self.ctx.task, ev.table, ev.pointer_names
            )
        return self._dataflow

    def stats(self) -> dict[str, float | int]:
        """Counters for :attr:`SolveResult.stats` (times end in ``_s``)."""
        ev = self.ev
        return {
            "nodes": len(self.nodes),
            "faults": self.faults,
            "fault_memo_skips": self.fault_skips,
            "result_memo_skips": self.memo_skips,
            "noops": self.noops,
            "transpositions": self.transpositions,
            "verifications": self.verified,
            "false_successes": self.false_successes,
            "search_examples": ev.rows,
            "search_time_s": round(time.perf_counter() - self.started, 4),
            "evaluate_time_s": round(ev.wall_seconds, 4),
            "cpu_call_time_s": round(ev.cpu_seconds, 4),
        }
