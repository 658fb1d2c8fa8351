"""`make_backend`: one switch, three backends, the same results and driver semantics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algind_gym.cpu import BACKENDS, TransformerCPU, make_backend
from algind_gym.cpu.bench import bench_backend, bench_machines
from algind_gym.cpu.fuzz import random_machines
from algind_gym.cpu.verify import verify_cpu
from algind_gym.machine.isa import Fault
from tests.cpu.conftest import assert_same


def test_names_and_unknown_backend():
    assert [make_backend(n).name for n in BACKENDS] == list(BACKENDS)
    with pytest.raises(ValueError, match="expected one of"):
        make_backend("gpu-magic")


@pytest.mark.parametrize("workload", ["lockstep", "divergent"])
def test_run_matches_reference_including_budget(backends, dtype, workload):
    ref = bench_machines(32, workload, dtype)
    expected = backends["reference"].run(ref.copy(), max_steps=77)
    assert (expected.faults == Fault.BUDGET_EXHAUSTED).all()
    for name in ("transformer", "transformer-torch", "transformer-dense"):
        got = ref.copy()
        out = backends[name].run(got, max_steps=77)
        assert out is got
        assert_same(expected, got, name)


def test_run_on_random_programs_matches_reference(backends, dtype):
    start = random_machines(300, 11, dtype)
    expected = backends["reference"].run(start.copy(), max_steps=150)
    for name in ("transformer", "transformer-torch"):
        got = backends[name].run(start.copy(), max_steps=150)
        assert_same(expected, got, f"{name}.run")
    assert (expected.faults == Fault.BUDGET_EXHAUSTED).any()


def test_zero_budget_and_negative_budget(backends):
    state = random_machines(8, 1)
    expected = backends["reference"].run(state.copy(), 0)
    assert_same(expected, backends["transformer"].run(state.copy(), 0), "zero budget")
    with pytest.raises(ValueError, match="max_steps"):
        backends["transformer"].run(state, -1)


def test_backend_alternating_layouts_and_dtypes_get_their_own_cpu(backends):
    """The backend remembers the previous call's layout by identity; alternating between
    two layouts and two dtypes must still run each on its own compiled CPU."""
    a = random_machines(6, 3, np.float32)
    b = bench_machines(5, "divergent", np.float64)  # another layout, another dtype
    be = make_backend("transformer")
    for state in (a, b, a, b):
        expected = backends["reference"].run(state.copy(), max_steps=40)
        assert_same(expected, be.run(state.copy(), max_steps=40), "alternating layouts")


def test_run_array_matches_run_and_names_bad_arrays():
    state = random_machines(16, 4, np.float64)
    cpu = TransformerCPU(state.layout, torch.float64)
    if not cpu.runs_on_arrays():
        pytest.skip("numba is not installed: run_array needs the numba kernel")
    on_tensor = torch.from_numpy(state.cells.copy())
    cpu.run(on_tensor, 60)
    on_array = state.cells.copy()
    cpu.run_array(on_array, 60)
    np.testing.assert_array_equal(on_array, on_tensor.numpy())
    with pytest.raises(TypeError, match="compiled for"):
        cpu.run_array(np.zeros(state.cells.shape, np.float32), 1)
    with pytest.raises(ValueError, match="needs \\(batch"):
        cpu.run_array(state.cells[:, :-1].copy(), 1)
    with pytest.raises(ValueError, match="C-contiguous"):
        cpu.run_array(np.asfortranarray(state.cells), 1)
    with pytest.raises(ValueError, match="n_steps"):
        cpu.run_array(state.cells.copy(), -1)
    torch_cpu = TransformerCPU(state.layout, torch.float64, kernel="torch")
    assert not torch_cpu.runs_on_arrays()
    with pytest.raises(RuntimeError, match="use run"):
        torch_cpu.run_array(state.cells.copy(), 1)


def test_forward_is_functional_by_default():
    state = random_machines(4, 2, np.float64)
    cpu = TransformerCPU(state.layout, torch.float64)
    cells = torch.from_numpy(state.cells.copy())
    before = cells.clone()
    out = cpu(cells)
    assert torch.equal(cells, before) and not torch.equal(out, before)
    with pytest.raises(TypeError, match="compiled for"):
        cpu(cells.float())


def test_verify_cpu_small_run_has_no_mismatch(dtype):
    result = verify_cpu(
        programs=256, steps=64, batch=128, dtype=np.dtype(dtype).name, print_result=False
    )
    assert result["mismatches"] == 0 and result["steps_checked"] > 2000
    assert len(result["opcodes"]) == 30


def test_bench_row_has_the_documented_keys():
    row = bench_backend("transformer", 4, steps=10, min_seconds=0.0)
    assert {"backend", "batch", "instructions_per_s", "peak_memory_mb"} <= set(row)
    assert row["instructions"] >= 40


@pytest.mark.slow
@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_million_fuzzed_steps(dtype_name):
    result = verify_cpu(
        programs=120_000,
        steps=256,
        batch=2048,
        dtype=dtype_name,
        backends=("transformer", "transformer-torch"),
        print_result=False,
    )
    assert result["steps_checked"] >= 1_000_000
    assert result["mismatches"] == 0
