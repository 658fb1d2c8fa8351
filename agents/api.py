"""The one interface of every agent: :func:`solve` and the :class:`Agent` base class.

``solve(task, agent="random", budget=2000, seed=0)`` resolves the task (env id, name or
:class:`TaskSpec`) and the library, builds the agent by its registered name, runs its
:meth:`Agent.search` with a :class:`SolveContext`, verifies the program it returns on fresh
inputs (:func:`agents.verify.verify_program`) and returns a :class:`SolveResult`.

The context is how an agent talks to the harness, so every agent is accounted the same
way: it builds environments (:meth:`SolveContext.make_env`), is charged for what it
evaluates (:meth:`SolveContext.charge`; the budget is in *actions evaluated*, one
(skill, bindings) run on the K examples), and offers candidate programs
(:meth:`SolveContext.offer`). Because the context always holds the best candidate so far,
Ctrl-C during a search returns that candidate, marked ``interrupted``, not a traceback.

Adding an agent is a class with one method and one line to register it::

    @register_agent("mine")
    class MyAgent(Agent):
        def search(self, ctx: SolveContext) -> Program | None:
            ...

The search runs with the objects that existed before it (the task's action table, the
library, imported modules: hundreds of thousands of them) left out of the garbage
collector's scans (:func:`gc.freeze`, undone when the search ends): a search allocates
many small objects, and every full collection would otherwise walk them all again, which
can cost a search of a few thousand actions a third of its time. Reference counting still
frees frozen objects as usual; only reference cycles among them wait for the search to end.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from agents.result import Program, SolveResult
from agents.verify import verification_lengths, verify_program
from algind_gym.skills import builtin_library
from algind_gym.skills.library import SkillLibrary
from algind_gym.tasks import TaskSpec, compile_task_program, get_task, list_tasks

AGENTS: dict[str, type[Agent]] = {}
"""Registered agents by name (see :func:`register_agent`)."""


def register_agent(name: str) -> Callable[[type[Agent]], type[Agent]]:
    """Class decorator: make an :class:`Agent` subclass available to :func:`solve` as ``name``."""

    def deco(cls: type[Agent]) -> type[Agent]:
        if name in AGENTS and AGENTS[name] is not cls:
            raise ValueError(f"an agent named {name!r} is already registered ({AGENTS[name]})")
        cls.name = name
        AGENTS[name] = cls
        return cls

    return deco


def make_agent(name: str, **options: Any) -> Agent:
    """Build the registered agent ``name`` with keyword ``options`` (checked against its
    constructor, so a misspelt option is an error that lists the accepted ones)."""
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; choose one of {sorted(AGENTS)}")
    cls = AGENTS[name]
    params = inspect.signature(cls.__init__).parameters
    accepted = [p for p in params if p != "self"]
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in options if k not in accepted]
    if unknown and not takes_any:
        raise ValueError(
            f"agent {name!r} has no option(s) {unknown}; it accepts {accepted or 'no options'}"
        )
    return cls(**options)


class BudgetExhausted(Exception):
    """Raised by :meth:`SolveContext.charge` once the action budget is spent; :func:`solve`
    catches it, so an agent may simply let it propagate."""


@dataclass
class SolveContext:
    """What an agent gets from :func:`solve`: the problem, the budget and the accounting.

    Attributes:
        task, library: the problem.
        budget: actions the search may evaluate.
        seed: the solve's seed; ``rng`` is seeded from it.
        n_examples: K, examples per environment (the search's training examples).
        max_calls: the longest program the search should consider.
        backend: CPU backend the environments use.
        progress: optional ``callback(ctx)`` called after every charge (the CLI's progress bar).
    """

    task: TaskSpec
    library: SkillLibrary
    budget: int
    seed: int
    n_examples: int = 8
    max_calls: int = 6
    backend: str = "transformer"
    progress: Callable[[SolveContext], None] | None = None
    rng: np.random.Generator = field(init=False)
    actions_evaluated: int = 0
    env_steps: int = 0
    instructions: int = 0
    best_program: Program | None = None
    best_score: float = -1.0
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    @property
    def remaining(self) -> int:
        return self.budget - self.actions_evaluated

    @property
    def exhausted(self) -> bool:
        return self.actions_evaluated >= self.budget

    def make_env(self, **kwargs: Any):
        """A :class:`~algind_gym.envs.SkillCompositionEnv` for this task and library (the
        context's K, call limit and backend unless overridden)."""
        from algind_gym.envs import SkillCompositionEnv

        kwargs = {
            "n_examples": self.n_examples,
            "max_calls": self.max_calls,
            "backend": self.backend,
            **kwargs,
        }
        return SkillCompositionEnv(self.task, self.library, **kwargs)

    def charge(self, actions: int = 0, env_steps: int = 0, instructions: int = 0) -> None:
        """Account for work done; raises :class:`BudgetExhausted` once the budget is spent."""
        self.actions_evaluated += int(actions)
        self.env_steps += int(env_steps)
        self.instructions += int(instructions)
        if self.progress is not None:
            self.progress(self)
        if self.exhausted:
            raise BudgetExhausted

    def offer(self, program: Program, score: float) -> None:
        """Record a candidate with its score on the search's examples (higher is better;
        1.0 = right on all of them). The best one is what an interrupted solve returns."""
        if score > self.best_score:
            self.best_program = [(s, list(b)) for s, b in program]
            self.best_score = float(score)

    def verify(self, program: Program) -> dict[str, float]:
        """Accuracy of ``program`` on fresh inputs at every verification length."""
        return verify_program(
            self.library, self.task, program, seed=self.seed, backend=self.backend
        )


class Agent:
    """Base class of every agent: one method, :meth:`search`.

    Subclasses take their options as keyword arguments of ``__init__`` and are registered
    with :func:`register_agent`.
    """

    name: ClassVar[str] = "agent"

    def options(self) -> dict[str, Any]:
        """The agent's options as JSON values (recorded in the result)."""
        return {
            k: v
            for k, v in vars(self).items()
            if not k.startswith("_") and isinstance(v, (int, float, str, bool, type(None)))
        }

    def search(self, ctx: SolveContext) -> Program | None:
        """Search for a program solving ``ctx.task``; return it (or None).

        Use ``ctx.make_env()`` to act, ``ctx.charge()`` for every action evaluated,
        ``ctx.offer()`` for candidates. Return when a candidate verifies
        (``ctx.verify``) or the budget runs out (``charge`` raises; letting it propagate
        is fine: the best offered candidate is then verified and returned).
        """
        raise NotImplementedError


def resolve_task(task: str | TaskSpec) -> TaskSpec:
    """A :class:`TaskSpec` from a spec, a task name or an env id ``AlgInd/<Name>-v0``."""
    if isinstance(task, TaskSpec):
        return task
    if not isinstance(task, str):
        raise TypeError(f"task must be a task name, an env id or a TaskSpec, got {task!r}")
    name = task
    if name.startswith("AlgInd/"):
        name = name[len("AlgInd/") :].rsplit("-v", 1)[0]
    try:
        return get_task(name)
    except KeyError:
        known = ", ".join(t.name for t in list_tasks())
        raise ValueError(f"unknown task {task!r}; known tasks: {known}") from None


def resolve_library(library: SkillLibrary | str | Path | None) -> SkillLibrary:
    """The built-in library (None), a :class:`SkillLibrary`, or one loaded from a JSON file."""
    if library is None:
        return builtin_library()
    if isinstance(library, SkillLibrary):
        return library
    path = Path(library)
    if not path.is_file():
        raise ValueError(f"no skill library file {str(path)!r}; pass a file written by save()")
    return SkillLibrary.load(path)


def minimise_program(program: Program, verify: Callable[[Program], dict[str, float]]) -> Program:
    """Drop steps while the program still verifies: the shortest program obtainable from
    ``program`` by deleting steps one at a time, from the last step back, repeated until no
    single deletion keeps every accuracy of ``verify`` at 1.0 (greedy: a locally minimal
    program, every remaining step needed).

    Example:
        >>> ok = lambda p: {"1": float(("b", []) in p)}
        >>> minimise_program([("a", []), ("b", []), ("c", [])], ok)
        [('b', [])]
    """
    current = [(s, list(b)) for s, b in program]
    changed = True
    while changed and len(current) > 1:
        changed = False
        for i in reversed(range(len(current))):
            shorter = current[:i] + current[i + 1 :]
            if all(v == 1.0 for v in verify(shorter).values()):
                current, changed = shorter, True
                break
    return current


def program_text(program: Program) -> str:
    """One ``skill(bindings)`` line per step."""
    return "\n".join(f"{s}({', '.join(b)})" for s, b in program)


def program_disassembly(library: SkillLibrary, task: TaskSpec, program: Program) -> str | None:
    """The program compiled into a skill (in a copy of the library) and disassembled; None
    when it does not compile."""
    if not program:
        return None
    scratch = library.copy()
    try:
        skill = compile_task_program(scratch, task, program)
    except (ValueError, KeyError) as e:
        return f"; does not compile into a skill: {e}"
    return scratch.disassemble(skill.key)


@contextlib.contextmanager
def frozen_heap():
    """Leave the objects alive now out of the garbage collector's scans until the block
    ends (:func:`gc.freeze`; the module docstring says why). Nested uses freeze once."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def solve(
    task: str | TaskSpec,
    *,
    agent: str | Agent = "random",
    library: SkillLibrary | str | Path | None = None,
    budget: int = 2000,
    seed: int = 0,
    n_examples: int = 8,
    max_calls: int = 6,
    backend: str = "transformer",
    progress: Callable[[SolveContext], None] | None = None,
    minimise: bool = True,
    **options: Any,
) -> SolveResult:
    """Let ``agent`` search for a program that solves ``task`` and verify what it finds.

    Args:
        task: a :class:`TaskSpec` (user tasks included), a task name or an env id.
        agent: a registered agent name (see :data:`AGENTS`) or an :class:`Agent` instance.
        library: a :class:`SkillLibrary`, a saved library file, or None for the built-ins.
        budget: actions the search may evaluate (>= 1).
        seed: seeds the search and the verification inputs: same seed, same result.
        n_examples: K, examples per environment during search.
        max_calls: the longest program considered.
        backend: CPU backend (default: the compiled Transformer CPU).
        progress: optional callback, called with the :class:`SolveContext` as work is charged.
        minimise: drop the steps of a verified program whose removal keeps it verified
            (:func:`minimise_program`, on the same fresh inputs); the search's own program
            is kept as ``found_program``.
        **options: the agent's options (when ``agent`` is a name).

    Returns:
        A :class:`SolveResult`; ``success`` only when the program is right on fresh inputs
        at every training length, every test length and 8x the longest training length.

    Example:
        >>> r = solve("VectorAdd", agent="random", budget=500, seed=0)
        >>> r.success, r.generalisation["64"], r.program[-1]
        (True, 1.0, ('zipmap@1', ['&s_add@1', 'x', 'y', 'out']))
    """
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f"budget must be a positive integer (actions to evaluate), got {budget!r}")
    spec = resolve_task(task)
    lib = resolve_library(library)
    if isinstance(agent, Agent):
        if options:
            raise ValueError("pass options to the agent's constructor when giving an instance")
        impl = agent
    else:
        impl = make_agent(agent, **options)
    ctx = SolveContext(
        spec,
        lib,
        int(budget),
        int(seed),
        n_examples=n_examples,
        max_calls=max_calls,
        backend=backend,
        progress=progress,
    )
    start = time.perf_counter()
    interrupted = False
    program: Program | None = None
    try:
        with frozen_heap():
            program = impl.search(ctx)
    except BudgetExhausted:
        program = None
    except KeyboardInterrupt:
        interrupted = True
    if program is None:
        program = ctx.best_program or []
    program = [(s, list(b)) for s, b in program]
    lengths = verification_lengths(spec)
    generalisation = ctx.verify(program) if program else {str(n): 0.0 for n in lengths}
    success = bool(program) and all(v == 1.0 for v in generalisation.values())
    found = None
    if success and minimise:
        found = program
        program = minimise_program(program, ctx.verify)
        if len(program) < len(found):
            generalisation = ctx.verify(program)
    return SolveResult(
        task=spec.name,
        agent=impl.name,
        success=success,
        program=program,
        program_text=program_text(program),
        disassembly=program_disassembly(lib, spec, program) if success else None,
        actions_evaluated=ctx.actions_evaluated,
        env_steps=ctx.env_steps,
        instructions=ctx.instructions,
        wall_time_s=time.perf_counter() - start,
        interrupted=interrupted,
        generalisation=generalisation,
        budget=int(budget),
        seed=int(seed),
        options=impl.options(),
        library_size=len(lib),
        stats=dict(ctx.stats),
        found_program=found,
    )
