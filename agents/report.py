"""A curriculum run's ``results.json`` (its JSON Schema) and its report: ``report.md`` and plots.

``results.json`` is the run state of :func:`agents.curriculum.run_curriculum` (rewritten
atomically after every attempt) and the data behind every figure of the report:

=====================  ==================================================================
key                    meaning
=====================  ==================================================================
``schema``             ``"algind-gym/curriculum-results"``; ``schema_version`` an integer
``config``             the run's settings: ``tasks``, ``agent``, ``options``, ``budget``,
                       ``seed``, ``n_examples``, ``max_calls``, ``start_library`` (skill
                       keys), ``preset``
``generations``        one entry per generation: ``generation`` (1, 2, ...),
                       ``library_size`` (skills available to it), ``tasks`` (attempted),
                       ``attempts`` (``{"generation", "skill", "compile_error",
                       "result"}``, optionally ``"skipped"``: the learned skill's key
                       or null, why a verified program did not compile into a skill or
                       null, why the task could not be attempted (its action space is
                       over the environment's cap) or null, and the
                       :class:`~agents.result.SolveResult`, validated against its own
                       schema), ``solved``, ``finished``
``library_keys``       the library's skills after the last recorded attempt
``finished``           the loop has stopped; ``stop_reason`` says why
``flat``               null, or ``{"ratio", "rows"}``: flat against hierarchical, one row
                       per task (:func:`agents.curriculum.flat_row`)
=====================  ==================================================================

:data:`RESULTS_SCHEMA` is the JSON Schema; :func:`validate_results` checks a state against
it (and every attempt against the SolveResult schema) and the runner calls it before every
write. :func:`write_report` renders ``report.md`` and three PNGs with matplotlib (no
graphviz): the learned skill hierarchy (the paper's figure 2b), tasks solved against actions
evaluated, and accuracy against length.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

from agents.result import SOLVE_RESULT_SCHEMA, validate_result
from algind_gym.atomic import atomic_write_text

RESULTS_SCHEMA_NAME = "algind-gym/curriculum-results"
RESULTS_SCHEMA_VERSION = 1

_INT = {"type": "integer", "minimum": 0}
_FLAT_ROW = {
    "type": "object",
    "required": [
        "task",
        "hier_actions",
        "hier_calls",
        "flat_budget",
        "flat_outcome",
        "flat_actions",
        "flat_calls",
        "flat_program",
        "flat_wall_time_s",
    ],
    "properties": {
        "task": {"type": "string"},
        "hier_actions": _INT,
        "hier_calls": _INT,
        "flat_budget": {"type": "integer", "minimum": 1},
        "flat_outcome": {"enum": ["solved", "over_budget", "not_expressible"]},
        "flat_actions": _INT,
        "flat_calls": {"type": ["integer", "null"], "minimum": 0},
        "flat_program": {"type": ["string", "null"]},
        "flat_wall_time_s": {"type": "number", "minimum": 0},
    },
    "additionalProperties": False,
}
RESULTS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "CurriculumResults",
    "type": "object",
    "required": [
        "schema",
        "schema_version",
        "config",
        "generations",
        "finished",
        "stop_reason",
        "library_keys",
        "flat",
    ],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": RESULTS_SCHEMA_NAME},
        "schema_version": {"const": RESULTS_SCHEMA_VERSION},
        "config": {
            "type": "object",
            "required": [
                "tasks",
                "agent",
                "budget",
                "seed",
                "options",
                "n_examples",
                "max_calls",
                "start_library",
                "preset",
            ],
            "additionalProperties": False,
            "properties": {
                "tasks": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "agent": {"type": "string"},
                "budget": {"type": "integer", "minimum": 1},
                "seed": {"type": "integer"},
                "options": {"type": "object"},
                "n_examples": {"type": "integer", "minimum": 1},
                "max_calls": {"type": "integer", "minimum": 1},
                "start_library": {"type": "array", "items": {"type": "string"}},
                "preset": {"type": ["string", "null"]},
            },
        },
        "generations": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "generation",
                    "library_size",
                    "tasks",
                    "attempts",
                    "solved",
                    "finished",
                ],
                "additionalProperties": False,
                "properties": {
                    "generation": {"type": "integer", "minimum": 1},
                    "library_size": _INT,
                    "tasks": {"type": "array", "items": {"type": "string"}},
                    "attempts": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["generation", "skill", "compile_error", "result"],
                            "additionalProperties": False,
                            "properties": {
                                "generation": {"type": "integer", "minimum": 1},
                                "skill": {"type": ["string", "null"]},
                                "compile_error": {"type": ["string", "null"]},
                                "skipped": {"type": ["string", "null"]},
                                "result": {"type": "object"},
                            },
                        },
                    },
                    "solved": _INT,
                    "finished": {"type": "boolean"},
                },
            },
        },
        "finished": {"type": "boolean"},
        "stop_reason": {"type": ["string", "null"]},
        "library_keys": {"type": "array", "items": {"type": "string"}},
        "flat": {
            "oneOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "required": ["ratio", "rows"],
                    "additionalProperties": False,
                    "properties": {
                        "ratio": {"type": "number", "exclusiveMinimum": 0},
                        "rows": {"type": "array", "items": _FLAT_ROW},
                    },
                },
            ]
        },
    },
}
"""JSON Schema of ``results.json`` (attempt results: :data:`agents.result.SOLVE_RESULT_SCHEMA`)."""

assert SOLVE_RESULT_SCHEMA["title"] == "SolveResult"


def validate_results(data: Any) -> None:
    """Raise ``ValueError`` naming the first problem if ``data`` is not a valid results file."""
    try:
        jsonschema.validate(data, RESULTS_SCHEMA)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "<top level>"
        raise ValueError(f"not a valid curriculum results file at {where}: {e.message}") from None
    for g in data["generations"]:
        for i, a in enumerate(g["attempts"]):
            try:
                validate_result(a["result"])
            except ValueError as e:
                raise ValueError(f"generation {g['generation']}, attempt {i}: {e}") from None


def load_results(path: str | Path) -> dict[str, Any]:
    """Read and validate a ``results.json``; the error names the file and the fix."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); pass --force to start over") from None
    if isinstance(data, dict) and data.get("schema_version") not in (None, RESULTS_SCHEMA_VERSION):
        raise ValueError(
            f"{path}: results schema version {data.get('schema_version')!r} is not supported "
            f"(this algind-gym reads version {RESULTS_SCHEMA_VERSION}); pass --force to start "
            "over or choose another --out"
        )
    try:
        validate_results(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}; pass --force to start over") from None
    return data


