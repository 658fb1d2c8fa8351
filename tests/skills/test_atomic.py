"""Every atomic skill against a numpy oracle, at random lengths including 0 and 1."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from algind_gym.machine.isa import Fault
from algind_gym.skills import builtin_library, run_skill

LIB = builtin_library()
SETTINGS = settings(max_examples=12, deadline=None, derandomize=True)
lengths = st.integers(min_value=0, max_value=12)
seeds = st.integers(min_value=0, max_value=2**31)

SCALAR_ORACLES = {
    "s_add": lambda a, b: a + b,
    "s_sub": lambda a, b: a - b,
    "s_mul": lambda a, b: a * b,
    "s_div": lambda a, b: a / b,
    "s_max": np.maximum,
    "s_min": np.minimum,
    "s_lt": lambda a, b: (a < b).astype(float),
    "s_le": lambda a, b: (a <= b).astype(float),
    "s_eq": lambda a, b: (a == b).astype(float),
}


@pytest.mark.parametrize("name", sorted(SCALAR_ORACLES))
def test_scalar_binary(name):
    rng = np.random.default_rng(0)
    a = rng.integers(-3, 4, size=8).astype(float)
    b = rng.integers(-3, 4, size=8).astype(float)
    if name == "s_div":
        b[b == 0] = 2.0
    out, res = run_skill(LIB, name, {"a": a, "b": b, "out": np.zeros(8)}, batch=8)
    assert (res.faults == 0).all()
    np.testing.assert_array_equal(out["out"], SCALAR_ORACLES[name](a, b))


def test_scalar_neg_and_division_by_zero():
    out, _ = run_skill(LIB, "s_neg", {"x": np.array([1.5, -2.0]), "out": np.zeros(2)}, batch=2)
    np.testing.assert_array_equal(out["out"], [-1.5, 2.0])
    _, res = run_skill(LIB, "s_div", {"a": np.ones(1), "b": np.zeros(1), "out": np.zeros(1)})
    assert res.faults.tolist() == [Fault.DIVISION_BY_ZERO]


@SETTINGS
@given(n=lengths, seed=seeds)
def test_copy_len_iota(n, seed):
    x = np.random.default_rng(seed).normal(size=(1, n))
    out, res = run_skill(LIB, "copy", {"x": x, "out": np.zeros((1, n))})
    assert res.faults[0] == 0
    np.testing.assert_array_equal(out["out"], x)
    out, _ = run_skill(LIB, "len", {"x": x, "out": np.zeros(1)})
    assert out["out"][0] == n
    out, _ = run_skill(LIB, "iota", {"out": np.zeros((1, n))})
    np.testing.assert_array_equal(out["out"][0], np.arange(n))


@SETTINGS
@given(n=lengths, m=st.integers(1, 10), seed=seeds)
def test_gather_scatter(n, m, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1, m))
    idx = rng.integers(0, m, size=(1, n)).astype(float)
    out, res = run_skill(LIB, "gather", {"x": x, "idx": idx, "out": np.zeros((1, n))})
    assert res.faults[0] == 0
    np.testing.assert_array_equal(out["out"][0], x[0][idx[0].astype(int)])
    perm = rng.permutation(m).astype(float)[None]
    y = rng.normal(size=(1, m))
    out, res = run_skill(LIB, "scatter", {"x": y, "idx": perm, "out": np.zeros((1, m))})
    want = np.zeros(m)
    want[perm[0].astype(int)] = y[0]
    np.testing.assert_array_equal(out["out"][0], want)


@pytest.mark.parametrize("bad", [-1.0, 3.0])
def test_gather_out_of_range_faults(bad):
    _, res = run_skill(
        LIB,
        "gather",
        {"x": np.zeros((1, 3)), "idx": np.array([[0.0, bad]]), "out": np.zeros((1, 2))},
    )
    assert res.faults[0] == Fault.INVALID_INSTRUCTION


def test_size_check_faults_instead_of_overwriting():
    _, res = run_skill(LIB, "copy", {"x": np.ones((1, 4)), "out": np.zeros((1, 3))})
    assert res.faults[0] == Fault.INVALID_INSTRUCTION


@SETTINGS
@given(r=st.integers(0, 5), c=st.integers(0, 5), seed=seeds)
def test_transpose(r, c, seed):
    M = np.random.default_rng(seed).normal(size=(1, r, c))
    out, res = run_skill(LIB, "transpose", {"M": M, "out": np.zeros((1, c, r))})
    assert res.faults[0] == 0
    np.testing.assert_array_equal(out["out"][0], M[0].T)


@SETTINGS
@given(m=st.integers(0, 4), n=st.integers(0, 5), seed=seeds)
def test_linear_output(m, n, seed):
    rng = np.random.default_rng(seed)
    Wb, x = rng.normal(size=(1, m, n + 1)), rng.normal(size=(1, n))
    out, res = run_skill(LIB, "linear", {"x": x, "out": np.zeros((1, m)), "weights": Wb})
    assert res.faults[0] == 0
    np.testing.assert_allclose(out["out"][0], Wb[0][:, :n] @ x[0] + Wb[0][:, n], rtol=1e-12)
