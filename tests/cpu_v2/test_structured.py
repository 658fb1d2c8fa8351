"""Structured fuzz programs on minimal layouts: the same solutions on far fewer cells, and
the dense pass runs them bit for bit like the reference interpreter."""

from __future__ import annotations

import numpy as np

from algind_gym.cpu.backend import make_backend
from algind_gym.cpu_v2.structured import minimal_image, mutate, structured_machines
from algind_gym.machine import interpreter
from algind_gym.tasks import Workspace, get_task
from algind_gym.tasks.reference import reference_library_for, reference_solution
from tests.cpu.conftest import assert_same


def test_minimal_image_keeps_the_solution_working_on_far_fewer_cells():
    task = get_task("DotProduct")
    length = min(task.train_lengths)
    ws = Workspace(reference_library_for("DotProduct"), task, length, batch=3, seed=2)
    full = ws.image
    steps = reference_solution("DotProduct")
    ws.image = minimal_image(full, steps)
    assert ws.image.layout.n_cells < full.layout.n_cells / 3
    assert set(ws.image.layout.skills) < set(full.layout.skills)
    state = ws.reset()
    ws.run_program(state, steps)
    assert ws.score(state).success.all()


def test_structured_programs_on_minimal_layouts_run_bit_exactly_on_the_dense_pass():
    rng = np.random.default_rng(3)
    states = structured_machines(rng, np.float32, batch=2, tasks=["Sum"], minimal=True)
    assert states and all(s.layout.n_cells < 2000 for s in states)
    states += [mutate(s, rng) for s in states]
    dense = make_backend("transformer-v2-dense")
    long_run = 0
    for state in states:
        ref = interpreter.run(state.copy(), 200)
        long_run += int(ref.register("icount").max() >= 50)
        assert_same(ref, dense.run(state.copy(), 200), "structured, minimal layout")
    assert long_run > 0


def test_verify_cpu_runs_minimal_structured_programs_on_the_dense_pass():
    from algind_gym.cpu.verify import verify_cpu

    result = verify_cpu(
        programs=4,
        steps=4,
        batch=4,
        dtype="float32",
        backends=("transformer-v2-dense",),
        print_result=False,
        structured_steps=1,
        structured_tasks=["Sum"],
        structured_minimal=True,
    )
    assert result["mismatches"] == 0 and result["structured_programs"] >= 32
    assert 0 < result["structured_cells"][1] < 2000
    assert result["structured_steps_in_programs_of_100_or_more"] > 0


def test_structured_lengths_bound_the_lengths_drawn_and_so_the_layouts():
    from algind_gym.cpu_v2.structured import structured_machines as machines

    rng = np.random.default_rng(5)
    task = get_task("Sum")
    ws = Workspace(reference_library_for("Sum"), task, 3, batch=1, seed=0)
    for _ in range(3):  # Sum and Max at length 3 share Sum's length-3 layout
        states = machines(rng, np.float32, batch=1, tasks=["Sum", "Max"], lengths=[3, 5])
        assert len(states) == 2 and {s.layout for s in states} == {ws.image.layout}
    drawn = {
        s.layout.n_cells
        for _ in range(12)
        for s in machines(rng, np.float32, batch=1, tasks=["Sum"], lengths=[1, 64])
    }
    assert len(drawn) == 2  # both lengths drawn, and nothing else


def test_structured_lengths_that_a_task_lacks_are_refused_with_its_lengths():
    import pytest

    with pytest.raises(ValueError, match=r"'Sum' has none of the lengths \[5\]; choose among"):
        structured_machines(np.random.default_rng(0), np.float32, tasks=["Sum"], lengths=[5])
