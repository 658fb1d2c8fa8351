"""The micro-op table: what every opcode does, as data the Transformer-CPU compiler reads.

:data:`MICROCODE` says, per mnemonic, where the operands come from, which ALU unit runs,
where the one memory write goes and how PC, SP and FP change; the ISA table
(:data:`algind_gym.machine.isa.OPCODES`) gives the operand kinds (which fields are checked
as addresses) and :data:`FAULT_PRIORITY` the fault order. :func:`decode_table` turns them
into one row of control signals per opcode; :mod:`algind_gym.cpu_v2.circuit` makes that
table the second matrix of the decoder MLP and gates every later block by its columns.
This is the only place an opcode's meaning is written for the transformer.

An entry the compiler cannot express (an unknown unit or write target, a field that does
not exist) fails in :func:`decode_table` with the opcode and the field named.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from algind_gym.machine.isa import MAX_OPCODE, OPCODES, Fault, Operand

# --------------------------------------------------------------------- vocabularies
# Each control-signal group is a one-hot choice among these named sources. The order of
# a tuple is the column order inside its group of the decode table.

X_SOURCES = ("r_b", "imm_b", "r_d", "r_c", "r_fb", "pc", "r_a", "r_top", "fp")
"""First ALU operand: a register/cell value read by a head, or a field."""
Y_SOURCES = ("r_c", "imm_c", "imm_b", "r_a", "width")
"""Second ALU operand (``width`` is the constant :data:`~algind_gym.machine.isa.WIDTH`)."""
ALU_UNITS = ("pass", "add", "sub", "mul", "div", "min", "max", "lt", "le", "eq")
"""Arithmetic units, each one exactly rounded IEEE primitive (see ``model.py``)."""
PTR_SOURCES = ("r_a", "r_b")
"""Pointer cell value of the derived (indirect) address ``d = cell[p] + off``."""
OFF_SOURCES = ("imm_b", "imm_c", "mode")
"""Offset of the derived address."""
WRITE_TARGETS = ("none", "a", "b", "d", "fp_a", "stack")
"""Where the single memory write goes (``stack`` is ``cell[SP]``)."""
PC_CONDS = ("never", "always", "r_a_zero", "r_a_nonzero", "value_le_zero")
"""When the PC takes the jump target instead of ``PC + WIDTH``."""
PC_TARGETS = ("pc", "a", "b", "c", "r_d", "r_top")
"""Jump targets."""
SP_UPDATES = ("sp", "sp_plus_1", "sp_minus_1", "sp_plus_1_plus_a", "fp_minus_1")
FP_UPDATES = ("fp", "sp_plus_1", "r_t")
STACK_CHECKS = ("none", "push", "enter", "pop", "leave")
"""push: overflow if SP >= stack_end; enter: if SP + 1 + a > stack_end; pop: underflow if
SP <= stack_base; leave: underflow unless stack_base <= FP - 1 < SP (an integer)."""
ADDRESS_CHECKS = ("a", "b", "c", "d", "fp_a", "fp_b")
"""Addresses checked to be integers in ``[0, n_cells)`` (fault ADDRESS)."""

FLAG_SIGNALS = ("valid", "count_a", "halt", "div")
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("x", X_SOURCES),
    ("y", Y_SOURCES),
    ("unit", ALU_UNITS),
    ("ptr", PTR_SOURCES),
    ("off", OFF_SOURCES),
    ("write", WRITE_TARGETS),
    ("pc_cond", PC_CONDS),
    ("pc_target", PC_TARGETS),
    ("sp", SP_UPDATES),
    ("fp", FP_UPDATES),
    ("stack", STACK_CHECKS),
)
"""The one-hot groups of the decode table, in column order after the flags and checks."""


@dataclass(frozen=True)
class MicroOp:
    """What one opcode does, in terms of the vocabularies above.

    Defaults mean "not used": ALU passes ``x``, no write, PC falls through, SP/FP kept.
    ``ptr``/``off`` name the derived address ``d = ptr + off`` when the opcode has one;
    ``frame`` lists frame-relative addresses it uses (``fp_a`` / ``fp_b``).
    """

    x: str = "r_b"
    y: str = "r_c"
    unit: str = "pass"
    write: str = "none"
    pc_cond: str = "never"
    pc_target: str = "pc"
    sp: str = "sp"
    fp: str = "fp"
    stack: str = "none"
    ptr: str | None = None
    off: str | None = None
    frame: tuple[str, ...] = ()
    halt: bool = False


def _alu(unit: str) -> MicroOp:
    return MicroOp(x="r_b", y="r_c", unit=unit, write="a")


MICROCODE: dict[str, MicroOp] = {
    "HALT": MicroOp(pc_cond="always", pc_target="pc", halt=True),
    "NOP": MicroOp(),
    "MOVI": MicroOp(x="imm_b", write="a"),
    "MOV": MicroOp(x="r_b", write="a"),
    "LOAD": MicroOp(x="r_d", write="a", ptr="r_b", off="imm_c"),
    "STORE": MicroOp(x="r_c", write="d", ptr="r_a", off="imm_b"),
    "LDF": MicroOp(x="r_fb", write="a", frame=("fp_b",)),
    "STF": MicroOp(x="r_b", write="fp_a", frame=("fp_a",)),
    "LEA": MicroOp(x="fp", y="imm_b", unit="add", write="a"),
    "ADD": _alu("add"),
    "SUB": _alu("sub"),
    "MUL": _alu("mul"),
    "DIV": _alu("div"),
    "MIN": _alu("min"),
    "MAX": _alu("max"),
    "ADDI": MicroOp(x="r_b", y="imm_c", unit="add", write="a"),
    "LT": _alu("lt"),
    "LE": _alu("le"),
    "EQ": _alu("eq"),
    "JMP": MicroOp(pc_cond="always", pc_target="a"),
    "JZ": MicroOp(pc_cond="r_a_zero", pc_target="b"),
    "JNZ": MicroOp(pc_cond="r_a_nonzero", pc_target="b"),
    "CALL": MicroOp(
        x="pc",
        y="width",
        unit="add",
        write="stack",
        pc_cond="always",
        pc_target="a",
        sp="sp_plus_1",
        stack="push",
    ),
    "CALLP": MicroOp(
        x="pc",
        y="width",
        unit="add",
        write="stack",
        pc_cond="always",
        pc_target="r_d",
        sp="sp_plus_1",
        stack="push",
        ptr="r_a",
        off="mode",
    ),
    "RET": MicroOp(pc_cond="always", pc_target="r_top", sp="sp_minus_1", stack="pop"),
    "PUSH": MicroOp(x="r_a", write="stack", sp="sp_plus_1", stack="push"),
    "POP": MicroOp(x="r_top", write="a", sp="sp_minus_1", stack="pop"),
    "ENTER": MicroOp(x="fp", write="stack", sp="sp_plus_1_plus_a", fp="sp_plus_1", stack="enter"),
    "LEAVE": MicroOp(sp="fp_minus_1", fp="r_t", stack="leave"),
    "SUBLEQ": MicroOp(
        x="r_b", y="r_a", unit="sub", write="b", pc_cond="value_le_zero", pc_target="c"
    ),
}
"""Per mnemonic: sources, unit, write target and register updates (the ISA docs, as data)."""

FAULT_PRIORITY: tuple[tuple[str, Fault], ...] = (
    ("pc", Fault.ADDRESS),
    ("decode", Fault.INVALID_INSTRUCTION),
    ("operand_address", Fault.ADDRESS),
    ("stack_overflow", Fault.STACK_OVERFLOW),
    ("stack_underflow", Fault.STACK_UNDERFLOW),
    ("divide", Fault.DIVISION_BY_ZERO),
    ("non_finite", Fault.NON_FINITE),
    ("protected", Fault.PROTECTED_WRITE),
)
"""The fault checks in the priority order of :mod:`algind_gym.machine.isa` (first wins)."""


# ---------------------------------------------------------------- address codes
def n_address_bits(n_cells: int) -> int:
    """Bits of the binary address code: enough for every cell index, at least one."""
    return max(1, math.ceil(math.log2(max(n_cells, 2))))


def address_code(n_cells: int) -> np.ndarray:
    """Cell ``j``'s +/-1 address code ``2 * bits(j) - 1`` (shape ``(N, K)``).

    A query equal to the code of address ``x`` scores ``q . k = K - 2 * hamming(x, j)``,
    an exact small integer, so ``score > K - 1/2`` holds for ``j == x`` alone: hard
    attention on it is a one-hot read with no rounding anywhere.
    """
    k = n_address_bits(n_cells)
    j = np.arange(n_cells)[:, None]
    bits = (j >> np.arange(k)[None, :]) & 1
    return (2 * bits - 1).astype(np.float64)


@dataclass(frozen=True)
class DecodeColumns:
    """Column index of every control signal in the decode table."""

    names: tuple[str, ...]
    index: dict[str, int] = field(repr=False)
    groups: dict[str, tuple[int, int]] = field(repr=False)

    def __len__(self) -> int:
        return len(self.names)


def decode_columns() -> DecodeColumns:
    """Name every column: flags, address checks, then the one-hot groups."""
    names = list(FLAG_SIGNALS) + [f"check_{n}" for n in ADDRESS_CHECKS]
    groups = {"check": (len(FLAG_SIGNALS), len(FLAG_SIGNALS) + len(ADDRESS_CHECKS))}
    for group, vocab in GROUPS:
        start = len(names)
        names += [f"{group}.{v}" for v in vocab]
        groups[group] = (start, len(names))
    return DecodeColumns(tuple(names), {n: i for i, n in enumerate(names)}, groups)


def decode_table() -> np.ndarray:
    """Decoder weights: row ``op`` holds the control signals of opcode ``op``.

    Shape ``(MAX_OPCODE + 1, n_signals)``; row 0 and codes missing from the ISA are all
    zero (``valid = 0``: INVALID_INSTRUCTION). Decoding is ``onehot(op) @ table``, a row
    read, exact because each output is one 0/1 entry. Address checks come from the
    operand kinds of :data:`OPCODES` (``dst``/``src``/``ptr`` fields are checked, ``cnt``
    fields must be non-negative integers); derived addresses are checked where the
    microcode uses them. Every other group is one-hot per row.
    """
    cols = decode_columns()
    missing = {op.name for op in OPCODES} ^ set(MICROCODE)
    if missing:
        raise ValueError(f"MICROCODE and the ISA table disagree on {sorted(missing)}")
    table = np.zeros((MAX_OPCODE + 1, len(cols)))
    for spec in OPCODES:
        row, mop = table[spec.code], MICROCODE[spec.name]
        row[cols.index["valid"]] = 1
        row[cols.index["halt"]] = float(mop.halt)
        row[cols.index["div"]] = float(mop.unit == "div")
        for name, kind in zip("abc", spec.operands, strict=False):
            if kind.is_address:
                row[cols.index[f"check_{name}"]] = 1
            if kind is Operand.CNT:
                if name != "a":
                    raise ValueError(f"{spec.name}: count operands are supported in field a only")
                row[cols.index["count_a"]] = 1
        if mop.ptr is not None:
            row[cols.index["check_d"]] = 1
        for frame in mop.frame:
            if f"check_{frame}" not in cols.index:
                raise ValueError(
                    f"MICROCODE[{spec.name!r}]: field 'frame' = {frame!r} is not one of "
                    "('fp_a', 'fp_b')"
                )
            row[cols.index[f"check_{frame}"]] = 1
        choice = {
            "x": mop.x,
            "y": mop.y,
            "unit": mop.unit,
            "ptr": mop.ptr or PTR_SOURCES[0],
            "off": mop.off or OFF_SOURCES[0],
            "write": mop.write,
            "pc_cond": mop.pc_cond,
            "pc_target": mop.pc_target,
            "sp": mop.sp,
            "fp": mop.fp,
            "stack": mop.stack,
        }
        for group, value in choice.items():
            if f"{group}.{value}" not in cols.index:
                raise ValueError(
                    f"MICROCODE[{spec.name!r}]: field {group!r} = {value!r} is not one of "
                    f"{dict(GROUPS)[group]}"
                )
            row[cols.index[f"{group}.{value}"]] = 1
        if mop.pc_cond == "value_le_zero" and mop.unit != "sub":
            raise ValueError(
                f"{spec.name}: 'value_le_zero' reads the subtract unit; use unit 'sub'"
            )
    return table


__all__ = [
    "ALU_UNITS",
    "FAULT_PRIORITY",
    "GROUPS",
    "MICROCODE",
    "MicroOp",
    "address_code",
    "decode_columns",
    "decode_table",
    "n_address_bits",
]
