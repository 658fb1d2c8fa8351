"""SkillLibrary: JSON round trip, append-only versions, corruption errors, compose errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from algind_gym import atomic
from algind_gym.skills import LibraryFormatError, SkillLibrary, builtin_library, run_skill

TWICE = (
    ".skill twice(x: scalar, out: scalar)\n load r0, x, 0\n add r0, r0, r0\n"
    " store out, 0, r0\n ret\n"
)
THRICE = TWICE.replace("add r0, r0, r0", "add r1, r0, r0\n add r0, r0, r1")


def _lib():
    lib = builtin_library()
    lib.add_assembly(TWICE, description="out = 2 x")
    lib.compose(
        "dot",
        [("x", "vector"), ("y", "vector"), ("out", "scalar")],
        [("zipmap", ["&s_mul", "x", "y", "t"]), ("fold", ["&s_add", "t", 0, "out"])],
        temps=[("t", "vector", ["x.size"])],
        description="dot product",
    )
    return lib


def test_json_round_trip(tmp_path):
    lib = _lib()
    path = lib.save(tmp_path / "lib.json")
    back = SkillLibrary.load(path)
    assert back.keys() == lib.keys()
    assert [s.to_json() for s in back] == [s.to_json() for s in lib]
    x, y = np.array([[1.0, 2.0]]), np.array([[3.0, 4.0]])
    out, _ = run_skill(back, "dot", {"x": x, "y": y, "out": np.zeros(1)})
    assert out["out"][0] == 11.0
    assert [p.name for p in tmp_path.iterdir()] == ["lib.json"]  # no temporary left


def test_append_only_versions():
    lib = _lib()
    old = lib.get("twice")
    user = lib.compose(
        "quad",
        [("x", "scalar"), ("out", "scalar")],
        [("twice", ["x", "t"]), ("twice", ["t", "out"])],
        temps=[("t", "scalar", [])],
        description="4 x",
    )
    assert user.dependencies == ("twice@1",)
    new = lib.add_assembly(THRICE, description="out = 3 x (a new version)")
    assert (old.key, new.key) == ("twice@1", "twice@2")
    assert lib.get("twice") is new and lib.get("twice@1") is old
    # the composed skill still means 2 * 2 * x: it names twice@1
    out, _ = run_skill(lib, "quad", {"x": np.array([1.5]), "out": np.zeros(1)})
    assert out["out"][0] == 6.0
    out, _ = run_skill(lib, "twice", {"x": np.array([1.5]), "out": np.zeros(1)})
    assert out["out"][0] == 4.5
    with pytest.raises(ValueError, match="append-only"):
        lib._append(old)


def test_dependency_graph():
    lib = _lib()
    assert lib.dependencies("dot") == ["s_mul@1", "zipmap@1", "s_add@1", "fold@1"]
    assert "dot@1" in lib.dependents("zipmap")
    assert lib.dependency_tree("dot")["uses"][1] == {"skill": "zipmap@1", "uses": []}


def _saved(tmp_path):
    path = _lib().save(tmp_path / "lib.json")
    return path, json.loads(path.read_text())


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda d: "{not json", "not valid JSON"),
        (lambda d: {**d, "format": "pickle"}, "not a skill library"),
        (lambda d: {**d, "version": 99}, "version 99 is not supported"),
        (
            lambda d: {**d, "skills": [s for s in d["skills"] if s["name"] != "zipmap"]},
            "missing sub-skill",
        ),
        (
            lambda d: {**d, "skills": [{k: v for k, v in d["skills"][0].items() if k != "source"}]},
            "malformed record",
        ),
        (
            lambda d: {**d, "skills": [{**d["skills"][0], "source": "bogus r0"}]},
            "malformed record|assemble",
        ),
        (lambda d: {**d, "skills": d["skills"] + [d["skills"][0]]}, "duplicate"),
        (lambda d: {**d, "skills": [{**d["skills"][0], "version": "1"}]}, "version must be"),
    ],
)
def test_corrupt_files_give_clear_errors(tmp_path, corrupt, message):
    path, data = _saved(tmp_path)
    bad = corrupt(data)
    path.write_text(bad if isinstance(bad, str) else json.dumps(bad))
    with pytest.raises(LibraryFormatError, match=message):
        SkillLibrary.load(path)


def test_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    path, _ = _saved(tmp_path)
    before = path.read_text()

    def boom(*a, **k):
        raise OSError("disk full")

    # fail after the temporary file is written, before the rename
    monkeypatch.setattr(atomic.os, "fsync", boom)
    with pytest.raises(OSError):
        builtin_library().save(path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["lib.json"]


@pytest.mark.parametrize(
    "steps, message",
    [
        ([("nope", ["x", "out"])], "no skill 'nope'"),
        ([("copy", ["x"])], "takes 2 binding"),
        ([("copy", ["x", "zzz"])], "unknown name 'zzz'"),
        ([("len", ["x", "x"])], "cannot bind"),
        ([("map", ["&s_add", "x", "out"])], "cannot bind"),  # s_add is binary, map wants unary
        ([("copy", ["x", 3])], "constant"),
    ],
)
def test_compose_type_errors(steps, message):
    with pytest.raises(ValueError, match=message):
        builtin_library().compose(
            "bad", [("x", "vector"), ("out", "vector")], steps, description=""
        )


def test_disassemble_names_callees():
    text = _lib().disassemble("dot")
    assert ".skill dot(x: vector, y: vector, out: scalar)" in text
    assert "zipmap@1.entry" in text and "&s_mul@1" in text


def test_no_data_directives_in_skills():
    with pytest.raises(ValueError, match="not allowed"):
        SkillLibrary().add_assembly(".skill f(out: scalar)\n.data k 1\n ret\n", description="")
