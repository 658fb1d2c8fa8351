"""An assembled program and how it is placed into machines.

:class:`Program` is the linker's output: absolute code cells plus where its entries,
labels, data and slots are. :func:`install_skill` writes a program into a skill block
(header, code); :func:`build_machine` makes a ready-to-run batch for a standalone
program file, which is what ``algind-gym run FILE`` executes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from algind_gym.machine.isa import WIDTH
from algind_gym.machine.layout import Layout, SkillBlockSpec
from algind_gym.machine.state import MachineState

PROGRAM_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Program:
    """Linked code: every address in it is absolute.

    Attributes:
        name: the ``.skill`` name, or ``"main"``.
        code: instruction cells (a multiple of the instruction width).
        code_base: the address ``code[0]`` is meant to be loaded at.
        entry: output entry (absolute); ``jacobian_entry`` likewise, or None.
        data: name -> (address, values) of ``.data``/``.zero`` cells.
        labels: name -> absolute code address.
        args: the declared ``(name, type)`` argument slots.
        has_weights: whether the skill declares a weights slot.
        lines: the source line of each instruction (for messages and listings).
        slot_base: address of slot 0, if the program has slots.
    """

    name: str
    code: tuple[float, ...]
    code_base: int
    entry: int
    jacobian_entry: int | None
    data: dict[str, tuple[int, tuple[float, ...]]]
    labels: dict[str, int]
    args: tuple[tuple[str, str], ...]
    has_weights: bool
    lines: tuple[int, ...]
    slot_base: int | None = None

    @property
    def n_instructions(self) -> int:
        return len(self.code) // WIDTH

    @property
    def slot_names(self) -> list[str]:
        return [a for a, _ in self.args] + (["weights"] if self.has_weights else [])

    def to_dict(self) -> dict:
        """JSON-compatible data (what ``algind-gym asm --json`` writes)."""
        return {
            "format": "algind_gym.Program",
            "version": PROGRAM_FORMAT_VERSION,
            "name": self.name,
            "code": list(self.code),
            "code_base": self.code_base,
            "entry": self.entry,
            "jacobian_entry": self.jacobian_entry,
            "data": {k: [a, list(v)] for k, (a, v) in self.data.items()},
            "labels": dict(self.labels),
            "args": [list(a) for a in self.args],
            "has_weights": self.has_weights,
            "lines": list(self.lines),
            "slot_base": self.slot_base,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Program:
        if not isinstance(d, dict) or d.get("format") != "algind_gym.Program":
            raise ValueError("not a serialised Program (missing format tag 'algind_gym.Program')")
        if d.get("version") != PROGRAM_FORMAT_VERSION:
            raise ValueError(
                f"Program format version {d.get('version')!r} is not supported "
                f"(this algind_gym reads version {PROGRAM_FORMAT_VERSION})"
            )
        try:
            return cls(
                name=str(d["name"]),
                code=tuple(float(v) for v in d["code"]),
                code_base=int(d["code_base"]),
                entry=int(d["entry"]),
                jacobian_entry=None if d["jacobian_entry"] is None else int(d["jacobian_entry"]),
                data={k: (int(a), tuple(float(x) for x in v)) for k, (a, v) in d["data"].items()},
                labels={k: int(v) for k, v in d["labels"].items()},
                args=tuple((str(a), str(t)) for a, t in d["args"]),
                has_weights=bool(d["has_weights"]),
                lines=tuple(int(x) for x in d["lines"]),
                slot_base=None if d["slot_base"] is None else int(d["slot_base"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"malformed serialised Program: {e!r}") from None


def install_skill(state: MachineState, block: str, program: Program) -> None:
    """Write ``program`` into skill block ``block`` of every machine: header and code."""
    sb = state.layout.skill(block)
    if program.code_base != sb.code_start:
        raise ValueError(
            f"program {program.name!r} was linked for code at {program.code_base}, "
            f"but block {block!r} starts its code at {sb.code_start}; link it with "
            f"code_base=layout.skill({block!r}).code_start"
        )
    if len(program.code) > sb.spec.code_size:
        raise ValueError(
            f"program {program.name!r} has {len(program.code)} code cells; block {block!r} "
            f"holds {sb.spec.code_size}"
        )
    if len(program.args) != sb.spec.n_args:
        raise ValueError(
            f"program {program.name!r} declares {len(program.args)} arguments; "
            f"block {block!r} has {sb.spec.n_args} slots"
        )
    jac = state.layout.trap_address if program.jacobian_entry is None else program.jacobian_entry
    state.write(sb.header, [program.entry, jac, sb.spec.n_args, 0])
    if program.code:
        state.load_code(sb.code_start, program.code)


def standalone_layout(
    code_size: int,
    data_size: int,
    *,
    n_args: int = 0,
    n_general: int = 8,
    stack_size: int = 64,
    n_pointers: int = 16,
    memory_size: int = 256,
) -> Layout:
    """A layout with one skill block ``main`` big enough for a program and its data."""
    return Layout(
        n_general=n_general,
        stack_size=stack_size,
        n_pointers=n_pointers,
        memory_size=max(memory_size, data_size),
        skill_blocks=(SkillBlockSpec("main", n_args, max(code_size, WIDTH)),),
    )


def build_machine(
    source: str,
    *,
    batch: int = 1,
    dtype=np.float32,
    filename: str = "<string>",
    layout_kwargs: dict | None = None,
) -> tuple[MachineState, Program]:
    """Assemble a standalone program and return a batch of machines ready to run it.

    The code goes into skill block ``main``, ``.data`` at the start of memory. Each machine
    starts as if the boot block had called the entry: the return address (the boot HALT)
    is on the stack, so a program may end with ``halt`` or ``ret``.
    """
    from algind_gym.machine.assembler import link, parse

    parsed = parse(source, filename)
    layout = standalone_layout(
        parsed.code_size, parsed.data_size, n_args=len(parsed.args), **(layout_kwargs or {})
    )
    sb = layout.skill("main")
    program = link(
        parsed,
        layout,
        code_base=sb.code_start,
        slot_base=sb.slot(0),
        data_base=layout.block("memory").start,
    )
    state = MachineState.zeros(layout, batch=batch, dtype=dtype)
    install_skill(state, "main", program)
    for address, values in program.data.values():
        if values:
            state.write(address, list(values))
    call(state, sb.header)
    return state, program


def call(state: MachineState, header: int, mode: int = 0, rows=None) -> None:
    """Start a top-level call of the skill at ``header`` on every machine (or on ``rows``).

    Pushes the boot HALT as return address, sets MODE and jumps to the entry that MODE
    selects, clearing HALT and FAULT: exactly what ``CALLP`` does, done by the host.
    """
    lay = state.layout
    rows = np.arange(state.batch) if rows is None else np.arange(state.batch)[rows]
    cells = state.cells
    sp = cells[rows, lay.register("sp")]
    if (sp >= lay.stack_end).any():
        raise RuntimeError("cannot start a call: the stack is full")
    cells[rows, sp.astype(np.int64)] = lay.halt_address
    cells[rows, lay.register("sp")] = sp + 1
    cells[rows, lay.register("mode")] = mode
    cells[rows, lay.register("halt")] = 0
    cells[rows, lay.register("fault")] = 0
    cells[rows, lay.register("pc")] = cells[rows, header + mode]
