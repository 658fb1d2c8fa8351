"""Shared fixtures of the Transformer-CPU tests; long fuzzing is marked ``slow``."""

from __future__ import annotations

import numpy as np
import pytest

from algind_gym.cpu.backend import make_backend


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: long fuzzing runs (run with -m slow)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``slow`` tests of this folder unless the run selects them (``-m slow``)."""
    if "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow fuzzing: run with -m slow")
    for item in items:
        if "slow" in item.keywords and "tests/cpu" in str(item.fspath).replace("\\", "/"):
            item.add_marker(skip)


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture(scope="session")
def backends():
    """The three backends, compiled models cached across tests."""
    return {name: make_backend(name) for name in ("reference", "transformer", "transformer-dense")}


def bits(cells: np.ndarray) -> np.ndarray:
    """The bit patterns of ``cells`` (so ``-0.0 != 0.0``)."""
    return cells.view(np.int32 if cells.dtype == np.float32 else np.int64)


def assert_same(expected, got, label: str = "") -> None:
    """Assert two states are bit-identical, naming the first differing cells."""
    diff = bits(expected.cells) != bits(got.cells)
    if diff.any():
        m, c = np.argwhere(diff)[0]
        raise AssertionError(
            f"{label}: machine {m} cell {expected.layout.describe(int(c))}: "
            f"reference {expected.cells[m, c]!r}, got {got.cells[m, c]!r} "
            f"({int(diff.sum())} cells differ)"
        )
