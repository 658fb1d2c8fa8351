"""``algind-gym curriculum`` and ``algind-gym bench``: the command-line faces of
:func:`agents.curriculum.run_curriculum` / :func:`agents.curriculum.run_flat` and
:func:`agents.benchmark.run_benchmark`.

Both parse arguments, import the user's task modules (``--import``, so user tasks join
like built-in ones), call the library function with a rich progress display, and write
their reports. Errors print ``algind-gym: error: ...`` and exit 2 (through
``algind_gym.cli.main``); Ctrl-C keeps everything saved so far and says how to resume.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agents.api import AGENTS
from agents.commands import parse_options


def _progress(description: str, *, disable: bool) -> Progress:
    """The rich progress display of the curriculum and bench commands (on stderr)."""
    return Progress(
        TextColumn(description),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=disable,
    )


def import_task_modules(modules: list[str] | None) -> None:
    """Import each module (a dotted name or a ``.py`` path) so that the tasks it registers
    through :func:`algind_gym.tasks.register_task` join the run."""
    for m in modules or []:
        if m.endswith(".py"):
            path = Path(m)
            if not path.is_file():
                raise ValueError(f"--import {m}: no such file")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = module
            spec.loader.exec_module(module)
        else:
            try:
                importlib.import_module(m)
            except ModuleNotFoundError as e:
                raise ValueError(f"--import {m}: {e}; pass a module name or a .py file") from None


def _csv(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _agent_options(args: argparse.Namespace) -> dict[str, Any]:
    options = parse_options(args.option)
    if getattr(args, "prior", None):
        options["prior"] = args.prior
    return options


# ------------------------------------------------------------------ curriculum
def add_curriculum_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``curriculum`` on the CLI's subparsers."""
    from agents.curriculum import PRESETS

    help_text = (
        "the hierarchical curriculum: solve every task generation by generation from the atomic "
        "skills, appending each verified solution to the library; writes a report"
    )
    p = sub.add_parser("curriculum", help=help_text, description=help_text)
    p.add_argument("--agent", help=f"one of {sorted(AGENTS)} (default: mcts)")
    p.add_argument("--prior", help="the agent's prior (an agent option): uniform or description")
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="an agent option")
    p.add_argument(
        "--budget", type=int, help="actions per attempt (default: the preset's, else 2000)"
    )
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="task selection and default budget/prior (default: quick): "
        + "; ".join(f"{k}: {v['description']}, {v['defaults']}" for k, v in PRESETS.items()),
    )
    p.add_argument("--tasks", help="comma-separated task names (instead of --preset)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-calls", type=int, default=6, help="longest program considered")
    p.add_argument("--examples", type=int, default=8, help="K, examples per search env")
    p.add_argument("--library", help="start library (JSON); default: the built-in skills")
    p.add_argument("--import", dest="imports", action="append", metavar="MODULE",
                   help="import a module or .py file that registers tasks (repeatable)")  # fmt: skip
    p.add_argument("--out", default="curriculum_run", help="output directory")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--force", action="store_true", help="start over even if --out holds a run")
    p.add_argument(
        "--flat-ratio",
        type=float,
        default=0.0,
        help="also run flat against hierarchical with R x the hierarchy's actions (e.g. 100)",
    )
    p.add_argument("--flat-tasks", help="tasks for the flat run (default: solved, level >= 3)")
    p.add_argument("--no-plots", action="store_true", help="write report.md without the PNGs")
    p.add_argument("--json", action="store_true", help="print results.json instead of progress")
    p.set_defaults(func=curriculum_command)


