"""The Transformer CPU (fused on both kernels, dense) equals the reference interpreter, bit for bit.

Hypothesis builds one-instruction states for every opcode with random, often hostile
contents: garbage PCs and opcodes, negative/fractional/out-of-range addresses, full and
empty stacks, zero divisors, signed zeros and values that overflow.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from algind_gym.cpu.fuzz import fuzz_layout, random_machines
from algind_gym.machine.isa import OPCODES, WIDTH, Fault, encode
from algind_gym.machine.state import MachineState
from tests.cpu.conftest import assert_same

TRANSFORMERS = ("transformer", "transformer-torch", "transformer-dense")
LAYOUT = fuzz_layout()
N = LAYOUT.n_cells
MAIN = LAYOUT.skill("main")
HYPO = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

addresses = st.one_of(
    st.integers(0, N - 1),
    st.integers(LAYOUT.register("r0"), LAYOUT.block("memory").end - 1),
    st.sampled_from([-1, -3, N, N + 5, 0.5, 7.25, 1e9, -1e9]),
)
fields = st.one_of(addresses, st.integers(-4, 4), st.floats(-1e3, 1e3, allow_nan=False, width=32))
values = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 3.0e38, -3.0e38, 1e-45, 2.0]),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.integers(-10, N + 10),
)
stack_pointers = st.one_of(
    st.integers(LAYOUT.stack_base - 2, LAYOUT.stack_end + 2),
    st.sampled_from([-0.5, 0.5, LAYOUT.stack_base + 0.5, 1e6, -1e6, N + 3.0]),
)


def one_instruction_state(data, op, dtype) -> MachineState:
    """A fuzz machine whose PC points at ``op`` with drawn fields, registers and operands."""
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    state = random_machines(1, seed, dtype, garbage=0.0)
    a, b, c = (data.draw(fields, label=f) for f in "abc")
    pc = data.draw(st.sampled_from([MAIN.code_start] * 8 + [MAIN.code_start + 1.0, -4.0, N - 2.0]))
    state.cells[0, MAIN.code_start : MAIN.code_start + WIDTH] = [op, a, b, c]
    regs = {
        "pc": pc,
        "sp": data.draw(stack_pointers, label="sp"),
        "fp": data.draw(stack_pointers, label="fp"),
        "mode": data.draw(st.sampled_from([0, 1, 0.5, 1e6]), label="mode"),
    }
    for name, value in regs.items():
        state.set_register(name, value)
    # Operand values where the fields point (when they point inside the state).
    for field in (a, b, c):
        if float(field).is_integer() and LAYOUT.register("r0") <= field < MAIN.base:
            state.cells[0, int(field)] = data.draw(values, label=f"cell[{field}]")
    state.cells[~np.isfinite(state.cells)] = 0
    return state


def check_all_backends(backends, state: MachineState, steps: int = 3) -> None:
    ref = state.copy()
    others = {name: state.copy() for name in TRANSFORMERS}
    for i in range(steps):
        backends["reference"].step(ref)
        for name, s in others.items():
            backends[name].step(s)
            assert_same(ref, s, f"{name} after step {i + 1}")


@pytest.mark.parametrize("op", [op.name for op in OPCODES])
@HYPO
@given(data=st.data())
def test_each_opcode_matches_reference(backends, dtype, op, data):
    code = next(o.code for o in OPCODES if o.name == op)
    check_all_backends(backends, one_instruction_state(data, code, dtype))


@HYPO
@given(data=st.data(), op=st.sampled_from([0.0, 31.0, 2.5, -1.0, 1e9, 3.0e38]))
def test_garbage_opcodes_fault_like_reference(backends, dtype, data, op):
    state = one_instruction_state(data, op, dtype)
    state.set_register("pc", MAIN.code_start)
    check_all_backends(backends, state, steps=1)
    backends["transformer"].step(state)
    assert state.faults[0] == Fault.INVALID_INSTRUCTION


# One hand-made machine per fault code (and halting), each checked on all backends.
R0, R1, R2 = (LAYOUT.register(f"r{i}") for i in range(3))
MEM = LAYOUT.block("memory").start
CASES = {
    "halt": (encode("HALT"), {}, Fault.NONE),
    "pc_fractional": (encode("NOP"), {"pc": MAIN.code_start + 0.5}, Fault.ADDRESS),
    "pc_negative": (encode("NOP"), {"pc": -4}, Fault.ADDRESS),
    "invalid_opcode": ([99.0, 0, 0, 0], {}, Fault.INVALID_INSTRUCTION),
    "bad_count": (encode("ENTER", -1), {}, Fault.INVALID_INSTRUCTION),
    "bad_direct": (encode("MOV", R0, N), {}, Fault.ADDRESS),
    "bad_indirect": (encode("LOAD", R0, R1, 0), {R1: 1e6}, Fault.ADDRESS),
    "bad_frame": (encode("LDF", R0, -100), {}, Fault.ADDRESS),
    "overflow_push": (encode("PUSH", R0), {"sp": LAYOUT.stack_end}, Fault.STACK_OVERFLOW),
    "overflow_enter": (encode("ENTER", 3), {"sp": LAYOUT.stack_end - 2}, Fault.STACK_OVERFLOW),
    "underflow_pop": (encode("POP", R0), {"sp": LAYOUT.stack_base}, Fault.STACK_UNDERFLOW),
    "underflow_leave": (encode("LEAVE"), {"fp": LAYOUT.stack_base}, Fault.STACK_UNDERFLOW),
    "sp_beyond_state": (encode("RET"), {"sp": 1e6}, Fault.ADDRESS),
    "division_by_zero": (encode("DIV", R0, R1, R2), {R2: 0.0}, Fault.DIVISION_BY_ZERO),
    "overflow_value": (encode("MUL", R0, R1, R1), {R1: 3e38}, Fault.NON_FINITE),
    "protected_write": (encode("MOVI", LAYOUT.register("pc"), 5), {}, Fault.PROTECTED_WRITE),
    "write_code": (encode("MOV", MAIN.code_start, R0), {}, Fault.PROTECTED_WRITE),
    "address_before_stack": (encode("PUSH", -1), {"sp": LAYOUT.stack_end}, Fault.ADDRESS),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_fault_and_halting(backends, dtype, case):
    code, setup, expected = CASES[case]
    huge = 3e38 if dtype == np.float32 else 1.7e308
    state = MachineState.zeros(LAYOUT, 2, dtype)
    state.load_code(MAIN.code_start, code)
    state.set_register("pc", MAIN.code_start)
    for key, value in setup.items():
        value = huge if value == 3e38 else value
        if isinstance(key, str):
            state.set_register(key, value)
        else:
            state.cells[:, key] = value
    state.set_register("halt", [0, 1])  # machine 1 is halted: it must stay frozen
    before = state.cells[1].copy()
    check_all_backends(backends, state, steps=2)
    backends["transformer"].step(state)
    assert state.faults[0] == expected
    assert state.halted[0] == (case == "halt")
    assert np.array_equal(state.cells[1], before)


def test_faulted_machine_is_frozen(backends, dtype):
    state = random_machines(64, 5, dtype)
    state.set_register("fault", np.where(np.arange(64) % 2, 3.0, 0.0))
    frozen = state.cells[1::2].copy()
    for _ in range(5):
        backends["transformer"].step(state)
    assert np.array_equal(state.cells[1::2], frozen)


@pytest.mark.parametrize("seed", range(3))
def test_random_programs_match_reference_every_step(backends, dtype, seed):
    state = random_machines(256, seed, dtype)
    check_all_backends(backends, state, steps=40)
