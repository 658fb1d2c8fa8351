"""Search nodes shared by the tree-search agents: a node per distinct machine data.

:class:`SearchTree` owns an :class:`~agents.batched.ActionEvaluator` and the table of
nodes keyed by :func:`~agents.batched.state_key` (observational equivalence: partial
programs that leave the same data on every search example are one node, reached by the
first program found). :meth:`SearchTree.expand` evaluates a list of actions from a node
(one CPU call in batched mode), charges them to the solve's budget, creates or looks up
the children, offers each new program to the solve and verifies any that solves the
search examples. Faulting actions and actions that change nothing are not children.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from agents.api import BudgetExhausted, SolveContext
from agents.batched import ActionEvaluator, Outcome
from agents.result import Program


@dataclass(eq=False)
class Node:
    """A distinct machine data state, and the first program found that reaches it."""

    key: bytes
    memory: np.ndarray
    program: Program
    potential: float
    success: bool
    depth: int
    edges: list[Edge] = field(default_factory=list)
    visits: int = 0
    expanded: int = 0
    order: np.ndarray | None = None
    priors: np.ndarray | None = None
    closed: bool = False
    """Nothing more to search below: at the depth limit, dead, or fully searched."""


@dataclass(eq=False)
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
    """

    def __init__(
        self, ctx: SolveContext, *, batched: bool = True, lengths: Sequence[int] | None = None
    ) -> None:
        self.ctx = ctx
        self.ev = ActionEvaluator(ctx, batched=batched, lengths=lengths)
        r = self.ev.root()
        self.root = Node(r.key, r.memory, [], r.potential, r.success, 0)
        self.nodes: dict[bytes, Node] = {r.key: self.root}
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
        actions = list(actions)[: max(ctx.remaining, 0)]
        outcomes = self.ev.evaluate(node.memory, actions)
        new: list[Edge] = []
        self.created: list[Node] = []
        found: Program | None = None
        for o, p in zip(outcomes, priors, strict=False):
            edge, created = self._child(node, o, float(p))
            if edge is None:
                continue
            new.append(edge)
            if created:
                self.created.append(edge.child)
            if created and edge.child.success and found is None:
                found = self._check(edge.child)
        node.edges.extend(new)
        node.expanded += len(actions)
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
            child = Node(o.key, o.memory, program, o.potential, o.success, node.depth + 1)
            self.nodes[o.key] = child
            self.ctx.offer(program, o.potential)
        else:
            self.transpositions += 1
        return Edge(o.action, prior, child), created

    def _check(self, child: Node) -> Program | None:
        """Verify a node that solves the search examples; close it when it does not verify."""
        self.verified += 1
        if all(v == 1.0 for v in self.ctx.verify(child.program).values()):
            return child.program
        self.false_successes += 1
        child.closed = True
        return None

    def stats(self) -> dict[str, float | int]:
        """Counters for :attr:`SolveResult.stats` (times end in ``_s``)."""
        ev = self.ev
        return {
            "nodes": len(self.nodes),
            "faults": self.faults,
            "noops": self.noops,
            "transpositions": self.transpositions,
            "verifications": self.verified,
            "false_successes": self.false_successes,
            "search_examples": ev.rows,
            "evaluate_time_s": round(ev.wall_seconds, 4),
            "cpu_call_time_s": round(ev.cpu_seconds, 4),
        }
