"""The fused path's two kernels (numba loop, eager torch ops) agree bit for bit.

The numba kernel (:mod:`algind_gym.cpu.kernel`) is the default of ``backend="transformer"``
on CPU. Besides the equivalence tests that run every backend (test_equivalence.py,
test_backend.py), these check it against the torch kernel on hostile random states, its
multi-step ``run``, and when the model falls back to the torch ops.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from algind_gym.cpu import kernel as kernel_module
from algind_gym.cpu import make_backend
from algind_gym.cpu.fuzz import fuzz_layout, random_machines
from algind_gym.cpu.model import TransformerCPU
from algind_gym.machine import interpreter
from tests.cpu.conftest import bits

LAYOUT = fuzz_layout()

hostile = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 3.0e38, -3.0e38, 1e-45]),
    st.integers(-3, LAYOUT.n_cells + 3).map(float),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)


def _pair(dtype):
    return (
        TransformerCPU(LAYOUT, dtype, kernel="numba"),
        TransformerCPU(LAYOUT, dtype, kernel="torch"),
    )


_MODELS = {np.dtype(dt).name: _pair(dt) for dt in (np.float32, np.float64)}


@pytest.fixture(scope="module")
def models():
    """The numba and torch kernels per dtype name (compiled once for the module)."""
    return _MODELS


def test_kernel_argument_errors():
    with pytest.raises(ValueError, match="kernel must be"):
        TransformerCPU(LAYOUT, kernel="cuda-magic")
    with pytest.raises(ValueError, match="path='fused'"):
        TransformerCPU(LAYOUT, path="dense", kernel="numba")
    with pytest.raises(ValueError, match="n_steps"):
        TransformerCPU(LAYOUT).run(torch.zeros(1, LAYOUT.n_cells), -1)


def test_numba_forward_equals_torch_forward_every_step(models, dtype):
    fast, slow = models[np.dtype(dtype).name]
    state = random_machines(256, 3, dtype)
    a = torch.from_numpy(state.cells.copy())
    b = a.clone()
    for step in range(60):
        a = fast(a)  # functional forward (a new tensor every step)
        slow(b, inplace=True)
        assert np.array_equal(bits(a.numpy()), bits(b.numpy())), f"step {step}"


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from([np.float32, np.float64]),
    data=st.data(),
)
def test_hostile_states_agree_with_torch_and_reference(seed, dtype, data):
    """Random programs with garbage plus hostile cell values anywhere outside code."""
    fast, slow = _MODELS[np.dtype(dtype).name]
    state = random_machines(16, seed, dtype, garbage=0.3)
    rng = np.random.default_rng(seed)
    for _ in range(data.draw(st.integers(0, 12), label="n_overwrites")):
        m, c = rng.integers(16), rng.integers(LAYOUT.n_cells)
        state.cells[m, c] = data.draw(hostile, label="value")
    state.cells[~np.isfinite(state.cells)] = 0.0
    ref = state.copy()
    a = torch.from_numpy(state.cells.copy())
    b = a.clone()
    for step in range(6):
        interpreter.step(ref)
        fast(a, inplace=True)
        slow(b, inplace=True)
        assert np.array_equal(bits(a.numpy()), bits(b.numpy())), f"numba vs torch, step {step}"
        assert np.array_equal(bits(a.numpy()), bits(ref.cells)), f"numba vs reference, {step}"


def test_run_equals_repeated_forward_and_keeps_frozen_machines(models, dtype):
    fast, slow = models[np.dtype(dtype).name]
    state = random_machines(64, 8, dtype)
    state.set_register("halt", np.where(np.arange(64) % 5 == 0, 1.0, 0.0))
    frozen = state.cells[::5].copy()
    a = torch.from_numpy(state.cells.copy())
    b = a.clone()
    out = fast.run(a, 50)
    assert out is a
    for _ in range(50):
        slow(b, inplace=True)
    assert np.array_equal(bits(a.numpy()), bits(b.numpy()))
    assert np.array_equal(a.numpy()[::5], frozen)


def test_autograd_takes_the_torch_ops():
    cpu = TransformerCPU(LAYOUT, torch.float64)
    state = random_machines(4, 1, np.float64)
    cells = torch.from_numpy(state.cells.copy()).requires_grad_(True)
    assert not cpu.uses_numba(cells)
    out = cpu(cells)
    assert out.grad_fn is not None
    with torch.no_grad():
        assert cpu.uses_numba(cells)  # no graph needed: the compiled loop runs
        assert torch.equal(cpu(cells), out.detach())


def test_auto_kernel_without_numba_falls_back(monkeypatch):
    monkeypatch.setattr(kernel_module, "AVAILABLE", False)
    cpu = TransformerCPU(LAYOUT, torch.float32)  # kernel="auto"
    cells = torch.from_numpy(random_machines(4, 2, np.float32).cells.copy())
    assert not cpu.uses_numba(cells)
    with pytest.raises(RuntimeError, match="pip install numba"):
        TransformerCPU(LAYOUT, torch.float32, kernel="numba")


def test_backend_names_choose_the_kernel():
    assert make_backend("transformer").model(LAYOUT, np.float32).kernel == "auto"
    assert make_backend("transformer-torch").model(LAYOUT, np.float32).kernel == "torch"
    assert make_backend("transformer-dense").model(LAYOUT, np.float32).kernel == "torch"
