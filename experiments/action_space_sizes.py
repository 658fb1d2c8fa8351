"""Discrete action-space sizes of every registered task, for the built-in and the curriculum library.

A report, not a test. For each task it prints the pointer-table entries (data entries and
skill entries), the number of discrete actions (candidates + HALT) and how many of them the
exact mask allows, for two libraries:

* ``builtin``: what ``gym.make(id)`` uses (atomic skills and combinators);
* ``curriculum``: the built-ins plus the reference skills of the task's prerequisites
  (what a curriculum agent has when it reaches the task).

    python experiments/action_space_sizes.py [--json]
"""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from algind_gym.envs.actions import build_action_table
from algind_gym.skills.builtin import builtin_library
from algind_gym.tasks import Workspace, list_tasks
from algind_gym.tasks.reference import REFERENCE_SOLUTIONS, reference_library_for


def sizes(library, task) -> dict:
    ws = Workspace(library, task, max(task.train_lengths), batch=1)
    data = sum(1 for p in ws.image.pointers if p.skill is None)
    try:
        table = build_action_table(ws.image, task)
        n, valid = table.n_discrete, int(table.valid.sum()) + 1
    except ValueError:
        n = valid = None
    return {"data": data, "pointers": len(ws.image.pointers), "discrete": n, "valid": valid}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args()
    rows = []
    builtin = builtin_library()
    for task in list_tasks():
        row = {"task": task.name, "builtin": sizes(builtin, task)}
        if task.name in REFERENCE_SOLUTIONS:
            row["curriculum"] = sizes(reference_library_for(task.name), task)
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    table = Table(title="discrete action-space sizes (valid = allowed by the exact mask)")
    for col in (
        "task",
        "data entries",
        "builtin: actions",
        "valid",
        "curriculum: actions",
        "valid",
    ):
        table.add_column(col, justify="left" if col == "task" else "right")

    def fmt(v):
        return ">200000" if v is None else str(v)

    for r in rows:
        b, c = r["builtin"], r.get("curriculum", {})
        table.add_row(
            r["task"],
            str(b["data"]),
            fmt(b["discrete"]),
            fmt(b["valid"]),
            fmt(c.get("discrete")),
            fmt(c.get("valid")),
        )
    Console().print(table)


if __name__ == "__main__":
    main()
