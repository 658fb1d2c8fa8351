"""The decoder's output layer in index form: per opcode, the control values the MLPs use.

:func:`control_table` re-expresses the compiled decode table (one-hot groups per opcode)
as one small integer column per opcode, so that decoding a batch is one gather of column
``op`` (``control @ onehot(op)`` read as the row read it is). Rows, top to bottom:

* :data:`N_SELECTS` select positions: where each gated select of the model takes its
  value from, as an index into the candidate vectors the model stacks (the orders below);
* one rank per fault condition of :data:`FAULT_CONDITIONS`: ``0`` where the opcode does
  not use the condition, else ``len(FAULT_PRIORITY) - position`` in the ISA's fault order,
  so that the highest rank among the failing conditions names the fault;
* the halt flag and the write flag.

It is the same weights as the decode table, not a second table: nothing here is typed in
by hand, and the tests check the model against the reference interpreter.
"""

from __future__ import annotations

import numpy as np

from algind_gym.cpu.compiler import (
    ALU_UNITS,
    FAULT_PRIORITY,
    GROUPS,
    PC_CONDS,
    STACK_CHECKS,
    WRITE_TARGETS,
    CompiledCPU,
    decode_columns,
)

# Candidate vectors the gated selects choose from, in the order the model stacks them.
STAGE3_CANDIDATES = ("r_a", "r_b", "b", "c", "mode")
"""Pointer and offset of the derived address ``d = cell[p] + off``."""
STAGE4_CANDIDATES = (
    "pc",
    "fp",
    "a",
    "b",
    "c",
    "r_a",
    "r_b",
    "r_c",
    "r_fb",
    "r_d",
    "r_top",
    "width",
)
"""ALU operands x, y and the jump target."""
REGISTER_CANDIDATES = (
    "sp",
    "sp_plus_1",
    "sp_minus_1",
    "sp_plus_1_plus_a",
    "fp_minus_1",
    "fp",
    "r_t",
)
"""Next SP / FP (after the ALU units and the jump conditions in the last select layer)."""
_ALIASES = {"imm_b": "b", "imm_c": "c", "mode": "mode"}

N_SELECTS = 10
"""Select rows: ptr, off, x, y, pc_target, write address, unit, pc_cond, sp, fp."""

FAULT_CONDITIONS = (
    ("pc", "PC is not an integer fetch address"),
    ("decode", "opcode invalid"),
    ("decode", "count operand a not a non-negative integer"),
    ("operand_address", "field a not an address"),
    ("operand_address", "field b not an address"),
    ("operand_address", "field c not an address"),
    ("operand_address", "derived address d not an address"),
    ("operand_address", "FP + a not an address"),
    ("operand_address", "FP + b not an address"),
    ("operand_address", "POP/RET: stack top beyond the state"),
    ("operand_address", "LEAVE: frame link beyond the state"),
    ("stack_overflow", "push at SP >= stack_end"),
    ("stack_overflow", "ENTER: SP + 1 + a > stack_end"),
    ("stack_underflow", "pop at SP <= stack_base"),
    ("stack_underflow", "LEAVE: no frame"),
    ("divide", "DIV by zero"),
    ("non_finite", "value to write not finite"),
    ("protected", "write into a protected cell"),
)
"""The conditions the model computes (in this row order), each with its check in
:data:`~algind_gym.cpu.compiler.FAULT_PRIORITY`."""


def select_positions(c: CompiledCPU) -> np.ndarray:
    """Per opcode (row), positions in the candidate vectors of each gated select.

    Columns: the :data:`N_SELECTS` selects, then the write flag and the stack check.
    """
    group_of = {g: i for i, (g, _) in enumerate(GROUPS)}
    idx = c.decode_indices
    vocab = dict(GROUPS)

    def pos(group: str, cands: tuple[str, ...]) -> np.ndarray:
        names = [vocab[group][i] for i in idx[:, group_of[group]]]
        return np.asarray([cands.index(_ALIASES.get(n, n)) for n in names])

    write = np.asarray([WRITE_TARGETS[i] for i in idx[:, group_of["write"]]])
    n_units, n_conds = len(ALU_UNITS), len(PC_CONDS)
    cols = [
        pos("ptr", STAGE3_CANDIDATES),
        pos("off", STAGE3_CANDIDATES),
        pos("x", STAGE4_CANDIDATES),
        pos("y", STAGE4_CANDIDATES),
        pos("pc_target", STAGE4_CANDIDATES),
        np.maximum(idx[:, group_of["write"]] - 1, 0),  # candidate of the write address
        idx[:, group_of["unit"]],
        n_units + idx[:, group_of["pc_cond"]],
        n_units + n_conds + pos("sp", REGISTER_CANDIDATES),
        n_units + n_conds + pos("fp", REGISTER_CANDIDATES),
        (write != "none").astype(np.int64),
        idx[:, group_of["stack"]],
    ]
    assert ALU_UNITS[0] == "pass" and PC_CONDS[:2] == ("never", "always")
    assert STACK_CHECKS == ("none", "push", "enter", "pop", "leave")
    return np.stack(cols, axis=1)


def fault_ranks(c: CompiledCPU, selects: np.ndarray) -> np.ndarray:
    """Per condition of :data:`FAULT_CONDITIONS` (row) and opcode (column), its rank.

    A condition is live for an opcode where the decode table says so (address checks,
    count operand, DIV, stack check, write target); the PC check is always live and the
    invalid-opcode condition is live on the rows with ``valid = 0``.
    """
    cols = decode_columns()
    table = c.decode_table != 0
    always = np.ones(table.shape[0], dtype=bool)
    stack, write = selects[:, 11], selects[:, 10] == 1
    push, enter, pop, leave = (stack == i for i in range(1, 5))
    lo, hi = cols.groups["check"]
    enables = [
        always,
        ~table[:, cols.index["valid"]],
        table[:, cols.index["count_a"]],
        *(table[:, j] for j in range(lo, hi)),
        pop,
        leave,
        push,
        enter,
        pop,
        leave,
        table[:, cols.index["div"]],
        write,
        write,
    ]
    order = [name for name, _ in FAULT_PRIORITY]
    ranks = np.asarray([len(order) - order.index(name) for name, _ in FAULT_CONDITIONS])
    return np.stack(enables) * ranks[:, None]


def control_table(c: CompiledCPU) -> np.ndarray:
    """The control values per opcode (column), ``uint8``; rows as in the module docstring."""
    selects = select_positions(c)
    halt = c.decode_table[:, decode_columns().index["halt"]]
    rows = [selects[:, :N_SELECTS].T, fault_ranks(c, selects), halt, selects[:, 10]]
    table = np.vstack(rows)
    assert table.min() >= 0 and table.max() < 256
    return table.astype(np.uint8)


__all__ = [
    "FAULT_CONDITIONS",
    "N_SELECTS",
    "REGISTER_CANDIDATES",
    "STAGE3_CANDIDATES",
    "STAGE4_CANDIDATES",
    "control_table",
]
