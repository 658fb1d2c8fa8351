"""Compile the ISA table and a :class:`Layout` into the weights of the Transformer CPU.

tracr-style: the compiler runs in named stages, and every weight tensor is built by one
named function whose docstring says what the block computes and why it is exact. Nothing
is trained and no array is typed in by hand: the address embedding comes from the layout,
the decoder from :data:`algind_gym.machine.isa.OPCODES` plus the :data:`MICROCODE` below
(which says, per mnemonic, where the operands, result and next registers come from), and
the fault priority encoder from the fault order in :mod:`algind_gym.machine.isa`.

Stages (the output of :func:`compile_cpu` is a :class:`CompiledCPU` holding all of them):

1. *Token embedding* (:func:`address_code`, :func:`block_flags`, :func:`protected_flags`):
   every cell is a token ``(value, sign, address code, block flags, protected flag)``.
2. *Address decoder MLP* (:func:`address_decoder`): a staircase of step units that turns
   an integer address held as a number into its +/-1 binary code, so that an attention
   query can be formed from a number read out of memory (code is data).
3. *Hard-attention heads* (:func:`attention_heads`): per layer, which addresses the CPU
   token reads; register heads have constant queries (:func:`register_queries`).
4. *Decoder* (:func:`decode_table`): one row of control signals per opcode; the rows are
   one-hot groups that gate the selects of the later MLPs.
5. *ALU units* (:data:`ALU_UNITS`) and *fault priority encoder* (:func:`fault_priority`).
6. *Write-back heads* (:func:`write_heads`): one gated write per instruction for memory
   plus one per special register.

The :class:`CompiledCPU` counts its layers and weights; the model reports the same
numbers and the tests check them against this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from algind_gym.machine.isa import BY_NAME, MAX_OPCODE, OPCODES, WIDTH, Fault, Operand
from algind_gym.machine.layout import PROTECTED_REGISTERS, SPECIAL_REGISTERS, Layout

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


# ----------------------------------------------------------------- stage 1: embedding
def n_address_bits(n_cells: int) -> int:
    """Bits of the binary address code: enough for every cell index, at least one."""
    return max(1, math.ceil(math.log2(max(n_cells, 2))))


def address_code(n_cells: int) -> np.ndarray:
    """Token address embedding: cell ``j`` carries ``2 * bits(j) - 1`` (shape ``(N, K)``).

    A query equal to the code of address ``x`` scores ``q . k = K - 2 * hamming(x, j)``,
    an exact small integer, so ``score > K - 1/2`` holds for ``j == x`` alone: hard
    attention on it is a one-hot read with no rounding anywhere.
    """
    k = n_address_bits(n_cells)
    j = np.arange(n_cells)[:, None]
    bits = (j >> np.arange(k)[None, :]) & 1
    return (2 * bits - 1).astype(np.float64)


def block_flags(layout: Layout) -> np.ndarray:
    """Token block flags: one-hot of the top-level block of every cell (shape ``(N, 5)``)."""
    return np.eye(len(layout.blocks))[layout.block_ids]


def protected_flags(layout: Layout) -> np.ndarray:
    """Token flag: 1 where a data write is a PROTECTED_WRITE fault (shape ``(N,)``)."""
    return layout.protected_mask.astype(np.float64)


# --------------------------------------------------------- stage 2: address decoder MLP
def address_decoder(n_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Number-to-code MLP: ``thresholds`` (H,) and ``bit_weights`` (H, K).

    Hidden unit ``h`` is the step ``x >= thresholds[h]``; bit ``k`` is the alternating sum
    ``sum_m (-1)^(m+1) [x >= m 2^k]`` for ``m = 1 .. 2^(K-k) - 1``, which is
    ``floor(x / 2^k) mod 2`` for ``0 <= x < 2^K``. All terms are 0 or +/-1, so the output
    layer sums small integers exactly. For non-negative ``x`` the code is that of
    ``floor(x)``; addresses that are fractional, negative or too large fault before their
    read can matter (the fault logic checks them), except the stack address
    ``trunc(SP)``, which is exactly ``floor`` on the range where it is used.
    """
    thresholds, weights = [], []
    for k in range(n_bits):
        for m in range(1, 2 ** (n_bits - k)):
            thresholds.append(float(m * 2**k))
            row = np.zeros(n_bits)
            row[k] = 1.0 if m % 2 else -1.0
            weights.append(row)
    return np.asarray(thresholds), np.asarray(weights)


# ------------------------------------------------------------ stage 3: attention heads
def register_queries() -> np.ndarray:
    """Layer-1 heads: the constant addresses of the special registers PC..ICOUNT.

    The CPU token's first attention layer reads them with constant queries (the code of
    each register's address), because registers are memory-mapped cells.
    """
    return np.arange(len(SPECIAL_REGISTERS), dtype=np.float64)


def fetch_offsets() -> np.ndarray:
    """Layer-2 fetch heads read ``PC + i`` for ``i < WIDTH``: opcode and fields a, b, c."""
    return np.arange(WIDTH, dtype=np.float64)


