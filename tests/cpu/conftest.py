"""Shared fixtures of the Transformer-CPU tests; long fuzzing is marked ``slow`` (excluded by
the default ``-m "not slow"`` of pyproject.toml). ``dtype`` comes from ``tests/conftest.py``."""

from __future__ import annotations

import numpy as np
import pytest

from algind_gym.cpu.backend import BACKENDS, make_backend


@pytest.fixture(scope="session")
def backends():
    """Every backend (the fused path on both kernels), compiled models cached across tests."""
    return {name: make_backend(name) for name in BACKENDS}


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
