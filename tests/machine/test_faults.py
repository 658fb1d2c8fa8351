"""Every fault code: set on the machine that hit it, nothing else committed, others run on."""

from __future__ import annotations

import numpy as np
import pytest

from algind_gym.machine.interpreter import run, step
from algind_gym.machine.isa import FAULT_DOCS, WIDTH, Fault
from algind_gym.machine.program import build_machine
from tests.machine.conftest import run_source


def fault_of(source: str, setup=None, max_steps=1000, **layout) -> tuple[Fault, object]:
    state, program = build_machine(source, layout_kwargs=layout or None)
    if setup is not None:
        setup(state, program)
    run(state, max_steps=max_steps)
    return Fault(int(state.faults[0])), state


CASES = {
    "invalid opcode": (".word 99 0 0 0", Fault.INVALID_INSTRUCTION),
    "zero opcode": (".word 0 0 0 0", Fault.INVALID_INSTRUCTION),
    "fractional opcode": (".word 3.5 7 0 0", Fault.INVALID_INSTRUCTION),
    "negative enter count": (".word 28 -1 0 0", Fault.INVALID_INSTRUCTION),
    "direct address out of range": (".word 4 7 100000 0", Fault.ADDRESS),
    "negative address": (".word 4 -1 7 0", Fault.ADDRESS),
    "fractional address": (".word 4 7.5 8 0", Fault.ADDRESS),
    "indirect out of range": ("movi r0, 1e6\nload r1, r0, 0", Fault.ADDRESS),
    "indirect fractional": ("movi r0, 20.5\nload r1, r0, 0", Fault.ADDRESS),
    "store through bad pointer": ("movi r0, -3\nstore r0, 1, r1", Fault.ADDRESS),
    "frame out of range": ("ldf r0, -100000", Fault.ADDRESS),
    "jump out of the state": ("jmp 1000000", Fault.ADDRESS),
    "jump to fractional pc": (".word 20 300.5 0 0", Fault.ADDRESS),
    "callp bad header": ("movi r0, -50\ncallp r0", Fault.ADDRESS),
    "stack overflow push": ("loop: push r0\njmp loop", Fault.STACK_OVERFLOW),
    "stack overflow call": ("f: call f", Fault.STACK_OVERFLOW),
    "stack overflow enter": ("enter 1000", Fault.STACK_OVERFLOW),
    "stack underflow pop": ("pop r0\npop r0", Fault.STACK_UNDERFLOW),
    "stack underflow ret": ("ret\n", None),  # first RET returns to HALT: no fault
    "stack underflow leave": ("leave", Fault.STACK_UNDERFLOW),
    "division by zero": ("movi r0, 1\ndiv r1, r0, r2", Fault.DIVISION_BY_ZERO),
    "overflow to inf": ("movi r0, 3e38\nmul r0, r0, r0", Fault.NON_FINITE),
    "overflow add": ("movi r0, 3e38\nadd r0, r0, r0", Fault.NON_FINITE),
    "write pc": ("movi pc, 5", Fault.PROTECTED_WRITE),
    "write sp": ("mov sp, r0", Fault.PROTECTED_WRITE),
    "write fault register": ("movi fault, 0", Fault.PROTECTED_WRITE),
    "write own code": ("here: movi here, 1", Fault.PROTECTED_WRITE),
    "write boot block": ("movi 300, 1", None),  # replaced below with the real address
    "budget": ("loop: jmp loop", Fault.BUDGET_EXHAUSTED),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fault_codes(name):
    source, want = CASES[name]
    if name == "write boot block":
        state, _ = build_machine("halt")
        source, want = f"movi {state.layout.halt_address}, 1", Fault.PROTECTED_WRITE
    fault, state = fault_of(source + "\nhalt", max_steps=500)
    if want is None:
        assert fault == Fault.NONE and state.halted[0]
    else:
        assert fault == want, f"{name}: expected {want.name}, got {fault.name}"


def test_every_fault_code_is_documented_and_exercised():
    exercised = {want for _, want in CASES.values() if want is not None}
    exercised.add(Fault.PROTECTED_WRITE)
    assert exercised | {Fault.NONE} == set(Fault)
    assert set(FAULT_DOCS) == set(Fault)


def test_ret_on_empty_stack_underflows():
    fault, _ = fault_of("ret", setup=lambda s, p: s.set_register("sp", s.layout.stack_base))
    assert fault == Fault.STACK_UNDERFLOW


def test_faulting_instruction_commits_nothing():
    source = "movi r0, 5\nmovi r1, 0\ndiv r2, r0, r1\nhalt"
    state, _ = build_machine(source)
    for _ in range(2):
        step(state)
    before = state.cells.copy()
    step(state)
    changed = np.flatnonzero(before[0] != state.cells[0])
    assert changed.tolist() == [state.layout.register("fault")]
    assert state.faults[0] == Fault.DIVISION_BY_ZERO
    # frozen: further steps change nothing
    frozen = state.cells.copy()
    step(state)
    np.testing.assert_array_equal(frozen, state.cells)


def test_fault_is_per_machine():
    source = ".data d 1\nmov r1, d\nmovi r0, 6\ndiv r0, r0, r1\nhalt"

    def setup(st, data):
        st.cells[:, data["d"]] = [2, 0, 3]

    s, _ = run_source(source, batch=3, setup=setup)
    assert s.faults.tolist() == [0, Fault.DIVISION_BY_ZERO, 0]
    assert s.register("r0").tolist() == [3, 6, 2]
    assert s.halted.tolist() == [True, False, True]


def test_fault_priority_address_before_stack():
    # POP with a bad destination on an empty stack: ADDRESS wins (checked first)
    fault, _ = fault_of(
        ".word 27 -1 0 0", setup=lambda s, p: s.set_register("sp", s.layout.stack_base)
    )
    assert fault == Fault.ADDRESS


def test_fault_priority_division_before_protected():
    fault, _ = fault_of("div pc, r0, r1")
    assert fault == Fault.DIVISION_BY_ZERO


def test_pc_near_end_of_state_faults():
    state, _ = build_machine("halt")
    state.set_register("pc", state.layout.n_cells - WIDTH + 1)
    run(state)
    assert state.faults[0] == Fault.ADDRESS


def test_state_never_holds_non_finite_values():
    source = "movi r0, 1e300\nmul r0, r0, r0\nhalt"
    state, _ = build_machine(source, dtype=np.float64)
    run(state)
    assert state.faults[0] == Fault.NON_FINITE
    assert np.isfinite(state.cells).all()
    # the immediate itself does not fit a float32 machine: a clear error, not an inf cell
    with pytest.raises(ValueError, match="finite in float32"):
        build_machine(source, dtype=np.float32)
