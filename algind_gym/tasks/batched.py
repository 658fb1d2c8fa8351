"""Batched generators and oracles of the built-in tasks: K examples in one numpy call.

An environment draws K examples of one length at every episode (and a vector env does so
for every sub-environment that resets), so per-example Python calls were most of a reset.
:data:`BATCHED` gives, per built-in task, a ``batch_generator(rng, length, k)`` and a
``batch_oracle(examples)`` (see :meth:`TaskSpec.draw <algind_gym.tasks.spec.TaskSpec.draw>`)
that work on arrays with a leading axis of K. Each draws from the same distribution as the
task's per-example generator in :mod:`algind_gym.tasks.curriculum` (reals from U(-1, 1),
digits from 0..9, ``m = n // 2 + 1`` rows) and computes what its per-example oracle does
on every example (``tests/tasks/test_batched.py`` checks both against the per-example
functions). The random stream is consumed argument by argument for all K examples at
once, so a seed gives other examples than K per-example calls would.

``TrainLinearRegression`` (rejection sampling, an SGD loop) keeps its per-example
functions.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from algind_gym.tasks.spec import Example

Gen = Callable[[np.random.Generator, int, int], Example]
Oracle = Callable[[Example], Example]


def _u(rng: np.random.Generator, k: int, *shape: int) -> np.ndarray:
    return rng.uniform(-1.0, 1.0, size=(k, *shape))


def _digits(rng: np.random.Generator, k: int, *shape: int) -> np.ndarray:
    return rng.integers(0, 10, size=(k, *shape)).astype(np.float64)


def _rows(n: int) -> int:
    return n // 2 + 1


def _vec2(rng, n, k):
    return {"x": _u(rng, k, n), "y": _u(rng, k, n)}


def _vec1(rng, n, k):
    return {"x": _u(rng, k, n)}


def _digits1(rng, n, k):
    return {"x": _digits(rng, k, n)}


def _lin(rng, n, k):
    return {"W": _u(rng, k, _rows(n), n), "b": _u(rng, k, _rows(n)), "x": _u(rng, k, n)}


def _matvec(W: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``W[i] @ x[i]`` for every example i: ``(K, m, n) x (K, n) -> (K, m)``."""
    return np.einsum("kmn,kn->km", W, x)


def _grad(e: Example) -> Example:
    r = _matvec(e["W"], e["x"]) + e["b"] - e["y"]
    g = 2.0 / r.shape[1] * r
    return {"gW": g[:, :, None] * e["x"][:, None, :], "gb": g}


def _sgd(e: Example) -> Example:
    g, lr = _grad(e), e["lr"]
    return {"W": e["W"] - lr[:, None, None] * g["gW"], "b": e["b"] - lr[:, None] * g["gb"]}


def _addition_gen(rng, n, k):
    a, b = np.zeros((k, n + 1)), np.zeros((k, n + 1))
    a[:, :n], b[:, :n] = _digits(rng, k, n), _digits(rng, k, n)
    return {"a": a, "b": b}


def _addition(e: Example) -> Example:
    a, b = e["a"], e["b"]
    out, carry = np.zeros_like(a), np.zeros(a.shape[0])
    for i in range(a.shape[1]):
        s = a[:, i] + b[:, i] + carry
        out[:, i], carry = s % 10, s // 10
    return {"out": out}


def _out(f: Callable[[Example], np.ndarray]) -> Oracle:
    return lambda e: {"out": f(e)}