def attention_heads() -> dict[str, tuple[str, ...]]:
    """The read heads of the CPU token, per layer (names of the addresses they read).

    1. registers (constant addresses); 2. fetch at PC..PC+3, stack top ``SP - 1`` and
    frame link ``FP - 1``; 3. operands at fields a, b, c and ``FP + b``; 4. the derived
    address ``d`` and the protected flag at the write address; 5. the write-back layer,
    where every cell token attends to the CPU token's write heads (:func:`write_heads`).
    """
    return {
        "registers": SPECIAL_REGISTERS,
        "fetch": ("op", "a", "b", "c", "top", "frame_link"),
        "operands": ("a", "b", "c", "fp_b"),
        "indirect": ("d", "protected_at_write"),
        "write_back": write_heads(),
    }


def write_heads() -> tuple[str, ...]:
    """Write-back heads: the memory write, then one per protected special register.

    Each cell ``j`` attends to a head iff ``code(j) . code(addr) > K - 1/2`` and the head
    is enabled; then ``new = m * value + (1 - m) * old`` with ``m`` in {0, 1}, done as a
    select (exact for every float, the sign of zero included).
    """
    return ("memory", *PROTECTED_REGISTERS)


# ------------------------------------------------------------------ stage 4: decoder
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
            row[cols.index[f"{group}.{value}"]] = 1
        if mop.pc_cond == "value_le_zero" and mop.unit != "sub":
            raise ValueError(
                f"{spec.name}: 'value_le_zero' reads the subtract unit; use unit 'sub'"
            )
    return table


def decode_indices(table: np.ndarray) -> np.ndarray:
    """Index form of the one-hot groups of ``table`` (``argmax`` per group), int64.

    The fused path selects with ``gather`` by these indices; it is the same weights read
    one-hot, not a second table.
    """
    cols = decode_columns()
    out = [table[:, lo:hi].argmax(axis=1) for _, (lo, hi) in _onehot_groups(cols)]
    return np.stack(out, axis=1).astype(np.int64)


def _onehot_groups(cols: DecodeColumns) -> list[tuple[str, tuple[int, int]]]:
    return [(g, cols.groups[g]) for g, _ in GROUPS]


# ---------------------------------------------------------- stage 5: fault priority
def fault_priority() -> np.ndarray:
    """Priority encoder output table: fault code of check ``i``, then 0 for "no fault".

    The model stacks the check results in :data:`FAULT_PRIORITY` order plus a constant
    true, and takes the first true one (``argmax`` returns the first maximum), so several
    failing checks resolve exactly as the ISA's ordered list says.
    """
    return np.asarray([int(code) for _, code in FAULT_PRIORITY] + [int(Fault.NONE)])


# --------------------------------------------------------------- stage 6: write heads
def register_write_addresses(layout: Layout) -> np.ndarray:
    """Constant addresses of the register write heads (PC, SP, FP, HALT, FAULT, ICOUNT)."""
    return np.asarray([layout.register(r) for r in PROTECTED_REGISTERS], dtype=np.int64)


# ------------------------------------------------------------------------- the result
@dataclass(frozen=True)
class CompiledCPU:
    """Every weight of the Transformer CPU for one layout, as numpy arrays (float64)."""

    layout: Layout
    address_code: np.ndarray
    block_flags: np.ndarray
    protected: np.ndarray
    decoder_thresholds: np.ndarray
    decoder_bit_weights: np.ndarray
    register_queries: np.ndarray
    fetch_offsets: np.ndarray
    decode_table: np.ndarray
    decode_indices: np.ndarray
    fault_priority: np.ndarray
    register_write_addresses: np.ndarray
    heads: dict[str, tuple[str, ...]]

    WEIGHT_NAMES = (
        "address_code",
        "block_flags",
        "protected",
        "decoder_thresholds",
        "decoder_bit_weights",
        "register_queries",
        "fetch_offsets",
        "decode_table",
        "fault_priority",
        "register_write_addresses",
    )
    """The compiled weights (``decode_indices`` is a view of ``decode_table``, not counted)."""

    @property
    def n_layers(self) -> int:
        """Attention + MLP layer pairs executed per instruction."""
        return len(self.heads)

    @property
    def n_heads(self) -> dict[str, int]:
        return {layer: len(h) for layer, h in self.heads.items()}

    @property
    def n_parameters(self) -> int:
        """Number of compiled weight entries."""
        return int(sum(getattr(self, n).size for n in self.WEIGHT_NAMES))


def compile_cpu(layout: Layout) -> CompiledCPU:
    """Run every stage for ``layout``.

    Example:
        >>> from algind_gym.machine.layout import Layout
        >>> cpu = compile_cpu(Layout(n_general=4, stack_size=8, n_pointers=2, memory_size=16))
        >>> cpu.n_layers, cpu.decode_table.shape[0] == 31
        (5, True)
    """
    n = layout.n_cells
    k = n_address_bits(n)
    thresholds, bit_weights = address_decoder(k)
    table = decode_table()
    return CompiledCPU(
        layout=layout,
        address_code=address_code(n),
        block_flags=block_flags(layout),
        protected=protected_flags(layout),
        decoder_thresholds=thresholds,
        decoder_bit_weights=bit_weights,
        register_queries=register_queries(),
        fetch_offsets=fetch_offsets(),
        decode_table=table,
        decode_indices=decode_indices(table),
        fault_priority=fault_priority(),
        register_write_addresses=register_write_addresses(layout),
        heads=attention_heads(),
    )


__all__ = [
    "ALU_UNITS",
    "BY_NAME",
    "FAULT_PRIORITY",
    "MICROCODE",
    "CompiledCPU",
    "MicroOp",
    "compile_cpu",
    "decode_columns",
    "decode_table",
]
