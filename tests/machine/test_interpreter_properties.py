"""Properties of the reference interpreter over random (mostly invalid) programs.

Random code is the harshest input a machine gets: the interpreter must never raise,
never write a non-finite value, freeze machines that fault or halt, and treat the
machines of a batch independently.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from algind_gym.machine.interpreter import run, step
from algind_gym.machine.isa import OPCODES, WIDTH, Fault
from algind_gym.machine.layout import Layout, SkillBlockSpec
from algind_gym.machine.state import MachineState

LAYOUT = Layout(
    n_general=4,
    stack_size=6,
    n_pointers=2,
    memory_size=12,
    skill_blocks=(SkillBlockSpec("main", 1, 12 * WIDTH),),
)
SB = LAYOUT.skill("main")
N = LAYOUT.n_cells

small = st.one_of(
    st.integers(-3, N + 3).map(float),  # mostly addresses, some out of range
    st.sampled_from([0.0, 1.0, -1.0, 0.5, 1e30, -1e30, 3e38]),
    st.floats(-1e6, 1e6, allow_nan=False),
)


@st.composite
def machines(draw, batch=3):
    cells = np.zeros((batch, N), dtype=draw(st.sampled_from([np.float32, np.float64])))
    state = MachineState.zeros(LAYOUT, batch=batch, dtype=cells.dtype)
    for m in range(batch):
        code = []
        for _ in range(12):
            op = draw(st.one_of(st.sampled_from(OPCODES).map(lambda o: float(o.code)), small))
            code += [op, draw(small), draw(small), draw(small)]
        state.cells[m, SB.code_start : SB.end] = np.asarray(code, dtype=cells.dtype)
        for r in ("r0", "r1", "r2", "r3", "mode"):
            state.cells[m, LAYOUT.register(r)] = draw(small)
        mem = LAYOUT.block("memory")
        state.cells[m, mem.start : mem.end] = draw(
            st.lists(small, min_size=mem.size, max_size=mem.size)
        )
        state.cells[m, LAYOUT.register("sp")] = LAYOUT.stack_base + draw(st.integers(0, 6))
        state.cells[m, LAYOUT.register("fp")] = LAYOUT.stack_base + draw(st.integers(0, 6))
        state.cells[m, LAYOUT.register("pc")] = SB.code_start + WIDTH * draw(st.integers(0, 11))
    assert np.isfinite(state.cells).all()
    return state


@settings(max_examples=150, deadline=None)
@given(machines())
def test_random_programs_never_raise_and_stay_finite(state):
    run(state, max_steps=60)
    assert np.isfinite(state.cells).all()
    assert set(state.faults.tolist()) <= {int(f) for f in Fault}
    assert (state.halted | (state.faults != 0)).all()  # budget faults the rest


@settings(max_examples=100, deadline=None)
@given(machines())
def test_batch_equals_machines_run_alone(state):
    alone = [MachineState(LAYOUT, state.cells[i : i + 1].copy()) for i in range(state.batch)]
    for _ in range(40):
        step(state)
        for a in alone:
            step(a)
    for i, a in enumerate(alone):
        np.testing.assert_array_equal(state.cells[i], a.cells[0])


@settings(max_examples=100, deadline=None)
@given(machines())
def test_stopped_machines_are_frozen(state):
    for _ in range(30):
        before = state.cells.copy()
        stopped = ~state.running
        step(state)
        np.testing.assert_array_equal(state.cells[stopped], before[stopped])
        moved = state.running & ~stopped
        # a running machine changes at most its 6 special registers and one memory cell
        for m in np.flatnonzero(moved):
            changed = np.flatnonzero(state.cells[m] != before[m])
            others = [c for c in changed if c >= 7 or c == LAYOUT.register("mode")]
            assert len(others) <= 1


@settings(max_examples=100, deadline=None)
@given(machines())
def test_special_registers_only_change_by_instruction_semantics(state):
    def sp_ok(s):
        return (s.register("sp") >= LAYOUT.stack_base) & (s.register("sp") <= LAYOUT.stack_end)

    assert sp_ok(state).all()
    for _ in range(30):
        icount = state.register("icount").copy()
        running = state.running
        step(state)
        assert sp_ok(state).all()
        executed = running & (state.faults == 0)
        np.testing.assert_array_equal(state.register("icount")[executed], icount[executed] + 1)
        np.testing.assert_array_equal(state.register("icount")[~executed], icount[~executed])
