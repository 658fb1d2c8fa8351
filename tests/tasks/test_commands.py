"""The CLI logic: list, verify-tasks, show-skill."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from algind_gym.tasks.commands import list_command, show_skill_command, verify_tasks_command


def _console():
    buf = io.StringIO()
    return Console(file=buf, width=200, force_terminal=False), buf


def test_list_json_rows():
    con, buf = _console()
    assert list_command(json=True, console=con) == 0
    rows = json.loads(buf.getvalue())
    assert {
        "id": "AlgInd/DotProduct-v0",
        "task": "DotProduct",
        "level": 2,
        "track": "numeric",
    } in rows
    assert all(set(r) == {"id", "task", "level", "track"} for r in rows)


def test_list_table_keeps_brackets():
    con, buf = _console()
    list_command(console=con)
    assert "out[i] = x[i] + y[i]" in buf.getvalue()


def test_verify_tasks_json():
    con, buf = _console()
    code = verify_tasks_command(
        json=True, tasks=["VectorAdd", "Mean"], splits=("train",), console=con
    )
    rows = json.loads(buf.getvalue())
    assert code == 0 and {r["task"] for r in rows} == {"VectorAdd", "Mean"}
    assert all(r["accuracy"] == 1.0 for r in rows)


def test_verify_tasks_table():
    con, buf = _console()
    assert verify_tasks_command(tasks=["Copy"], splits=("train",), console=con) == 0
    assert "5/5 task-lengths at accuracy 1.0" in buf.getvalue()


def test_show_skill():
    con, buf = _console()
    assert show_skill_command("MatVec", console=con) == 0
    text = buf.getvalue()
    assert "MatVec(W: matrix, x: vector) -> out: vector" in text
    assert "DotProduct@1" in text and "map_rows@1.entry" in text and "enter" in text
    with pytest.raises(KeyError, match="no skill 'NoSuchSkill'"):
        show_skill_command("NoSuchSkill", console=_console()[0])
    with pytest.raises(ValueError, match=r"--library missing\.json: no such file"):
        show_skill_command("s_add", library="missing.json", console=_console()[0])
