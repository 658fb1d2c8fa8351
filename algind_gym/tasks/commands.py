"""Logic of the ``algind-gym list``, ``verify-tasks`` and ``show-skill`` commands.

Each ``*_command`` function prints with rich (or JSON) and returns a process exit code;
the CLI (``algind_gym/cli.py``) only parses arguments and calls them. The data behind the
output is available without printing: :func:`task_rows`, :func:`verify_tasks`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from algind_gym.skills.library import SkillLibrary
from algind_gym.tasks.reference import (
    REFERENCE_SOLUTIONS,
    build_reference_library,
    reference_library_for,
    reference_solution,
)
from algind_gym.tasks.spec import get_task, list_tasks
from algind_gym.tasks.workspace import Workspace


def _console(console: Console | None) -> Console:
    return console or Console()


def _emit_json(console: Console, data) -> None:
    console.file.write(json.dumps(data, indent=1) + "\n")


# ------------------------------------------------------------------- list
def task_rows() -> list[dict]:
    """One row per registered task: id, task, level, track (the ``list --json`` rows)."""
    return [
        {"id": t.env_id, "task": t.name, "level": t.level, "track": t.track} for t in list_tasks()
    ]


def list_command(*, json: bool = False, console: Console | None = None) -> int:
    """``algind-gym list [--json]``: every task with level, track, signature, description."""
    con = _console(console)
    if json:
        _emit_json(con, task_rows())
        return 0
    table = Table(title="algind-gym tasks")
    for col in ("id", "level", "track", "signature", "description"):
        table.add_column(col, overflow="fold")
    for t in list_tasks():
        table.add_row(t.env_id, str(t.level), t.track, Text(t.signature), Text(t.description))
    con.print(table)
    return 0


# ---------------------------------------------------------------- verify
@dataclass
class VerifyRow:
    """Result of one reference solution at one length."""

    task: str
    length: int
    split: str
    accuracy: float
    mean_fraction: float
    instructions: int
    faults: list[int]
    error: str | None
    seconds: float


def verify_tasks(
    backend="reference",
    *,
    tasks: Sequence[str] | None = None,
    splits: Sequence[str] = ("train", "test"),
    batch: int = 2,
    seed: int = 0,
    on_row: Callable[[VerifyRow], None] | None = None,
) -> list[VerifyRow]:
    """Run every reference solution at every length of ``splits`` and score it.

    Each task runs against :func:`~algind_gym.tasks.reference.reference_library_for` (the
    built-ins plus its prerequisites' reference skills), through :class:`Workspace`.

    Args:
        backend: a backend name or object.
        tasks: task names (default: every registered task with a reference solution).
        splits: ``"train"`` and/or ``"test"``.
        batch: examples per length.
        seed: generator seed.
        on_row: called with each row as soon as it is done (progress display).
    """
    names = (
        [t.name for t in list_tasks() if t.name in REFERENCE_SOLUTIONS]
        if tasks is None
        else list(tasks)
    )
    rows = []
    for name in names:
        task = get_task(name)
        lib = reference_library_for(name)
        program = reference_solution(name)
        for split in splits:
            for length in task.train_lengths if split == "train" else task.test_lengths:
                t0 = time.perf_counter()
                ws = Workspace(lib, task, length, batch=batch, seed=seed)
                state = ws.reset()
                results = ws.run_program(state, program, backend)
                score = ws.score(state)
                errors = [r.error for r in results if r.error]
                row = VerifyRow(
                    task=name,
                    length=length,
                    split=split,
                    accuracy=score.accuracy,
                    mean_fraction=float(np.mean(score.fraction)),
                    instructions=int(sum(int(r.steps.max()) for r in results)),
                    faults=[int(f) for f in score.faults],
                    error=errors[0] if errors else None,
                    seconds=time.perf_counter() - t0,
                )
                rows.append(row)
                if on_row is not None:
                    on_row(row)
    return rows


def verify_tasks_command(
    *,
    backend: str = "reference",
    json: bool = False,
    tasks: Sequence[str] | None = None,
    splits: Sequence[str] = ("train", "test"),
    batch: int = 2,
    seed: int = 0,
    console: Console | None = None,
) -> int:
    """``algind-gym verify-tasks [--backend B] [--json]``: accuracy per task and length.

    Returns 0 if every reference solution solves every example, else 1.
    """
    con = _console(console)
    if json:
        rows = verify_tasks(backend, tasks=tasks, splits=splits, batch=batch, seed=seed)
        _emit_json(con, [asdict(r) for r in rows])
    else:
        table = Table(
            title=f"reference solutions on backend {backend!r} (batch {batch}, seed {seed})"
        )
        for col in ("task", "split", "length", "accuracy", "instructions", "seconds", "note"):
            table.add_column(
                col,
                justify="right"
                if col in ("length", "accuracy", "instructions", "seconds")
                else "left",
            )
        with con.status("verifying...") as status:

            def show(r: VerifyRow) -> None:
                status.update(f"verified {r.task} at length {r.length}")

            rows = verify_tasks(
                backend, tasks=tasks, splits=splits, batch=batch, seed=seed, on_row=show
            )
        for r in rows:
            style = "" if r.accuracy == 1.0 else "bold red"
            note = r.error or (f"faults {r.faults}" if any(r.faults) else "")
            table.add_row(
                r.task,
                r.split,
                str(r.length),
                f"{r.accuracy:.3f}",
                str(r.instructions),
                f"{r.seconds:.2f}",
                Text(note),
                style=style,
            )
        con.print(table)
        bad = [r for r in rows if r.accuracy != 1.0]
        con.print(f"{len(rows) - len(bad)}/{len(rows)} task-lengths at accuracy 1.0")
    return 0 if all(r.accuracy == 1.0 for r in rows) else 1


# ------------------------------------------------------------- show-skill
def _tree(lib: SkillLibrary, key: str, node: Tree) -> None:
    for dep in lib.get(key).dependencies:
        _tree(lib, dep, node.add(Text(dep)))


def show_skill_command(
    name: str, *, library: SkillLibrary | str | None = None, console: Console | None = None
) -> int:
    """``algind-gym show-skill NAME``: signature, description, disassembly, dependency tree.

    Args:
        name: ``NAME`` or ``NAME@VERSION``.
        library: a library or the path of a saved one; default: the built-in library plus
            every reference task skill.

    Raises:
        KeyError: no such skill (the message lists how many the library has).
        ValueError: ``library`` names a file that does not exist or is not a library.
    """
    con = _console(console)
    if isinstance(library, str):
        if not Path(library).is_file():
            raise ValueError(
                f"--library {library}: no such file; pass a library saved with "
                "SkillLibrary.save (JSON), or leave --library out for the built-ins"
            )
        library = SkillLibrary.load(library)
    lib = library if library is not None else build_reference_library()
    skill = lib.get(name)
    con.print(f"[bold]{escape(skill.key)}[/bold] ({skill.kind})")
    con.print(f"signature: {skill.signature}", markup=False)
    con.print(f"description: {skill.description}", markup=False)
    con.print(f"jacobian: {skill.jacobian or 'none'}")
    if skill.composition is not None:
        con.print("steps:")
        for st in skill.composition.steps:
            con.print(f"  {st.skill}({', '.join(map(str, st.bindings))})", markup=False)
    tree = Tree(Text(skill.key))
    _tree(lib, skill.key, tree)
    con.print("dependencies:")
    con.print(tree)
    con.print("disassembly:")
    con.print(lib.disassemble(skill.key), markup=False, highlight=False)
    return 0
