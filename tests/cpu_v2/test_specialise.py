"""Partial evaluation of the compiled weights per opcode (``cpu_v2/specialise.py``).

The specialised numba kernel (one program per opcode value, built from the compiled
matrices) must give the same bits as the general one, which runs every block; a weight that
only one opcode's program reads must still change the result of every executor alike.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from algind_gym.cpu.fuzz import fuzz_layout, random_machines
from algind_gym.cpu_v2 import kernel
from algind_gym.cpu_v2.circuit import compile_circuit
from algind_gym.cpu_v2.sparse import SparseBlock, SparseHead, SparseLayer, SparseUnit
from algind_gym.cpu_v2.specialise import dispatch_slice
from algind_gym.machine import interpreter
from algind_gym.machine.isa import BY_NAME, OPCODES, Fault, encode
from algind_gym.machine.state import MachineState
from tests.cpu.conftest import assert_same, bits
from tests.cpu_v2.test_compiler import _assert_mutation_seen_everywhere

LAYOUT = fuzz_layout()
_PROGRAMS: dict = {}


def _packed(dtype, specialised: bool):
    key = (np.dtype(dtype).name, specialised)
    if key not in _PROGRAMS:
        c = compile_circuit(LAYOUT, dtype)
        _PROGRAMS[key] = kernel.pack(kernel.sparse_program(c, dtype, specialised))
    return _PROGRAMS[key]


def _names(layers) -> set[str]:
    return {x.name for la in layers for x in (*la.read, *la.write, *la.cpu)}


def _work(layers) -> tuple[int, int]:
    banks = sum(b.bank for la in layers for b in la.cpu)
    units = sum(len(b.units) for la in layers for b in la.cpu if not b.bank)
    return banks, units


def test_each_opcode_gets_a_smaller_program_and_the_fetch_runs_first():
    c = compile_circuit(LAYOUT, np.float32)
    progs, disp = kernel.programs(c, np.float32)
    assert disp == c.cpu["op.v"] and len(progs) == max(op.code for op in OPCODES) + 3
    general, prefix = progs[-2], progs[-1]
    assert _names(prefix) == {"read_pc", "decode_pc", "fetch_op"}
    assert not _names(prefix) & _names(general)
    assert "decode" in _names(general)
    for op in OPCODES:
        prog = progs[op.code]
        decode = [b for la in prog for b in la.cpu if b.name == "decode"]
        assert all(not b.bank and all(not u.w1 for u in b.units) for b in decode), op.name
        assert _work(prog) < _work(general), op.name
    # Its constant control signals are written into the stream once, at the start.
    init = dict(progs[BY_NAME["ADD"].code][0].init)
    assert init[c.cpu["ctl.unit.add"]] == 1.0 and c.cpu["ctl.unit.sub"] not in init
    # ADD reads no stack, frame or indirect address: those banks and heads are gone.
    add = _names(progs[BY_NAME["ADD"].code])
    assert {"decode_a", "decode_b", "decode_c", "read_b", "read_c", "alu"} <= add
    assert not {"decode_top", "decode_fp_a", "decode_d", "read_d", "read_top"} & add

    # Write-back: ADD's HALT gate is the constant 0 (that write keeps the cell), HALT's
    # is not; a jump has no memory write at all (its address code is the constant 0).
    def writes(name):
        layer = next(la for la in progs[BY_NAME[name].code] if la.write)
        return {h.name: h.keeps_cell for h in layer.write}

    assert writes("ADD")["write_halt"] and not writes("HALT")["write_halt"]
    # ADD's SP write is (1 - g) * sp + g * sp' with sp' the SP read: proved to keep the cell
    # for both values of the gate g; PUSH changes SP, ENTER changes FP.
    assert writes("ADD")["write_sp"] and writes("ADD")["write_fp"]
    assert not writes("PUSH")["write_sp"] and not writes("ENTER")["write_fp"]
    assert not writes("ADD")["write_memory"] and "write_memory" not in writes("JMP")


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    garbage=st.sampled_from([0.0, 0.05, 0.3]),
    steps=st.integers(1, 40),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_specialised_kernel_matches_the_general_kernel(seed, garbage, steps, dtype):
    state = random_machines(48, seed, dtype, garbage=garbage)
    budget = float(Fault.BUDGET_EXHAUSTED)
    general, special = state.cells.copy(), state.cells.copy()
    kernel.run(general, steps, _packed(dtype, False), budget)
    kernel.run(special, steps, _packed(dtype, True), budget)
    assert np.array_equal(bits(general), bits(special))
    ref = interpreter.run(state.copy(), steps)
    assert np.array_equal(bits(ref.cells), bits(special))


def _machine(op: str, batch: int = 6) -> MachineState:
    main = LAYOUT.skill("main")
    r = [LAYOUT.register(f"r{i}") for i in range(3)]
    state = MachineState.zeros(LAYOUT, batch, np.float64)
    state.load_code(main.code_start, encode(op, r[0], r[1], r[2]) + encode("HALT"))
    state.set_register("pc", main.code_start)
    state.set_register("r1", np.linspace(-3, 4, batch))
    state.set_register("r2", np.linspace(2, -5, batch) + 0.25)
    return state


def test_a_weight_only_the_mul_program_reads_changes_every_executor_alike():
    circuit = compile_circuit(LAYOUT, np.float64)
    alu = next(m for m in circuit.layers[5].mlps if m.name == "alu")
    unit = next(u for u in alu.units if u.out == {"r_mul": 1.0})
    progs, _ = kernel.programs(circuit, np.float64)
    r_mul = circuit.cpu["r_mul"]
    readers = {
        op.name
        for op in OPCODES
        if any(r_mul in dict(u.w2) for la in progs[op.code] for b in la.cpu for u in b.units)
    }
    assert readers == {"MUL"}, readers
    unit.w2["y.v"] = 2.0  # one entry of W_1b: the product unit now computes x * 2y
    _assert_mutation_seen_everywhere(circuit, _machine("MUL"))
    # The other opcodes' programs do not read it: ADD still matches the reference.
    state = _machine("ADD")
    got = state.copy()
    model_cells = got.cells
    program = kernel.pack(kernel.sparse_program(circuit, np.float64))
    kernel.run(model_cells, 5, program, float(Fault.BUDGET_EXHAUSTED))
    assert_same(interpreter.run(state.copy(), 5), got, "ADD after the MUL mutation")


def _unit(reads: dict[int, float], writes: dict[int, float]) -> SparseUnit:
    return SparseUnit(0, 0, 0.0, 0.0, tuple(reads.items()), (), tuple(writes.items()))


def _read_head(name: str, query: int, dst: int) -> SparseHead:
    return SparseHead(name, "read", [(query, 0, 1.0)], [(0, dst)], np.zeros(2), np.zeros((2, 2)))


def test_a_fetch_that_cannot_run_first_is_refused():
    """A block that reads what the fetch's slice writes, in the same sublayer (before the
    write lands), would see another value if the slice ran first."""
    fine = SparseBlock("decode_pc", "cpu", [_unit({2: 1.0}, {3: 1.0})])
    early = SparseBlock("peek", "cpu", [_unit({3: 1.0}, {4: 1.0})])
    layers = [
        SparseLayer("L1", cpu=[fine]),
        SparseLayer("L2", read=[_read_head("fetch_op", 3, 7)]),
    ]
    assert dispatch_slice(layers, 7) == {id(fine), id(layers[1].read[0])}
    layers[0].cpu.append(early)
    with pytest.raises(ValueError, match="peek reads it earlier"):
        dispatch_slice(layers, 7)
    with pytest.raises(ValueError, match="written by one read head"):
        dispatch_slice(layers, 9)
