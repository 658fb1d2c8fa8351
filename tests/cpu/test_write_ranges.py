"""Write ranges (``run(..., written=...)``, :mod:`algind_gym.cpu.backend`): the numba kernel
reports, per machine, two ranges of cells (below and from the memory block) that cover every
cell its run changed (outside the six protected registers), exactly on known programs; other
backends answer whole rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from algind_gym.cpu.backend import (
    BACKENDS,
    empty_write_ranges,
    make_backend,
    run_recording_writes,
)
from algind_gym.cpu.fuzz import fuzz_layout, random_machines
from algind_gym.cpu.model import TransformerCPU, write_split
from algind_gym.machine import interpreter
from algind_gym.machine.isa import Fault, encode
from algind_gym.machine.layout import PROTECTED_REGISTERS, Layout, SkillBlockSpec
from algind_gym.machine.state import MachineState
from tests.cpu.conftest import bits

LAYOUT = fuzz_layout()
NONE = [np.iinfo(np.int64).max, -1]  # an empty range


def _whole(layout: Layout) -> list[int]:
    split = write_split(layout)
    return [0, split - 1, split, layout.n_cells - 1]


def _outside_registers(layout: Layout) -> np.ndarray:
    keep = np.ones(layout.n_cells, dtype=bool)
    keep[[layout.register(r) for r in PROTECTED_REGISTERS]] = False
    return keep


def _assert_covers(before: np.ndarray, after: np.ndarray, written: np.ndarray, layout) -> None:
    """Every cell that differs (bitwise) outside the protected registers is in its range."""
    changed = (bits(before) != bits(after)) & _outside_registers(layout)[None]
    split = write_split(layout)
    for m, c in np.argwhere(changed):
        lo, hi = written[m, :2] if c < split else written[m, 2:]
        assert lo <= c <= hi, f"machine {m}: cell {layout.describe(int(c))} changed: {written[m]}"


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from([np.float32, np.float64]),
    garbage=st.sampled_from([0.0, 0.03, 0.3]),
    splits=st.lists(st.integers(0, 40), min_size=1, max_size=3),
)
def test_numba_ranges_cover_every_changed_cell(seed, dtype, garbage, splits):
    """Random programs (garbage operands and opcodes: faults of every kind), run in one or
    several calls: the accumulated range covers every cell that differs from the start."""
    _run_and_check(seed, dtype, garbage, splits)


def test_the_fuzz_covers_faults_and_both_ranges():
    """The states of the test above include faulting machines (several kinds), and writes
    below and above the split."""
    state = _run_and_check(7, np.float32, 0.3, [40])
    assert len(set(state.faults.tolist()) - {Fault.NONE, Fault.BUDGET_EXHAUSTED}) >= 3
    written = empty_write_ranges(64)
    make_backend("transformer").run(random_machines(64, 7, np.float32), 40, written=written)
    assert (written[:, 0] <= written[:, 1]).any() and (written[:, 2] <= written[:, 3]).any()


def _resume(state: MachineState) -> None:
    """Clear ``BUDGET_EXHAUSTED`` so that the next call continues those machines."""
    f = state.register("fault")
    state.set_register("fault", np.where(f == Fault.BUDGET_EXHAUSTED, 0.0, f))


def _run_and_check(seed, dtype, garbage, splits) -> MachineState:
    state = random_machines(64, seed, dtype, garbage=garbage)
    ref = state.copy()
    before = state.cells.copy()
    written = empty_write_ranges(state.batch)
    backend = make_backend("transformer")
    for n in splits:
        backend.run(state, n, written=written)
        _resume(state)
    _assert_covers(before, state.cells, written, LAYOUT)
    # the cells the interpreter computes are the same: recording changes nothing
    for n in splits:
        interpreter.run(ref, n)
        _resume(ref)
    assert np.array_equal(bits(ref.cells), bits(state.cells))
    return state


SMALL = Layout(
    n_general=2,
    stack_size=4,
    n_pointers=1,
    memory_size=8,
    skill_blocks=(SkillBlockSpec("main", 0, 32),),
)


def _program_state(code: list[float], batch: int = 1) -> tuple[MachineState, Layout]:
    lay = SMALL
    s = MachineState.zeros(lay, batch)
    s.load_code(lay.skill("main").code_start, code)
    s.set_register("pc", lay.skill("main").code_start)
    s.set_register("sp", lay.stack_base)
    s.set_register("fp", lay.stack_base)
    return s, lay


def test_ranges_are_exact_on_a_known_program():
    """Two MOVIs to memory, then a PUSH and a MOV to a general register: each range is
    [first written cell, last written cell] of its side of the split; the second call
    widens the first range (accumulation); a frozen machine adds nothing."""
    mem = SMALL.block("memory").start
    code = encode("MOVI", mem + 5, 2.5) + encode("MOVI", mem + 2, -1.0)
    code += encode("PUSH", mem + 5) + encode("MOV", SMALL.register("r1"), mem + 2)
    code += encode("HALT")
    s, lay = _program_state(code, batch=2)
    s.set_register("halt", np.array([0.0, 1.0]))  # machine 1 is frozen
    written = empty_write_ranges(2)
    make_backend("transformer").run(s, 2, written=written)
    assert written.tolist() == [[*NONE, mem + 2, mem + 5], NONE * 2]
    _resume(s)
    make_backend("transformer").run(s, 10, written=written)
    assert s.cells[0, lay.stack_base] == 2.5 and s.cells[0, lay.register("r1")] == -1.0
    r1 = lay.register("r1")
    assert written.tolist() == [[r1, lay.stack_base, mem + 2, mem + 5], NONE * 2]


def test_a_faulting_write_and_the_registers_are_not_recorded():
    pc = SMALL.register("pc")
    s, _ = _program_state(encode("MOVI", pc, 3.0) + encode("HALT"))
    written = empty_write_ranges(1)
    make_backend("transformer").run(s, 5, written=written)
    assert s.faults[0] == Fault.PROTECTED_WRITE
    assert written.tolist() == [NONE * 2]


def test_budget_exhausted_only_touches_fault():
    s, _ = _program_state(
        encode("JMP", SMALL.skill("main").code_start)
    )  # loops forever, writes nothing
    written = empty_write_ranges(1)
    make_backend("transformer").run(s, 7, written=written)
    assert s.faults[0] == Fault.BUDGET_EXHAUSTED
    assert written.tolist() == [NONE * 2]


@pytest.mark.parametrize("name", [b for b in BACKENDS if b != "transformer"])
def test_backends_without_tracking_answer_whole_rows(name):
    state = random_machines(4, 3, np.float32)
    before = state.cells.copy()
    written = empty_write_ranges(4)
    make_backend(name).run(state, 20, written=written)
    assert written.tolist() == [_whole(LAYOUT)] * 4
    _assert_covers(before, state.cells, written, LAYOUT)


def test_torch_fallback_of_the_model_answers_whole_rows():
    cpu = TransformerCPU(LAYOUT, torch.float32, kernel="torch")
    cells = torch.from_numpy(random_machines(3, 1, np.float32).cells.copy())
    written = empty_write_ranges(3)
    cpu.run(cells, 4, written)
    assert written.tolist() == [_whole(LAYOUT)] * 3


def test_run_recording_writes_on_a_backend_without_the_argument():
    class Plain:  # a user backend whose run has no ``written``
        def run(self, state, max_steps=10_000):
            return interpreter.run(state, max_steps)

    state = random_machines(2, 4, np.float32)
    written = empty_write_ranges(2)
    run_recording_writes(Plain(), state, 10, written)
    assert written.tolist() == [_whole(LAYOUT)] * 2
    exact = empty_write_ranges(2)
    state = random_machines(2, 4, np.float32)
    run_recording_writes(make_backend("transformer"), state, 10, exact)
    assert (exact[:, 3] < LAYOUT.n_cells - 1).all()  # the kernel's own, tighter answer


@pytest.mark.parametrize(
    "bad",
    [np.zeros((3, 4), np.int64), np.zeros((2, 4), np.int32), np.zeros((2, 2), np.int64), [0, 1]],
)
def test_bad_written_argument_is_refused(bad):
    state = random_machines(2, 5, np.float32)
    with pytest.raises(ValueError, match=r"written must be .* shape \(2, 4\)"):
        make_backend("transformer").run(state, 1, written=bad)
    with pytest.raises(ValueError, match="empty_write_ranges"):
        make_backend("reference").run(state, 1, written=bad)
    with pytest.raises(ValueError, match="batch"):
        empty_write_ranges(-1)