# ------------------------------------------------------------------ tables
def generation_rows(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Per generation: tasks attempted and solved, actions, env steps, wall time."""
    rows = []
    for g in state["generations"]:
        res = [a["result"] for a in g["attempts"]]
        won = [a["result"]["task"] for a in g["attempts"] if a["skill"]]
        rows.append(
            {
                "generation": g["generation"],
                "library_size": g["library_size"],
                "attempted": len(res),
                "solved": won,
                "actions_evaluated": sum(r["actions_evaluated"] for r in res),
                "env_steps": sum(r["env_steps"] for r in res),
                "wall_time_s": sum(r["wall_time_s"] for r in res),
            }
        )
    return rows


def flat_cell(row: dict[str, Any], ratio: float) -> tuple[str, str]:
    """The flat run's actions and its ratio to the hierarchy's, as table text: a number
    only when flat solved the task."""
    if row["flat_outcome"] == "solved":
        r = row["flat_actions"] / max(row["hier_actions"], 1)
        return str(row["flat_actions"]), f"{r:.1f}x"
    if row["flat_outcome"] == "over_budget":
        return f"> {row['flat_budget']} (budget)", f"> {ratio:g}x"
    return "not expressible", "not expressible"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def summary_table(state: dict[str, Any]) -> str:
    """Markdown: one row per task (generation solved, actions of the solving attempt, calls,
    the lowest accuracy over every verified length up to the longest), the README's table."""
    from agents.curriculum import solved_tasks

    solved = solved_tasks(state)
    rows = []
    for t in state["config"]["tasks"]:
        if t in solved:
            r = solved[t]["result"]
            longest = max(r["generalisation"], key=int)
            rows.append(
                [
                    t,
                    str(solved[t]["generation"]),
                    str(r["actions_evaluated"]),
                    str(len(r["program"])),
                    f"{min(r['generalisation'].values()):.2f} (n = 1..{longest})",
                    "`" + "; ".join(r["program_text"].splitlines()) + "`",
                ]
            )
        else:
            skipped = [
                a["skipped"]
                for g in state["generations"]
                for a in g["attempts"]
                if a["result"]["task"] == t and a.get("skipped")
            ]
            note = f"not attempted: {skipped[-1]}" if skipped else ""
            rows.append([t, "not solved", "", "", "", note])
    header = ["task", "generation", "actions", "calls", "lowest accuracy", "learned program"]
    return _md_table(header, rows)


def write_report(state: dict[str, Any], out: str | Path, *, plots: bool = True) -> Path:
    """Write ``report.md`` (and, with ``plots``, the PNGs) for ``state`` into ``out``."""
    from agents.report_plots import plot_accuracy, plot_hierarchy, plot_progress

    out = Path(out)
    cfg = state["config"]
    images = []
    if plots:
        images = [
            ("Skill hierarchy", plot_hierarchy(state, out / "hierarchy.png")),
            ("Tasks solved against actions evaluated", plot_progress(state, out / "progress.png")),
            ("Accuracy against length", plot_accuracy(state, out / "accuracy.png")),
        ]
    solved = sum(len(r["solved"]) for r in generation_rows(state))
    md = [
        "# Curriculum report\n",
        f"Agent `{cfg['agent']}` (options {cfg['options'] or 'default'}), budget {cfg['budget']} "
        f"actions per attempt, seed {cfg['seed']}, K={cfg['n_examples']} examples, at most "
        f"{cfg['max_calls']} calls; preset `{cfg['preset']}`; start library: "
        f"{len(cfg['start_library'])} skills.\n",
        f"Solved {solved} of {len(cfg['tasks'])} tasks in {len(state['generations'])} "
        f"generation(s); stopped: {state['stop_reason'] or 'not finished'}.\n",
        "Success means accuracy 1.0 on fresh inputs at every training length, every test length "
        "and 8x the longest training length, on the Transformer CPU.\n",
        "## Tasks\n",
        summary_table(state),
        "## Generations\n",
    ]
    gen_rows = [
        [
            str(r["generation"]),
            str(r["library_size"]),
            str(r["attempted"]),
            ", ".join(r["solved"]) or "none",
            str(r["actions_evaluated"]),
            str(r["env_steps"]),
            f"{r['wall_time_s']:.1f}",
        ]
        for r in generation_rows(state)
    ]
    md.append(
        _md_table(
            ["gen", "library", "attempted", "solved", "actions", "env steps", "wall s"], gen_rows
        )
    )
    if state.get("flat"):
        md += _flat_section(state)
    for title, path in images:
        md.append(f"## {title}\n\n![{title}]({path.name})\n")
    md.append("## Learned programs\n")
    for g in state["generations"]:
        for a in g["attempts"]:
            r = a["result"]
            if a["compile_error"]:
                md.append(
                    f"### {r['task']} (generation {g['generation']}): verified, but not a "
                    f"skill\n\n`{r['program_text']}` does not compile into a skill: "
                    f"{a['compile_error']}\n"
                )
            if not a["skill"]:
                continue
            acc = ", ".join(f"{n}: {v:.2f}" for n, v in r["generalisation"].items())
            md += [
                f"### {r['task']} (generation {g['generation']}, skill `{a['skill']}`)\n",
                f"{r['actions_evaluated']} actions, {r['env_steps']} env steps, "
                f"{r['wall_time_s']:.1f} s. Accuracy per length: {acc}.\n",
                "```text\n" + r["program_text"] + "\n```\n",
                "<details><summary>disassembly</summary>\n\n```asm\n"
                + (r["disassembly"] or "").rstrip()
                + "\n```\n</details>\n",
            ]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(md))
    return path


def _flat_section(state: dict[str, Any]) -> list[str]:
    flat = state["flat"]
    ratio = flat["ratio"]
    rows = []
    for row in flat["rows"]:
        actions, rel = flat_cell(row, ratio)
        calls = str(row["flat_calls"]) if row["flat_calls"] is not None else "-"
        rows.append(
            [row["task"], str(row["hier_actions"]), str(row["hier_calls"]), actions, calls, rel]
        )
    header = ["task", "hier. actions", "hier. calls", "flat actions", "flat calls", "flat / hier."]
    return [
        "## Flat against hierarchical\n",
        f"The same agent and seed with only the start library (no learned skills), budget "
        f"{ratio:g}x the actions the hierarchy needed for the task (hier. actions: the solving "
        "attempt's; learning the skills it calls is in the generations table). "
        "'> N (budget)': flat spent "
        "its whole budget without a verified program; 'not expressible': the agent ran out of "
        f"programs within its depth limit (at most {state['config']['max_calls']} calls; MCTS "
        "searches programs of at most its `max_depth` calls, 3 by default) before its budget.\n",
        _md_table(header, rows),
    ]
