"""Structured fuzz programs: the library's skills on random inputs, and mutations of them.

Random programs (:mod:`algind_gym.cpu.fuzz`) stop after a few steps on average; loops,
calls and deep stacks need real programs. :func:`structured_machines` runs every task's
reference solution (every skill those solutions call, with their dependencies) at random
lengths and seeds, and records each machine state at the moment a skill call starts (the
program loaded, arguments bound, PC at the entry). :func:`mutate` then changes a random
operand or swaps two instructions of a copy, so that the mutated programs fault, loop and
recurse in ways no solution does.

A task's workspace places every skill of its library (some 30 blocks, 4,000-7,000 code
cells) and a stack of at least 1,024 cells, so its machines have 6,000-22,000 cells: fine
for the sparse kernels, far too many for the dense pass to run long programs. With
``minimal=True`` the same buffers and programs are placed on a *minimal* layout
(:func:`minimal_image`): only the skills the solution calls or passes, with their
dependencies (the linker relocates them), and a stack of ``256 + 4 x`` the buffers' cells.
At each task's shortest length that is 431-6,742 cells (28 of the 32 tasks under 3,000)
instead of 6,039-9,910; at its longest 1,608-21,629 instead of 6,984-25,221 (the stack
grows with the buffers). Every reference solution still solves its task at its shortest
length on that layout (``tests/cpu_v2/test_structured.py`` checks one).
"""

from __future__ import annotations

import numpy as np

from algind_gym.machine import interpreter
from algind_gym.machine.isa import WIDTH
from algind_gym.machine.state import MachineState
from algind_gym.skills.image import MachineImage, build_image


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


MINIMAL_STACK_BASE = 256
"""Stack cells of a minimal layout beyond 4 per buffer cell (see the module docstring)."""


def minimal_image(image: MachineImage, steps: list) -> MachineImage:
    """``image``'s buffers with only the skills ``steps`` call or pass (``(skill,
    bindings)``; ``&name`` bindings pass a skill) and their dependencies, and a stack of
    ``MINIMAL_STACK_BASE + 4 x`` the buffers' cells."""
    refs = {skill for skill, _ in steps}
    refs |= {b[1:] for _, bs in steps for b in bs if isinstance(b, str) and b.startswith("&")}
    buffers = [b for _, b in sorted(image.buffers.values(), key=lambda placed: placed[0])]
    return build_image(
        image.library,
        buffers,
        skills=sorted(refs),
        stack_size=MINIMAL_STACK_BASE + 4 * sum(b.size for b in buffers),
        memory_size=image.layout.memory_size,
    )


def structured_machines(
    rng: np.random.Generator,
    dtype=np.float32,
    batch: int = 4,
    tasks: list[str] | None = None,
    minimal: bool = False,
    lengths: list[int] | None = None,
) -> list[MachineState]:
    """One start state per skill call of every reference solution (random length, seed);
    on minimal layouts with ``minimal=True`` (see the module docstring).

    ``lengths`` limits each task's random length to those of its lengths in it (a task's
    layout depends on its length only, so fewer lengths mean fewer layouts to compile);
    a task with none of them is a ``ValueError``."""
    from algind_gym.tasks import Workspace, get_task
    from algind_gym.tasks.reference import (
        REFERENCE_SOLUTIONS,
        reference_library_for,
        reference_solution,
    )

    recorder = _Recorder()
    for name in tasks or sorted(REFERENCE_SOLUTIONS):
        task = get_task(name)
        allowed = [
            n for n in task.train_lengths + task.test_lengths if lengths is None or n in lengths
        ]
        if not allowed:
            raise ValueError(
                f"task {name!r} has none of the lengths {sorted(lengths)}; choose among "
                f"{sorted(set(task.train_lengths + task.test_lengths))}"
            )
        length = int(rng.choice(allowed))
        ws = Workspace(
            reference_library_for(name),
            task,
            length,
            batch=batch,
            seed=int(rng.integers(2**31)),
            dtype=np.dtype(dtype),
        )
        steps = reference_solution(name)
        if minimal:  # before the first reset: the workspace places everything via its image
            ws.image = minimal_image(ws.image, steps)
        ws.run_program(ws.reset(), steps, recorder)
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
