"""The hierarchical curriculum (paper section 3.3): generations of solve, verify, append.

Start from the atomic skills (the built-in library, or a saved one). In each generation,
attempt every task that is not solved yet with the library as it stood when the generation
began (:func:`agents.solve`: the agent searches, and the program is verified on fresh
inputs at every training length, every test length and 8x the longest training length on
the Transformer CPU); compile each verified program into a skill named after its task
(:func:`~algind_gym.tasks.compile_task_program`) and append it (a verified program that
cannot become a skill, e.g. one that writes into a constant, is recorded with its
``compile_error`` and the task stays unsolved). The next generation sees
every skill learned before it. The loop stops when a generation solves nothing new (or
every task is solved). Nothing here reads the shipped reference solutions
(:mod:`algind_gym.tasks.reference`): what the library holds was found by the agent.

The library is frozen within a generation, as in the paper (a skill learned in generation g
is available from generation g+1), so a generation's attempts do not depend on their
order. Each attempt is seeded with the run's seed, so an attempt is reproduced exactly by
``algind-gym solve TASK --seed S`` on that generation's library.

**Run state and resuming.** ``DIR/results.json`` (:mod:`agents.report` documents and
validates its schema) is rewritten atomically after every attempt and ``DIR/library.json``
after every solved task (library first, then the state, so a crash in between leaves a
library with one skill more than the state records, which :func:`run_curriculum` drops).
An attempt interrupted by Ctrl-C is not recorded; ``resume=True`` re-runs it from scratch,
so a resumed run gives exactly the results of an uninterrupted one.

**Flat against hierarchical** (:func:`run_flat`): the same agent on the same tasks with
the start library only (nothing is appended), with a budget ``ratio`` times the actions
the hierarchy needed for that task. A flat attempt that uses its whole budget is reported
as "> budget"; one whose agent stopped early without a verified program (an exhaustive
search ran out of programs within its depth limit: at most ``max_calls`` calls, and for
MCTS at most its ``max_depth``) as "not expressible".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agents.api import AGENTS, resolve_library, resolve_task, solve
from agents.result import SolveResult
from algind_gym.atomic import atomic_write_text
from algind_gym.envs.actions import ActionSpaceTooLarge
from algind_gym.skills.library import LibraryFormatError, SkillLibrary
from algind_gym.tasks import TaskSpec, compile_task_program, list_tasks

RESULTS_FILE = "results.json"
LIBRARY_FILE = "library.json"

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "description": "numeric levels 1-4 and the short algorithmic tasks (minutes on 2 cores)",
        "levels": (1, 2, 3, 4),
        "track": "numeric",
        "extra": ("Copy", "PrefixSum", "DuplicatedInput", "CountEqual"),
        "defaults": {"budget": 25_000, "prior": "description+dataflow"},
    },
    "full": {
        "description": "every registered task, user tasks included",
        "levels": None,
        "defaults": {"budget": 25_000, "prior": "description+dataflow"},
    },
}
"""Named task selections for :func:`preset_tasks`, with the settings the command uses for
them unless given (``defaults``: the budget, and the prior for agents that take one)."""


class RunStateError(ValueError):
    """An output directory or run state that cannot be used as asked; says how to fix it."""


def preset_tasks(preset: str) -> list[str]:
    """Task names of a preset in curriculum order (``full``: every registered task)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    p = PRESETS[preset]
    out = []
    for t in list_tasks():
        every = p["levels"] is None
        if every or (t.level in p["levels"] and t.track == p["track"]) or t.name in p["extra"]:
            out.append(t.name)
    return out


def default_agent() -> str:
    """``mcts`` when registered, else a clear error naming the registered agents."""
    if "mcts" in AGENTS:
        return "mcts"
    raise ValueError(
        f"the default agent 'mcts' is not registered; pass --agent with one of {sorted(AGENTS)}"
    )


@dataclass
class CurriculumConfig:
    """Everything that determines a run's results (a resumed run must match it exactly).

    Attributes:
        tasks: task names, attempted in this order within a generation.
        agent, options: the registered agent and its keyword options.
        budget: actions per attempt.
        seed: seeds every attempt (and its verification).
        n_examples, max_calls: K examples per search env, longest program.
        start_library: keys of the library the run starts from.
        preset: the preset the tasks came from, if any (informational).
    """

    tasks: list[str]
    agent: str
    budget: int = 2000
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    n_examples: int = 8
    max_calls: int = 6
    start_library: list[str] = field(default_factory=list)
    preset: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def attempt_record(
    result: SolveResult,
    generation: int,
    skill: str | None,
    compile_error: str | None = None,
    skipped: str | None = None,
) -> dict[str, Any]:
    """One attempt as stored in ``results.json``: the SolveResult, the generation, the key of
    the skill it added (None when not solved), why a verified program could not become
    a skill (``compile_error``; the task then counts as not solved) and why the task could
    not be attempted at all (``skipped``)."""
    return {
        "generation": generation,
        "skill": skill,
        "compile_error": compile_error,
        "skipped": skipped,
        "result": result.to_dict(),
    }


