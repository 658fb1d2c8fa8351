"""The gradient composer on every level-1 and level-2 task and MatVec, against MCTS.

For each task and seed it runs, side by side in one process:

* ``gradient`` with ``init="uniform"`` and with ``init="description"`` (same T, iterations,
  restarts, examples);
* ``mcts`` with the uniform prior, given the *same wall time* as the slower of the two
  gradient runs of that task and seed (its action budget is large; a wall-clock check in the
  progress callback ends it with ``BudgetExhausted``, and the best program so far is
  verified as usual).

Every agent gets the library ``reference_library_for(task)``: the built-in skills plus the
reference skills of the task's prerequisites (for MatVec this provides ``DotProduct``; for
level-1 tasks it is the built-in library). Success is ``SolveResult.success``: the program
verified on fresh inputs at every training and test length and at 8x the longest training
length.

Results are appended to ``experiments/results/gradient_table.jsonl`` as they come (so a
cut-short run keeps what it measured) and the table is rendered to
``experiments/results/gradient_table.md`` (atomic writes). Times are wall-clock on whatever
machine runs it; on a shared machine they are noisy, but the three agents of one row ran
back to back in one process. ``--clock cpu`` makes ``--max-wall`` and MCTS's equal budget
count this process's CPU seconds instead (:data:`CLOCKS`); every row records both.

Usage::

    python experiments/gradient_table.py [--seeds 0 1 2 3 4] [--steps 2] [--iterations 20]
        [--max-wall 60] [--clock wall|cpu] [--tasks Sum DotProduct ...] [--render-only]

Rows run task by task (every seed of a task, then the next task), so a cut-short run has
whole tasks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from agents import BudgetExhausted, solve
from agents.result import SolveResult
from algind_gym.atomic import atomic_write_text
from algind_gym.skills.library import SkillLibrary
from algind_gym.tasks import get_task, list_tasks
from algind_gym.tasks.reference import (
    REFERENCE_SOLUTIONS,
    build_reference_library,
    reference_library_for,
)

RESULTS = Path(__file__).parent / "results"
AGENTS = ("gradient-uniform", "gradient-description", "mcts-uniform")


def table_tasks() -> list[str]:
    """Every level-1 and level-2 task (both tracks) and MatVec, in curriculum order."""
    return [t.name for t in list_tasks() if t.level <= 2] + ["MatVec"]


def table_library(task: str) -> SkillLibrary:
    """``reference_library_for(task)``; for a task without a reference solution (CarryIn,
    Digit10) the built-ins plus the reference skills of its prerequisites."""
    if task in REFERENCE_SOLUTIONS:
        return reference_library_for(task)
    return build_reference_library(get_task(task).prerequisites)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
"""``--clock``: wall seconds, or CPU seconds of this process (the threads are pinned to
one, so on an idle machine the two agree; on a shared machine, where a process at nice 19
may get a few percent of a core, the CPU clock gives every run the same computation
whatever the load)."""


def wall_clock_stop(wall_s: float | None, clock: str = "wall"):
    """A progress callback that ends a solve (``BudgetExhausted``) after ``wall_s`` seconds
    of ``clock`` (:data:`CLOCKS`); the best program offered so far is then verified as
    usual."""
    now = CLOCKS[clock]
    start = now()

    def stop(ctx) -> None:
        if wall_s is not None and now() - start > wall_s:
            raise BudgetExhausted

    return stop


def run_gradient(task: str, seed: int, init: str, args: argparse.Namespace) -> SolveResult:
    return solve(
        task,
        agent="gradient",
        library=table_library(task),
        budget=10**9,
        seed=seed,
        progress=wall_clock_stop(args.max_wall, args.clock),
        steps=args.steps,
        iterations=args.iterations,
        restarts=args.restarts,
        init=init,
        tau_end=args.tau_end,
        top_k=args.top_k,
        population=args.population,
        exploit_every=args.exploit_every,
        lr=args.lr,
        lr_end=args.lr_end,
        gumbel={"none": False, "all": True, "reads": "reads"}[args.gumbel],
        examples=args.examples,
        private=not args.shared,
        deepen=args.deepen,
    )


def warm_up() -> None:
    """Load the description prior's sentence encoder once, untimed, so that the first
    ``--init description`` run of a process is not charged the loading (rows measured after
    this existed carry ``"warm": true``)."""
    solve("VectorAdd", agent="gradient", steps=1, iterations=1, init="description", budget=10**6)


def run_mcts(task: str, seed: int, wall_s: float, clock: str = "wall") -> SolveResult:
    return solve(
        task,
        agent="mcts",
        library=table_library(task),
        budget=10**9,
        seed=seed,
        progress=wall_clock_stop(wall_s, clock),
        prior="uniform",
    )


def timed(run, *args) -> tuple[SolveResult, float]:
    """``run(*args)`` and the CPU seconds this process spent in it."""
    start = time.process_time()
    r = run(*args)
    return r, time.process_time() - start


def record(task: str, seed: int, agent: str, r: SolveResult, cpu_s: float | None = None) -> dict:
    task_spec = next(t for t in list_tasks() if t.name == task)
    long = str(8 * max(task_spec.train_lengths))
    return {
        "task": task,
        "seed": seed,
        "agent": agent,
        "success": r.success,
        "program": r.program_text,
        "wall_s": r.wall_time_s,
        "cpu_s": cpu_s,
        "iterations": r.stats.get("iterations"),
        "iterations_to_success": r.stats.get("iterations_to_success"),
        "actions": r.actions_evaluated,
        "acc_8x": r.generalisation.get(long, 0.0),
        "excluded_ops": sorted(r.stats.get("excluded_ops", {})),
        "nonfinite_losses": r.stats.get("nonfinite_losses"),
        "iterations_per_s": r.stats.get("iterations_per_s"),
        "grad_row_share": r.stats.get("grad_row_share"),
        "final_loss": r.stats.get("final_loss"),
        "checked": r.stats.get("checked"),
        "success_rank": r.stats.get("success_rank"),
        "success_source": r.stats.get("success_source"),
        "success_member": r.stats.get("success_member"),
        "ops_per_step": r.stats.get("ops_per_step"),
        "deepening_stopped": r.stats.get("deepening_stopped"),
        "warm": True,
    }


def error_record(task: str, seed: int, agent: str, error: str) -> dict:
    """A row for a run that ended with a clear error (counted as a failure)."""
    return {
        "task": task,
        "seed": seed,
        "agent": agent,
        "success": False,
        "program": "",
        "wall_s": 0.0,
        "iterations": 0,
        "iterations_to_success": None,
        "actions": 0,
        "acc_8x": 0.0,
        "error": error,
    }


def render(rows: list[dict], args: argparse.Namespace) -> str:
    seeds = sorted({r["seed"] for r in rows})
    agents = [a for a in AGENTS if any(r["agent"] == a for r in rows)]
    clock_name = "CPU time (this process's)" if args.clock == "cpu" else "wall time"
    lines = [
        "# Gradient composer vs MCTS (uniform prior) at equal "
        + ("CPU time" if args.clock == "cpu" else "wall time"),
        "",
        f"Seeds: {seeds}; gradient ({'shared scratch' if args.shared else 'private channels'}, "
        f"up to {args.top_k} new programs run exactly per iteration): "
        + (
            f"T = 1, ..., {args.steps} steps in turn, an equal share of {args.iterations} "
            "iterations each"
            if args.deepen
            else f"T = {args.steps} steps (one step: a last op that reads no channel), "
            f"{args.iterations} iterations"
        )
        + f", {args.restarts} restart(s) per length, a population of {args.population} "
        f"member(s) batched as rows (selection every {args.exploit_every or 'no'} "
        f"iterations), Adam lr {args.lr} -> {args.lr_end or args.lr} (cosine), Gumbel "
        f"{args.gumbel}, temperature 1 -> {args.tau_end} per restart, K = "
        f"{args.examples or 'default_examples (>= 4 and >= 8 output values)'} examples per "
        "member and iteration at one training length, the composer's other options at "
        "their defaults"
        + (f", stopped after {args.max_wall:.0f} s of {clock_name}. " if args.max_wall else ". ")
        + f"MCTS: uniform prior, stopped at the {clock_name} of the slower gradient run of "
        "the same task and seed. Library: built-ins + reference skills of the task's "
        "prerequisites (`table_library`). Success = verified on fresh inputs at every length "
        "incl. 8x.",
        "",
        "Columns per agent: successes / runs; mean iterations to success (gradient) or "
        "actions (MCTS) and mean wall seconds (and CPU seconds, where recorded) over the "
        "successful runs; mean accuracy at 8x the longest training length over all runs; for the gradient composer, the mean "
        "number of discrete programs run exactly per run (the argmax and the top-k "
        "discretisations, `stats['checked']`) and, over the successes, the mean place of the "
        "verified program in its iteration's list (`rank`; 0 = an argmax program) and how "
        "many successes were a member's argmax program after training (`argmax n/m`; the "
        "others came from the top-k listing, `stats['success_source']`); where recorded, "
        "the mean iterations run per run and the mean training iterations per second.",
        "",
        "| task | " + " | ".join(agents) + " |",
        "| --- | " + " | ".join("---" for _ in agents) + " |",
    ]
    for task in dict.fromkeys(r["task"] for r in rows):
        cells = []
        for agent in agents:
            rs = [r for r in rows if r["task"] == task and r["agent"] == agent]
            if not rs:
                cells.append("-")
                continue
            ok = [r for r in rs if r["success"]]
            acc = sum(r["acc_8x"] for r in rs) / len(rs)
            if all(r.get("error") for r in rs):
                cells.append(f"0/{len(rs)}, error")
                continue
            text = f"{len(ok)}/{len(rs)}"
            if ok:
                if agent.startswith("gradient"):
                    it = sum(r["iterations_to_success"] or 0 for r in ok) / len(ok)
                    text += f", {it:.1f} it"
                    ranks = [r["success_rank"] for r in ok if r.get("success_rank") is not None]
                    if ranks:
                        text += f", rank {sum(ranks) / len(ranks):.1f}"
                    argmax = sum(r.get("success_source") == "argmax" for r in ok)
                    if any(r.get("success_source") for r in ok):
                        text += f", argmax {argmax}/{len(ok)}"
                else:
                    text += f", {sum(r['actions'] for r in ok) / len(ok):.0f} act"
                text += f", {sum(r['wall_s'] for r in ok) / len(ok):.0f} s"
                if all(r.get("cpu_s") is not None for r in ok):
                    text += f" ({sum(r['cpu_s'] for r in ok) / len(ok):.0f} s CPU)"
            text += f", acc8x {acc:.2f}"
            if agent.startswith("gradient") and any(r.get("checked") for r in rs):
                text += f", {sum(r.get('checked') or 0 for r in rs) / len(rs):.0f} run exactly"
            if agent.startswith("gradient") and any(r.get("iterations_per_s") for r in rs):
                its = sum(r.get("iterations") or 0 for r in rs) / len(rs)
                rate = sum(r.get("iterations_per_s") or 0 for r in rs) / len(rs)
                text += f", {its:.1f} it run at {rate:.3f} it/s"
            cells.append(text)
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    missing = [t for t in table_tasks() if t not in {r["task"] for r in rows}]
    if missing:
        lines += ["", f"Not measured in this run (time ran out): {', '.join(missing)}."]
    cold = [
        f"{r['task']} seed {r['seed']}"
        for r in rows
        if r["agent"] == "gradient-description"
        and not r.get("warm")
        and not r["success"]
        and (r.get("iterations") or 0) <= 1
    ]
    if cold:
        lines += [
            "",
            "`--init description` runs measured before the table warmed up the description "
            "prior's encoder that failed within one iteration (the first such run of a "
            "process was charged the encoder's loading, 10-20 s of its 30 s): "
            + ", ".join(cold)
            + ".",
        ]
    errors = {(r["task"], r["agent"]): r["error"] for r in rows if r.get("error")}
    if errors:
        lines += ["", "Errors:", ""]
        lines += [f"- {t} / {a}: {e}" for (t, a), e in errors.items()]
    lines += ["", "Programs found (first seed):", ""]
    first = seeds[0] if seeds else None
    for r in rows:
        if r["seed"] == first:
            prog = r["program"].replace("\n", "; ") or "(none)"
            mark = "ok" if r["success"] else "fail"
            lines.append(f"- {r['task']} / {r['agent']}: {mark}: `{prog}`")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--restarts", type=int, default=2)
    p.add_argument("--tau-end", type=float, default=0.1, help="final softmax temperature")
    p.add_argument("--top-k", type=int, default=16, help="new programs run exactly per iteration")
    p.add_argument("--population", type=int, default=1, help="members batched as rows")
    p.add_argument("--exploit-every", type=int, default=0, help="population selection period")
    p.add_argument("--lr", type=float, default=0.2, help="Adam learning rate at the start")
    p.add_argument("--lr-end", type=float, default=None, help="cosine schedule's end (none)")
    p.add_argument("--gumbel", choices=("none", "all", "reads"), default="none")
    p.add_argument("--examples", type=int, default=None, help="K per member (default auto)")
    p.add_argument("--shared", action="store_true", help="shared scratch (no private channels)")
    p.add_argument(
        "--deepen", action="store_true", help="train T = 1, 2, ... in turn (default: only T)"
    )
    p.add_argument("--tasks", nargs="+", default=None)
    p.add_argument(
        "--inits",
        nargs="+",
        choices=("uniform", "description"),
        default=["uniform", "description"],
        help="alpha initialisations to run (default both)",
    )
    p.add_argument(
        "--max-wall", type=float, default=None, help="wall seconds per gradient run (default none)"
    )
    p.add_argument(
        "--clock",
        choices=tuple(CLOCKS),
        default="wall",
        help="what --max-wall and MCTS's equal budget count: wall or CPU seconds",
    )
    p.add_argument(
        "--no-mcts",
        action="store_true",
        help="skip MCTS (run it in the process of the other init; shorter processes)",
    )
    p.add_argument("--render-only", action="store_true")
    p.add_argument("--out", default=str(RESULTS / "gradient_table"))
    args = p.parse_args(argv)
    jsonl, md = Path(args.out + ".jsonl"), Path(args.out + ".md")
    rows = [json.loads(x) for x in jsonl.read_text().splitlines()] if jsonl.is_file() else []
    done = {(r["task"], r["seed"], r["agent"]) for r in rows}
    if not args.render_only:
        if "description" in args.inits:
            warm_up()
        for task in args.tasks or table_tasks():
            for seed in args.seeds:
                agents = [f"gradient-{i}" for i in args.inits]
                agents += [] if args.no_mcts else ["mcts-uniform"]
                if all((task, seed, a) in done for a in agents):
                    continue
                new = []
                for init in args.inits:
                    try:
                        r, cpu = timed(run_gradient, task, seed, init, args)
                    except ValueError as e:  # e.g. more candidate ops than the composer takes
                        new.append(error_record(task, seed, f"gradient-{init}", str(e)))
                        continue
                    new.append(record(task, seed, f"gradient-{init}", r, cpu))
                if not args.no_mcts:
                    spent = "cpu_s" if args.clock == "cpu" else "wall_s"
                    wall = max(x.get(spent) or 0.0 for x in new) or (args.max_wall or 60.0)
                    r, cpu = timed(run_mcts, task, seed, wall, args.clock)
                    new.append(record(task, seed, "mcts-uniform", r, cpu))
                rows += new
                for x in new:
                    print(json.dumps(x), flush=True)
                text = "".join(json.dumps(x) + "\n" for x in rows)
                atomic_write_text(jsonl, text)
                atomic_write_text(md, render(rows, args))
    atomic_write_text(md, render(rows, args))
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
