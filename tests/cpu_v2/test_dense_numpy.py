"""The planned numpy dense pass: the same bits as the torch pass, the parts it plans and
the generic code it falls back on."""

from __future__ import annotations

import numpy as np
import torch

from algind_gym.cpu.fuzz import fuzz_layout, random_machines
from algind_gym.cpu_v2.circuit import compile_circuit
from algind_gym.cpu_v2.dense import DensePass
from algind_gym.cpu_v2.dense_mlp import EXACT_SUM, MLPSide, _Bank, _can_merge
from algind_gym.cpu_v2.dense_numpy import _ReadHeads, _WriteHeads
from tests.cpu.conftest import bits

LAYOUT = fuzz_layout()


def _torch_dtype(dtype) -> torch.dtype:
    return torch.float32 if dtype == np.float32 else torch.float64


def _same_as_torch(c, dtype, steps: int = 6, seed: int = 5) -> DensePass:
    """Run the numpy and the torch pass of circuit ``c`` side by side; return the numpy one."""
    planned = DensePass(c, dtype, "numpy")
    reference = DensePass(c, _torch_dtype(dtype))
    state = random_machines(16, seed, dtype, garbage=0.2)
    a, b = state.cells.copy(), torch.from_numpy(state.cells.copy())
    for step in range(steps):
        a, b = planned(a), reference(b)
        assert np.array_equal(bits(a), bits(b.numpy())), f"step {step}"
    return planned


def test_every_layer_of_the_compiled_circuit_is_planned(dtype):
    plan = _same_as_torch(compile_circuit(LAYOUT, dtype), dtype).planned().plan
    kinds = [(type(r), type(w), type(cpu), type(cell)) for r, w, cpu, cell in plan]
    assert all(
        r in (_ReadHeads, type(None)) and w in (_WriteHeads, type(None)) for r, w, *_ in kinds
    )
    assert all(
        cpu in (MLPSide, type(None)) and cell in (MLPSide, type(None)) for *_, cpu, cell in kinds
    )
    assert any(isinstance(r, _ReadHeads) for r, *_ in plan)
    assert any(isinstance(w, _WriteHeads) for _, w, *_ in plan)
    cells = [cell for *_, cell in plan if cell is not None]
    assert cells[-1].unembedded  # the last cell MLP computes new.v and new.s only
    banks = [b for *_, cpu, _ in plan if cpu is not None for b in cpu.banks]
    assert banks and all(isinstance(b, _Bank) for b in banks)
    if dtype == np.float64:  # integer sums: the float64 pass takes float32 bank matmuls
        assert all(b.h_dtype == np.float32 for b in banks)


def test_a_bank_unit_with_its_own_row_runs_the_generic_code(dtype):
    c = compile_circuit(LAYOUT, dtype)
    bank = next(m for m in c.layers[1].mlps if m.bank)
    unit = bank.units[3]
    unit.w = {name: 2 * w for name, w in unit.w.items()}  # no longer the bank's shared row
    plan = _same_as_torch(c, dtype).planned().plan
    assert isinstance(plan[1][2], list)  # the layer's CPU MLPs: generic code


def test_value_dependent_keys_run_the_generic_heads(dtype):
    c = compile_circuit(LAYOUT, dtype)
    head = next(h for h in c.layers[2].heads if h.kind == "read")
    head.k["v"] = np.full(c.d_k, 0.5)  # the keys now depend on the cells' values
    plan = _same_as_torch(c, dtype).planned().plan
    assert not isinstance(plan[2][0], _ReadHeads) and isinstance(plan[1][0], _ReadHeads)


def test_one_output_matmul_only_where_shared_channels_get_integers():
    a = np.array([[1.0, 0.0], [0.0, 2.0]])  # block 1: unit 0 -> channel 0, unit 1 -> 1
    b = np.array([[3.0, 0.0]])  # block 2: its one unit -> channel 0 (shared)
    assert _can_merge([a, b], [np.array([1.0, np.inf]), np.array([1.0])])
    assert not _can_merge([a, b], [np.array([np.inf, 1.0]), np.array([1.0])])  # any float
    assert not _can_merge([a, b * 0.5], [np.ones(2), np.ones(1)])  # a weight 1.5
    assert not _can_merge([a, b], [np.ones(2), np.array([EXACT_SUM])])  # a sum too large
    assert _can_merge([a, np.array([[0.0, 0.0]])], [np.full(2, np.inf), np.ones(1)])


def test_a_query_that_matches_no_cell_reads_nothing_even_when_cells_are_huge(dtype):
    """The sink wins: the attention weights are zero, so the read is 0, not a sum of every
    cell (every cell ties at score 0 with a zero query; their sum overflows here)."""
    c = compile_circuit(LAYOUT, dtype)
    state = random_machines(4, 9, dtype, garbage=0.0)
    memory = LAYOUT.block("memory")
    state.cells[:, memory.start : memory.end] = np.finfo(dtype).max / 4
    state.set_register("pc", np.array([-3.0, 0.5, 1e9, LAYOUT.n_cells + 7.0]))  # no cell
    planned = DensePass(c, dtype, "numpy")
    reference = DensePass(c, _torch_dtype(dtype))
    a = planned(state.cells.copy())
    b = reference(torch.from_numpy(state.cells.copy())).numpy()
    assert np.isfinite(a).all()
    assert np.array_equal(bits(a), bits(b))
