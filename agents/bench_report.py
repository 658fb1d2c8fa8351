"""Benchmark outputs: ``results.json``, ``results.csv``, ``leaderboard.md`` and a plot.

``results.json`` is ``{"schema": "algind-gym/bench-results", "schema_version": 1,
"settings": {...}, "cells": [{"agent", "task", "level", "track", "seed", "result"}]}``
(``settings`` as in ``bench.json``; ``result`` a :class:`~agents.result.SolveResult` dict);
:func:`validate_bench_results` checks it against :data:`BENCH_SCHEMA`. The CSV has one row
per cell (no programs); the leaderboard ranks agents by cells solved, then by mean actions
on solved cells, with success per level. ``success_vs_actions.png`` plots, per level, the
fraction of that level's cells solved within a given number of actions evaluated.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import jsonschema

from agents.result import validate_result
from algind_gym.atomic import atomic_write_text
from algind_gym.tasks import get_task

BENCH_SCHEMA_NAME = "algind-gym/bench-results"
BENCH_SCHEMA_VERSION = 1
BENCH_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "BenchResults",
    "type": "object",
    "required": ["schema", "schema_version", "settings", "cells"],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": BENCH_SCHEMA_NAME},
        "schema_version": {"const": BENCH_SCHEMA_VERSION},
        "settings": {"type": "object", "required": ["agents", "tasks", "seeds", "budget"]},
        "cells": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["agent", "task", "level", "track", "seed", "result"],
                "additionalProperties": False,
                "properties": {
                    "agent": {"type": "string"},
                    "task": {"type": "string"},
                    "level": {"type": "integer"},
                    "track": {"type": "string"},
                    "seed": {"type": "integer"},
                    "result": {"type": "object"},
                },
            },
        },
    },
}
CSV_COLUMNS = (
    "agent",
    "task",
    "level",
    "track",
    "seed",
    "success",
    "actions_evaluated",
    "env_steps",
    "instructions",
    "calls",
    "wall_time_s",
)


def validate_bench_results(data: Any) -> None:
    """Raise ``ValueError`` naming the first problem if ``data`` is not a bench results file."""
    try:
        jsonschema.validate(data, BENCH_SCHEMA)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "<top level>"
        raise ValueError(f"not a valid bench results file at {where}: {e.message}") from None
    for c in data["cells"]:
        validate_result(c["result"])


def bench_results(settings: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``results.json`` document for a finished grid (cells in grid order)."""
    cells = []
    for r in results:
        t = get_task(r["task"])
        cells.append(
            {
                "agent": r["agent"],
                "task": r["task"],
                "level": t.level,
                "track": t.track,
                "seed": r["seed"],
                "result": r,
            }
        )
    data = {
        "schema": BENCH_SCHEMA_NAME,
        "schema_version": BENCH_SCHEMA_VERSION,
        "settings": settings,
        "cells": cells,
    }
    validate_bench_results(data)
    return data


def leaderboard(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per agent: cells solved, success per level, mean actions on solved cells."""
    rows = []
    levels = sorted({c["level"] for c in data["cells"]})
    for agent in data["settings"]["agents"]:
        mine = [c for c in data["cells"] if c["agent"] == agent]
        won = [c for c in mine if c["result"]["success"]]
        per_level = {}
        for lv in levels:
            at = [c for c in mine if c["level"] == lv]
            per_level[lv] = sum(c["result"]["success"] for c in at) / len(at) if at else None
        rows.append(
            {
                "agent": agent,
                "solved": len(won),
                "cells": len(mine),
                "per_level": per_level,
                "mean_actions_solved": (
                    sum(c["result"]["actions_evaluated"] for c in won) / len(won) if won else None
                ),
                "wall_time_s": sum(c["result"]["wall_time_s"] for c in mine),
            }
        )
    rows.sort(key=lambda r: (-r["solved"], r["mean_actions_solved"] or float("inf")))
    return rows


def leaderboard_markdown(data: dict[str, Any]) -> str:
    rows = leaderboard(data)
    levels = sorted({c["level"] for c in data["cells"]})
    s = data["settings"]
    head = ["rank", "agent", "solved", *[f"level {lv}" for lv in levels], "mean actions (solved)"]
    lines = [
        "# Benchmark leaderboard\n",
        f"{len(s['tasks'])} task(s) x {len(s['seeds'])} seed(s) per agent, budget {s['budget']} "
        "actions per cell; solved = verified on fresh inputs at every length.\n",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for i, r in enumerate(rows, 1):
        lv = [f"{r['per_level'][x]:.0%}" for x in levels]
        mean = "-" if r["mean_actions_solved"] is None else f"{r['mean_actions_solved']:.0f}"
        lines.append(
            "| " + " | ".join([str(i), r["agent"], f"{r['solved']}/{r['cells']}", *lv, mean]) + " |"
        )
    return "\n".join(lines) + "\n"


def results_csv(data: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for c in data["cells"]:
        r = c["result"]
        w.writerow(
            [
                *(c["agent"], c["task"], c["level"], c["track"], c["seed"], int(r["success"])),
                *(r["actions_evaluated"], r["env_steps"], r["instructions"], len(r["program"])),
                f"{r['wall_time_s']:.3f}",
            ]
        )
    return buf.getvalue()


def plot_success_vs_actions(data: dict[str, Any], path: Path) -> Path:
    """Per level: fraction of cells solved within x actions evaluated, one line per agent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from agents.report_plots import _save

    levels = sorted({c["level"] for c in data["cells"]})
    budget = data["settings"]["budget"]
    fig, axes = plt.subplots(
        1, len(levels), figsize=(3.2 * len(levels) + 1, 3.2), squeeze=False, sharey=True
    )
    for ax, lv in zip(axes[0], levels, strict=True):
        for agent in data["settings"]["agents"]:
            cells = [c for c in data["cells"] if c["agent"] == agent and c["level"] == lv]
            won = sorted(c["result"]["actions_evaluated"] for c in cells if c["result"]["success"])
            xs = [0, *won, budget]
            ys = [0, *[(i + 1) / len(cells) for i in range(len(won))], len(won) / len(cells)]
            ax.step(xs, ys, where="post", label=agent)
        ax.set_title(f"level {lv}")
        ax.set_xlabel("actions evaluated")
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].set_ylabel("fraction of cells solved")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def write_bench_report(
    settings: dict[str, Any], results: list[dict[str, Any]], out: str | Path, *, plots: bool = True
) -> dict[str, Any]:
    """Write ``results.json``, ``results.csv``, ``leaderboard.md`` (and the plot) into ``out``."""
    out = Path(out)
    data = bench_results(settings, results)
    atomic_write_text(out / "results.json", json.dumps(data, indent=1) + "\n")
    atomic_write_text(out / "results.csv", results_csv(data))
    atomic_write_text(out / "leaderboard.md", leaderboard_markdown(data))
    if plots:
        plot_success_vs_actions(data, out / "success_vs_actions.png")
    return data
