"""Resumable ``verify-cpu`` rounds: one JSON row per finished round, appended atomically.

Each round is one :func:`~algind_gym.cpu.verify.verify_cpu` call with its own seed
(``--seed + round index``); structured rounds take one task each, cycling through
``--tasks``. A run that is cut leaves its finished rows; started again with the same
``--out``, it continues after the last row, until the rows add up to ``--target`` checked
steps (structured rounds: steps in structured programs of >= 100 steps). ``--summary``
prints the totals of a rows file (the figures of the README's verification sentences;
``experiments/results/verify_dense_rounds.jsonl`` holds the rows behind them).

Usage:
    python experiments/verify_rounds.py --out /tmp/rows.jsonl --kind structured \\
        --dtype float32 --target 600000 --tasks Sum,Mean --per-call 32 --slots 16
    python experiments/verify_rounds.py --out /tmp/rows.jsonl --kind random \\
        --dtype float64 --target 1000000 --programs 8192 --batch 256
    python experiments/verify_rounds.py --out /tmp/rows.jsonl --summary
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from algind_gym.atomic import atomic_append_text
from algind_gym.cpu.verify import verify_cpu

_KEYS = (
    "steps_checked",
    "random_steps",
    "structured_steps",
    "structured_steps_in_programs_of_100_or_more",
    "structured_programs",
    "mismatches",
    "seconds",
)


def read_rows(path: Path) -> list[dict]:
    """The finished rounds of a rows file (none if it does not exist)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_row(path: Path, row: dict) -> None:
    """Append one row atomically (:func:`algind_gym.atomic.atomic_append_text`)."""
    atomic_append_text(path, json.dumps(row) + "\n")


def summary(rows: list[dict]) -> dict:
    """Totals per dtype and kind, and the layouts' cell range and tasks."""
    out: dict = {}
    for row in rows:
        tot = out.setdefault(f"{row['dtype']} {row['kind']}", dict.fromkeys(_KEYS, 0))
        for k in _KEYS:
            tot[k] += row[k]
        tot["rounds"] = tot.get("rounds", 0) + 1
        tot["tasks"] = sorted(set(tot.get("tasks", [])) | set(row.get("tasks") or []))
        if row.get("structured_cells"):  # the range of the structured layouts' cells
            lo, hi = tot.get("cells") or row["structured_cells"]
            lo, hi = min(lo, row["structured_cells"][0]), max(hi, row["structured_cells"][1])
            tot["cells"] = [lo, hi]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--summary", action="store_true")
    p.add_argument("--kind", choices=["random", "structured"], default="structured")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--target", type=int, default=1_000_000)
    p.add_argument("--backends", default="transformer-v2-dense")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tasks", default="Sum")
    p.add_argument("--per-call", type=int, default=32)
    p.add_argument("--slots", type=int, default=16)
    p.add_argument("--programs", type=int, default=8192)
    p.add_argument("--steps", type=int, default=256)
    p.add_argument("--batch", type=int, default=256)
    a = p.parse_args()
    if a.summary:
        print(json.dumps(summary(read_rows(a.out)), indent=1))
        return
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tasks = a.tasks.split(",")
    key = "steps_checked" if a.kind == "random" else "structured_steps_in_programs_of_100_or_more"
    while True:
        rows = [r for r in read_rows(a.out) if r["dtype"] == a.dtype and r["kind"] == a.kind]
        done = sum(r[key] for r in rows)
        if done >= a.target:
            break
        i = len(rows)
        structured = a.kind == "structured"
        task = [tasks[i % len(tasks)]] if structured else None
        result = verify_cpu(
            programs=1 if structured else a.programs,
            steps=1 if structured else a.steps,
            batch=a.slots if structured else a.batch,
            dtype=a.dtype,
            seed=a.seed + i,
            backends=tuple(a.backends.split(",")),
            print_result=False,
            structured_steps=1 if structured else 0,
            structured_tasks=task,
            structured_minimal=True,
            structured_per_call=a.per_call,
            structured_slots=a.slots,
        )
        row = {k: result[k] for k in _KEYS}
        row.update(kind=a.kind, dtype=a.dtype, seed=a.seed + i, tasks=task)
        row.update(structured_cells=result["structured_cells"], examples=result["examples"])
        row["command"] = vars(a) | {"out": str(a.out)}
        append_row(a.out, row)
        print(json.dumps({k: row[k] for k in (*_KEYS, "tasks", "seed")}), flush=True)
        if result["mismatches"]:
            print("MISMATCH: see the row's examples", flush=True)


if __name__ == "__main__":
    main()
