"""The thread policy of the numba kernel's batched calls (:mod:`algind_gym.cpu.kernel`).

This module is the one place that states the thread policy (the README's CPU section
points here). Machines are independent, so a batched call can run on several cores:
:func:`~algind_gym.cpu.kernel.fused_range` is the kernel over a range of machines,
:func:`~algind_gym.cpu.kernel.fused_run` the serial driver (the whole batch on the calling
thread) and :func:`~algind_gym.cpu.kernel.fused_run_parallel` the parallel one (chunks of
machines on numba's threads with ``prange``, each chunk with its own scratch arrays and
error code). Both run the same compiled kernel on each machine, so the results are
bit-identical whatever the thread count (tested in tests/cpu/test_parallel.py).
:func:`run_machines` chooses:

* threads: the ``threads`` argument of :func:`~algind_gym.cpu.backend.make_backend`,
  :class:`~algind_gym.cpu.backend.TransformerBackend` and
  :class:`~algind_gym.cpu.model.TransformerCPU`; None means ``$ALGIND_CPU_THREADS`` if set,
  else numba's pool size ``NUMBA_NUM_THREADS`` (the number of cores unless set). Values
  outside ``1..NUMBA_NUM_THREADS`` are refused at construction. A call uses at most
  ``numba.get_num_threads()`` threads of the calling thread, so a program that lowered it
  with ``numba.set_num_threads`` (RL training: ``agents/rl/train.py``) keeps its count;
* calls on fewer than :data:`PARALLEL_MIN_ROWS` (256) machines, or with 0 steps, run the
  serial driver, so one environment's step (K machines) and ``SyncVectorEnv``'s calls never
  pay for threads. ``experiments/bench_cpu.py`` (section 2b) prints one thread against
  forced parallel and the default policy at 8..4096 machines and 0, 1 and 100 steps. On
  the shared 2-core machine (load 7-14 from other jobs) a parallel launch waited 150-700 us
  for the threads to be scheduled, so parallel lost below about 4096 machines at 1 step and
  paid from 128-256 machines at 100 steps in one run and nowhere in another; 256 is a
  conservative choice for that machine, not an idle measurement (a model's
  ``TransformerCPU.parallel_min_rows`` overrides it);
* a parallel call on ``t`` threads splits its machines into :data:`CHUNKS_PER_THREAD`
  ``* t`` strided chunks, which numba's threads take one at a time
  (``numba.parallel_chunksize(1)``), so a thread the OS leaves waiting does not hold the
  whole call back as with one chunk per thread (on the loaded machine, 1024 machines x 100
  steps: 25.7 ms with 2 static chunks, 19.8 ms with 16 dynamic ones, 14.0 ms serial);
* one parallel call at a time per process: a call made while another Python thread is
  inside the parallel driver runs the serial driver instead of waiting (numba's
  ``workqueue`` layer aborts the process on concurrent launches; the lock makes that
  impossible for this kernel whatever the layer, but the v2 kernel's parallel calls,
  :mod:`algind_gym.cpu_v2`, do not take it);
* threading layer: unless the user chose one (``NUMBA_THREADING_LAYER``), importing
  :mod:`algind_gym.cpu.kernel` sets numba's to ``"forksafe"`` (TBB, a non-GNU OpenMP, else ``workqueue``):
  numba's default picks GNU OpenMP where TBB is missing, and a process forked after a
  parallel call (``multiprocessing``'s fork, a forked vector env) then terminates at its
  first parallel call ("fork() called from a process already using GNU OpenMP"). The
  choice applies to every numba ``parallel=True`` function of the process and has no
  effect once some parallel function has run.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from algind_gym.cpu import kernel

numba = kernel.numba

THREADS_ENV = "ALGIND_CPU_THREADS"
"""Environment variable with the default thread count of a batched call."""

PARALLEL_MIN_ROWS = 256
"""Calls on fewer machines than this run the serial driver."""

CHUNKS_PER_THREAD = 8
"""A parallel call splits its machines into this many chunks per thread, handed out one at a
time."""

_PARALLEL_LOCK = threading.Lock()


@contextmanager
def parallel_launch() -> Iterator[bool]:
    """The process's one parallel launch at a time: yields True while holding it (run the
    parallel driver), or False at once if another Python thread holds it (run the serial
    driver instead of waiting). Every ``parallel=True`` driver of the package goes through
    this, since numba's ``workqueue`` layer aborts the process on concurrent launches.

    Example:
        >>> with parallel_launch() as ok, parallel_launch() as nested:
        ...     ok, nested
        (True, False)
    """
    if not _PARALLEL_LOCK.acquire(blocking=False):
        yield False
        return
    try:
        yield True
    finally:
        _PARALLEL_LOCK.release()


def max_threads() -> int:
    """The most threads a call can use: numba's pool size (``NUMBA_NUM_THREADS``, read by
    numba at import; it defaults to the number of cores). 1 without numba."""
    return int(numba.config.NUMBA_NUM_THREADS) if numba is not None else 1


def resolve_threads(threads: int | None = None) -> int:
    """The thread count of a batched call: ``threads``, else ``$ALGIND_CPU_THREADS``, else
    :func:`max_threads`; a clear error for anything outside ``1..max_threads()``.

    Example:
        >>> resolve_threads(1)
        1
    """
    source = "threads"
    if threads is None:
        text = os.environ.get(THREADS_ENV, "").strip()
        if not text:
            return max_threads()
        source = f"${THREADS_ENV}"
        try:
            threads = int(text)
        except ValueError:
            raise ValueError(
                f"{source} must be an integer thread count, got {text!r}; unset it to use "
                f"all {max_threads()} numba threads"
            ) from None
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)):
        raise TypeError(f"{source} must be an int or None, got {threads!r}")
    top = max_threads()
    if not 1 <= threads <= top:
        raise ValueError(
            f"{source} must be in 1..{top}, got {threads} ({top} is numba's thread pool, "
            "NUMBA_NUM_THREADS: set it before numba's first import for more)"
        )
    return int(threads)


def run_machines(
    cells: np.ndarray,
    n_steps: int,
    tables: tuple,
    written: np.ndarray,
    split: int,
    threads: int = 1,
    min_rows: int = PARALLEL_MIN_ROWS,
) -> int:
    """The thread policy (module docs): ``n_steps`` passes on ``cells`` in
    place through the parallel driver or the serial one; returns the kernel's error code.

    ``tables`` are the arguments ``control`` ... ``mode_address`` of
    :func:`~algind_gym.cpu.kernel.fused_run`.
    The parallel driver runs when ``threads > 1``, there are at least ``min_rows``
    machines, numba's thread count in the calling thread (``numba.get_num_threads()``) is
    above 1, and no other Python thread is inside a parallel call; else the serial one.
    """
    rows = cells.shape[0]
    if threads > 1 and rows >= min_rows and n_steps > 0:
        used = min(threads, numba.get_num_threads())
        if used > 1:
            with parallel_launch() as ok:
                if ok:  # chunks taken one at a time by whichever thread is free (dynamic)
                    chunks = min(rows, CHUNKS_PER_THREAD * used)
                    with numba.parallel_chunksize(1):
                        return int(
                            kernel.fused_run_parallel(
                                cells, n_steps, *tables, written, split, chunks
                            )
                        )
    return int(kernel.fused_run(cells, n_steps, *tables, written, split))
