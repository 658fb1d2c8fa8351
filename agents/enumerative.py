"""`EnumerativeSearch`: breadth-first over programs, pruned by observational equivalence.

The yardstick every learned agent is compared with. Programs are enumerated in order of
increasing length (number of calls): every valid action from the root, then every valid
action from each node found at depth 1, and so on. Two partial programs that leave the
same data (inputs, outputs, scratch, constants) on all the search examples are one node
(:class:`~agents.tree.SearchTree`), so programs that compute the same thing are extended
once; actions that fault or change nothing are dropped. Each node's actions are
evaluated ``batch_size`` at a time, in one batched CPU call per chunk. A node that solves
every search example is verified on fresh inputs at every length; the first program that
verifies is returned.
"""

from __future__ import annotations

from collections.abc import Sequence

from agents.api import Agent, SolveContext, register_agent
from agents.result import Program
from agents.tree import Found, Node, SearchTree


@register_agent("enumerative")
class EnumerativeSearch(Agent):
    """Breadth-first enumeration with observational-equivalence pruning.

    Args:
        max_depth: longest program enumerated (default: the solve's ``max_calls``).
        batch_size: actions evaluated per CPU call.
        batched: one CPU call per chunk (True) or one action at a time (False); both
            enumerate the same nodes in the same order.
        lengths: lengths of the search examples (default: the longest training length).
        dataflow: also skip actions that read an output or scratch buffer nothing has
            written yet (off by default: the plain breadth-first yardstick).
        commute: also apply partial-order reduction (off by default); see
            :meth:`~agents.tree.SearchTree.candidates`.
        symmetry, constants, last_step: the symmetry, constant-read and last-step rules of
            :meth:`~agents.tree.SearchTree.candidates` (off by default).
        result_memo, fault_memo: skip actions whose result is known to be a no-op or a
            transposition, or a fault (:class:`~agents.tree.SearchTree`; off by default).
        prune: shorthand that turns every pruning above on (``dataflow``, ``commute``,
            ``symmetry``, ``constants``, ``last_step``, ``result_memo``, ``fault_memo``).
    """

    def __init__(
        self,
        max_depth: int | None = None,
        batch_size: int = 64,
        batched: bool = True,
        lengths: Sequence[int] | None = None,
        dataflow: bool = False,
        commute: bool = False,
        symmetry: bool = False,
        constants: bool = False,
        last_step: bool = False,
        result_memo: bool = False,
        fault_memo: bool = False,
        prune: bool = False,
    ) -> None:
        if max_depth is not None and max_depth < 1:
            raise ValueError(f"max_depth must be >= 1, got {max_depth}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.max_depth, self.batch_size, self.batched = max_depth, int(batch_size), bool(batched)
        self._lengths = tuple(lengths) if lengths else None
        self.dataflow, self.commute = bool(dataflow or prune), bool(commute or prune)
        self.symmetry, self.constants = bool(symmetry or prune), bool(constants or prune)
        self.last_step, self.result_memo = bool(last_step or prune), bool(result_memo or prune)
        self.fault_memo = bool(fault_memo or prune)
        self.tree: SearchTree | None = None
        self.visit_order: list[bytes] = []

    def search(self, ctx: SolveContext) -> Program | None:
        self.tree = tree = SearchTree(
            ctx,
            batched=self.batched,
            lengths=self._lengths,
            result_memo=self.result_memo,
            fault_memo=self.fault_memo,
            chunk=self.batch_size,
        )
        self.visit_order = []
        depth_limit = self.max_depth or ctx.max_calls
        frontier: list[Node] = [tree.root]
        try:
            if tree.root.success and tree._check(tree.root):
                return tree.root.program
            for depth in range(depth_limit):
                ctx.stats["depth"] = depth + 1
                following: list[Node] = []
                for node in frontier:
                    self.visit_order.append(node.key)
                    actions = tree.candidates(
                        node,
                        dataflow=self.dataflow,
                        commute=self.commute,
                        symmetry=self.symmetry,
                        constants=self.constants,
                        last_step=self.last_step and depth == depth_limit - 1,
                    )
                    for lo in range(0, len(actions), self.batch_size):
                        chunk = actions[lo : lo + self.batch_size]
                        tree.expand(node, chunk, [0.0] * len(chunk))
                        following.extend(c for c in tree.created if not c.closed)
                frontier = following
            return None
        except Found as f:
            return f.program
        finally:
            ctx.stats.update(tree.stats())
