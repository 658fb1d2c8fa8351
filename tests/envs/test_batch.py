"""``bind_and_call``: the compiled loop and the numpy version write the same cells and report
the same write ranges, including faulted rows and full stacks."""

from __future__ import annotations

import numpy as np
import pytest

from algind_gym.cpu.backend import empty_write_ranges
from algind_gym.envs import AlgIndVectorEnv, batch
from algind_gym.machine.isa import Fault

pytestmark = pytest.mark.skipif(not batch.COMPILED, reason="needs numba")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compiled_bind_and_call_equals_numpy(seed):
    env = AlgIndVectorEnv(12, "MatVec", backend="transformer", n_examples=3, max_calls=6)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    first = env.envs[0]
    valid = np.flatnonzero(first.actions.valid)
    for _ in range(3):  # machines with some history: stack, slots, faults
        env.step(rng.choice(valid, size=12))
    cells = env.machines.cells.copy()
    lay = env.machines.layout
    fault, sp = lay.register("fault"), lay.register("sp")
    cells[rng.random(cells.shape[0]) < 0.2, fault] = float(Fault.ADDRESS)
    cells[rng.random(cells.shape[0]) < 0.1, sp] = float(lay.stack_end)  # full stacks
    ids = rng.choice(12, size=8, replace=False)
    acts = rng.choice(valid, size=8)
    skills, binds = env._cand_skill[acts], env._cand_binds[acts]
    rows = env._rows[ids]
    out = []
    for compiled in (True, False):
        c, w = cells.copy(), empty_write_ranges(cells.shape[0])
        if compiled:
            full = batch.bind_and_call(c, lay, env._calltable, rows, skills, binds, w)
        else:
            full = batch._bind_and_call_numpy(c, lay, env._calltable, rows, skills, binds, w)
        out.append((c, w, full))
    (c1, w1, f1), (c2, w2, f2) = out
    np.testing.assert_array_equal(f1, f2)
    assert f1.any() and not f1.all()
    np.testing.assert_array_equal(c1.view(np.uint8), c2.view(np.uint8))
    np.testing.assert_array_equal(w1, w2)
    assert not np.array_equal(c1, cells)  # calls were started
