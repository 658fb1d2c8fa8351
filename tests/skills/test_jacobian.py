"""In-machine Jacobians against torch.autograd.functional.jacobian."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algind_gym.skills import builtin_library, run_skill
from algind_gym.skills.compose import jacobian_plan
from algind_gym.tasks import get_task
from algind_gym.tasks.reference import add_reference_skill


def _library():
    lib = builtin_library()
    lib.compose(
        "mlp",
        [("x", "vector"), ("out", "vector")],
        [("linear", ["x", "t", "weights"]), ("mapc", ["&s_max", "t", 0, "out"])],
        temps=[("t", "vector", ["weights.rows"])],
        weights="matrix",
        description="MLP layer relu(W x + b) with weights [W | b]",
    )
    # The curriculum's ReLU skill (a composition) has elementwise Jacobian code too, so an
    # MLP built from it gets Jacobian code by the chain rule as well.
    add_reference_skill(lib, get_task("ReLU"))
    add_reference_skill(lib, get_task("Negate"))
    lib.compose(
        "mlp2",
        [("x", "vector"), ("out", "vector")],
        [("linear", ["x", "t", "weights"]), ("ReLU", ["t", "u"]), ("Negate", ["u", "out"])],
        temps=[("t", "vector", ["weights.rows"]), ("u", "vector", ["weights.rows"])],
        weights="matrix",
        description="-relu(W x + b)",
    )
    return lib


LIB = _library()


def _torch_fn(name, x, m, n):
    xt = torch.tensor(x)

    def lin(th):
        w = th.reshape(m, n + 1)
        return w[:, :n] @ xt + w[:, n]

    return {
        "linear": lin,
        "mlp": lambda th: torch.relu(lin(th)),
        "mlp2": lambda th: -torch.relu(lin(th)),
    }[name]


@pytest.mark.parametrize("name", ["linear", "mlp", "mlp2"])
@pytest.mark.parametrize("seed", range(4))
def test_jacobian_matches_autograd(name, seed):
    rng = np.random.default_rng(seed)
    m, n = int(rng.integers(1, 5)), int(rng.integers(0, 5))
    x, wb = rng.normal(size=n), rng.normal(size=(m, n + 1))
    p = m * (n + 1)
    out, res = run_skill(
        LIB, name, {"x": x[None], "out": np.zeros((1, m, p)), "weights": wb[None]}, mode=1
    )
    assert res.faults[0] == 0
    want = torch.autograd.functional.jacobian(_torch_fn(name, x, m, n), torch.tensor(wb.ravel()))
    np.testing.assert_allclose(out["out"][0], want.numpy(), rtol=1e-12, atol=1e-12)
    # output mode still computes the function
    val, _ = run_skill(LIB, name, {"x": x[None], "out": np.zeros((1, m)), "weights": wb[None]})
    np.testing.assert_allclose(
        val["out"][0], _torch_fn(name, x, m, n)(torch.tensor(wb.ravel())).numpy()
    )


def test_jacobian_kinds():
    assert LIB.get("linear").jacobian == "weights"
    assert LIB.get("mlp").jacobian == "weights"
    assert LIB.get("ReLU").jacobian == "elementwise"


def test_elementwise_jacobian_of_composed_relu():
    """Tangent mode: T <- diag(relu'(x)) T, in place."""
    x = np.array([[1.0, -2.0, 3.0]])
    t = np.arange(6.0).reshape(1, 3, 2) + 1
    out, res = run_skill(LIB, "ReLU", {"x": x, "out": t.copy()}, mode=1)
    assert res.faults[0] == 0
    np.testing.assert_array_equal(out["out"][0], t[0] * np.array([[1.0], [0.0], [1.0]]))


def test_no_jacobian_outside_the_chain_rule_pattern():
    lib = builtin_library()
    sk = lib.compose(
        "sq",
        [("x", "vector"), ("out", "vector")],
        [("zipmap", ["&s_mul", "x", "x", "out"])],
        description="x * x",
    )
    assert sk.jacobian is None
    plan, why = jacobian_plan(sk.composition, lib.get)
    assert plan is None and "twice" in why
