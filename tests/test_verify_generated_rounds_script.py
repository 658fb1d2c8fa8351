"""``experiments/verify_generated_rounds.py``: a round's row names the single-round CLI
command it equals, and ``--totals`` sums rows per dtype."""

from __future__ import annotations

import json

from algind_gym.cli import build_parser
from tests.experiment_scripts import load_experiment


def test_a_rounds_command_is_the_cli_command_with_the_rounds_settings(monkeypatch):
    rounds = load_experiment("verify_generated_rounds")
    seen = {}
    monkeypatch.setattr(rounds, "run", lambda a: seen.setdefault("a", a) and 0)
    argv = ["--rows", "r.jsonl", "--dtype", "float64", "--tasks", "Max,Mean", "--lengths", "64"]
    assert rounds.main(argv) == 0
    settings = seen["a"]
    words = rounds.command(settings, 401).split()
    assert words[:3] == ["ALGIND_GYM_V2_KERNEL=generated", "algind-gym", "verify-cpu"]
    cli = build_parser().parse_args(words[2:])
    assert (cli.dtype, cli.seed, cli.structured_tasks) == ("float64", 401, "Max,Mean")
    assert cli.structured_lengths == "64" and cli.backends == "transformer-v2"
    assert (cli.programs, cli.steps, cli.json) == (1, 1, True)
    assert cli.structured_per_call == settings.per_call
    assert cli.structured_steps == settings.structured_steps and cli.batch == settings.batch


def test_totals_sum_rows_per_dtype(tmp_path, capsys):
    rounds = load_experiment("verify_generated_rounds")
    rows = [
        {
            "dtype": "float32",
            "random_steps": 1,
            "structured_steps": 10,
            "mismatches": 0,
            "structured_steps_in_programs_of_100_or_more": 9,
            "structured_programs": 2,
            "command": "x --structured-tasks Sum --json",
        },
        {
            "dtype": "float32",
            "random_steps": 0,
            "structured_steps": 5,
            "mismatches": 0,
            "structured_steps_in_programs_of_100_or_more": 5,
            "structured_programs": 1,
            "tasks": ["Max", "Mean"],
            "command": "y",
        },
        {
            "dtype": "float64",
            "random_steps": 2,
            "structured_steps": 7,
            "mismatches": 1,
            "structured_steps_in_programs_of_100_or_more": 0,
            "structured_programs": 3,
            "tasks": ["Sum"],
            "command": "z",
        },
    ]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    rounds.append_row(a, rows[0])
    rounds.append_row(a, rows[1])
    rounds.append_row(b, rows[2])
    assert rounds.main(["--totals", str(a), str(b), str(tmp_path / "missing.jsonl")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["float32"] == {
        "random_steps": 1,
        "structured_steps": 15,
        "mismatches": 0,
        "structured_steps_in_programs_of_100_or_more": 14,
        "structured_programs": 3,
        "rounds": 2,
        "tasks": ["Max", "Mean", "Sum"],
    }
    assert out["float64"]["mismatches"] == 1 and out["float64"]["rounds"] == 1


def test_merge_appends_only_the_rows_the_file_lacks(tmp_path, capsys):
    rounds = load_experiment("verify_generated_rounds")
    dest, src = tmp_path / "results.jsonl", tmp_path / "rows.jsonl"
    old = {"dtype": "float32", "seed": 1, "command": "c1"}
    dest.write_text(json.dumps(old) + "\n")
    for row in (old, {"dtype": "float32", "seed": 2, "command": "c2"}, old | {"seed": 3}):
        rounds.append_row(src, row)
    assert rounds.main(["--merge", str(src), "--rows", str(dest)]) == 0
    assert rounds.main(["--merge", str(src), "--rows", str(dest)]) == 0  # nothing new
    assert [r["seed"] for r in rounds.read_rows([dest])] == [1, 2, 3]
    assert dest.read_text().startswith(json.dumps(old) + "\n")  # earlier rows unchanged
    assert capsys.readouterr().out.splitlines() == [
        f"2 rows added to {dest}",
        f"0 rows added to {dest}",
    ]
