"""`MCTS`: Monte Carlo tree search over (skill, bindings) actions, AlphaZero's PUCT.

The paper's tree-search-based learning (section 3.2.3): composition is discrete, so search
over which skill to call with which pointers, as AlphaZero/AlphaTensor do, pruned by a
prior that a language model can supply (:mod:`agents.priors`).

* Nodes are machine data states (:class:`~agents.tree.SearchTree`): transpositions --
  two programs that leave the same data on every search example -- share a node.
* Actions at a node are evaluated in chunks of ``batch_size`` children, in the order of
  the prior (ties broken by the seeded RNG, so the uniform prior is a random order; or,
  with ``order="gumbel"``, the order of sampling without replacement from the prior, the
  Gumbel-top-k trick), each chunk in one batched CPU call. Progressive widening: a node
  visited ``N`` times may have ``1 + floor(N ** widen)`` chunks evaluated; AlphaZero
  evaluates every child, which costs hundreds to thousands of actions per node here.
* Selection: ``argmax_a Q(s, a) + c_puct * P(s, a) * sqrt(N(s) + 1) / (1 + N(s, a))``
  over the evaluated children, ``P`` the prior renormalised over them, ``Q`` the mean of
  backed-up values (a child never visited has ``Q`` = its value).
* Value: the dense reward, the fraction of output elements right on the search examples;
  for a task whose output is one scalar, :class:`~agents.batched.ScalarValue` (the reward
  corrected for what a constant scores, and credit for an exact affine function of the
  target), since right-or-wrong per example rewards lucky constants and nothing else.
  A leaf is valued after its first chunk is evaluated: the best of its own and its new
  children's values (a one-step look-ahead instead of AlphaZero's value network).
* Depth: :data:`DEFAULT_MAX_DEPTH` calls unless ``max_depth`` says otherwise.
* Pruning before anything runs (:meth:`~agents.tree.SearchTree.candidates`), so pruned
  actions are never charged: def-use (``dataflow=True``): no action reads an output or
  scratch buffer no earlier step wrote (it would read the machines' initial contents,
  not a computed value) or writes a constant; scratch symmetry (``symmetry=True``): the
  pool's interchangeable scratch buffers are taken in index order; constant reads
  (``constants=True``): no action whose every read is a constant; completion
  (``last_step=True``): the last step the depth allows writes an output and uses every
  earlier step's unused result; the fault memo (``fault_memo=True``): an action is not
  run again on the same input data it faulted on, nor after faulting at three nodes
  without ever running cleanly (a heuristic); the result memo (``result_memo=True``): an
  action whose result is known from an earlier run on the same data to be a no-op or a
  transposition is not run again. Partial-order reduction (``commute``) is off by
  default: it keeps one order of two independent steps, and the order it keeps may pass
  through a node of low value (e.g. ``len`` before the sum that gives Mean's value), which
  a value-guided search then rarely visits.
* The budget counts actions evaluated. A child that solves every search example is
  verified on fresh inputs at every length; the search stops at the first that verifies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from agents.api import Agent, SolveContext, register_agent
from agents.priors import NodeView, Prior, make_prior
from agents.result import Program
from agents.tree import Edge, Found, Node, SearchTree

DEFAULT_MAX_DEPTH = 3
"""Calls per program MCTS searches by default: deeper nodes multiply the tree's width, and
at the depth limit's last step only actions that can complete a program are evaluated
(:meth:`~agents.tree.SearchTree.candidates`), which makes the last level cheap. Three calls
cover the shipped reference programs of levels 1-2 (Reverse 6 and RepeatCopy 8 excepted)
and MSE from the learned Mean; ArgMax (level 4) needs 4 (``max_depth=4``)."""


@register_agent("mcts")
class MCTS(Agent):
    """PUCT tree search with a pluggable prior (see the module docstring).

    Args:
        prior: a prior name (``"uniform"``, ``"description"``, ``"dataflow"``, or names
            joined by ``+`` for their product) or a :class:`~agents.priors.Prior`.
        temperature: the description prior's softmax temperature (default: its own).
        c_puct: exploration constant.
        batch_size: children evaluated per chunk (one CPU call each).
        widen: progressive-widening exponent.
        max_depth: longest program searched (default: :data:`DEFAULT_MAX_DEPTH`, at most
            the solve's ``max_calls``).
        batched: evaluate a chunk in one CPU call (True) or one action at a time (False);
            both give the same tree.
        lengths: lengths of the search examples (default: the longest training length).
        dataflow: skip actions that read an output or scratch buffer nothing has written
            yet (:meth:`~agents.tree.SearchTree.candidates`); they are never evaluated.
        commute: partial-order reduction: of two independent actions in a row, only one
            order is searched (:meth:`~agents.tree.SearchTree.candidates`; off by default,
            see the module docstring).
        fault_memo: skip an action where the data it reads is the same as where it
            faulted before (:class:`~agents.tree.SearchTree`).
        symmetry: write the pool's interchangeable scratch buffers in index order only;
        constants: skip actions that read only constants;
        last_step: at the depth limit's last step, only actions that write an output and
            use every earlier step's unused result (all three:
            :meth:`~agents.tree.SearchTree.candidates`).
        result_memo: skip an action whose result is known (the same data bound where it
            ran before) to be a no-op or a transposition (:class:`~agents.tree.SearchTree`).
        order: evaluation order of a node's actions: ``"prior"`` (most likely first) or
            ``"gumbel"`` (sampled without replacement from the prior).
    """

    def __init__(
        self,
        prior: str | Prior = "uniform",
        temperature: float | None = None,
        c_puct: float = 1.0,
        batch_size: int = 32,
        widen: float = 0.5,
        max_depth: int | None = None,
        batched: bool = True,
        lengths: Sequence[int] | None = None,
        dataflow: bool = True,
        commute: bool = False,
        fault_memo: bool = True,
        symmetry: bool = True,
        constants: bool = True,
        last_step: bool = True,
        result_memo: bool = True,
        order: str = "prior",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_depth is not None and max_depth < 1:
            raise ValueError(f"max_depth must be >= 1, got {max_depth}")
        if c_puct < 0 or widen < 0:
            raise ValueError(f"c_puct and widen must be >= 0, got {c_puct}, {widen}")
        options = {} if temperature is None else {"temperature": temperature}
        self._prior = make_prior(prior, **options)
        self.prior = prior if isinstance(prior, str) else type(prior).__name__
        self.temperature, self.c_puct, self.batch_size = temperature, c_puct, int(batch_size)
        self.widen, self.max_depth, self.batched = widen, max_depth, bool(batched)
        self._lengths = tuple(lengths) if lengths else None
        self.dataflow, self.commute = bool(dataflow), bool(commute)
        self.fault_memo = bool(fault_memo)
        self.symmetry, self.constants = bool(symmetry), bool(constants)
        self.last_step, self.result_memo = bool(last_step), bool(result_memo)
        if order not in ("prior", "gumbel"):
            raise ValueError(f"order must be 'prior' or 'gumbel', got {order!r}")
        self.order = order
        self.tree: SearchTree | None = None

    def search(self, ctx: SolveContext) -> Program | None:
        self.tree = tree = SearchTree(
            ctx,
            batched=self.batched,
            lengths=self._lengths,
            fault_memo=self.fault_memo,
            result_memo=self.result_memo,
            chunk=self.batch_size,
        )
        self._rng = ctx.rng
        self._depth = self.max_depth or min(DEFAULT_MAX_DEPTH, ctx.max_calls)
        self._simulations = 0
        try:
            if tree.root.success:
                found = tree._check(tree.root)
                if found:
                    return found
            while not tree.root.closed:
                self._simulate(tree.root)
            return None
        except Found as f:
            return f.program
        finally:
            ctx.stats.update(tree.stats())
            ctx.stats["simulations"] = self._simulations

    # ------------------------------------------------------------ one simulation
    def _simulate(self, root: Node) -> None:
        node, path, on_path = root, [], {root.key}
        while True:
            if node.depth >= self._depth or node.closed:
                node.closed = True
                value = node.value
                break
            if node.visits == 0:
                new = self._widen(node)
                value = max([node.value] + [e.child.value for e in new])
                break
            if self._may_widen(node):
                self._widen(node)
            edge, i = self._select(node, on_path)
            if edge is None:
                if node.expanded < len(node.order):
                    self._widen(node)
                    continue
                # every child is closed or an ancestor on this path (searched from there)
                node.closed = True
                value = node.value
                break
            path.append((edge, node.stats, i))
            node = edge.child
            on_path.add(node.key)
        self._simulations += 1
        root.visits += 1
        for edge, stats, i in path:
            edge.n += 1
            edge.w += value
            edge.child.visits += 1
            stats.n[i] += 1
            stats.w[i] += value

    def _may_widen(self, node: Node) -> bool:
        chunks = math.ceil(node.expanded / self.batch_size)
        allowed = 1 + math.floor(node.visits**self.widen)
        return node.order is not None and node.expanded < len(node.order) and chunks < allowed

    def _widen(self, node: Node) -> list[Edge]:
        """Evaluate the node's next chunk of actions in prior order."""
        tree = self.tree
        if node.order is None:
            valid = tree.candidates(
                node,
                dataflow=self.dataflow,
                commute=self.commute,
                symmetry=self.symmetry,
                constants=self.constants,
                last_step=self.last_step and node.depth == self._depth - 1,
            )
            view = NodeView(
                tree.ctx.task,
                tree.ctx.library,
                tree.ev.table,
                tree.ev.pointer_names,
                node.program,
                node.memory,
                tree.ev.env,
            )
            p = np.asarray(self._prior(view, valid), dtype=np.float64)
            if p.shape != valid.shape:
                raise ValueError(f"the prior returned shape {p.shape} for {valid.size} actions")
            if self.order == "gumbel":
                # Gumbel-top-k: the order of sampling without replacement from the prior
                with np.errstate(divide="ignore"):
                    logp = np.log(p)
                rank = np.argsort(-(logp + self._rng.gumbel(size=valid.size)), kind="stable")
            else:
                perm = self._rng.permutation(valid.size)
                rank = perm[np.argsort(-p[perm], kind="stable")]
            node.order, node.priors = valid[rank], p[rank]
        lo = node.expanded
        hi = min(lo + self.batch_size, len(node.order))
        new = tree.expand(node, node.order[lo:hi], node.priors[lo:hi])
        if node.expanded >= len(node.order) and not node.edges:
            node.closed = True
        return new

    def _select(self, node: Node, on_path: set[bytes]) -> tuple[Edge | None, int]:
        """The PUCT choice among evaluated children not closed and not on the path, and its
        index in ``node.edges`` (None, -1 when there is none)."""
        edges = node.edges
        stats = _EdgeStats.of(node)
        free = [not e.child.closed and e.child.key not in on_path for e in edges]
        idx = np.flatnonzero(free)
        if not idx.size:
            return None, -1
        p = stats.prior[idx]
        total = p.sum()
        p = p / total if total > 0 else np.full(idx.size, 1.0 / idx.size)
        n, w = stats.n[idx], stats.w[idx]
        q = np.divide(w, n, out=stats.value[idx], where=n > 0)  # unvisited: the child's value
        u = q + self.c_puct * p * math.sqrt(node.visits + 1) / (1.0 + n)
        i = int(idx[np.argmax(u)])
        return edges[i], i

    def tree_signature(self) -> list[tuple]:
        """The searched tree as plain data (node programs, visits, edge statistics), in node
        creation order: equal for two searches that built the same tree."""
        if self.tree is None:
            return []
        out = []
        for node in self.tree.nodes.values():
            edges = tuple((e.action, e.child.key, e.n, round(e.w, 12)) for e in node.edges)
            out.append((node.key, tuple(map(str, node.program)), node.visits, edges))
        return out


class _EdgeStats:
    """A node's edge statistics as arrays over ``node.edges`` (kept in ``node.stats``), so
    that PUCT selection is array arithmetic: ``prior`` and ``value`` (the child's value)
    are appended as edges are added, ``n`` (visits, float) and ``w`` (summed backed-up
    values) are updated with each edge's ``Edge.n``/``Edge.w`` (the same additions, so the
    same numbers)."""

    __slots__ = ("n", "prior", "value", "w")

    def __init__(self) -> None:
        self.prior, self.value = np.zeros(0), np.zeros(0)
        self.n, self.w = np.zeros(0), np.zeros(0)

    @classmethod
    def of(cls, node: Node) -> _EdgeStats:
        """``node.stats``, extended to every edge of ``node`` (edges are only appended)."""
        stats = node.stats
        if stats is None:
            stats = node.stats = cls()
        have, edges = len(stats.prior), node.edges
        if have < len(edges):
            new = edges[have:]
            stats.prior = np.concatenate([stats.prior, [e.prior for e in new]])
            stats.value = np.concatenate([stats.value, [e.child.value for e in new]])
            stats.n = np.concatenate([stats.n, [float(e.n) for e in new]])
            stats.w = np.concatenate([stats.w, [e.w for e in new]])
        return stats
