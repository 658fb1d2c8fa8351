"""``algind-gym cpu-info``: what the compiled Transformer CPU is, in numbers."""

from __future__ import annotations

import numpy as np

from algind_gym.cpu_v2.circuit import compile_circuit
from algind_gym.machine.layout import Layout


def cpu_info(memory_size: int = 256, dtype: str = "float32") -> str:
    """The :meth:`~algind_gym.cpu_v2.blocks.Circuit.describe` report for the default layout
    with ``memory_size`` data cells.

    Example:
        >>> print(cpu_info(16).splitlines()[1])
          layers 11 (blocks: 17 = 6 attention + 11 MLP), heads 26, hidden units 3192
    """
    return compile_circuit(Layout(memory_size=memory_size), np.dtype(dtype)).describe()