def curriculum_command(args: argparse.Namespace) -> int:
    """Run the curriculum for parsed CLI arguments (exit 0 once the run has finished)."""
    from agents.curriculum import (
        PRESETS,
        CurriculumConfig,
        default_agent,
        preset_tasks,
        run_curriculum,
        run_flat,
    )
    from agents.report import summary_table, write_report

    import_task_modules(args.imports)
    if args.tasks and args.preset:
        raise ValueError("pass either --tasks or --preset, not both")
    preset = None if args.tasks else (args.preset or "quick")
    tasks = _csv(args.tasks) or preset_tasks(preset)
    agent = args.agent or default_agent()
    if agent not in AGENTS:
        raise ValueError(f"unknown agent {agent!r}; choose one of {sorted(AGENTS)}")
    defaults = PRESETS[preset]["defaults"] if preset else {}
    budget = args.budget if args.budget is not None else defaults.get("budget", 2000)
    if budget < 1:
        raise ValueError(f"--budget must be a positive number of actions, got {budget}")
    options = _agent_options(args)
    takes = inspect.signature(AGENTS[agent].__init__).parameters
    if "prior" in defaults and "prior" in takes and "prior" not in options:
        options["prior"] = defaults["prior"]
    config = CurriculumConfig(
        tasks=tasks,
        agent=agent,
        budget=budget,
        seed=args.seed,
        options=options,
        n_examples=args.examples,
        max_calls=args.max_calls,
        preset=preset,
    )
    with _progress("{task.description}", disable=args.json) as progress:
        overall = progress.add_task("tasks solved", total=len(tasks))
        attempt = progress.add_task("", total=budget, visible=False)

        def on_event(kind: str, data: dict[str, Any]) -> None:
            if kind == "generation":
                progress.console.rule(
                    f"generation {data['generation']}: {len(data['tasks'])} task(s), "
                    f"library of {data['library_size']} skills"
                )
            elif kind in ("attempt", "flat"):
                label = "flat " if kind == "flat" else ""
                total = data.get("budget", budget)
                progress.update(
                    attempt,
                    description=f"  {label}{data['task']}",
                    completed=0,
                    total=total,
                    visible=True,
                )
            elif kind == "result":
                r = data["result"]
                if data.get("skipped"):
                    progress.console.print(
                        f"  [yellow]not attempted[/] {r['task']}: {data['skipped']}",
                        highlight=False,
                    )
                elif data["compile_error"]:
                    progress.console.print(
                        f"  [red]not solved[/] {r['task']}: verified, but {data['compile_error']}"
                    )
                elif data["skill"]:
                    progress.advance(overall)
                    prog = "; ".join(r["program_text"].splitlines())
                    progress.console.print(
                        f"  [green]solved[/] {r['task']} in {r['actions_evaluated']} actions: "
                        f"{prog}",
                        highlight=False,
                    )
                else:
                    progress.console.print(
                        f"  [red]not solved[/] {r['task']} ({r['actions_evaluated']} actions)"
                    )
            elif kind == "flat-result":
                progress.console.print(
                    f"  flat {data['task']}: {data['flat_outcome']} "
                    f"({data['flat_actions']} of {data['flat_budget']} actions)"
                )

        def on_charge(ctx) -> None:
            progress.update(attempt, completed=ctx.actions_evaluated)

        try:
            state = run_curriculum(
                config,
                args.out,
                library=args.library,
                resume=args.resume,
                force=args.force,
                on_event=on_event,
                progress=on_charge,
            )
            if args.flat_ratio > 0:
                state = run_flat(
                    state,
                    args.out,
                    tasks=_csv(args.flat_tasks),
                    ratio=args.flat_ratio,
                    library=args.library,
                    on_event=on_event,
                    progress=on_charge,
                )
        except ImportError as e:  # the description prior without the [lm] extra
            raise ValueError(f"{e}; or pass --prior uniform") from None
        except KeyboardInterrupt:
            progress.console.print(
                f"interrupted: everything up to the last finished attempt is saved in {args.out}; "
                "continue with the same command and --resume"
            )
            return 130
    report = write_report(state, args.out, plots=not args.no_plots)
    if args.json:
        print(json.dumps(state, indent=1))
    else:
        out = Console()
        out.print(summary_table(state), highlight=False)
        out.print(f"report: {report}")
    return 0