BATCHED: dict[str, tuple[Gen, Oracle]] = {
    # level 1
    "VectorAdd": (_vec2, _out(lambda e: e["x"] + e["y"])),
    "VectorSub": (_vec2, _out(lambda e: e["x"] - e["y"])),
    "VectorMul": (_vec2, _out(lambda e: e["x"] * e["y"])),
    "Scale": (
        lambda r, n, k: {"s": _u(r, k), "x": _u(r, k, n)},
        _out(lambda e: e["s"][:, None] * e["x"]),
    ),
    "Square": (_vec1, _out(lambda e: e["x"] * e["x"])),
    "ReLU": (_vec1, _out(lambda e: np.maximum(e["x"], 0.0))),
    "Abs": (_vec1, _out(lambda e: np.abs(e["x"]))),
    "Negate": (_vec1, _out(lambda e: -e["x"])),
    # level 2
    "Sum": (_vec1, _out(lambda e: np.sum(e["x"], axis=1))),
    "Max": (_vec1, _out(lambda e: np.max(e["x"], axis=1))),
    "Min": (_vec1, _out(lambda e: np.min(e["x"], axis=1))),
    "Mean": (_vec1, _out(lambda e: np.mean(e["x"], axis=1))),
    "DotProduct": (_vec2, _out(lambda e: np.einsum("ki,ki->k", e["x"], e["y"]))),
    "SumOfSquares": (_vec1, _out(lambda e: np.einsum("ki,ki->k", e["x"], e["x"]))),
    # level 3
    "MatVec": (
        lambda r, n, k: {"W": _u(r, k, _rows(n), n), "x": _u(r, k, n)},
        _out(lambda e: _matvec(e["W"], e["x"])),
    ),
    "VecMat": (
        lambda r, n, k: {"x": _u(r, k, _rows(n)), "W": _u(r, k, _rows(n), n)},
        _out(lambda e: np.einsum("km,kmn->kn", e["x"], e["W"])),
    ),
    "OuterProduct": (
        lambda r, n, k: {"x": _u(r, k, n), "y": _u(r, k, _rows(n))},
        _out(lambda e: e["x"][:, :, None] * e["y"][:, None, :]),
    ),
    # level 4+
    "LinearLayer": (_lin, _out(lambda e: _matvec(e["W"], e["x"]) + e["b"])),
    "MSE": (
        lambda r, n, k: {"pred": _u(r, k, n), "target": _u(r, k, n)},
        _out(lambda e: np.mean((e["pred"] - e["target"]) ** 2, axis=1)),
    ),
    "MLPLayer": (_lin, _out(lambda e: np.maximum(_matvec(e["W"], e["x"]) + e["b"], 0.0))),
    "LinearGradient": (lambda r, n, k: {**_lin(r, n, k), "y": _u(r, k, _rows(n))}, _grad),
    "SGDStep": (
        lambda r, n, k: {**_lin(r, n, k), "y": _u(r, k, _rows(n)), "lr": np.full(k, 0.1)},
        _sgd,
    ),
    # algorithmic
    "Copy": (_digits1, _out(lambda e: e["x"].copy())),
    "Reverse": (_digits1, _out(lambda e: e["x"][:, ::-1].copy())),
    "DuplicatedInput": (
        lambda r, n, k: {"x": np.repeat(_digits(r, k, n), 2, axis=1)},
        _out(lambda e: e["x"][:, ::2].copy()),
    ),
    "PrefixSum": (_digits1, _out(lambda e: np.cumsum(e["x"], axis=1))),
    "RepeatCopy": (
        _digits1,
        _out(lambda e: np.concatenate([e["x"], e["x"][:, ::-1], e["x"]], axis=1)),
    ),
    "ReversedAddition": (_addition_gen, _addition),
    "CountEqual": (
        lambda r, n, k: {"x": _digits(r, k, n), "v": _digits(r, k)},
        _out(lambda e: np.count_nonzero(e["x"] == e["v"][:, None], axis=1).astype(np.float64)),
    ),
    "ArgMax": (_digits1, _out(lambda e: np.argmax(e["x"], axis=1).astype(np.float64))),
    "Sort": (_digits1, _out(lambda e: np.sort(e["x"], axis=1))),
    # helper tasks (algind_gym.tasks.helper_tasks)
    "CarryIn": (
        lambda r, n, k: {
            "prev": r.integers(0, 20, size=k).astype(np.float64),
            "t": r.integers(0, 19, size=k).astype(np.float64),
        },
        _out(lambda e: e["t"] + (e["prev"] >= 10)),
    ),
    "Digit10": (
        lambda r, n, k: {"q": r.integers(0, 20, size=k).astype(np.float64)},
        _out(lambda e: e["q"] % 10),
    ),
    "CountLE": (
        lambda r, n, k: {"v": _digits(r, k, n), "s": _digits(r, k)},
        _out(lambda e: np.count_nonzero(e["v"] <= e["s"][:, None], axis=1).astype(np.float64)),
    ),
}
"""Per built-in task name, its ``(batch_generator, batch_oracle)``."""


UNIFORM_DRAWS: dict[str, Callable[[int, int], list[tuple[str, tuple[int, ...]]]]] = {
    "VectorAdd": lambda n, k: [("x", (k, n)), ("y", (k, n))],
    "VectorSub": lambda n, k: [("x", (k, n)), ("y", (k, n))],
    "VectorMul": lambda n, k: [("x", (k, n)), ("y", (k, n))],
    "Scale": lambda n, k: [("s", (k,)), ("x", (k, n))],
    "Square": lambda n, k: [("x", (k, n))],
    "ReLU": lambda n, k: [("x", (k, n))],
    "Abs": lambda n, k: [("x", (k, n))],
    "Negate": lambda n, k: [("x", (k, n))],
    "Sum": lambda n, k: [("x", (k, n))],
    "Max": lambda n, k: [("x", (k, n))],
    "Min": lambda n, k: [("x", (k, n))],
    "Mean": lambda n, k: [("x", (k, n))],
    "DotProduct": lambda n, k: [("x", (k, n)), ("y", (k, n))],
    "SumOfSquares": lambda n, k: [("x", (k, n))],
    "MatVec": lambda n, k: [("W", (k, _rows(n), n)), ("x", (k, n))],
    "VecMat": lambda n, k: [("x", (k, _rows(n))), ("W", (k, _rows(n), n))],
    "OuterProduct": lambda n, k: [("x", (k, n)), ("y", (k, _rows(n)))],
    "LinearLayer": lambda n, k: [("W", (k, _rows(n), n)), ("b", (k, _rows(n))), ("x", (k, n))],
    "MSE": lambda n, k: [("pred", (k, n)), ("target", (k, n))],
    "MLPLayer": lambda n, k: [("W", (k, _rows(n), n)), ("b", (k, _rows(n))), ("x", (k, n))],
}
"""Per built-in task whose batched generator (in :data:`BATCHED`) only draws U(-1, 1)
arrays, one ``rng.uniform`` call per entry: the entries in the order drawn and their shapes
at length ``n`` with ``k`` examples. ``rng.uniform(-1, 1, size)`` is ``-1 + 2 * u`` of the
next ``size`` doubles ``u`` of ``rng.random``, so :func:`~algind_gym.tasks.workspace.refill_group`
draws them (and the uninitialised values after them) in one ``rng.random`` call per
workspace, or for all workspaces of a group in one compiled call
(:func:`algind_gym.envs.seeding.uniform_doubles`, the vector env's autoreset);
``tests/envs/test_refill_group.py`` checks the bits against the generator."""


def batched(name: str) -> dict[str, Gen | Oracle]:
    """``TaskSpec`` keyword arguments of a built-in task's batched functions (none if it
    has none)."""
    if name not in BATCHED:
        return {}
    gen, oracle = BATCHED[name]
    return {"batch_generator": gen, "batch_oracle": oracle}
