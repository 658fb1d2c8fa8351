"""Fixtures shared by every test package."""

from __future__ import annotations

import numpy as np
import pytest

# A script run by tests/tasks/test_extension.py (it registers a task when imported), not a
# module to collect doctests from.
collect_ignore = ["tasks/extension_example.py", "agents/tiny_tasks.py"]


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    """Both supported cell dtypes."""
    return request.param


@pytest.fixture(autouse=True)
def _isolated_thread_counts():
    """Each test starts with numba's and torch's thread counts of the worker's start and
    leaves them so: a test that changes either (RL training sets both to 1 while it runs and
    restores them when it returns, ``agents/rl/train.py``; a test that fails halfway, or one
    that sets them itself) must not turn the parallel kernel off in every later test of the
    same worker (tests/envs/test_vector_env.py asserts that the vector env's calls ran on
    the parallel driver)."""
    import numba
    import torch

    before = (numba.get_num_threads(), torch.get_num_threads())
    numba.set_num_threads(_START_THREADS[0])
    torch.set_num_threads(_START_THREADS[1])
    yield
    numba.set_num_threads(before[0])
    torch.set_num_threads(before[1])


def _start_threads() -> tuple[int, int]:
    """numba's count as the worker starts; torch's too, except under pytest-xdist with at
    least one worker per core (``-n auto``): there each worker already has a core, and
    torch's intra-op threads on every worker would share the cores with the other workers
    (on the 2-core CI machine the gradient DotProduct test took 85 s that way, 24 s alone
    on one thread). numba keeps its count: tests assert that the vector env's calls run on
    the parallel driver."""
    import os

    import numba
    import torch

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and workers >= (os.cpu_count() or 1):
        torch.set_num_threads(1)
    return numba.get_num_threads(), torch.get_num_threads()


_START_THREADS = _start_threads()
