"""Agents that learn skill compositions, behind one interface.

``solve(task, agent=NAME, budget=N, seed=S) -> SolveResult`` (:mod:`agents.api`) runs any
registered agent on any task (built-in or user-registered) and verifies the program it
finds on fresh inputs at every training and test length (:mod:`agents.verify`).
:class:`SolveResult` and its JSON schema are in :mod:`agents.result`.

Registered agents (``AGENTS``):

* ``random`` -- :class:`agents.random_search.RandomSearch`, uniform over valid actions.
* ``enumerative`` -- :class:`agents.enumerative.EnumerativeSearch`, breadth-first with
  observational-equivalence pruning.
* ``mcts`` -- :class:`agents.mcts.MCTS`, PUCT tree search with a pluggable
  :class:`~agents.priors.Prior` (``UniformPrior``, ``DescriptionPrior``).

Tree search evaluates many actions from one node in one batched CPU call
(:mod:`agents.batched`).

A new agent is an :class:`Agent` subclass with one method, ``search(ctx)``, registered with
``@register_agent("name")``.
"""

from agents.api import (
    AGENTS,
    Agent,
    BudgetExhausted,
    SolveContext,
    make_agent,
    register_agent,
    resolve_library,
    resolve_task,
    solve,
)
from agents.batched import ActionEvaluator, state_key
from agents.enumerative import EnumerativeSearch
from agents.mcts import MCTS
from agents.priors import PRIORS, DescriptionPrior, NodeView, Prior, UniformPrior, make_prior
from agents.random_search import RandomSearch
from agents.result import SOLVE_RESULT_SCHEMA, Program, SolveResult, validate_result
from agents.verify import verification_lengths, verify_program

__all__ = [
    "AGENTS",
    "MCTS",
    "PRIORS",
    "SOLVE_RESULT_SCHEMA",
    "ActionEvaluator",
    "Agent",
    "BudgetExhausted",
    "DescriptionPrior",
    "EnumerativeSearch",
    "NodeView",
    "Prior",
    "Program",
    "RandomSearch",
    "SolveContext",
    "SolveResult",
    "UniformPrior",
    "make_agent",
    "make_prior",
    "register_agent",
    "resolve_library",
    "resolve_task",
    "solve",
    "state_key",
    "validate_result",
    "verification_lengths",
    "verify_program",
]
