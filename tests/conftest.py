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