# ---------------------------------------------------------------------- bench
def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``bench`` on the CLI's subparsers."""
    help_text = (
        "benchmark agents on a grid of tasks x seeds (local process pool or Ray); writes "
        "results.json, results.csv, leaderboard.md and a plot"
    )
    p = sub.add_parser("bench", help=help_text, description=help_text)
    p.add_argument("--agents", required=True, help=f"comma-separated, of {sorted(AGENTS)}")
    grid = p.add_mutually_exclusive_group(required=True)
    grid.add_argument("--tasks", help="comma-separated task names")
    grid.add_argument("--levels", help="comma-separated curriculum levels (every track)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds, or a range like 0-4")
    p.add_argument("--budget", type=int, default=2000, help="actions per cell (default 2000)")
    p.add_argument("--max-calls", type=int, default=6)
    p.add_argument("--examples", type=int, default=8)
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="an agent option")
    p.add_argument("--library", help="a saved skill library every cell starts from")
    p.add_argument("--import", dest="imports", action="append", metavar="MODULE",
                   help="import a module or .py file that registers tasks (repeatable)")  # fmt: skip
    p.add_argument("--executor", choices=("local", "ray"), default="local")
    p.add_argument("--address", help="join the Ray cluster at HOST:PORT (with --executor ray)")
    p.add_argument("--workers", type=int, help="processes (local) or CPUs of a local Ray")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--force", action="store_true", help="start over if --out holds another grid")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--json", action="store_true", help="print results.json")
    p.set_defaults(func=bench_command)


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-4"`` (inclusive) as a list of ints."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        try:
            seeds += list(range(int(lo), int(hi) + 1)) if sep and lo else [int(part)]
        except ValueError:
            raise ValueError(
                f"--seeds: expected integers like 0,1,2 or 0-4, got {text!r}"
            ) from None
    return seeds


def bench_command(args: argparse.Namespace) -> int:
    """Run the benchmark grid for parsed CLI arguments."""
    from agents.bench_report import leaderboard_markdown, write_bench_report
    from agents.benchmark import BENCH_FILE, grid_cells, run_benchmark
    from algind_gym.tasks import list_tasks

    import_task_modules(args.imports)
    agents = _csv(args.agents) or []
    if args.levels:
        try:
            levels = {int(x) for x in _csv(args.levels) or []}
        except ValueError:
            raise ValueError(f"--levels: expected integers, got {args.levels!r}") from None
        tasks = [t.name for t in list_tasks() if t.level in levels]
        if not tasks:
            raise ValueError(f"no task has level {sorted(levels)}; see algind-gym list")
    else:
        tasks = _csv(args.tasks) or []
    seeds = parse_seeds(args.seeds)
    with _progress("[bold]bench[/] {task.description}", disable=args.json) as progress:
        bar = progress.add_task("cells", total=len(grid_cells(agents, tasks, seeds)))

        def on_cell(cell: tuple, data: dict[str, Any]) -> None:
            progress.advance(bar)
            status = "[green]solved[/]" if data["success"] else "[red]not solved[/]"
            progress.console.print(
                f"  {cell[0]} {cell[1]} seed {cell[2]}: {status} "
                f"({data['actions_evaluated']} actions)"
            )

        try:
            results = run_benchmark(
                agents,
                tasks,
                seeds,
                args.out,
                budget=args.budget,
                n_examples=args.examples,
                max_calls=args.max_calls,
                options=parse_options(args.option),
                library=args.library,
                executor=args.executor,
                address=args.address,
                workers=args.workers,
                imports=args.imports or (),
                force=args.force,
                on_cell=on_cell,
            )
        except KeyboardInterrupt:
            progress.console.print(
                f"interrupted: finished cells are saved in {args.out}/cells; run the same "
                "command again to finish the grid"
            )
            return 130
    settings = json.loads((Path(args.out) / BENCH_FILE).read_text())
    data = write_bench_report(settings, results, args.out, plots=not args.no_plots)
    if args.json:
        print(json.dumps(data, indent=1))
    else:
        Console().print(leaderboard_markdown(data), highlight=False)
    return 0
