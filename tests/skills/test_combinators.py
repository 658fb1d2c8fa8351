"""Every combinator against an oracle at random lengths including 0 and 1, and re-entrancy."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from algind_gym.skills import builtin_library, run_skill

LIB = builtin_library()
SETTINGS = settings(max_examples=10, deadline=None, derandomize=True)
lengths = st.integers(min_value=0, max_value=10)
seeds = st.integers(min_value=0, max_value=2**31)


def _ints(seed, *shape):
    return np.random.default_rng(seed).integers(-5, 6, size=(1, *shape)).astype(float)


@SETTINGS
@given(n=lengths, seed=seeds)
def test_map_zipmap_mapc(n, seed):
    x, y = _ints(seed, n), _ints(seed + 1, n)
    out, res = run_skill(LIB, "map", {"f": "s_neg", "x": x, "out": np.zeros((1, n))})
    assert res.faults[0] == 0
    np.testing.assert_array_equal(out["out"], -x)
    out, _ = run_skill(LIB, "zipmap", {"f": "s_sub", "x": x, "y": y, "out": np.zeros((1, n))})
    np.testing.assert_array_equal(out["out"], x - y)
    c = np.array([3.0])
    out, _ = run_skill(LIB, "mapc", {"f": "s_max", "x": x, "c": c, "out": np.zeros((1, n))})
    np.testing.assert_array_equal(out["out"], np.maximum(x, 3.0))


@SETTINGS
@given(n=lengths, seed=seeds)
def test_fold_reduce_scan(n, seed):
    x = _ints(seed, n)
    init = np.array([7.0])
    out, res = run_skill(LIB, "fold", {"f": "s_add", "x": x, "init": init, "out": np.zeros(1)})
    assert res.faults[0] == 0 and out["out"][0] == 7.0 + x.sum()
    out, _ = run_skill(LIB, "reduce", {"f": "s_max", "x": x, "out": np.array([-99.0])})
    assert out["out"][0] == (x.max() if n else -99.0)  # empty: out unchanged
    out, _ = run_skill(LIB, "scan", {"f": "s_add", "x": x, "init": init, "out": np.zeros((1, n))})
    np.testing.assert_array_equal(out["out"][0], 7.0 + np.cumsum(x[0]))


def _dot(lib):
    return lib.compose(
        "dot",
        [("x", "vector"), ("y", "vector"), ("out", "scalar")],
        [("zipmap", ["&s_mul", "x", "y", "t"]), ("fold", ["&s_add", "t", 0, "out"])],
        temps=[("t", "vector", ["x.size"])],
        description="dot product",
    )


@SETTINGS
@given(m=st.integers(0, 5), n=st.integers(0, 5), seed=seeds)
def test_map_rows_outer(m, n, seed):
    lib = builtin_library()
    _dot(lib)
    lib.compose(
        "scale",
        [("s", "scalar"), ("x", "vector"), ("out", "vector")],
        [("mapc", ["&s_mul", "x", "s", "out"])],
        description="out = s x",
    )
    W, x, y = _ints(seed, m, n), _ints(seed + 1, n), _ints(seed + 2, m)
    out, res = run_skill(lib, "map_rows", {"f": "dot", "M": W, "y": x, "out": np.zeros((1, m))})
    assert res.faults[0] == 0
    np.testing.assert_array_equal(out["out"][0], W[0] @ x[0])
    out, res = run_skill(lib, "outer", {"f": "scale", "x": y, "y": x, "out": np.zeros((1, m, n))})
    assert res.faults[0] == 0
    np.testing.assert_array_equal(out["out"][0], np.outer(y[0], x[0]))


@SETTINGS
@given(n=lengths, m=st.integers(0, 6), seed=seeds)
def test_mapv_is_reentrant(n, m, seed):
    """An outer mapv whose f itself runs mapv: the same block is active twice."""
    lib = builtin_library()
    lib.compose(
        "G",
        [("v", "vector"), ("s", "scalar"), ("out", "scalar")],
        [("fold", ["&s_add", "v", "s", "out"])],
        description="s + sum(v)",
    )
    lib.compose(
        "F",
        [("v", "vector"), ("s", "scalar"), ("out", "scalar")],
        [("mapv", ["&G", "v", "v", "t"]), ("fold", ["&s_add", "t", "s", "out"])],
        temps=[("t", "vector", ["v.size"])],
        description="s + sum_j (v_j + sum(v))",
    )
    x, y = _ints(seed, n), _ints(seed + 1, m)
    out, res = run_skill(lib, "mapv", {"f": "F", "x": x, "y": y, "out": np.zeros((1, n))})
    assert res.faults[0] == 0
    np.testing.assert_array_equal(out["out"][0], x[0] + (m + 1) * y.sum())


@SETTINGS
@given(k=st.integers(0, 7), rows=st.integers(1, 4), seed=seeds)
def test_repeat_streams_rows(k, rows, seed):
    lib = builtin_library()
    # f(W, b, x, y, lr): b += x  (ignores the rest), so b = sum of the streamed rows.
    lib.compose(
        "acc",
        [("W", "matrix"), ("b", "vector"), ("x", "vector"), ("y", "vector"), ("lr", "scalar")],
        [("zipmap", ["&s_add", "b", "x", "b"])],
        description="b += x",
    )
    X, Y = _ints(seed, rows, 2), _ints(seed + 1, rows, 1)
    args = {
        "f": "acc",
        "k": np.array([float(k)]),
        "W": np.zeros((1, 1, 2)),
        "b": np.zeros((1, 2)),
        "X": X,
        "Y": Y,
        "lr": np.zeros(1),
    }
    out, res = run_skill(lib, "repeat", args)
    assert res.faults[0] == 0
    want = sum(X[0][t % rows] for t in range(k)) if k else np.zeros(2)
    np.testing.assert_array_equal(out["b"][0], want)
