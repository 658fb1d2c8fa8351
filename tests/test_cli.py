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
