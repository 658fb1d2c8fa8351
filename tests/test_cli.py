"""The algind-gym command line, as a user types it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from algind_gym.cli import main


def test_run_example_prints_final_state(capsys):
    assert main(["run", "factorial"]) == 0
    out = capsys.readouterr().out
    assert "120" in out and "NONE" in out


def test_run_json_and_set(capsys):
    assert main(["run", "dot_product", "--set", "xs=1,1,1,1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["data"]["out"] == [[26.0]] and data["fault"] == ["NONE"]


def test_run_reports_faults_with_exit_code_1(tmp_path, capsys):
    prog = tmp_path / "div.asm"
    prog.write_text("movi r0, 1\ndiv r0, r0, r1\nhalt\n")
    assert main(["run", str(prog), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["fault"] == ["DIVISION_BY_ZERO"]


def test_asm_and_disasm_round_trip(tmp_path, capsys):
    assert main(["asm", "subleq_add", "--json"]) == 0
    out = tmp_path / "p.json"
    out.write_text(capsys.readouterr().out)
    assert main(["disasm", str(out)]) == 0
    listing = capsys.readouterr().out
    assert "subleq" in listing and ".data a 7" in listing
    assert main(["asm", "factorial"]) == 0
    assert "enter" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["run", "missing.asm"], "no such file"),
        (["run", "factorial", "--set", "nope=1"], "unknown name"),
        (["run", "factorial", "--set", "n=1,2"], "has 1 cell(s), got 2"),
        (["run", "factorial", "--set", "n=x"], "comma-separated numbers"),
    ],
)
def test_bad_input_gets_one_clear_line(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("algind-gym: error:") and fragment in err


def test_bad_program_file_names_the_line(tmp_path, capsys):
    prog = tmp_path / "bad.asm"
    prog.write_text("halt\nmovi r0\n")
    assert main(["run", str(prog)]) == 2
    assert f"{prog}:2:1: MOVI takes 2 operand(s)" in capsys.readouterr().err


def test_console_script_is_installed():
    out = subprocess.run(
        [sys.executable, "-m", "algind_gym.cli", "run", "subleq_add", "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out)["data"]["b"] == [[42.0]]


def test_list_json_rows(capsys):
    assert main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {
        "id": "AlgInd/DotProduct-v0",
        "task": "DotProduct",
        "level": 2,
        "track": "numeric",
    } in rows
    assert all(set(r) == {"id", "task", "level", "track"} for r in rows)


def test_verify_cpu_reports_no_mismatches(capsys):
    argv = ["verify-cpu", "--programs", "32", "--steps", "16", "--batch", "32", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["mismatches"] == 0 and result["steps_checked"] > 0


def test_verify_tasks_and_show_skill(capsys):
    argv = ["verify-tasks", "--tasks", "VectorAdd", "--backend", "transformer", "--json"]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["accuracy"] == 1.0 for r in rows)
    assert main(["show-skill", "zipmap"]) == 0
    assert "zipmap(f: skill(scalar,scalar,scalar)" in capsys.readouterr().out


def test_run_defaults_to_the_transformer_and_matches_the_reference(capsys):
    assert main(["run", "factorial", "--json"]) == 0
    cpu = json.loads(capsys.readouterr().out)
    assert cpu.pop("backend") == "transformer"
    assert main(["run", "factorial", "--backend", "reference", "--json"]) == 0
    ref = json.loads(capsys.readouterr().out)
    assert ref.pop("backend") == "reference"
    assert ref == cpu
    assert main(["run", "factorial"]) == 0
    assert capsys.readouterr().out.startswith("backend: transformer\n")
