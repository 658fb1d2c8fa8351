"""The search agents' table: agent x prior x task, with a library of solved lower-level tasks.

Usage:
    python experiments/search_table.py [--budget 20000] [--seed 0]
        [--agents random,enumerative,enumerative/prune,mcts:uniform,mcts:description]
        [--tasks T1,T2,...] [--out experiments/results/search_table.md]

Tasks (default): every level-1 and level-2 task, MatVec, LinearLayer, MSE and three
algorithmic tasks above level 2 (CountEqual, ArgMax, Sort), in curriculum order. A task
with prerequisites is searched with the built-in library plus the skills *found* for its
prerequisites (each compiled with ``compile_task_program`` from the first agent's
solution that verified and compiles into a skill, prerequisites first); when no agent
solved a prerequisite, the
row says so and that prerequisite is missing from the library. Every row is one
``agents.solve`` call with the same budget (actions evaluated) and seed; ``8x`` is the
accuracy on fresh inputs at 8 times the longest training length. Rows are appended to a
JSON-lines file as they finish and the markdown table is rewritten after every task, so an
interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from agents import solve
from agents.result import SolveResult
from algind_gym.atomic import atomic_write_text
from algind_gym.skills import builtin_library
from algind_gym.skills.library import SkillLibrary
from algind_gym.tasks import TaskSpec, compile_task_program, get_task, list_tasks

EXTRA_TASKS = ("MatVec", "LinearLayer", "MSE", "CountEqual", "ArgMax", "Sort")


def default_tasks() -> list[str]:
    names = [t.name for t in list_tasks() if t.level <= 2] + list(EXTRA_TASKS)
    order = {t.name: i for i, t in enumerate(list_tasks())}
    return sorted(names, key=order.__getitem__)


def prerequisite_closure(task: TaskSpec) -> list[str]:
    """Every task ``task`` builds on, lowest level first."""
    seen: list[str] = []

    def visit(name: str) -> None:
        for p in get_task(name).prerequisites:
            if p not in seen:
                visit(p)
                seen.append(p)

    visit(task.name)
    return seen


def library_for(task: TaskSpec, solved: dict[str, list]) -> tuple[SkillLibrary, list[str]]:
    """Built-in skills plus the found skills of ``task``'s prerequisites; and the missing ones."""
    lib, missing = builtin_library(), []
    for name in prerequisite_closure(task):
        if name in solved:
            compile_task_program(lib, get_task(name), solved[name])
        else:
            missing.append(name)
    return lib, missing


def parse_program(text: str) -> list[tuple[str, list[str]]]:
    """``"a(x, y); b(z)"`` (a row's ``program``) back into ``(skill, [pointer names])`` steps."""
    steps = []
    for call in filter(None, (c.strip() for c in text.split(";"))):
        skill, _, args = call.partition("(")
        steps.append((skill, [a.strip() for a in args.rstrip(")").split(",") if a.strip()]))
    return steps


