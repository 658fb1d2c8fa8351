"""MachineImage.execute: bindings, masks, faults that never raise."""

from __future__ import annotations

import numpy as np
import pytest

from algind_gym.machine.isa import Fault
from algind_gym.skills import BINDING_FAULT, Buffer, build_image, builtin_library


@pytest.fixture(scope="module")
def image():
    bufs = [
        Buffer("x", "vector", 3),
        Buffer("M", "matrix", 2, 3),
        Buffer("s", "scalar", 1),
        Buffer("out", "vector", 3),
    ]
    return build_image(builtin_library(), bufs)


def test_binding_mask_and_types(image):
    mask = image.binding_mask("zipmap")
    assert mask.shape == (4, image.n_pointers)
    names = [p.name for p in image.pointers]
    assert mask[1, names.index("M")]  # a matrix binds to a vector slot (flattened)
    assert not mask[1, names.index("s")]
    assert mask[0, names.index("&s_add@1")] and not mask[0, names.index("&s_neg@1")]
    assert not image.can_bind(names.index("x"), "transpose", 0)


@pytest.mark.parametrize(
    "skill, bindings",
    [
        ("nope", [0]),
        ("copy", [0]),
        ("copy", [0, 99]),
        ("copy", [2, 3]),
        ("copy", [0, "out"]),
        ("copy", [0.5, 3]),
    ],
)
def test_bad_actions_fault_and_never_raise(image, skill, bindings):
    state = image.new_state(2)
    res = image.execute(state, skill, bindings)
    assert res.error and (res.faults == BINDING_FAULT).all()
    assert (state.faults == BINDING_FAULT).all()


def test_faulted_machines_stay_frozen(image):
    state = image.new_state(2)
    image.write(state, "x", [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    state.cells[1, image.layout.register("fault")] = Fault.DIVISION_BY_ZERO
    frozen = state.cells[1].copy()
    res = image.execute(state, "copy", [image.pointer_index("x"), image.pointer_index("out")])
    assert res.faults.tolist() == [0, Fault.DIVISION_BY_ZERO]
    np.testing.assert_array_equal(state.cells[1], frozen)
    np.testing.assert_array_equal(image.read(state, "out")[0], [1.0, 2.0, 3.0])


def test_budget_exhaustion_is_a_fault(image):
    state = image.new_state(1)
    res = image.execute(
        state, "copy", [image.pointer_index("x"), image.pointer_index("out")], max_steps=3
    )
    assert res.faults.tolist() == [Fault.BUDGET_EXHAUSTED]
