"""The parallel driver of the numba kernel (:mod:`algind_gym.cpu.kernel`) and its thread policy
(:mod:`algind_gym.cpu.threads`): bit-identical to the serial driver on random programs (faults, HALT, batches
not divisible by the chunk count, write ranges, the error code), the policy's choices, its
argument errors, and two processes that used to abort: Python threads calling at once on
numba's ``workqueue`` layer, and a forked child after a parallel call."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from algind_gym.cpu import kernel as K
from algind_gym.cpu import threads as T
from algind_gym.cpu.backend import empty_write_ranges, make_backend
from algind_gym.cpu.fuzz import fuzz_layout, random_machines
from algind_gym.cpu.model import TransformerCPU
from algind_gym.machine.isa import Fault, encode
from algind_gym.machine.state import MachineState
from tests.cpu.conftest import bits

LAYOUT = fuzz_layout()
_CPUS = {
    np.dtype(dt).name: TransformerCPU(LAYOUT, dt, kernel="numba") for dt in (np.float32, np.float64)
}
MULTI = T.max_threads() > 1
needs_threads = pytest.mark.skipif(not MULTI, reason="numba has one thread (NUMBA_NUM_THREADS=1)")


def _tables(dtype) -> tuple:
    cpu = _CPUS[np.dtype(dtype).name]
    return cpu._kernel_tables(), cpu._split


def _both(cells: np.ndarray, steps: int, tables: tuple, split: int, chunks: int, record: bool):
    """(cells, written, error) of the serial and of the parallel driver on copies of cells."""
    out = []
    for parallel in (False, True):
        c = cells.copy()
        w = empty_write_ranges(len(c)) if record else np.empty((0, 4), np.int64)
        if parallel:
            err = K.fused_run_parallel(c, steps, *tables, w, split, chunks)
        else:
            err = K.fused_run(c, steps, *tables, w, split)
        out.append((c, w, int(err)))
    return out


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from([np.float32, np.float64]),
    batch=st.integers(1, 70),
    chunks=st.integers(1, 9),
    steps=st.integers(0, 60),
    garbage=st.sampled_from([0.0, 0.05, 0.3]),
    record=st.booleans(),
)
def test_parallel_driver_equals_serial_bit_for_bit(
    seed, dtype, batch, chunks, steps, garbage, record
):
    """Random programs (garbage operands: faults of every kind), some machines halted or
    faulted before the call, any chunk count (more chunks than machines included)."""
    state = random_machines(batch, seed, dtype, garbage=garbage)
    rng = np.random.default_rng(seed)
    state.cells[rng.random(batch) < 0.15, LAYOUT.register("halt")] = 1.0
    state.cells[rng.random(batch) < 0.1, LAYOUT.register("fault")] = float(Fault.DIVISION_BY_ZERO)
    tables, split = _tables(dtype)
    (c0, w0, e0), (c1, w1, e1) = _both(state.cells, steps, tables, split, chunks, record)
    assert e0 == e1 == 0
    assert np.array_equal(bits(c0), bits(c1))
    assert np.array_equal(w0, w1)
    if steps > 0 and garbage > 0 and batch > 20:  # the draw did exercise faults and halts
        assert (c0[:, LAYOUT.register("fault")] != 0).any()


def test_parallel_driver_reports_the_serial_error_code():
    """Tables that let a write leave the state (address and protection checks removed): both
    drivers return ERR_WRITE_OUT_OF_RANGE, wherever the bad machine sits among the chunks."""
    n = LAYOUT.n_cells
    main = LAYOUT.skill("main").code_start
    state = MachineState.zeros(LAYOUT, 10, np.float32)
    state.load_code(main, encode("MOVI", 8, 1.0) + encode("HALT"))
    state.set_register("pc", main)
    tables, split = _tables(np.float32)
    tables = list(tables)
    tables[8] = np.full_like(tables[8], np.inf)  # check_hi: no address is out of range
    tables[3] = np.zeros_like(tables[3])  # protected: no cell is protected
    bad = state.cells.copy()
    bad[7, main + 1] = n + 5  # MOVI's destination beyond the last cell
    for chunks in (1, 3, 4, 10):
        (_, _, e0), (_, _, e1) = _both(bad, 5, tuple(tables), split, chunks, True)
        assert e0 == e1 == K.ERR_WRITE_OUT_OF_RANGE, chunks
    (c0, _, e0), (c1, _, e1) = _both(state.cells, 5, tuple(tables), split, 3, True)
    assert e0 == e1 == 0 and np.array_equal(c0, c1)


@needs_threads
@pytest.mark.parametrize("rows", [1, 63, 64, 257])
def test_backend_threads_equal_one_thread(rows, dtype):
    """Through the backend (the policy picks each driver) with write ranges: bit-identical."""
    start = random_machines(rows, rows, dtype, garbage=0.05)
    results = []
    for threads in (1, T.max_threads()):
        be = make_backend("transformer", threads=threads)
        be.model(LAYOUT, start.dtype).parallel_min_rows = 2
        s, w = start.copy(), empty_write_ranges(rows)
        for steps in (7, 0, 40):
            be.run(s, steps, written=w)
        results.append((s.cells, w))
    assert np.array_equal(bits(results[0][0]), bits(results[1][0]))
    assert np.array_equal(results[0][1], results[1][1])


@pytest.fixture
def calls(monkeypatch):
    """Which driver :func:`T.run_machines` calls ("serial" / "parallel", chunk count)."""
    seen: list = []
    serial, parallel = K.fused_run, K.fused_run_parallel

    def spy_serial(*args):
        seen.append(("serial", None))
        return serial(*args)

    def spy_parallel(*args):
        seen.append(("parallel", args[-1]))
        return parallel(*args)

    monkeypatch.setattr(K, "fused_run", spy_serial)
    monkeypatch.setattr(K, "fused_run_parallel", spy_parallel)
    return seen


def _policy(rows: int, steps: int = 3, threads: int = 2, min_rows: int = 16) -> None:
    tables, split = _tables(np.float32)
    cells = random_machines(rows, 1).cells
    T.run_machines(cells, steps, tables, np.empty((0, 4), np.int64), split, threads, min_rows)


def test_policy_runs_small_calls_and_one_thread_serially(calls):
    _policy(15)  # below min_rows
    _policy(64, threads=1)
    _policy(64, steps=0)
    assert calls == [("serial", None)] * 3


@needs_threads
def test_policy_runs_large_calls_in_parallel_and_yields_to_a_busy_lock(calls):
    _policy(16)
    assert calls == [("parallel", min(16, 2 * T.CHUNKS_PER_THREAD))]  # chunks per thread
    with T.parallel_launch() as held:  # another thread inside the parallel driver
        assert held
        _policy(64)
    assert calls[-1] == ("serial", None)
    _policy(64)
    assert calls[-1] == ("parallel", 2 * T.CHUNKS_PER_THREAD)
    _policy(3, min_rows=2)  # never more chunks than machines
    assert calls[-1] == ("parallel", 3)


@needs_threads
def test_policy_keeps_the_callers_numba_thread_count(calls):
    """RL training lowers numba's thread count (agents/rl/train.py): the kernel keeps it."""
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        _policy(64)
    finally:
        numba.set_num_threads(before)
    assert calls == [("serial", None)]


