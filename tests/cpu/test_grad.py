"""Gradients flow through reads, the ALU and writes (addresses stay discrete)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algind_gym.cpu.model import TransformerCPU
from algind_gym.machine.isa import encode
from algind_gym.machine.layout import Layout, SkillBlockSpec
from algind_gym.machine.state import MachineState

LAYOUT = Layout(
    n_general=4,
    stack_size=4,
    n_pointers=1,
    memory_size=8,
    skill_blocks=(SkillBlockSpec("k", 0, 40),),
)
MEM = LAYOUT.block("memory").start
R = [LAYOUT.register(f"r{i}") for i in range(4)]
K = LAYOUT.skill("k").code_start
# out = min(x0 * x1 + x2 / x3, x4): LOAD through a pointer, MUL, DIV, ADD, MIN, STORE.
PROGRAM = [
    *encode("MOVI", R[0], MEM),
    *encode("LOAD", R[1], R[0], 0),
    *encode("LOAD", R[2], R[0], 1),
    *encode("MUL", R[1], R[1], R[2]),
    *encode("DIV", R[2], MEM + 2, MEM + 3),
    *encode("ADD", R[1], R[1], R[2]),
    *encode("MIN", R[1], R[1], MEM + 4),
    *encode("STORE", R[0], 5, R[1]),
    *encode("HALT"),
]


def program_fn(model: TransformerCPU, base: torch.Tensor, steps: int = 9):
    def f(data: torch.Tensor) -> torch.Tensor:
        cells = torch.cat([base[:, :MEM], data, base[:, MEM + data.shape[1] :]], 1)
        for _ in range(steps):
            cells = model(cells)
        return cells[:, MEM : MEM + 6]

    return f


def base_cells(batch: int = 2) -> torch.Tensor:
    state = MachineState.zeros(LAYOUT, batch, np.float64)
    state.load_code(K, PROGRAM)
    state.set_register("pc", K)
    return torch.from_numpy(state.cells)


@pytest.mark.parametrize("path", ["fused", "dense"])
def test_gradcheck_through_a_program(path):
    model = TransformerCPU(LAYOUT, torch.float64, path=path)
    data = torch.tensor(
        [[1.5, -2.0, 3.0, 4.0, 10.0], [0.5, 0.25, -1.0, 2.0, -5.0]], dtype=torch.float64
    ).requires_grad_()
    f = program_fn(model, base_cells())
    out = f(data)
    expected = torch.minimum(data[:, 0] * data[:, 1] + data[:, 2] / data[:, 3], data[:, 4])
    assert torch.equal(out[:, 5], expected)
    assert torch.autograd.gradcheck(f, (data,), eps=1e-6, atol=1e-8)


def test_fused_and_dense_gradients_agree():
    data = torch.tensor([[1.5, -2.0, 3.0, 4.0, 10.0]], dtype=torch.float64)
    grads = []
    for path in ("fused", "dense"):
        x = data.clone().requires_grad_()
        out = program_fn(TransformerCPU(LAYOUT, torch.float64, path=path), base_cells(1))(x)
        out[:, 5].sum().backward()
        grads.append(x.grad)
    assert torch.equal(grads[0], grads[1])
    assert torch.equal(
        grads[0], torch.tensor([[-2.0, 1.5, 0.25, -3.0 / 16, 0.0]], dtype=torch.float64)
    )
