"""The compiler builds every weight from the ISA table and the layout; counts add up."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algind_gym.cpu.compiler import (
    FAULT_PRIORITY,
    GROUPS,
    MICROCODE,
    address_code,
    address_decoder,
    compile_cpu,
    decode_columns,
    decode_table,
    n_address_bits,
)
from algind_gym.cpu.fuzz import fuzz_layout
from algind_gym.cpu.model import TransformerCPU
from algind_gym.machine.isa import MAX_OPCODE, OPCODES, Fault, Operand
from algind_gym.machine.layout import Layout


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


def test_address_code_is_unique_and_decoder_mlp_is_exact():
    n = 300
    code = address_code(n)
    k = n_address_bits(n)
    assert code.shape == (n, k) and set(np.unique(code)) == {-1.0, 1.0}
    scores = code @ code.T
    assert (np.diag(scores) == k).all() and (scores - np.eye(n) * 2 * k < k - 0.5).all()
    thresholds, weights = address_decoder(k)
    x = np.arange(2**k, dtype=np.float64)
    bits = (x[:, None] >= thresholds[None]).astype(float) @ weights
    assert (2 * bits - 1 == address_code(2**k)).all()


def test_fault_priority_is_the_isa_order():
    assert [code for _, code in FAULT_PRIORITY] == [
        Fault.ADDRESS,
        Fault.INVALID_INSTRUCTION,
        Fault.ADDRESS,
        Fault.STACK_OVERFLOW,
        Fault.STACK_UNDERFLOW,
        Fault.DIVISION_BY_ZERO,
        Fault.NON_FINITE,
        Fault.PROTECTED_WRITE,
    ]


@pytest.mark.parametrize("path", ["fused", "dense"])
def test_model_reports_what_the_compiler_built(path):
    lay = fuzz_layout()
    compiled = compile_cpu(lay)
    model = TransformerCPU(lay, torch.float64, path=path)
    assert model.n_layers == compiled.n_layers == 5 <= 6
    assert compiled.n_heads == {
        "registers": 7,
        "fetch": 6,
        "operands": 4,
        "indirect": 2,
        "write_back": 7,
    }
    assert model.n_parameters == compiled.n_parameters
    n, k = lay.n_cells, n_address_bits(lay.n_cells)
    hidden = 2**k * 2 - k - 2  # sum over bits of (2^(K-k) - 1) staircase units
    expected = (
        n * k  # address code
        + n * len(lay.blocks)  # block flags
        + n  # protected flags
        + hidden * (1 + k)  # address-decoder MLP
        + 7  # register queries
        + 4  # fetch offsets
        + (MAX_OPCODE + 1) * len(decode_columns())  # decoder
        + len(FAULT_PRIORITY)
        + 1  # priority encoder
        + 6  # register write heads
    )
    assert model.n_parameters == expected
    assert not list(model.parameters()), "weights are compiled buffers, never trained"


def test_layer_count_does_not_depend_on_program_or_memory_size():
    small = compile_cpu(Layout(n_general=1, stack_size=1, n_pointers=0, memory_size=1))
    big = compile_cpu(Layout(memory_size=4096))
    assert small.n_layers == big.n_layers == 5
