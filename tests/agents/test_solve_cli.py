"""``algind-gym solve``: JSON output, exit codes, saving into a library, clear errors."""

from __future__ import annotations

import json

from agents import validate_result
from algind_gym.cli import main
from algind_gym.skills.library import SkillLibrary


def test_solve_json_validates_and_saves_the_skill(tmp_path, capsys):
    lib = tmp_path / "lib.json"
    rc = main(["solve", "VectorAdd", "--budget", "300", "--json", "--save-to", str(lib)])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["success"]
    validate_result(out)
    saved = SkillLibrary.load(lib)
    assert "VectorAdd" in saved
    # saving again appends the next version and keeps the first one
    assert main(["solve", "VectorAdd", "--budget", "300", "--json", "--save-to", str(lib)]) == 0
    capsys.readouterr()
    assert {"VectorAdd@1", "VectorAdd@2"} <= set(SkillLibrary.load(lib).keys())


def test_unsolved_exits_1_and_errors_exit_2(capsys):
    assert main(["solve", "DotProduct", "--budget", "3", "--json"]) == 1
    assert not json.loads(capsys.readouterr().out)["success"]
    assert main(["solve", "VectorAdd", "--agent", "nosuch"]) == 2
    assert "unknown agent 'nosuch'" in capsys.readouterr().err
    assert main(["solve", "VectorAdd", "--option", "oops"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
