"""The v2 compiler builds every block from the micro-op table; the executors run those weights.

The mutation tests are the proof that the fast paths execute the compiled matrices and not
a second datapath: one changed weight entry (or one changed micro-op) changes the dense,
the torch-fused and the numba results identically, while the reference interpreter, which
does not read them, disagrees.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algind_gym.cpu.fuzz import fuzz_layout, random_machines
from algind_gym.cpu_v2 import compiler
from algind_gym.cpu_v2.blocks import ACTIVATIONS, OPS
from algind_gym.cpu_v2.circuit import compile_circuit
from algind_gym.cpu_v2.compiler import (
    GROUPS,
    MICROCODE,
    MicroOp,
    address_code,
    decode_columns,
    decode_table,
    n_address_bits,
)
from algind_gym.cpu_v2.model import TransformerCPU
from algind_gym.machine import interpreter
from algind_gym.machine.isa import MAX_OPCODE, OPCODES, Operand, encode
from algind_gym.machine.layout import Layout
from algind_gym.machine.state import MachineState
from tests.cpu.conftest import bits

LAYOUT = fuzz_layout()


def test_microcode_covers_the_isa_exactly():
    assert set(MICROCODE) == {op.name for op in OPCODES}


def test_decode_table_rows_follow_the_isa_table():
    table, cols = decode_table(), decode_columns()
    assert table.shape == (MAX_OPCODE + 1, len(cols))
    assert not table[0].any(), "opcode 0 must decode as invalid"
    for op in OPCODES:
        row = table[op.code]
        assert row[cols.index["valid"]] == 1
        for field, kind in zip("abc", (*op.operands, None, None, None), strict=False):
            assert row[cols.index[f"check_{field}"]] == float(bool(kind and kind.is_address))
        assert row[cols.index["count_a"]] == float(Operand.CNT in op.operands)
        for group, _ in GROUPS:
            lo, hi = cols.groups[group]
            assert row[lo:hi].sum() == 1, f"{op.name}: group {group} is not one-hot"


def test_address_codes_are_unique():
    n = 300
    code = address_code(n)
    k = n_address_bits(n)
    scores = code @ code.T
    assert (np.diag(scores) == k).all() and (scores - np.eye(n) * 2 * k < k - 0.5).all()


@pytest.mark.parametrize(
    "entry, message",
    [
        (MicroOp(unit="sqrt", write="a"), "field 'unit' = 'sqrt'"),
        (MicroOp(write="c"), "field 'write' = 'c'"),
        (MicroOp(frame=("fp_c",)), "field 'frame' = 'fp_c'"),
    ],
)
def test_inexpressible_microcode_fails_at_compile_time(monkeypatch, entry, message):
    monkeypatch.setitem(compiler.MICROCODE, "ADD", entry)
    with pytest.raises(ValueError, match=rf"MICROCODE\['ADD'\]: {message}"):
        compile_circuit(LAYOUT)


def test_circuit_is_a_stack_of_the_three_block_kinds():
    c = compile_circuit(LAYOUT)
    c.check()
    assert len(c.layers) == 11 and c.n_blocks == 17
    heads = [h for la in c.layers for h in la.heads]
    assert {h.kind for h in heads} == {"read", "write"} and len(heads) == 26
    units = [u for la in c.layers for m in la.mlps for u in m.units]
    assert {u.act for u in units} <= set(ACTIVATIONS) and {u.op for u in units} <= set(OPS)
    mats = c.matrices()
    assert {"L1.read_pc.W_Q", "L2.decode.W_2", "L6.alu.W_1b", "L11.write_memory.W_K"} <= set(mats)
    # The decoder's second matrix holds the decode table: +row at [op >= m], -row at [op > m].
    w2 = mats["L2.decode.W_2"]
    assert w2.shape[1] == 2 * len(OPCODES) and np.count_nonzero(w2) == 2 * np.count_nonzero(
        decode_table()
    )
    text = c.describe()
    assert "layers 11 (blocks: 17 = 6 attention + 11 MLP), heads 26" in text
    assert f"d_model {c.d_model}" in text and "L2.decode.W_2" in text


def test_block_count_does_not_depend_on_memory_size():
    small = compile_circuit(Layout(n_general=1, stack_size=1, n_pointers=0, memory_size=1))
    big = compile_circuit(Layout(memory_size=1024))
    assert small.n_blocks == big.n_blocks == 17
    assert TransformerCPU(Layout(memory_size=64)).n_parameters > 0


def _run_all(circuit, state: MachineState, steps: int) -> dict[str, np.ndarray]:
    """Final cells of the dense (numpy and torch), torch-fused and numba executors."""
    out = {}
    for name, path, kernel in (
        ("dense", "dense", "torch"),
        ("fused", "fused", "torch"),
        ("numba", "fused", "numba"),
    ):
        model = TransformerCPU(state.layout, state.dtype, path=path, kernel=kernel, circuit=circuit)
        cells = torch.from_numpy(state.cells.copy())
        model.run(cells, steps)
        out[name] = cells.numpy()
    torch_dense = TransformerCPU(state.layout, state.dtype, path="dense", circuit=circuit).blocks
    cells = torch.from_numpy(state.cells.copy())
    for _ in range(steps):  # the dense pass on torch tensors (``run`` takes numpy's)
        cells = torch_dense.dense(cells)
    out["dense-torch"] = cells.numpy()
    return out


def _add_program(batch: int = 8) -> MachineState:
    main = LAYOUT.skill("main")
    r = [LAYOUT.register(f"r{i}") for i in range(3)]
    state = MachineState.zeros(LAYOUT, batch, np.float64)
    state.load_code(main.code_start, encode("ADD", r[0], r[1], r[2]) + encode("HALT"))
    state.set_register("pc", main.code_start)
    state.set_register("r1", np.linspace(-3, 4, batch))
    state.set_register("r2", np.linspace(2, -5, batch) + 0.25)
    return state


def _assert_mutation_seen_everywhere(circuit, state: MachineState) -> None:
    ref = interpreter.run(state.copy(), 5)
    got = _run_all(circuit, state, 5)
    assert np.array_equal(bits(got["dense"]), bits(got["fused"]))
    assert np.array_equal(bits(got["dense"]), bits(got["numba"]))
    assert np.array_equal(bits(got["dense"]), bits(got["dense-torch"]))
    assert not np.array_equal(bits(got["dense"]), bits(ref.cells)), "the mutation changed nothing"


def test_one_weight_entry_changes_every_executor_alike():
    state = _add_program()
    baseline = _run_all(compile_circuit(LAYOUT, np.float64), state, 5)
    ref = interpreter.run(state.copy(), 5)
    for cells in baseline.values():
        assert np.array_equal(bits(cells), bits(ref.cells))
    circuit = compile_circuit(LAYOUT, np.float64)
    alu = next(m for m in circuit.layers[5].mlps if m.name == "alu")
    unit = next(u for u in alu.units if u.out == {"r_add": 1.0})
    unit.w["y.v"] = 2.0  # one entry of W_1: the adder now computes x + 2y
    _assert_mutation_seen_everywhere(circuit, state)


def test_one_microcode_entry_changes_every_executor_alike(monkeypatch):
    monkeypatch.setitem(compiler.MICROCODE, "ADD", MicroOp(unit="max", write="a"))
    _assert_mutation_seen_everywhere(compile_circuit(LAYOUT, np.float64), _add_program())


def test_dense_attends_over_every_cell_and_fused_decodes_the_same_cell(dtype):
    """The dense and fused passes agree step by step on hostile random machines."""
    state = random_machines(24, 9, dtype, garbage=0.2)
    c = compile_circuit(LAYOUT, dtype)
    dense = TransformerCPU(LAYOUT, dtype, path="dense", circuit=c)
    fused = TransformerCPU(LAYOUT, dtype, path="fused", kernel="torch", circuit=c)
    a = torch.from_numpy(state.cells.copy())
    b = a.clone()
    for step in range(12):
        a, b = dense(a), fused(b)
        assert np.array_equal(bits(a.numpy()), bits(b.numpy())), f"step {step}"
