"""The numba kernel's fault ranking and register handling at the edges of every condition.

The kernel (:mod:`algind_gym.cpu.kernel`) keeps the registers in locals between passes,
collects the failing fault conditions as a bit set, computes the count, stack and write
conditions only for rows where one of them is live, and skips the last select layer for
rows whose jump condition is "never" and whose next SP and FP are kept. These shortcuts
must give the same rank, so the same fault, as the torch kernel's full computation in
every case: here each machine runs a single instruction chosen by hypothesis, every
opcode row (and invalid, fractional and out-of-range opcodes) with fields, SP, FP and PC
at the boundaries of the address, count and stack checks (negative, fractional, -0.0,
the stack base and end, the last cell and one past it, the registers, huge values), then
a few more passes, on the numba kernel, the torch kernel and the reference interpreter,
compared bit for bit in float32 and float64.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from algind_gym.cpu.fuzz import fuzz_layout, random_machines
from algind_gym.cpu.model import TransformerCPU
from algind_gym.machine import interpreter
from algind_gym.machine.isa import MAX_OPCODE, WIDTH
from tests.cpu.conftest import bits

LAYOUT = fuzz_layout()
N = float(LAYOUT.n_cells)
BASE, END = float(LAYOUT.stack_base), float(LAYOUT.stack_end)
CODE = LAYOUT.skill("main").code_start
REGISTERS = [float(LAYOUT.register(r)) for r in LAYOUT.register_names]

edge = st.one_of(
    st.sampled_from(
        [
            *(-1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 2.0, 3.0e38, -3.0e38, 1e-45),
            *(BASE - 1, BASE, BASE + 0.5, BASE + 1, END - 1, END, END + 1),
            *(N - WIDTH - 1, N - WIDTH, N - WIDTH + 1, N - 1, N - 0.5, N, N + 1),
            *REGISTERS,
        ]
    ),
    st.integers(-3, int(N) + 3).map(float),
)
stack_edge = st.sampled_from(
    [BASE - 1, BASE, BASE + 0.5, BASE + 1, BASE + 2, END - 2, END - 1, END, END + 1, -0.0, N]
)
opcode = st.one_of(
    st.integers(0, MAX_OPCODE).map(float),
    st.sampled_from([-1.0, -0.0, 0.5, 3.5, MAX_OPCODE + 1.0, 3.0e38]),
)
instruction = st.tuples(opcode, edge, edge, edge, stack_edge, stack_edge, st.integers(0, 9))

_MODELS = {
    np.dtype(dt).name: (
        TransformerCPU(LAYOUT, dt, kernel="numba"),
        TransformerCPU(LAYOUT, dt, kernel="torch"),
    )
    for dt in (np.float32, np.float64)
}


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from([np.float32, np.float64]),
    program=st.lists(instruction, min_size=1, max_size=24),
    passes=st.integers(1, 4),
)
def test_single_instructions_at_fault_edges(seed, dtype, program, passes):
    fast, slow = _MODELS[np.dtype(dtype).name]
    state = _place(program, seed, dtype)
    c = state.cells
    ref = state.copy()
    a_ = torch.from_numpy(c.copy())
    b_ = a_.clone()
    fast.run(a_, passes)  # the numba kernel's multi-pass loop (registers in locals)
    for _ in range(passes):
        slow(b_, inplace=True)
        interpreter.step(ref)
    assert np.array_equal(bits(a_.numpy()), bits(b_.numpy())), "numba vs torch"
    assert np.array_equal(bits(a_.numpy()), bits(ref.cells)), "numba vs reference"
    # one pass at a time through the kernel agrees with its multi-pass run
    one = torch.from_numpy(c.copy())
    for _ in range(passes):
        fast(one, inplace=True)
    assert np.array_equal(bits(one.numpy()), bits(a_.numpy())), "one pass vs run"


def _place(program, seed: int, dtype) -> np.ndarray:
    """Machines of :func:`random_machines`, each about to run one instruction of
    ``program`` with the SP and FP given there."""
    state = random_machines(len(program), seed, dtype)
    c = state.cells
    for m, (op, a, b, cf, sp, fp, where) in enumerate(program):
        pc = CODE + WIDTH * where
        c[m, pc : pc + WIDTH] = (op, a, b, cf)
        for reg, value in (("pc", pc), ("sp", sp), ("fp", fp), ("halt", 0.0), ("fault", 0.0)):
            c[m, LAYOUT.register(reg)] = value
    c[~np.isfinite(c)] = 0.0  # huge values stay; the state itself holds no inf or NaN
    return state


def test_the_edges_reach_every_fault():
    """The strategy above is not vacuous: its instructions raise every fault the kernel
    ranks (INVALID_INSTRUCTION ... PROTECTED_WRITE) and also run without one."""
    rng = np.random.default_rng(0)
    program = []
    ops = [*range(MAX_OPCODE + 1), -1.0, 0.5, MAX_OPCODE + 1.0]
    values = [-1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0e38, BASE, END, N - 1, N, *REGISTERS]
    for _ in range(4000):
        pick = rng.choice(values, 3)
        sp, fp = rng.choice([BASE, BASE + 1, END - 1, END, BASE + 0.5], 2)
        program.append((float(rng.choice(ops)), *pick, sp, fp, int(rng.integers(0, 10))))
    state = _place(program, 3, np.float64)
    interpreter.step(state)
    seen = {int(f) for f in np.trunc(state.cells[:, LAYOUT.register("fault")])}
    assert seen >= set(range(8)), sorted(seen)


def test_plain_row_candidates_follow_the_control_layout():
    """The kernel's positions of "never", SP and FP in its last select layer are the ones
    :mod:`algind_gym.cpu.control` assigns (ALU units, then jump conditions, then SP/FP)."""
    from algind_gym.cpu import kernel
    from algind_gym.cpu.compiler import ALU_UNITS, PC_CONDS
    from algind_gym.cpu.control import REGISTER_CANDIDATES

    units, conds = len(ALU_UNITS), len(PC_CONDS)
    assert units + PC_CONDS.index("never") == kernel.C_NEVER
    assert units + conds + REGISTER_CANDIDATES.index("sp") == kernel.C_SP
    assert units + conds + REGISTER_CANDIDATES.index("fp") == kernel.C_FP
