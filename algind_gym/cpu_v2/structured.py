"""Structured fuzz programs: the library's skills on random inputs, and mutations of them.

Random programs (:mod:`algind_gym.cpu.fuzz`) stop after a few steps on average; loops,
calls and deep stacks need real programs. :func:`structured_machines` runs every task's
reference solution (every skill those solutions call, with their dependencies) at random
lengths and seeds, and records each machine state at the moment a skill call starts (the
program loaded, arguments bound, PC at the entry). :func:`mutate` then changes a random
operand or swaps two instructions of a copy, so that the mutated programs fault, loop and
recurse in ways no solution does.
"""

from __future__ import annotations

import numpy as np

from algind_gym.machine import interpreter
from algind_gym.machine.isa import WIDTH
from algind_gym.machine.state import MachineState


class _Recorder:
    """A backend that keeps a copy of every state it is asked to run, then runs it."""

    name = "reference"

    def __init__(self) -> None:
        self.states: list[MachineState] = []

    def run(self, state: MachineState, max_steps: int = 10_000) -> MachineState:
        self.states.append(state.copy())
        return interpreter.run(state, max_steps)

    def step(self, state: MachineState) -> MachineState:  # pragma: no cover - unused
        return interpreter.step(state)


def structured_machines(
    rng: np.random.Generator, dtype=np.float32, batch: int = 4, tasks: list[str] | None = None
) -> list[MachineState]:
    """One start state per skill call of every reference solution (random length, seed)."""
    from algind_gym.tasks import Workspace, get_task
    from algind_gym.tasks.reference import (
        REFERENCE_SOLUTIONS,
        reference_library_for,
        reference_solution,
    )

    recorder = _Recorder()
    for name in tasks or sorted(REFERENCE_SOLUTIONS):
        task = get_task(name)
        lengths = task.train_lengths + task.test_lengths
        length = int(rng.choice(lengths))
        ws = Workspace(
            reference_library_for(name),
            task,
            length,
            batch=batch,
            seed=int(rng.integers(2**31)),
            dtype=np.dtype(dtype),
        )
        ws.run_program(ws.reset(), reference_solution(name), recorder)
    return recorder.states


def mutate(state: MachineState, rng: np.random.Generator) -> MachineState:
    """A copy with, per machine, one changed operand or two swapped instructions in the
    code the PC is in (a random cell of code otherwise)."""
    out = state.copy()
    code = state.layout.block("code")
    n_instr = code.size // WIDTH
    for m in range(out.batch):
        if rng.random() < 0.5:
            i, j = rng.integers(n_instr, size=2)
            a, b = code.start + WIDTH * i, code.start + WIDTH * j
            row_a = out.cells[m, a : a + WIDTH].copy()
            out.cells[m, a : a + WIDTH] = out.cells[m, b : b + WIDTH]
            out.cells[m, b : b + WIDTH] = row_a
        else:
            cell = code.start + WIDTH * rng.integers(n_instr) + rng.integers(1, WIDTH)
            out.cells[m, cell] += float(rng.choice([-2, -1, 1, 2, 7]))
    return out
