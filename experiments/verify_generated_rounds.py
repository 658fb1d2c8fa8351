"""``verify-cpu`` rounds of the generated v2 kernel in one process, one JSON row per round.

Each round is exactly the command in its row (``ALGIND_GYM_V2_KERNEL=generated algind-gym
verify-cpu ... --seed S --json``; running that command alone gives the same figures): the
rounds differ by their seed only. They run in one process and share the layouts' backends
(``verify_cpu(built=...)``), because building a layout's generated kernel (minutes of code
generation, then numba's compile or cache load) is what a fresh process pays per layout,
while the checked steps run at thousands per second. A finished round's row is appended to
``--rows`` atomically (the file rewritten to a temp file beside it, then replaced); seeds
already in the file are skipped, so a run that is cut can be started again. The run stops at
the first round with a mismatch (exit 1; its row keeps the seed and the examples) or at
``--until`` (UTC ``HH:MM``, checked between rounds).

``--totals FILE...`` sums rows files per dtype: random steps, structured steps, structured
steps in programs of >= 100 steps, mismatches, rounds, tasks. ``--merge FILE... --rows DEST``
appends the rows of FILEs that DEST lacks (same dtype, seed and command), atomically.

Usage:
    ALGIND_GYM_V2_KERNEL=generated python experiments/verify_generated_rounds.py \\
        --rows /tmp/verify10/rows_float32.jsonl --dtype float32 --first-seed 300 \\
        --tasks Sum,Max,Min,Mean --lengths 32,64 --until 10:50
    python experiments/verify_generated_rounds.py --totals \\
        experiments/results/verify_generated_rounds.jsonl
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

SUMMED = (
    "random_steps",
    "structured_steps",
    "structured_steps_in_programs_of_100_or_more",
    "mismatches",
    "structured_programs",
)


def read_rows(paths: list[Path]) -> list[dict]:
    """Every row of the given JSON-lines files (a missing file has none)."""
    rows = []
    for path in paths:
        if path.exists():
            rows += [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return rows


def append_row(path: Path, row: dict) -> None:
    """Append one row atomically (:func:`algind_gym.atomic.atomic_append_text`)."""
    from algind_gym.atomic import atomic_append_text  # the package loads after the env setup

    atomic_append_text(path, json.dumps(row) + "\n")


def merge(sources: list[Path], into: Path) -> int:
    """Append to ``into`` the rows of ``sources`` that it lacks (same dtype, seed and command),
    in one atomic rewrite; the number of rows added."""
    have = {(r["dtype"], r["seed"], r["command"]) for r in read_rows([into])}
    new = [r for r in read_rows(sources) if (r["dtype"], r["seed"], r["command"]) not in have]
    text = into.read_text() if into.exists() else ""
    fd, tmp = tempfile.mkstemp(dir=into.parent, prefix=into.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text + "".join(json.dumps(r) + "\n" for r in new))
    os.replace(tmp, into)
    return len(new)


def totals(rows: list[dict]) -> dict:
    """The rows' sums per dtype (see the module docstring)."""
    out: dict = {}
    for row in rows:
        tot = out.setdefault(row["dtype"], dict.fromkeys(SUMMED, 0) | {"rounds": 0})
        for key in SUMMED:
            tot[key] += row[key]
        tot["rounds"] += 1
        tasks = row.get("tasks") or [w for w in _flag(row["command"], "--structured-tasks")]
        tot["tasks"] = sorted(set(tot.get("tasks", [])) | set(tasks))
    return out


def _flag(command: str, name: str) -> list[str]:
    words = command.split()
    return words[words.index(name) + 1].split(",") if name in words else []


def command(a: argparse.Namespace, seed: int) -> str:
    """The single-round CLI command that a round of this run is."""
    return (
        "ALGIND_GYM_V2_KERNEL=generated algind-gym verify-cpu --backends transformer-v2 "
        f"--programs 1 --steps 1 --batch {a.batch} --dtype {a.dtype} --seed {seed} "
        f"--structured-steps {a.structured_steps} --structured-tasks {a.tasks} "
        f"--structured-per-call {a.per_call}"
        + (f" --structured-lengths {a.lengths}" if a.lengths else "")
        + " --json"
    )


def run(a: argparse.Namespace) -> int:
    """Rounds from ``--first-seed`` on (see the module docstring); 1 after a mismatch."""
    from algind_gym.cpu.verify import verify_cpu
    from algind_gym.cpu_v2 import kernel

    if not kernel.GENERATED:
        raise SystemExit("set ALGIND_GYM_V2_KERNEL=generated: these rounds check that kernel")
    a.rows.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["dtype"], r["seed"]) for r in read_rows([a.rows])}
    built: OrderedDict = OrderedDict()  # the layouts' backends, shared by the rounds
    seed, ran = a.first_seed, 0
    while True:
        if a.until and dt.datetime.now(dt.UTC).strftime("%H:%M") >= a.until:
            return 0
        if (a.dtype, seed) in done:
            seed += 1
            continue
        start = time.perf_counter()
        result = verify_cpu(
            programs=1,
            steps=1,
            batch=a.batch,
            dtype=a.dtype,
            seed=seed,
            backends=("transformer-v2",),
            print_result=False,
            structured_steps=a.structured_steps,
            structured_tasks=a.tasks.split(","),
            structured_per_call=a.per_call,
            structured_lengths=[int(n) for n in a.lengths.split(",")] if a.lengths else None,
            built=built,
            keep_layouts=a.keep_layouts,
        )
        row = {"dtype": a.dtype, "seed": seed, "kernel": "generated"}
        row["command"] = command(a, seed)
        row |= {k: result[k] for k in ("mismatches", "steps_checked", *SUMMED[:3])}
        row |= {
            k: result[k]
            for k in (
                "structured_programs",
                "structured_length_percentiles",
                "structured_cells",
                "per_backend",
                "examples",
            )
        }
        row["tasks"] = a.tasks.split(",")
        row["wall_seconds"] = round(time.perf_counter() - start, 1)
        row["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        append_row(a.rows, row)
        print(json.dumps({k: v for k, v in row.items() if k != "examples"}), flush=True)
        if result["mismatches"]:
            print(f"MISMATCH at seed {seed}: see the row's examples", flush=True)
            return 1
        seed += 1
        ran += 1
        if a.rounds and ran >= a.rounds:
            return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--totals", nargs="+", type=Path, help="sum these rows files and stop")
    p.add_argument("--rows", type=Path, help="the rows file the rounds append to")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=0, help="stop after this many rounds (0: no end)")
    p.add_argument("--until", help="UTC HH:MM after which no round starts")
    p.add_argument("--tasks", default="Sum,Max,Min,Mean")
    p.add_argument("--lengths", default="", help="task lengths to draw from (default: all)")
    p.add_argument("--per-call", type=int, default=64)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--structured-steps", type=int, default=100_000)
    p.add_argument("--keep-layouts", type=int, default=16)
    p.add_argument("--merge", nargs="+", type=Path, help="rows files to append to --rows")
    a = p.parse_args(argv)
    if a.merge:
        if a.rows is None:
            p.error("--merge needs --rows (the file to append to)")
        print(f"{merge(a.merge, a.rows)} rows added to {a.rows}")
        return 0
    if a.totals:
        print(json.dumps(totals(read_rows(a.totals)), indent=1))
        return 0
    if a.rows is None:
        p.error("--rows is required for rounds")
    return run(a)


if __name__ == "__main__":
    sys.exit(main())