def parse_agent(text: str) -> tuple[str, dict]:
    """``name[/flag...][:prior]``: ``mcts:description``, ``enumerative/prune`` (a flag is a
    boolean option of the agent set to true)."""
    spec, _, prior = text.partition(":")
    name, *flags = spec.split("/")
    options: dict = {flag: True for flag in flags}
    if prior:
        options["prior"] = prior
    return name, options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--agents", default="random,enumerative,mcts:uniform,mcts:description")
    parser.add_argument("--tasks", default=None)
    parser.add_argument("--out", type=Path, default=Path("experiments/results/search_table.md"))
    parser.add_argument(
        "--rows-from",
        type=Path,
        action="append",
        default=[],
        help="JSON-lines rows of earlier runs: kept in the table, and their solutions join "
        "the library of later tasks (repeatable)",
    )
    parser.add_argument(
        "--markdown-only",
        action="store_true",
        help="only write the table of the --rows-from rows (a later row for the same task, "
        "agent and prior replaces an earlier one)",
    )
    args = parser.parse_args()
    earlier = [json.loads(line) for f in args.rows_from for line in f.read_text().splitlines()]
    if args.markdown_only:
        # a later file's row for the same (task, agent, prior) replaces an earlier one
        latest = {(r["task"], r["agent"], r["prior"]): r for r in earlier}
        atomic_write_text(args.out, markdown(list(latest.values()), args))
        print(f"wrote {args.out}")
        return
    tasks = args.tasks.split(",") if args.tasks else default_tasks()
    agents = [parse_agent(a) for a in args.agents.split(",")]
    rows_path = args.out.with_suffix(".jsonl")
    rows_path.parent.mkdir(parents=True, exist_ok=True)
    rows_path.unlink(missing_ok=True)
    rows, solved = list(earlier), {}
    for row in earlier:
        if row["success"] and row.get("compiles", True) and row["task"] not in solved:
            solved[row["task"]] = parse_program(row["program"])
    for name in tasks:
        task = get_task(name)
        for agent, options in agents:
            lib, missing = library_for(task, solved)
            r: SolveResult = solve(
                name, agent=agent, budget=args.budget, seed=args.seed, library=lib, **options
            )
            compiles = bool(r.disassembly) and not r.disassembly.startswith("; does not compile")
            if r.success and compiles and name not in solved:
                solved[name] = r.program
            longest = str(8 * max(task.train_lengths))
            row = {
                "task": name,
                "level": task.level,
                "track": task.track,
                "agent": "/".join([agent, *(k for k in options if k != "prior")]),
                "prior": options.get("prior", "-"),
                "success": r.success,
                "actions": r.actions_evaluated,
                "wall_s": round(r.wall_time_s, 2),
                "acc_8x": r.generalisation[longest],
                "calls": len(r.program) if r.success else None,
                "program": r.program_text.replace("\n", "; ") if r.success else "",
                "compiles": compiles,
                "missing_prerequisites": missing,
                "library_size": r.library_size,
            }
            rows.append(row)
            with rows_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(
                f"{name:<18}{row['agent']:<18}{row['prior']:<12}{'yes' if r.success else 'no':<5}"
                f"{r.actions_evaluated:>7}{r.wall_time_s:>8.1f}s  8x={row['acc_8x']:.2f}  "
                f"{row['program']}",
                flush=True,
            )
        # rewritten after every task, so an interrupted run leaves a table of what it measured
        atomic_write_text(args.out, markdown(rows, args))
    print(f"wrote {args.out}")


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    order = {t.name: i for i, t in enumerate(list_tasks())}
    rows = sorted(rows, key=lambda r: order.get(r["task"], len(order)))  # stable per task
    head = (
        f"# Search agents: agent x prior x task\n\nBudget {args.budget} actions evaluated per "
        f"solve, seed {args.seed}, K = 8 search examples at the longest training length, "
        "Transformer CPU backend, on a shared 2-core machine (wall times are noisy). `8x`: accuracy on fresh inputs at 8x the longest training "
        "length. Libraries: built-in skills plus the skills found for the task's "
        "prerequisites.\n\n"
        "| task | level | agent | prior | solved | actions | wall s | 8x | program |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
    )
    lines = []
    for r in rows:
        note = (
            f" (missing: {', '.join(r['missing_prerequisites'])})"
            if r["missing_prerequisites"]
            else ""
        )
        lines.append(
            f"| {r['task']}{note} | {r['level']} | {r['agent']} | {r['prior']} | "
            f"{'yes' if r['success'] else 'no'} | {r['actions']} | {r['wall_s']} | "
            f"{r['acc_8x']:.2f} | {r['program'].replace('|', '/')} |"
        )
    summary = [
        "",
        "| agent | prior | solved | actions evaluated in total |",
        "| --- | --- | --- | --- |",
    ]
    seen = []
    for r in rows:
        if (r["agent"], r["prior"]) not in seen:
            seen.append((r["agent"], r["prior"]))
    for agent, prior in seen:
        mine = [r for r in rows if (r["agent"], r["prior"]) == (agent, prior)]
        summary.append(
            f"| {agent} | {prior} | {sum(r['success'] for r in mine)}/{len(mine)} | "
            f"{sum(r['actions'] for r in mine)} |"
        )
    return head + "\n".join(lines) + "\n" + "\n".join(summary) + "\n"


if __name__ == "__main__":
    main()
