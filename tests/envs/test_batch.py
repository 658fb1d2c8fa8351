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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("task", ["DotProduct", "Copy", "LinearGradient"])
def test_compiled_scoring_equals_score_rows(task, dtype):
    """``score_many``'s compiled loop gives what :func:`score_rows` and the fault column
    give, bit for bit: values near the tolerance, NaN, exact and inexact tasks, several
    outputs (LinearGradient has two)."""
    env = AlgIndVectorEnv(4, task, backend="transformer", n_examples=3, dtype=dtype)
    env.reset(seed=0)
    first = env.envs[0]
    index, tol = first._index, first.task.tolerance
    rng = np.random.default_rng(0)
    cells = env.machines.cells.copy()
    rows = np.arange(3)
    want = index.expected(first.ws)
    cells[np.ix_(rows, index.out_cols)] = want.astype(dtype)
    noise = rng.choice([0.0, 1e-12, 1e-7, 1e-3, np.nan, 1.0], size=want.shape)
    noise[0], noise[2, 0] = 0.0, 1.0  # machine 0 right everywhere, machine 2 wrong somewhere
    cells[np.ix_(rows, index.out_cols)] += noise.astype(dtype)
    cells[1, first._fault_col] = float(Fault.ADDRESS)
    got = batch._score_compiled(cells, rows, index, want, tol, first._fault_col)
    ref = (*batch.score_rows(cells, rows, index, want, tol), cells[rows, first._fault_col] != 0)
    assert [a.dtype for a in got] == [b.dtype for b in ref]
    for a, b in zip(got, ref, strict=True):
        assert a.tobytes() == b.tobytes()
    assert got[3].tolist() == [False, True, False]
    assert got[1][0] and not got[1][2]  # both cases occur
