"""Workspace: seeding, pointer table, scoring, bad actions, compiling a program to a skill."""

from __future__ import annotations

import numpy as np

from algind_gym.machine.isa import Fault
from algind_gym.skills import builtin_library
from algind_gym.tasks import Workspace, compile_task_program, get_task
from algind_gym.tasks.reference import reference_library_for, reference_solution


def test_same_seed_same_inputs():
    lib = builtin_library()
    a = Workspace(lib, get_task("VectorAdd"), 5, batch=3, seed=7)
    b = Workspace(lib, get_task("VectorAdd"), 5, batch=3, seed=7)
    np.testing.assert_array_equal(a.reset().cells, b.reset().cells)
    c = Workspace(lib, get_task("VectorAdd"), 5, batch=3, seed=8)
    assert not np.array_equal(a.reset().cells, c.reset().cells)


def test_pointer_table_holds_args_scratch_constants_and_skills():
    ws = Workspace(builtin_library(), get_task("Reverse"), 4)
    names = ws.pointer_names
    assert names[:2] == ["x", "out"]
    assert {"tmp_v0", "tmp_s0", "zero", "one"} <= set(names) and "&gather@1" in names
    mask = ws.binding_mask("gather")
    assert mask.shape == (3, len(names)) and mask[0, names.index("x")]
    assert not ws.can_bind(names.index("tmp_s0"), "gather", 0)


def test_bad_action_faults_and_scores_zero():
    ws = Workspace(builtin_library(), get_task("VectorAdd"), 3, batch=2)
    state = ws.reset()
    res = ws.execute(state, "zipmap", [0, 1, 2])  # x bound to the skill slot
    assert res.error and (state.faults != Fault.NONE).all()
    score = ws.score(state)
    assert score.accuracy == 0.0 and (score.fraction == 0).all()


def test_wrong_program_gets_partial_credit():
    ws = Workspace(builtin_library(), get_task("ReLU"), 8, batch=1, seed=1)
    state = ws.reset()
    ws.execute(state, "copy", ws.bind(["x", "out"]))  # right where x >= 0 only
    s = ws.score(state)
    assert not s.success[0] and 0.0 < s.fraction[0] < 1.0


def test_compiled_task_skill_matches_the_program():
    task = get_task("DotProduct")
    lib = reference_library_for("DotProduct")
    skill = compile_task_program(lib, task, reference_solution("DotProduct"), name="MyDot")
    assert skill.signature == "MyDot(x: vector, y: vector) -> out: scalar"
    ws = Workspace(lib, task, 7, batch=3, seed=2)
    state = ws.reset()
    ws.execute(state, "MyDot", ws.bind(["x", "y", "out"]))
    assert ws.score(state).accuracy == 1.0
