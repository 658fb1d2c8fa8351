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

from dataclasses import dataclass, field

import numpy as np

# The vocabularies, MICROCODE, FAULT_PRIORITY and the address codes are the one table the
# default CPU (algind_gym/cpu/compiler.py) also reads: an opcode's meaning is written once.
from algind_gym.cpu.compiler import (  # noqa: F401  (re-exported for the v2 modules)
    ADDRESS_CHECKS,
    ALU_UNITS,
    FAULT_PRIORITY,
    FLAG_SIGNALS,
    FP_UPDATES,
    GROUPS,
    MICROCODE,
    OFF_SOURCES,
    PC_CONDS,
    PC_TARGETS,
    PTR_SOURCES,
    SP_UPDATES,
    STACK_CHECKS,
    WRITE_TARGETS,
    X_SOURCES,
    Y_SOURCES,
    MicroOp,
    address_code,
    n_address_bits,
)
from algind_gym.machine.isa import MAX_OPCODE, OPCODES, Operand


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
