"""The instruction set: one table, the single source of truth.

The assembler, the disassembler, the reference interpreter and the Transformer-CPU
compiler all read :data:`OPCODES`. Each opcode's semantics is written once, in its
``doc`` below, and the interpreter implements exactly that text.

Machine model (paper section 3.2.1)
-----------------------------------
A machine is one flat vector of cells (float32 or float64). Addresses are cell indices.
Registers are memory-mapped at the bottom of the address space (see
:mod:`algind_gym.machine.layout`), so "a register" and "a cell" are the same operand:
``add r0, r1, r2`` and ``add 7, 8, 9`` are one instruction.

Instructions are fixed width: :data:`WIDTH` = 4 cells ``[opcode, a, b, c]``. Code is
data: an instruction is four numbers in four cells. Unused fields are 0.

Operand kinds (per opcode, per field):

* ``dst``  a direct address that is written: ``cell[a]``.
* ``src``  a direct address that is read: ``cell[a]``.
* ``ptr``  a direct address of a *pointer cell*; the operand is ``cell[cell[p] + off]``
  (indirect with offset).
* ``off``  an integer offset (for ``ptr`` and frame-relative operands, may be negative).
* ``imm``  an immediate number, the field itself.
* ``cnt``  an immediate non-negative integer count.
* ``tgt``  a code address to jump to (the field itself).

Conventions
-----------
* ``PC`` (the paper's line register R_L) advances by ``WIDTH`` after every instruction
  that does not jump.
* The stack grows upward. ``SP`` is the address of the first free cell; the stack
  occupies ``[stack_base, stack_end)``. ``PUSH`` writes ``cell[SP]`` then ``SP += 1``.
* A frame: ``ENTER n`` pushes the caller's ``FP``, sets ``FP`` to the first local and
  reserves ``n`` locals: locals are ``cell[FP + 0 .. FP + n - 1]``, the saved ``FP`` is at
  ``FP - 1``, the return address at ``FP - 2`` and values pushed by the caller before
  ``CALL`` at ``FP - 3, FP - 4, ...``.
* ``MODE`` is the paper's M_s. **Deviation:** the paper selects the output code with
  M_s = 1; here ``MODE = 0`` selects the output entry and ``MODE = 1`` the Jacobian entry,
  so that an all-zero state runs output code. ``CALLP`` reads it to pick the entry.
* Every instruction performs at most one memory write (plus updates of the special
  registers PC, SP, FP, HALT, FAULT, ICOUNT). This is what lets one forward pass of the
  Transformer CPU execute one instruction with a single gated write head.

Faults
------
An instruction that faults commits nothing except ``FAULT = code``; the machine is then
frozen (as is a halted one). Checks run in this order and the first failing one wins:

1. ``ADDRESS``: ``PC`` is not an integer with ``PC + 3`` inside the state.
2. ``INVALID_INSTRUCTION``: the opcode is not in the table, or a ``cnt`` field is not a
   non-negative integer.
3. ``ADDRESS``: an address the instruction uses (direct field, ``cell[p] + off``,
   ``FP + off``, ``cell[p] + MODE``) is not an integer in ``[0, n_cells)``. Operand
   addresses are checked in field order a, b, c, then the derived (indirect) address.
4. ``STACK_OVERFLOW`` / ``STACK_UNDERFLOW``: a push beyond ``stack_end`` / a pop or frame
   release below ``stack_base``.
5. ``DIVISION_BY_ZERO``: ``DIV`` with a zero divisor.
6. ``NON_FINITE``: the value to be written is inf or NaN.
7. ``PROTECTED_WRITE``: the write address is a protected cell (the registers PC, SP,
   FP, HALT, FAULT, ICOUNT, and every skill block's header and code).

``BUDGET_EXHAUSTED`` is set by :func:`algind_gym.machine.interpreter.run` (and every other
backend's ``run``) on machines still running when the step budget ends.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

WIDTH = 4
"""Cells per instruction: ``[opcode, a, b, c]``."""


class Fault(enum.IntEnum):
    """Fault codes stored in the ``FAULT`` register. 0 means no fault."""

    NONE = 0
    INVALID_INSTRUCTION = 1
    ADDRESS = 2
    STACK_OVERFLOW = 3
    STACK_UNDERFLOW = 4
    DIVISION_BY_ZERO = 5
    NON_FINITE = 6
    PROTECTED_WRITE = 7
    BUDGET_EXHAUSTED = 8


FAULT_DOCS: dict[Fault, str] = {
    Fault.NONE: "no fault",
    Fault.INVALID_INSTRUCTION: "unknown opcode, or a count operand that is not a non-negative integer",
    Fault.ADDRESS: "an address (PC, operand, pointer + offset, FP + offset) is not an integer inside the state",
    Fault.STACK_OVERFLOW: "PUSH, CALL, CALLP or ENTER past the end of the stack",
    Fault.STACK_UNDERFLOW: "POP or RET on an empty stack, or LEAVE with no frame",
    Fault.DIVISION_BY_ZERO: "DIV by zero",
    Fault.NON_FINITE: "the value to be written is inf or NaN",
    Fault.PROTECTED_WRITE: "a write into a special register or into a skill's header or code",
    Fault.BUDGET_EXHAUSTED: "the program did not halt within the instruction budget",
}


class Operand(enum.StrEnum):
    """What an instruction field means (see the module docstring)."""

    DST = "dst"
    SRC = "src"
    PTR = "ptr"
    OFF = "off"
    IMM = "imm"
    CNT = "cnt"
    TGT = "tgt"

    @property
    def is_address(self) -> bool:
        """True for fields that are checked as direct addresses at run time."""
        return self in (Operand.DST, Operand.SRC, Operand.PTR)


@dataclass(frozen=True)
class OpSpec:
    """One row of the instruction table.

    Attributes:
        code: the number stored in the opcode cell.
        name: the mnemonic (upper case; the assembler is case-insensitive).
        operands: the kinds of fields a, b, c that the instruction uses (0 to 3).
        doc: the semantics, the only place it is written.
        group: a coarse family, used by docs, fuzzers and the CPU compiler.
    """

    code: int
    name: str
    operands: tuple[Operand, ...]
    doc: str
    group: str


_D, _S, _P, _O, _I, _C, _T = (
    Operand.DST,
    Operand.SRC,
    Operand.PTR,
    Operand.OFF,
    Operand.IMM,
    Operand.CNT,
    Operand.TGT,
)

OPCODES: tuple[OpSpec, ...] = (
    OpSpec(1, "HALT", (), "HALT = 1. PC stays on the HALT.", "control"),
    OpSpec(2, "NOP", (), "Nothing.", "control"),
    OpSpec(3, "MOVI", (_D, _I), "cell[a] = b.", "move"),
    OpSpec(4, "MOV", (_D, _S), "cell[a] = cell[b].", "move"),
    OpSpec(5, "LOAD", (_D, _P, _O), "cell[a] = cell[cell[b] + c]  (indirect with offset).", "move"),
    OpSpec(
        6, "STORE", (_P, _O, _S), "cell[cell[a] + b] = cell[c]  (indirect with offset).", "move"
    ),
    OpSpec(7, "LDF", (_D, _O), "cell[a] = cell[FP + b]  (frame-relative).", "move"),
    OpSpec(8, "STF", (_O, _S), "cell[FP + a] = cell[b]  (frame-relative).", "move"),
    OpSpec(
        9,
        "LEA",
        (_D, _O),
        "cell[a] = FP + b  (address of a frame cell, to pass locals by reference).",
        "move",
    ),
    OpSpec(10, "ADD", (_D, _S, _S), "cell[a] = cell[b] + cell[c].", "alu"),
    OpSpec(11, "SUB", (_D, _S, _S), "cell[a] = cell[b] - cell[c].", "alu"),
    OpSpec(12, "MUL", (_D, _S, _S), "cell[a] = cell[b] * cell[c].", "alu"),
    OpSpec(
        13,
        "DIV",
        (_D, _S, _S),
        "cell[a] = cell[b] / cell[c]; DIVISION_BY_ZERO if cell[c] == 0.",
        "alu",
    ),
    OpSpec(14, "MIN", (_D, _S, _S), "cell[a] = cell[b] if cell[b] <= cell[c] else cell[c].", "alu"),
    OpSpec(15, "MAX", (_D, _S, _S), "cell[a] = cell[b] if cell[b] >= cell[c] else cell[c].", "alu"),
    OpSpec(16, "ADDI", (_D, _S, _I), "cell[a] = cell[b] + c.", "alu"),
    OpSpec(17, "LT", (_D, _S, _S), "cell[a] = 1 if cell[b] < cell[c] else 0.", "compare"),
    OpSpec(18, "LE", (_D, _S, _S), "cell[a] = 1 if cell[b] <= cell[c] else 0.", "compare"),
    OpSpec(19, "EQ", (_D, _S, _S), "cell[a] = 1 if cell[b] == cell[c] else 0.", "compare"),
    OpSpec(20, "JMP", (_T,), "PC = a.", "control"),
    OpSpec(21, "JZ", (_S, _T), "PC = b if cell[a] == 0 else PC + 4.", "control"),
    OpSpec(22, "JNZ", (_S, _T), "PC = b if cell[a] != 0 else PC + 4.", "control"),
    OpSpec(23, "CALL", (_T,), "cell[SP] = PC + 4; SP += 1; PC = a.", "call"),
    OpSpec(
        24,
        "CALLP",
        (_P,),
        "Call a skill through a pointer cell: h = cell[a] (a skill block's header address); "
        "cell[SP] = PC + 4; SP += 1; PC = cell[h + MODE] (header cell 0 is the output entry, "
        "cell 1 the Jacobian entry).",
        "call",
    ),
    OpSpec(25, "RET", (), "SP -= 1; PC = cell[SP].", "call"),
    OpSpec(26, "PUSH", (_S,), "cell[SP] = cell[a]; SP += 1.", "stack"),
    OpSpec(27, "POP", (_D,), "SP -= 1; cell[a] = cell[SP].", "stack"),
    OpSpec(
        28,
        "ENTER",
        (_C,),
        "Open a frame with a locals: cell[SP] = FP; FP = SP + 1; SP = SP + 1 + a.",
        "stack",
    ),
    OpSpec(
        29,
        "LEAVE",
        (),
        "Close the frame: t = FP - 1 (STACK_UNDERFLOW unless stack_base <= t < SP); SP = t; FP = cell[t].",
        "stack",
    ),
    OpSpec(
        30,
        "SUBLEQ",
        (_S, _D, _T),
        "cell[b] = cell[b] - cell[a]; PC = c if the new cell[b] <= 0 else PC + 4.",
        "subleq",
    ),
)

BY_CODE: dict[int, OpSpec] = {op.code: op for op in OPCODES}
BY_NAME: dict[str, OpSpec] = {op.name: op for op in OPCODES}
MAX_OPCODE: int = max(BY_CODE)


def opcode(name: str) -> int:
    """Return the opcode number of mnemonic ``name`` (case-insensitive).

    Example:
        >>> opcode("add")
        10
    """
    try:
        return BY_NAME[name.upper()].code
    except KeyError:
        known = ", ".join(sorted(BY_NAME))
        raise ValueError(f"unknown mnemonic {name!r}; expected one of: {known}") from None


def encode(name: str, *fields: float) -> list[float]:
    """Encode one instruction as its :data:`WIDTH` cells.

    Example:
        >>> encode("ADDI", 7, 7, 1)
        [16.0, 7.0, 7.0, 1.0]
    """
    spec = BY_NAME.get(name.upper())
    if spec is None:
        opcode(name)  # raises the helpful error
        raise AssertionError  # pragma: no cover
    if len(fields) != len(spec.operands):
        raise ValueError(
            f"{spec.name} takes {len(spec.operands)} operand(s) "
            f"({', '.join(k.value for k in spec.operands) or 'none'}), got {len(fields)}"
        )
    cells = [float(spec.code), *map(float, fields)]
    return cells + [0.0] * (WIDTH - len(cells))
