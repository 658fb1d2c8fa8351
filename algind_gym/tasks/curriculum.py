"""The built-in curriculum: tasks, generators and oracles.

Numeric track (levels 1-7): elementwise vector ops, reductions, matrix-vector products,
a linear layer and MSE, an MLP layer and the gradient of a linear layer's MSE, one SGD step,
and training a linear regression model inside the machine. Reals are drawn from U(-1, 1).
Matrix tasks use ``length`` = number of columns n and ``m = n // 2 + 1`` rows (non-square,
so a transposition bug cannot hide).

Algorithmic track (the old gym algorithmic tasks and CLRS-style ones): sequences of base-10
digits, training lengths up to 16 and test lengths 64 and 128.

* ``DuplicatedInput``: the input has each of ``length`` symbols twice in a row; the output is
  the de-duplicated sequence.
* ``RepeatCopy``: output = x, reversed x, x (length 3n).
* ``ReversedAddition``: two numbers with ``length`` digits, least significant first,
  zero-padded to ``length + 1`` digits; the output is their sum's ``length + 1`` digits.
* ``ArgMax``: index of the first maximum. ``CountEqual``: occurrences of a given digit.

``TrainLinearRegression``: ``length`` = number of training examples N with d = 2 features
and one output; the model ``(W, b)`` starts at zero; the machine runs ``steps = 96`` SGD
steps with learning rate 0.3 over the rows cyclically. Success is scored, not matched:
held-out MSE below 1e-4 and every weight within 0.02 of the generating one. Data sets are
drawn with a well-conditioned design (rejection sampling), so the split is solvable.

Every task but ``TrainLinearRegression`` also has a batched generator and oracle
(:mod:`algind_gym.tasks.batched`), which the workspaces use to draw K examples at once.
"""

from __future__ import annotations

import numpy as np

from algind_gym.skills.compose import Temp
from algind_gym.skills.signature import ArgSpec
from algind_gym.tasks.batched import batched
from algind_gym.tasks.spec import EXACT, REAL, Example, TaskSpec, register_task

S, V, M = "scalar", "vector", "matrix"
VECTOR_SPLIT = {"train_lengths": (1, 2, 3, 4, 6, 8), "test_lengths": (32, 64)}
MATRIX_SPLIT = {"train_lengths": (1, 2, 3, 4), "test_lengths": (16, 32)}
ALGO_SPLIT = {"train_lengths": (1, 2, 4, 8, 16), "test_lengths": (64, 128)}


def _a(name: str, type_: str, role: str = "in") -> ArgSpec:
    return ArgSpec(name, type_, role)


