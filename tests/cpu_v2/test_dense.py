"""The dense pass over stacked layers: one attention per kind of head, concatenated MLPs and
batched step banks, the same bits in numpy and torch, and gradients through torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algind_gym.cpu.fuzz import fuzz_layout, random_machines
from algind_gym.cpu_v2.circuit import compile_circuit
from algind_gym.cpu_v2.dense import DensePass
from algind_gym.cpu_v2.model import TransformerCPU
from algind_gym.cpu_v2.stacked import StackedBanks, StackedMLP, bank_groups, stack_circuit
from algind_gym.machine.isa import encode
from algind_gym.machine.state import MachineState
from tests.cpu.conftest import bits

LAYOUT = fuzz_layout()


def test_each_layer_is_one_attention_per_head_kind_and_few_mlps():
    c = compile_circuit(LAYOUT, np.float32)
    layers = stack_circuit(c)
    for layer, stacked in zip(c.layers, layers, strict=True):
        reads = [h for h in layer.heads if h.kind == "read"]
        assert (stacked.reads.n_heads if stacked.reads else 0) == len(reads)
        if reads:
            assert stacked.reads.W_Q.shape == (len(c.cpu), len(reads) * c.d_k)
        general = [m for m in stacked.mlps["cpu"] if isinstance(m, StackedMLP)]
        assert len(general) == int(any(not m.bank for m in layer.mlps if m.side == "cpu"))
    hidden = sum(
        m.W_1.shape[-1] if isinstance(m, StackedMLP) else m.W_1.shape[0] * m.W_1.shape[1]
        for s in layers
        for ms in s.mlps.values()
        for m in ms
    )
    units = sum(len(m.units) for la in c.layers for m in la.mlps)
    assert units <= hidden <= 2 * units  # padding of banks at most doubles a bank
    assert any(isinstance(m, StackedBanks) and m.W_1.shape[0] > 1 for m in layers[1].mlps["cpu"])


@pytest.mark.parametrize(
    ("widths", "groups"),
    [([10, 10, 10], [[0, 1, 2]]), ([5, 11, 6], [[1, 2], [0]]), ([], []), ([3], [[0]])],
)
def test_bank_groups_pad_each_bank_to_at_most_twice_its_width(widths, groups):
    assert bank_groups(widths) == groups


def test_numpy_and_torch_dense_passes_agree_bit_for_bit(dtype):
    state = random_machines(16, 9, dtype, garbage=0.2)
    cpu = TransformerCPU(LAYOUT, dtype, path="dense")
    a = state.cells.copy()
    b = torch.from_numpy(state.cells.copy())
    for step in range(10):
        a, b = cpu.dense_numpy(a), cpu.blocks.dense(b)
        assert np.array_equal(bits(a), bits(b.numpy())), f"step {step}"


def test_dense_forward_gives_gradients_through_torch():
    main = LAYOUT.skill("main")
    r = [LAYOUT.register(f"r{i}") for i in range(3)]
    state = MachineState.zeros(LAYOUT, 1, np.float64)
    state.load_code(main.code_start, encode("ADD", r[0], r[1], r[2]) + encode("HALT"))
    state.set_register("pc", main.code_start)
    cells = torch.from_numpy(state.cells.copy()).requires_grad_(True)
    out = TransformerCPU(LAYOUT, torch.float64, path="dense")(cells)
    out[0, r[0]].backward()
    assert cells.grad[0, r[1]] == 1 and cells.grad[0, r[2]] == 1


def test_fixed_address_codes_give_the_bits_of_computing_them_every_pass(dtype):
    c = compile_circuit(LAYOUT, dtype)
    fixed = DensePass(c, dtype, "numpy")
    for layer, (keys, queries) in zip(fixed.layers, fixed.fixed, strict=True):
        assert (keys is not None) == (layer.reads is not None)
        assert (queries is not None) == (layer.writes is not None)
    computed = DensePass(c, dtype, "numpy")
    computed.fixed = [(None, None)] * len(computed.fixed)
    state = random_machines(16, 3, dtype, garbage=0.2)
    a, b = state.cells.copy(), state.cells.copy()
    for step in range(8):
        a, b = fixed(a), computed(b)
        assert np.array_equal(bits(a), bits(b)), f"step {step}"


def test_a_key_weight_on_the_value_channel_is_computed_every_pass(dtype):
    c = compile_circuit(LAYOUT, dtype)
    head = next(h for h in c.layers[2].heads if h.kind == "read")
    head.k["v"] = np.full(c.d_k, 0.5)  # the keys now depend on the cells' values
    p = DensePass(c, dtype, "numpy")
    assert p.fixed[2][0] is None and p.fixed[1][0] is not None
    state = random_machines(16, 4, dtype, garbage=0.2)
    a = state.cells.copy()
    b = torch.from_numpy(state.cells.copy())
    torch_pass = DensePass(c, torch.float32 if dtype == np.float32 else torch.float64)
    for step in range(6):
        a, b = p(a), torch_pass(b)
        assert np.array_equal(bits(a), bits(b.numpy())), f"step {step}"
