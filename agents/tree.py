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
from agents.batched import ActionEvaluator, Outcome, state_key
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
        self._action_entries: dict[int, tuple] = {}
        self._columns: dict[int, slice] = {}
        self.memo_skips = 0
        self._faulted: set[tuple[int, tuple[bytes, ...]]] = set()
        self._fault_count: dict[int, int] = {}
        self._ran_clean: set[int] = set()
        self.fault_skips = 0
        self.ev = ActionEvaluator(ctx, batched=batched, lengths=lengths)
        self.ev.reserve(chunk)
        self._dataflow: Dataflow | None = None
        if fault_memo or result_memo:  # the memos read the tables: built before the search
            ev = self.ev
            self._dataflow = dataflow_of(ctx.library, ctx.task, ev.table, ev.pointer_names)
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
        actions, priors = [int(a) for a in actions], list(priors)
        keep = list(range(len(actions)))
        if self.fault_memo:
            faulted, count, clean = self._faulted, self._fault_count, self._ran_clean
            entries, data = self._entries, self._data
            keep = [
                i
                for i in keep
                if (actions[i], data(node, entries(actions[i])[2])) not in faulted
                and not (count.get(actions[i], 0) >= FAULT_PATIENCE and actions[i] not in clean)
            ]
            self.fault_skips += len(actions) - len(keep)
        if self.result_memo:
            before = len(keep)
            keep = [i for i in keep if not self._known_result(node, actions[i])]
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
        for o, p in zip(outcomes, priors, strict=True):
            if o.fault and self.fault_memo:
                self._faulted.add(self._fault_key(node, o.action))
                self._fault_count[o.action] = self._fault_count.get(o.action, 0) + 1
            elif not o.fault:
                self._ran_clean.add(o.action)
            if self.result_memo and not o.fault:
                self._remember(node, o)
            edge, created = self._child(node, o, float(p))
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
        hit = self._action_entries.get(action)
        if hit is None:
            flow, buffers, names = self.dataflow, self.ev.image.buffers, self.ev.pointer_names

            def pick(mask: np.ndarray) -> tuple[int, ...]:
                return tuple(int(p) for p in np.flatnonzero(mask) if names[p] in buffers)

            reads, writes = flow.reads[action], flow.writes[action]
            skill = self.ev.decode(action)[0]
            hit = (pick(reads | writes), pick(writes), pick(reads), skill)
            self._action_entries[action] = hit
        return hit

    def _column(self, ptr: int) -> slice:
        """Memory columns of pointer entry ``ptr``'s buffer."""
        if ptr not in self._columns:
            ev = self.ev
            addr, buf = ev.image.buffers[ev.pointer_names[ptr]]
            self._columns[ptr] = slice(addr - ev.mem.start, addr - ev.mem.start + buf.size)
        return self._columns[ptr]

    def _data(self, node: Node, ptrs: tuple[int, ...]) -> tuple[bytes, ...]:
        """The contents of entries ``ptrs`` at ``node`` (cached with the node: every buffer
        entry's contents the first time one is asked for, and each tuple asked for)."""
        cache = node.contents
        hit = cache.get(ptrs)
        if hit is None:
            if not cache:
                ev = self.ev
                for p, name in enumerate(ev.pointer_names):
                    if name in ev.image.buffers:
                        column = self._column(p)
                        cache[p] = np.ascontiguousarray(node.memory[:, column]).tobytes()
            hit = cache[ptrs] = tuple([cache[p] for p in ptrs])
        return hit

    def _remember(self, node: Node, o: Outcome) -> None:
        """Record an evaluated action's result for the result memo."""
        bound, written, read, skill = self._entries(o.action)
        result = tuple(
            [np.ascontiguousarray(o.memory[:, self._column(p)]).tobytes() for p in written]
        )
        self._results[(o.action, self._data(node, bound))] = result
        key, prev = (o.action, self._data(node, read)), self._data(node, written)
        seen = self._by_reads.get(key)
        if seen is None:
            self._by_reads[key] = (prev, result)
        elif seen[0] != prev:
            agree = seen[1] == result
            self._overwrites[skill] = self._overwrites.get(skill, 0) + 1 if agree else -(2**31)

    def _known_result(self, node: Node, action: int) -> bool:
        """Whether the result memo says ``action`` at ``node`` is a no-op or a transposition."""
        bound, written, read, skill = self._entries(action)
        hit = self._results.get((action, self._data(node, bound)))
        if hit is None and self._overwrites.get(skill, 0) >= OVERWRITE_EVIDENCE:
            seen = self._by_reads.get((action, self._data(node, read)))
            hit = None if seen is None else seen[1]
        if hit is None:
            return False
        if hit == self._data(node, written):
            return True  # a no-op
        memory = node.memory.copy()
        rows = len(memory)
        for p, data in zip(written, hit, strict=True):
            memory[:, self._column(p)] = np.frombuffer(data, dtype=memory.dtype).reshape(rows, -1)
        return state_key(memory) in self.nodes

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
