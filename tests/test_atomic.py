"""``algind_gym.atomic``: appended rows land whole, and a failed write keeps the old file."""

from __future__ import annotations

import pytest

from algind_gym.atomic import atomic_append_text, atomic_write


def test_append_creates_the_file_then_keeps_every_earlier_row(tmp_path):
    path = tmp_path / "rows.jsonl"
    atomic_append_text(path, '{"a": 1}\n')
    atomic_append_text(path, '{"a": 2}\n')
    assert path.read_text() == '{"a": 1}\n{"a": 2}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]  # no temp file left


def test_a_write_that_fails_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "rows.jsonl"
    atomic_append_text(path, "old\n")

    def fail(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, fail)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]
