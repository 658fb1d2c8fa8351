"""Shared helpers for the machine tests: assemble a snippet, run it, look at the result."""

from __future__ import annotations

import numpy as np

from algind_gym.machine.interpreter import run
from algind_gym.machine.program import build_machine
from algind_gym.machine.state import MachineState


def run_source(
    source: str, *, dtype=np.float32, batch: int = 1, max_steps: int = 1000, setup=None
) -> tuple[MachineState, dict[str, int]]:
    """Assemble ``source`` as a standalone program, optionally tweak the state, run it.

    Returns the final state and the data addresses by name.
    """
    state, program = build_machine(source, batch=batch, dtype=dtype)
    data = {k: a for k, (a, _) in program.data.items()}
    if setup is not None:
        setup(state, data)
    run(state, max_steps=max_steps)
    return state, data