def skipped_result(spec: TaskSpec, config: CurriculumConfig, library_size: int) -> SolveResult:
    """The record of a task that was not attempted: nothing searched, nothing found."""
    return SolveResult(
        task=spec.name,
        agent=config.agent,
        success=False,
        program=[],
        actions_evaluated=0,
        env_steps=0,
        instructions=0,
        wall_time_s=0.0,
        interrupted=False,
        generalisation={},
        budget=config.budget,
        seed=config.seed,
        options=dict(config.options),
        library_size=library_size,
    )


def library_prefix(library: SkillLibrary, n: int) -> SkillLibrary:
    """The first ``n`` skills of ``library`` (a library as it stood earlier; append-only
    libraries are their own history)."""
    data = library.to_json()
    return SkillLibrary.from_json({**data, "skills": data["skills"][:n]})


def _solve(spec: TaskSpec, library: SkillLibrary, config: CurriculumConfig, budget: int, progress):
    return solve(
        spec,
        agent=config.agent,
        library=library,
        budget=budget,
        seed=config.seed,
        n_examples=config.n_examples,
        max_calls=config.max_calls,
        progress=progress,
        **config.options,
    )


def new_state(config: CurriculumConfig) -> dict[str, Any]:
    from agents.report import RESULTS_SCHEMA_NAME, RESULTS_SCHEMA_VERSION

    return {
        "schema": RESULTS_SCHEMA_NAME,
        "schema_version": RESULTS_SCHEMA_VERSION,
        "config": config.to_json(),
        "generations": [],
        "finished": False,
        "stop_reason": None,
        "library_keys": list(config.start_library),
        "flat": None,
    }


def open_run(
    out: str | Path, config: CurriculumConfig, *, resume: bool, force: bool
) -> tuple[dict[str, Any], SkillLibrary | None]:
    """The run state to continue in ``out`` (new, or the saved one when ``resume``) and the
    saved library (None for a new run). Raises :class:`RunStateError` with the fix."""
    from agents.report import load_results

    out = Path(out)
    path = out / RESULTS_FILE
    if force or not path.exists():
        if resume and not path.exists():
            raise RunStateError(f"--resume: no run to resume in {out} (no {RESULTS_FILE})")
        return new_state(config), None
    if not resume:
        raise RunStateError(
            f"{out} already holds a curriculum run ({RESULTS_FILE}); pass --resume to continue "
            "it, --force to start over (overwriting it), or choose another --out"
        )
    state = load_results(path)
    saved = state["config"]
    mine = config.to_json()
    diff = sorted(k for k in mine if saved.get(k) != mine[k])
    if diff:
        what = ", ".join(f"{k}: saved {saved.get(k)!r}, now {mine[k]!r}" for k in diff)
        raise RunStateError(
            f"{out} holds a different run ({what}); resume with the same settings, "
            "pass --force to start over, or choose another --out"
        )
    lib_path = out / LIBRARY_FILE
    try:
        library = SkillLibrary.load(lib_path)
    except FileNotFoundError:
        raise RunStateError(f"{lib_path} is missing; pass --force to start over") from None
    except LibraryFormatError as e:
        raise RunStateError(f"{e}; pass --force to start the run over") from None
    keys = state["library_keys"]
    if library.keys()[: len(keys)] != keys:
        raise RunStateError(
            f"{lib_path} does not hold the skills {path} records; "
            "pass --force to start over or choose another --out"
        )
    return state, library_prefix(library, len(keys))


ProgressHook = Callable[[str, dict[str, Any]], None]


