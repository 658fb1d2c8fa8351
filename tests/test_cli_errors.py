"""Bad input to the command line: one ``algind-gym: error:`` line and exit status 2."""

from __future__ import annotations

import pytest

from algind_gym.cli import main


def _error(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("algind-gym: error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


def test_show_skill_unknown_name(capsys):
    assert main(["show-skill", "nosuch"]) == 2
    assert "no skill 'nosuch'" in _error(capsys)


def test_show_skill_missing_library_file(capsys, tmp_path):
    missing = tmp_path / "missing.json"
    assert main(["show-skill", "s_add", "--library", str(missing)]) == 2
    assert f"--library {missing}: no such file" in _error(capsys)


@pytest.mark.parametrize("command", ["run", "asm", "disasm"])
@pytest.mark.parametrize(
    "text, what",
    [("", "is empty"), ("; a comment only\n", "has no instructions (only comments or data)")],
)
def test_program_without_instructions(command, text, what, capsys, tmp_path):
    prog = tmp_path / "empty.asm"
    prog.write_text(text)
    assert main([command, str(prog)]) == 2
    assert f"{prog} {what}: nothing to run" in _error(capsys)