def test_threads_argument_errors(monkeypatch):
    top = T.max_threads()
    assert T.resolve_threads(None) == top
    monkeypatch.setenv(T.THREADS_ENV, "1")
    assert T.resolve_threads(None) == 1
    assert make_backend("transformer").threads == 1
    monkeypatch.setenv(T.THREADS_ENV, "two")
    with pytest.raises(ValueError, match=r"\$ALGIND_CPU_THREADS must be an integer.*'two'"):
        make_backend("transformer")
    monkeypatch.setenv(T.THREADS_ENV, str(top + 1))
    with pytest.raises(ValueError, match=rf"\$ALGIND_CPU_THREADS must be in 1\.\.{top}"):
        TransformerCPU(LAYOUT)
    monkeypatch.delenv(T.THREADS_ENV)
    for bad in (0, -1, top + 1):
        with pytest.raises(ValueError, match=rf"threads must be in 1\.\.{top}, got {bad}"):
            make_backend("transformer", threads=bad)
    with pytest.raises(TypeError, match="threads must be an int or None"):
        make_backend("transformer", threads=1.5)
    with pytest.raises(ValueError, match="threads applies to the 'transformer' backend"):
        make_backend("reference", threads=1)


_SCRIPT = textwrap.dedent(
    """
    import multiprocessing, threading
    import numba, numpy as np
    from algind_gym.cpu import make_backend
    from algind_gym.cpu.fuzz import random_machines

    be = make_backend("transformer", threads=2)
    ref = random_machines(256, 5)
    make_backend("transformer", threads=1).run(ref, 30)

    def work(_=None):
        for _ in range(ROUNDS):
            s = random_machines(256, 5)
            be.run(s, 30)
            assert np.array_equal(s.cells.view(np.int32), ref.cells.view(np.int32))
        return True

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert pool.map(work, range(2)) == [True, True]
    print("layer", numba.threading_layer())
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="fork and numba's workqueue: Linux")
@pytest.mark.parametrize("layer", [None, pytest.param("workqueue", marks=pytest.mark.slow)])
def test_python_threads_and_forked_children_run_the_parallel_kernel(layer):
    """Three Python threads call the parallel kernel at once (workqueue aborts the process
    on a concurrent launch unless the lock serialises it), then forked children call it
    (numba's default GNU OpenMP layer terminated them; the module picks "forksafe")."""
    env = dict(os.environ, NUMBA_NUM_THREADS="2")
    env.pop("NUMBA_THREADING_LAYER", None)
    if layer:
        env["NUMBA_THREADING_LAYER"] = layer
    script = _SCRIPT.replace("ROUNDS", "10")
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "layer" in proc.stdout
    if layer:
        assert f"layer {layer}" in proc.stdout