def run_curriculum(
    config: CurriculumConfig,
    out: str | Path,
    *,
    library: SkillLibrary | str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    on_event: ProgressHook | None = None,
    progress: Callable | None = None,
) -> dict[str, Any]:
    """Run (or resume) the generation loop in ``out`` and return the final state.

    Args:
        config: the run's settings (``config.start_library`` is filled in from ``library``).
        out: output directory (``results.json``, ``library.json``).
        library: the start library (default: the built-in atomic skills and combinators).
        resume: continue the run saved in ``out`` (same config required).
        force: start over even if ``out`` holds a run.
        on_event: ``callback(kind, data)`` with kinds ``"generation"`` (a generation starts),
            ``"attempt"`` (a task is about to be attempted) and ``"result"`` (an attempt is
            recorded), for progress displays.
        progress: passed to :func:`agents.solve` (called as actions are charged).
    """
    for name in config.tasks:
        resolve_task(name)
    if config.agent not in AGENTS:
        raise ValueError(f"unknown agent {config.agent!r}; choose one of {sorted(AGENTS)}")
    start = resolve_library(library)
    config.start_library = start.keys()
    state, saved_lib = open_run(out, config, resume=resume, force=force)
    lib = saved_lib if saved_lib is not None else start.copy()
    out = Path(out)
    notify = on_event or (lambda kind, data: None)
    if saved_lib is None:
        _save(out, state, lib)
    while not state["finished"]:
        gens = state["generations"]
        if not gens or gens[-1]["finished"]:
            solved = solved_tasks(state)
            todo = [t for t in config.tasks if t not in solved]
            if not todo or (gens and gens[-1]["solved"] == 0):
                state["finished"] = True
                state["stop_reason"] = (
                    "every task solved" if not todo else "a generation solved nothing new"
                )
                _save(out, state, None)
                break
            gens.append(
                {
                    "generation": len(gens) + 1,
                    "library_size": len(lib),
                    "tasks": todo,
                    "attempts": [],
                    "solved": 0,
                    "finished": False,
                }
            )
            _save(out, state, None)
        gen = gens[-1]
        notify("generation", gen)
        frozen = library_prefix(lib, gen["library_size"])
        done = {a["result"]["task"] for a in gen["attempts"]}
        for name in gen["tasks"]:
            if name in done:
                continue
            spec = resolve_task(name)
            notify("attempt", {"generation": gen["generation"], "task": name})
            skill, error, skipped = None, None, None
            try:
                result = _solve(spec, frozen, config, config.budget, progress)
            except ActionSpaceTooLarge as e:  # e.g. SGDStep with a large learned library
                skipped = f"{e}"
                result = skipped_result(spec, config, len(frozen))
            if result.interrupted:
                raise KeyboardInterrupt
            if result.success:
                try:
                    skill = compile_task_program(lib, spec, result.program).key
                except (ValueError, KeyError) as e:  # e.g. it writes into a constant
                    error = str(e.args[0] if isinstance(e, KeyError) else e)
                else:
                    state["library_keys"] = lib.keys()
                    gen["solved"] += 1
            gen["attempts"].append(attempt_record(result, gen["generation"], skill, error, skipped))
            _save(out, state, lib if skill else None)
            notify("result", gen["attempts"][-1])
        gen["finished"] = True
        _save(out, state, None)
    return state


def solved_tasks(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Task name -> the attempt that solved it (verified and appended as a skill)."""
    return {
        a["result"]["task"]: a for g in state["generations"] for a in g["attempts"] if a["skill"]
    }


def run_flat(
    state: dict[str, Any],
    out: str | Path,
    *,
    tasks: Sequence[str] | None = None,
    ratio: float = 100.0,
    library: SkillLibrary | str | Path | None = None,
    on_event: ProgressHook | None = None,
    progress: Callable | None = None,
) -> dict[str, Any]:
    """Flat against hierarchical: solve each of ``tasks`` (default: every solved task of
    level 3 or more) from the start library with a budget of ``ratio`` x the actions the
    hierarchy's solving attempt needed. Results are stored in ``state["flat"]`` and saved
    after each task; tasks already there (same ratio) are not re-run."""
    from agents.report import validate_results

    config = CurriculumConfig(**state["config"])
    start = resolve_library(library)
    if start.keys() != config.start_library:
        raise RunStateError("the flat run needs the run's start library (pass the same --library)")
    solved = solved_tasks(state)
    if tasks is None:
        tasks = [t for t in config.tasks if t in solved and resolve_task(t).level >= 3]
    flat = state.get("flat") or {}
    if flat.get("ratio") != ratio:
        flat = {"ratio": ratio, "rows": []}
    state["flat"] = flat
    notify = on_event or (lambda kind, data: None)
    done = {r["task"] for r in flat["rows"]}
    for name in tasks:
        if name in done:
            continue
        if name not in solved:
            raise ValueError(f"flat comparison: {name!r} was not solved by the hierarchy")
        hier = solved[name]["result"]
        budget = max(1, round(ratio * hier["actions_evaluated"]))
        notify("flat", {"task": name, "budget": budget})
        result = _solve(resolve_task(name), start, config, budget, progress)
        if result.interrupted:
            raise KeyboardInterrupt
        flat["rows"].append(flat_row(name, hier, result))
        validate_results(state)
        _save(Path(out), state, None)
        notify("flat-result", flat["rows"][-1])
    return state


def flat_row(task: str, hier: dict[str, Any], flat: SolveResult) -> dict[str, Any]:
    """One row of the flat-against-hierarchical table (``outcome`` is ``solved``,
    ``over_budget`` or ``not_expressible``)."""
    if flat.success:
        outcome = "solved"
    elif flat.actions_evaluated >= flat.budget:
        outcome = "over_budget"
    else:
        outcome = "not_expressible"
    return {
        "task": task,
        "hier_actions": hier["actions_evaluated"],
        "hier_calls": len(hier["program"]),
        "flat_budget": flat.budget,
        "flat_outcome": outcome,
        "flat_actions": flat.actions_evaluated,
        "flat_calls": len(flat.program) if flat.success else None,
        "flat_program": flat.program_text if flat.success else None,
        "flat_wall_time_s": flat.wall_time_s,
    }


def _save(out: Path, state: dict[str, Any], library: SkillLibrary | None) -> None:
    """Library first (when it changed), then the state (see the module docstring)."""
    import json

    from agents.report import validate_results

    validate_results(state)
    if library is not None:
        library.save(out / LIBRARY_FILE)
    atomic_write_text(out / RESULTS_FILE, json.dumps(state, indent=1) + "\n")