def _u(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.uniform(-1.0, 1.0, size=shape)


def _rows(n: int) -> int:
    return n // 2 + 1


def _digits(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 10, size=n).astype(np.float64)


def _numeric(name, desc, args, gen, oracle, level, *, split=VECTOR_SPLIT, tol=REAL, **kw):
    return register_task(
        TaskSpec(
            name,
            desc,
            tuple(args),
            gen,
            oracle,
            tol,
            level=level,
            track="numeric",
            **split,
            **batched(name),
            **kw,
        )
    )


def _algo(name, desc, args, gen, oracle, level, **kw):
    return register_task(
        TaskSpec(
            name,
            desc,
            tuple(args),
            gen,
            oracle,
            EXACT,
            level=level,
            track="algorithmic",
            **ALGO_SPLIT,
            **batched(name),
            **kw,
        )
    )


def _vec2(rng, n):
    return {"x": _u(rng, n), "y": _u(rng, n)}


def _vec1(rng, n):
    return {"x": _u(rng, n)}


def _train_data(rng: np.random.Generator, n: int, d: int = 2) -> np.ndarray:
    while True:
        X = _u(rng, n, d)
        A = np.hstack([X, np.ones((n, 1))])
        if np.linalg.svd(A, compute_uv=False).min() / np.sqrt(n) >= 0.35:
            return X


def _regression_example(rng: np.random.Generator, n: int) -> Example:
    d = 2
    w_true, b_true = _u(rng, 1, d), _u(rng, 1)
    X = _train_data(rng, n, d)
    X_test = _u(rng, 64, d)
    return {
        "W": np.zeros((1, d)),
        "b": np.zeros(1),
        "X": X,
        "Y": X @ w_true.T + b_true,
        "lr": np.float64(0.3),
        "steps": np.float64(96),
        "_W_true": w_true,
        "_b_true": b_true,
        "_X_test": X_test,
        "_Y_test": X_test @ w_true.T + b_true,
    }


def _regression_oracle(ex: Example) -> Example:
    """The same SGD in numpy (the reference trajectory; scoring uses the held-out loss)."""
    W, b = ex["W"].copy(), ex["b"].copy()
    X, Y, lr = ex["X"], ex["Y"], float(ex["lr"])
    for t in range(int(ex["steps"])):
        x, y = X[t % len(X)], Y[t % len(X)]
        g = 2.0 / len(y) * (W @ x + b - y)
        W -= lr * np.outer(g, x)
        b -= lr * g
    return {"W": W, "b": b}


def _regression_score(ex: Example, out: Example) -> tuple[float, bool]:
    W, b = out["W"], out["b"]
    err = np.concatenate([np.abs(W - ex["_W_true"]).ravel(), np.abs(b - ex["_b_true"]).ravel()])
    close = err <= 0.02
    pred = ex["_X_test"] @ W.T + b
    loss = float(np.mean((pred - ex["_Y_test"]) ** 2))
    return float(close.mean()), bool(close.all() and loss < 1e-4)


def _dup_gen(rng, n):
    return {"x": np.repeat(_digits(rng, n), 2)}


def _addition_gen(rng, n):
    a, b = np.zeros(n + 1), np.zeros(n + 1)
    a[:n], b[:n] = _digits(rng, n), _digits(rng, n)
    return {"a": a, "b": b}


def _addition_oracle(ex):
    a, b = ex["a"], ex["b"]
    out, carry = np.zeros_like(a), 0
    for i in range(len(a)):
        s = int(a[i] + b[i]) + carry
        out[i], carry = s % 10, s // 10
    return {"out": out}


def _sort_oracle(ex):
    return {"out": np.sort(ex["x"])}


def register_builtin_tasks() -> None:
    """Register every built-in task (idempotent; called when :mod:`algind_gym.tasks` loads)."""
    from algind_gym.tasks.spec import _REGISTRY

    if "VectorAdd" in _REGISTRY:
        return
    xy = [_a("x", V), _a("y", V), _a("out", V, "out")]
    x1 = [_a("x", V), _a("out", V, "out")]
    # ---------------------------------------------------------------- level 1
    _numeric(
        "VectorAdd",
        "Add two vectors elementwise: out[i] = x[i] + y[i].",
        xy,
        _vec2,
        lambda e: {"out": e["x"] + e["y"]},
        1,
    )
    _numeric(
        "VectorSub",
        "Subtract two vectors elementwise: out[i] = x[i] - y[i].",
        xy,
        _vec2,
        lambda e: {"out": e["x"] - e["y"]},
        1,
    )
    _numeric(
        "VectorMul",
        "Multiply two vectors elementwise: out[i] = x[i] * y[i].",
        xy,
        _vec2,
        lambda e: {"out": e["x"] * e["y"]},
        1,
    )
    _numeric(
        "Scale",
        "Multiply a vector by a scalar: out[i] = s * x[i].",
        [_a("s", S), _a("x", V), _a("out", V, "out")],
        lambda r, n: {"s": np.float64(_u(r, 1)[0]), "x": _u(r, n)},
        lambda e: {"out": e["s"] * e["x"]},
        1,
    )
    _numeric(
        "Square",
        "Square every element: out[i] = x[i]^2.",
        x1,
        _vec1,
        lambda e: {"out": e["x"] * e["x"]},
        1,
    )
    _numeric(
        "ReLU",
        "Rectified linear unit: out[i] = max(x[i], 0).",
        x1,
        _vec1,
        lambda e: {"out": np.maximum(e["x"], 0.0)},
        1,
    )
    _numeric(
        "Abs",
        "Absolute value of every element: out[i] = |x[i]|.",
        x1,
        _vec1,
        lambda e: {"out": np.abs(e["x"])},
        1,
    )
    _numeric(
        "Negate", "Negate every element: out[i] = -x[i].", x1, _vec1, lambda e: {"out": -e["x"]}, 1
    )
    # ---------------------------------------------------------------- level 2
    xs = [_a("x", V), _a("out", S, "out")]
    _numeric(
        "Sum",
        "Sum of the elements of a vector.",
        xs,
        _vec1,
        lambda e: {"out": np.float64(np.sum(e["x"]))},
        2,
    )
    _numeric(
        "Max",
        "Largest element of a non-empty vector.",
        xs,
        _vec1,
        lambda e: {"out": np.max(e["x"])},
        2,
    )
    _numeric(
        "Min",
        "Smallest element of a non-empty vector.",
        xs,
        _vec1,
        lambda e: {"out": np.min(e["x"])},
        2,
    )
    _numeric(
        "Mean",
        "Mean of the elements of a non-empty vector.",
        xs,
        _vec1,
        lambda e: {"out": np.float64(np.mean(e["x"]))},
        2,
    )
    _numeric(
        "DotProduct",
        "Dot product of two vectors: out = sum_i x[i] * y[i].",
        [_a("x", V), _a("y", V), _a("out", S, "out")],
        _vec2,
        lambda e: {"out": np.float64(e["x"] @ e["y"])},
        2,
        prerequisites=("VectorMul",),
    )
    _numeric(
        "SumOfSquares",
        "Sum of the squares of the elements: out = sum_i x[i]^2.",
        xs,
        _vec1,
        lambda e: {"out": np.float64(e["x"] @ e["x"])},
        2,
        prerequisites=("Square",),
    )
    # ---------------------------------------------------------------- level 3
    _numeric(
        "MatVec",
        "Matrix-vector product: out = W x (W is m x n).",
        [_a("W", M), _a("x", V), _a("out", V, "out")],
        lambda r, n: {"W": _u(r, _rows(n), n), "x": _u(r, n)},
        lambda e: {"out": e["W"] @ e["x"]},
        3,
        split=MATRIX_SPLIT,
        prerequisites=("DotProduct",),
    )
    _numeric(
        "VecMat",
        "Vector-matrix product: out = x^T W (W is m x n, x has m elements).",
        [_a("x", V), _a("W", M), _a("out", V, "out")],
        lambda r, n: {"x": _u(r, _rows(n)), "W": _u(r, _rows(n), n)},
        lambda e: {"out": e["x"] @ e["W"]},
        3,
        split=MATRIX_SPLIT,
        prerequisites=("DotProduct",),
    )
    _numeric(
        "OuterProduct",
        "Outer product: out[i, j] = x[i] * y[j].",
        [_a("x", V), _a("y", V), _a("out", M, "out")],
        lambda r, n: {"x": _u(r, n), "y": _u(r, _rows(n))},
        lambda e: {"out": np.outer(e["x"], e["y"])},
        3,
        split=MATRIX_SPLIT,
        prerequisites=("Scale",),
    )
    # ---------------------------------------------------------------- level 4+
    lin = [_a("W", M), _a("b", V), _a("x", V), _a("out", V, "out")]

    def lin_gen(r, n):
        return {"W": _u(r, _rows(n), n), "b": _u(r, _rows(n)), "x": _u(r, n)}

    _numeric(
        "LinearLayer",
        "Linear layer: out = W x + b.",
        lin,
        lin_gen,
        lambda e: {"out": e["W"] @ e["x"] + e["b"]},
        4,
        split=MATRIX_SPLIT,
        prerequisites=("MatVec", "VectorAdd"),
    )
    _numeric(
        "MSE",
        "Mean squared error: out = mean_i (pred[i] - target[i])^2.",
        [_a("pred", V), _a("target", V), _a("out", S, "out")],
        lambda r, n: {"pred": _u(r, n), "target": _u(r, n)},
        lambda e: {"out": np.float64(np.mean((e["pred"] - e["target"]) ** 2))},
        4,
        prerequisites=("VectorSub", "Square", "Mean"),
    )
    _numeric(
        "MLPLayer",
        "One MLP layer: out = relu(W x + b).",
        lin,
        lin_gen,
        lambda e: {"out": np.maximum(e["W"] @ e["x"] + e["b"], 0.0)},
        5,
        split=MATRIX_SPLIT,
        prerequisites=("LinearLayer", "ReLU"),
    )

    def grad_oracle(e):
        r = e["W"] @ e["x"] + e["b"] - e["y"]
        g = 2.0 / len(r) * r
        return {"gW": np.outer(g, e["x"]), "gb": g}

    _numeric(
        "LinearGradient",
        "Gradient of the MSE of a linear layer, L = mean_i (W x + b - y)_i^2, with respect to "
        "W (gW = 2/m r x^T) and b (gb = 2/m r), where r = W x + b - y.",
        [_a("W", M), _a("b", V), _a("x", V), _a("y", V), _a("gW", M, "out"), _a("gb", V, "out")],
        lambda r, n: {**lin_gen(r, n), "y": _u(r, _rows(n))},
        grad_oracle,
        5,
        split=MATRIX_SPLIT,
        prerequisites=("LinearLayer", "VectorSub", "Scale", "OuterProduct"),
        constants={"two": 2.0},
    )

    def sgd_oracle(e):
        g = grad_oracle(e)
        return {"W": e["W"] - e["lr"] * g["gW"], "b": e["b"] - e["lr"] * g["gb"]}

    _numeric(
        "SGDStep",
        "One gradient step on a linear model for the MSE loss: W -= lr * dL/dW, b -= lr * dL/db.",
        [_a("W", M, "inout"), _a("b", V, "inout"), _a("x", V), _a("y", V), _a("lr", S)],
        lambda r, n: {**lin_gen(r, n), "y": _u(r, _rows(n)), "lr": np.float64(0.1)},
        sgd_oracle,
        6,
        split=MATRIX_SPLIT,
        prerequisites=("LinearGradient", "Scale", "VectorSub"),
    )
    _numeric(
        "TrainLinearRegression",
        "Train a linear regression model y = W x + b in the machine: run `steps` SGD steps "
        "with learning rate lr over the rows of the data (X, Y), cyclically.",
        [
            _a("W", M, "inout"),
            _a("b", V, "inout"),
            _a("X", M),
            _a("Y", M),
            _a("lr", S),
            _a("steps", S),
        ],
        _regression_example,
        _regression_oracle,
        7,
        split={"train_lengths": (8, 16), "test_lengths": (64, 128)},
        prerequisites=("SGDStep",),
        scorer=_regression_score,
        max_steps=lambda n: 2_000_000,
    )
    # ------------------------------------------------------------ algorithmic
    _algo(
        "Copy",
        "Copy the input sequence to the output.",
        x1,
        lambda r, n: {"x": _digits(r, n)},
        lambda e: {"out": e["x"].copy()},
        1,
    )
    _algo(
        "Reverse",
        "Reverse the input sequence.",
        x1,
        lambda r, n: {"x": _digits(r, n)},
        lambda e: {"out": e["x"][::-1].copy()},
        1,
    )
    _algo(
        "DuplicatedInput",
        "Every symbol of the input appears twice in a row; output each symbol once.",
        x1,
        _dup_gen,
        lambda e: {"out": e["x"][::2].copy()},
        1,
        constants={"two": 2.0},
    )
    _algo(
        "PrefixSum",
        "Running sum: out[i] = x[0] + ... + x[i].",
        x1,
        lambda r, n: {"x": _digits(r, n)},
        lambda e: {"out": np.cumsum(e["x"])},
        1,
    )
    _algo(
        "RepeatCopy",
        "Output the input, then the input reversed, then the input again.",
        x1,
        lambda r, n: {"x": _digits(r, n)},
        lambda e: {"out": np.concatenate([e["x"], e["x"][::-1], e["x"]])},
        2,
        prerequisites=("Reverse",),
    )
    # the helper compositions (CarryIn, Digit10, CountLE) are tasks too, registered here
    # because ReversedAddition and Sort list them as prerequisites and CountLE needs Sum
    from algind_gym.tasks.helper_tasks import register_helper_tasks

    register_helper_tasks()
    _algo(
        "ReversedAddition",
        "Add two numbers given as digit sequences, least significant digit first (base 10), "
        "zero-padded to length + 1; output the length + 1 digits of the sum.",
        [_a("a", V), _a("b", V), _a("out", V, "out")],
        _addition_gen,
        _addition_oracle,
        2,
        prerequisites=("VectorAdd", "CarryIn", "Digit10"),
    )
    _algo(
        "CountEqual",
        "Count the elements equal to a given value v.",
        [_a("x", V), _a("v", S), _a("out", S, "out")],
        lambda r, n: {"x": _digits(r, n), "v": np.float64(r.integers(0, 10))},
        lambda e: {"out": np.float64(np.count_nonzero(e["x"] == e["v"]))},
        3,
        prerequisites=("Sum",),
    )
    _algo(
        "ArgMax",
        "Index of the first largest element of a non-empty sequence.",
        xs,
        lambda r, n: {"x": _digits(r, n)},
        lambda e: {"out": np.float64(np.argmax(e["x"]))},
        4,
        prerequisites=("Max", "PrefixSum", "CountEqual"),
    )
    _algo(
        "Sort",
        "Sort a sequence of digits (0-9) in ascending order.",
        x1,
        lambda r, n: {"x": _digits(r, n)},
        _sort_oracle,
        4,
        prerequisites=("CountEqual", "PrefixSum", "Sum", "CountLE"),
        # the ten digit values and their counts: not a shape of the signature, so declared
        scratch=(Temp("vals", V, (10,)), Temp("c", V, (10,)), Temp("C", V, (10,))),
    )
