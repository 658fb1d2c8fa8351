"""``algind-gym solve``: the command-line face of :func:`agents.solve`.

The command parses arguments, runs :func:`~agents.api.solve` with a rich progress bar
(actions evaluated, best training score so far), prints the program and its accuracy per
length (or the :class:`~agents.result.SolveResult` as JSON), and can append a solved
program to a library file as a new skill (``--save-to``, written atomically).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from agents.api import AGENTS, SolveContext, program_text, resolve_library, resolve_task, solve
from agents.gradient import cli as gradient_cli
from agents.result import SolveResult
from algind_gym.skills.library import SkillLibrary
from algind_gym.tasks import compile_task_program


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` agent options; values are parsed as JSON when they can be (numbers,
    true/false, lists), else kept as strings."""
    options: dict[str, Any] = {}
    for text in pairs or []:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise ValueError(f"--option expects KEY=VALUE, got {text!r}")
        try:
            options[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            options[key.replace("-", "_")] = value
    return options


def add_solve_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``solve`` on the CLI's subparsers."""
    help_text = "let an agent search for a program that solves a task, verified at every length"
    p = sub.add_parser("solve", help=help_text, description=help_text)
    p.add_argument("task", help="task name or env id (algind-gym list)")
    p.add_argument("--agent", default="random", help=f"one of {sorted(AGENTS)}")
    p.add_argument("--budget", type=int, default=2000, help="actions to evaluate (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--library", help="a saved skill library (JSON); default: built-in skills")
    p.add_argument("--max-calls", type=int, default=6, help="longest program considered")
    p.add_argument("--examples", type=int, default=8, help="K, examples per search env")
    p.add_argument(
        "--prior",
        help="prior over actions for agents that take one (mcts): uniform, description (a "
        "sentence-embedding model; needs pip install 'algind-gym[lm]'), dataflow, or names "
        "joined by + for their product (description+dataflow)",
    )
    p.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="an agent option (repeatable), e.g. --option c_puct=1.5",
    )
    p.add_argument(
        "--save-to", metavar="FILE", help="append the solved program as a skill to this library"
    )
    p.add_argument("--json", action="store_true", help="print the SolveResult as JSON")
    gradient_cli.add_arguments(p)
    p.set_defaults(func=solve_command)


def solve_command(args: argparse.Namespace, extra_options: dict[str, Any] | None = None) -> int:
    """Run ``solve`` for parsed CLI arguments; exit code 0 when solved, 1 when not."""
    options = {**parse_options(args.option), **gradient_cli.options(args), **(extra_options or {})}
    if getattr(args, "prior", None) is not None:
        options["prior"] = args.prior
    console = Console(stderr=True)
    task = resolve_task(args.task)
    library = resolve_library(args.library)
    with Progress(
        TextColumn(f"[bold]{task.name}[/] {args.agent}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("best {task.fields[best]:.3f}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=args.json or args.agent == "gradient",  # it shows its own bar
    ) as progress:
        bar = progress.add_task("search", total=args.budget, best=0.0)

        def update(ctx: SolveContext) -> None:
            progress.update(bar, completed=ctx.actions_evaluated, best=max(ctx.best_score, 0.0))

        try:
            result = solve(
                task,
                agent=args.agent,
                library=library,
                budget=args.budget,
                seed=args.seed,
                n_examples=args.examples,
                max_calls=args.max_calls,
                progress=update,
                **options,
            )
        except ImportError as e:  # an optional extra (e.g. the description prior's model)
            raise ValueError(str(e)) from None
    if args.save_to and result.success:
        save_solution(result, library, args.save_to)
    if args.json:
        print(result.to_json(indent=2))
    else:
        print_result(result, Console())
        if args.save_to and result.success:
            Console().print(f"saved {task.name} as a skill into {args.save_to}")
    return 0 if result.success else 1


def save_solution(result: SolveResult, library: SkillLibrary, path: str | Path) -> str:
    """Append the solved program to the library saved at ``path`` (or to ``library`` when the
    file does not exist yet) as a skill named after the task; atomic write. Returns its key."""
    path = Path(path)
    target = SkillLibrary.load(path) if path.is_file() else library.copy()
    skill = compile_task_program(target, resolve_task(result.task), result.program)
    target.save(path)
    return skill.key


def print_result(result: SolveResult, console: Console) -> None:
    """The program, its cost and its accuracy per length as rich text."""
    status = "[green]solved[/]" if result.success else "[red]not solved[/]"
    extra = " (interrupted)" if result.interrupted else ""
    console.print(
        f"{result.task}: {status}{extra} by {result.agent} after {result.actions_evaluated} "
        f"actions ({result.env_steps} env steps, {result.instructions} instructions, "
        f"{result.wall_time_s:.1f} s)"
    )
    if result.program:
        console.print("program:")
        for line in result.program_text.splitlines():
            console.print(f"  {line}", highlight=False)
    if result.found_program is not None and len(result.found_program) > len(result.program):
        console.print(
            f"(minimised from the {len(result.found_program)} steps the search found: "
            f"{program_text(result.found_program).replace(chr(10), '; ')})",
            highlight=False,
        )
    table = Table("length", "accuracy", title="accuracy on fresh inputs")
    for length, acc in result.generalisation.items():
        table.add_row(length, f"{acc:.3f}")
    console.print(table)
