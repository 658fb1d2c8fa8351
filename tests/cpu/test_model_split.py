"""Split cells (code outside autograd): the same values and gradients as whole cells."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algind_gym.cpu.model import SplitCells, TransformerCPU
from algind_gym.machine.isa import encode
from tests.cpu.test_grad import LAYOUT, MEM, K, base_cells


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().view(torch.int64)


def _run(model: TransformerCPU, base: torch.Tensor, data: torch.Tensor, split, steps=9):
    """``split``: False (whole cells), True (the default split) or a data mask."""
    cells = torch.cat([base[:, :MEM], data, base[:, MEM + data.shape[1] :]], 1)
    if split is not False:
        state = model.split_cells(cells, None if split is True else split)
        for _ in range(steps):
            state = model.forward_split(state)
        return model.join_cells(state)
    for _ in range(steps):
        cells = model(cells)
    return cells


@pytest.mark.parametrize("steps", [3, 9, 12])  # mid-program, at HALT, halted rows frozen
def test_split_cells_give_the_same_bits_and_gradients_as_whole_cells(steps):
    model = TransformerCPU(LAYOUT, torch.float64, kernel="torch")
    # row 2 divides by 0 (a fault: frozen from then on), row 1 has a -0.0 input
    data = torch.tensor(
        [[1.5, -2.0, 3.0, 4.0, 10.0], [-0.0, 0.25, -1.0, 2.0, -5.0], [1.0, 2.0, 3.0, 0.0, 1.0]],
        dtype=torch.float64,
    )
    base = base_cells(3)
    weights = torch.randn(3, LAYOUT.n_cells, generator=torch.Generator().manual_seed(0))
    # narrow: only the program's memory (inputs and its output cell) besides the registers
    narrow = np.zeros(LAYOUT.n_cells, dtype=bool)
    narrow[MEM : MEM + 6] = True
    results = []
    for split in (False, True, narrow):
        leaf = data.clone().requires_grad_()
        out = _run(model, base, leaf, split, steps)
        (out * weights.double()).sum().backward()
        results.append((out, leaf.grad))
    (whole, g_whole), *splits = results
    for split, g_split in splits:
        assert torch.equal(_bits(whole), _bits(split))
        assert torch.equal(_bits(g_whole), _bits(g_split))
    if steps == 9:  # the program ran to completion on rows 0, 1; row 2 faulted
        expected = torch.minimum(data[:2, 0] * data[:2, 1] + data[:2, 2] / data[:2, 3], data[:2, 4])
        assert torch.equal(whole[:2, MEM + 5], expected)
        assert (g_whole[:2] != 0).any(1).all()
    assert whole[2, LAYOUT.register("fault")] != 0 or steps == 3


def test_split_cells_hold_the_code_outside_autograd_and_once_when_shared():
    model = TransformerCPU(LAYOUT, torch.float64, kernel="torch")
    cells = base_cells(4).requires_grad_()
    state = model.split_cells(cells)
    n_code = int(np.count_nonzero(LAYOUT.protected_mask[LAYOUT.block("code").start :]))
    assert state.code.shape == (1, n_code) and not state.code.requires_grad
    assert state.data.shape == (4, LAYOUT.n_cells - n_code + 1) and state.data.requires_grad
    assert torch.equal(model.join_cells(state), cells)
    # rows with different code keep one code row each
    other = base_cells(2)
    other[1, K] = 0.0
    assert model.split_cells(other).code.shape == (2, n_code)


def test_split_cells_are_validated_and_a_write_to_code_is_refused():
    model = TransformerCPU(LAYOUT, torch.float64, kernel="torch")
    state = model.split_cells(base_cells(2))
    with pytest.raises(ValueError, match="split_cells"):
        model.forward_split(SplitCells(state.data[:, :-1].contiguous(), state.code, state.map))
    with pytest.raises(TypeError, match="float64"):
        model.forward_split(SplitCells(state.data.float(), state.code.float(), state.map))
    with pytest.raises(ValueError, match="data_mask"):
        model.split_map(np.ones(3, dtype=bool))
    # a data part without the cell the program stores into (MEM + 5): a clear error
    no_output = np.zeros(LAYOUT.n_cells, dtype=bool)
    no_output[MEM : MEM + 5] = True
    cells = base_cells(1)
    cells[0, MEM + 3] = 1.0  # no division by zero: the program reaches its STORE
    state = model.split_cells(cells, no_output)
    with pytest.raises(RuntimeError, match="data_mask"):
        for _ in range(9):
            state = model.forward_split(state)
    with pytest.raises(ValueError, match="fused"):
        TransformerCPU(LAYOUT, torch.float64, path="dense").forward_split(state)
    # a program that stores into its own code: the protected write faults, nothing is written
    cells = base_cells(1)
    cells[0, K : K + 4] = torch.tensor(encode("MOVI", K + 1, 7.0), dtype=torch.float64)
    out = model.join_cells(model.forward_split(model.split_cells(cells)))
    assert torch.equal(out, model(cells)) and out[0, LAYOUT.register("fault")] != 0
