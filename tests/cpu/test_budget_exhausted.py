"""The backend's post-run check (machines still running get ``BUDGET_EXHAUSTED``): the
compiled pass against the numpy expression, on edge values and both cell dtypes."""

from __future__ import annotations

import numpy as np
import pytest

from algind_gym.cpu import backend
from algind_gym.machine.isa import Fault


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_compiled_check_equals_numpy(dtype):
    rng = np.random.default_rng(0)
    c = rng.normal(size=(400, 8)).astype(dtype)
    halt, fault = backend._HALT, backend._FAULT
    c[:, halt] = rng.choice([0.0, -0.0, 1.0, np.nan, 0.5], 400)
    c[:, fault] = rng.choice([0.0, -0.0, 0.7, -0.7, 1.0, 3.0, np.nan, np.inf], 400)
    a, b = c.copy(), c.copy()
    backend._budget_exhausted(a)
    backend._budget_exhausted_numpy(b)
    assert a.tobytes() == b.tobytes()
    still = (c[:, halt] == 0) & (np.trunc(c[:, fault]) == 0)
    assert still.any() and (~still).any()
    assert (a[still, fault] == float(Fault.BUDGET_EXHAUSTED)).all()
    assert a[~still].tobytes() == c[~still].tobytes()


def test_run_marks_a_machine_out_of_budget():
    from algind_gym.envs import SkillCompositionEnv

    env = SkillCompositionEnv("DotProduct", backend="transformer", n_examples=2)
    env.reset(seed=0)
    state = env.state
    state.cells[:, backend._HALT] = 0  # running, with no budget to run in
    state.cells[:, backend._FAULT] = 0
    backend.make_backend("transformer").run(state, max_steps=0)
    assert (state.cells[:, backend._FAULT] == float(Fault.BUDGET_EXHAUSTED)).all()
