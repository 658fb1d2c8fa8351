"""Where everything lives in a machine's flat vector of cells.

A :class:`Layout` is a frozen description shared by every machine in a batch. From the
bottom of the address space up (paper section 3.2.1, figure 1b):

========================  =====================================================
block                     contents
========================  =====================================================
``registers``             PC (the line register R_L), SP, FP, MODE, HALT, FAULT,
                          ICOUNT, then the general registers r0..r{n-1}
``stack``                 ``stack_size`` cells, grows upward from its base
``pointers``              the pointer table: ``n_pointers`` descriptors of
                          :data:`DESCRIPTOR_WIDTH` cells ``[addr, rows, cols, type]``
``memory``                static memory: inputs, weights, outputs, temporaries
``code``                  the boot block (``HALT`` at :attr:`Layout.halt_address`, an
                          invalid instruction at :attr:`Layout.trap_address`), then one
                          skill block per :class:`SkillBlockSpec`
========================  =====================================================

A skill block is ``[header | slots | code]``:

* header (4 cells, protected): output entry, Jacobian entry, number of argument slots,
  reserved.
* slots (``(n_args + 1)`` descriptors, writable): the argument pointer slots, then the
  weights slot. The environment (the paper's W^in) copies pointer-table descriptors here.
* code (``code_size`` cells, protected).

Addresses are plain integers; every derived address is computed here and nowhere else.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from algind_gym.machine.isa import WIDTH

SPECIAL_REGISTERS: tuple[str, ...] = ("pc", "sp", "fp", "mode", "halt", "fault", "icount")
"""Memory-mapped special registers, at addresses 0..6 in this order."""

PROTECTED_REGISTERS: tuple[str, ...] = ("pc", "sp", "fp", "halt", "fault", "icount")
"""Registers that data writes may not touch (MODE and r0.. are writable)."""

DESCRIPTOR_WIDTH = 4
"""Cells per pointer descriptor: ``[addr, rows, cols, type]``."""

DESCRIPTOR_FIELDS: tuple[str, ...] = ("addr", "rows", "cols", "type")

HEADER_WIDTH = 4
"""Cells in a skill block header: ``[output_entry, jacobian_entry, n_args, reserved]``."""

BOOT_SIZE = 2 * WIDTH
"""The boot block: a HALT (the return address of a top-level call) and a trap."""


class DataType(enum.IntEnum):
    """The ``type`` field of a pointer descriptor."""

    EMPTY = 0
    SCALAR = 1
    VECTOR = 2
    MATRIX = 3
    SKILL = 4


@dataclass(frozen=True)
class SkillBlockSpec:
    """Size of one skill block: its name, argument count and code capacity (cells)."""

    name: str
    n_args: int
    code_size: int

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").replace(".", "").isalnum():
            raise ValueError(f"skill block name {self.name!r} must be a non-empty identifier")
        if self.n_args < 0:
            raise ValueError(f"skill block {self.name!r}: n_args must be >= 0, got {self.n_args}")
        if self.code_size < 0 or self.code_size % WIDTH:
            raise ValueError(
                f"skill block {self.name!r}: code_size must be a non-negative multiple of {WIDTH}, "
                f"got {self.code_size}"
            )


@dataclass(frozen=True)
class Block:
    """A named contiguous range of cells ``[start, start + size)``."""

    name: str
    start: int
    size: int

    @property
    def end(self) -> int:
        return self.start + self.size

    def __contains__(self, address: int) -> bool:
        return self.start <= address < self.end


@dataclass(frozen=True)
class SkillBlock:
    """Addresses of one placed skill block (see the module docstring)."""

    spec: SkillBlockSpec
    base: int

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def header(self) -> int:
        """Address of the header; a skill reference (``type = SKILL``) points here."""
        return self.base

    @property
    def output_entry_cell(self) -> int:
        return self.base

    @property
    def jacobian_entry_cell(self) -> int:
        return self.base + 1

    def slot(self, index: int) -> int:
        """Address of argument slot ``index`` (its ``addr`` field); ``n_args`` is the weights slot."""
        if not 0 <= index <= self.spec.n_args:
            raise IndexError(
                f"skill block {self.name!r} has slots 0..{self.spec.n_args} "
                f"({self.spec.n_args} arguments + weights), got {index}"
            )
        return self.base + HEADER_WIDTH + DESCRIPTOR_WIDTH * index

    @property
    def weights_slot(self) -> int:
        return self.slot(self.spec.n_args)

    @property
    def code_start(self) -> int:
        return self.base + HEADER_WIDTH + DESCRIPTOR_WIDTH * (self.spec.n_args + 1)

    @property
    def end(self) -> int:
        return self.code_start + self.spec.code_size


@dataclass(frozen=True)
class Layout:
    """Block sizes of a machine; every address is derived from them.

    Example:
        >>> lay = Layout(n_general=4, stack_size=8, n_pointers=2, memory_size=16,
        ...              skill_blocks=(SkillBlockSpec("main", 0, 32),))
        >>> lay.register("r0"), lay.block("stack").start, lay.n_cells
        (7, 11, 91)
    """

    n_general: int = 8
    stack_size: int = 64
    n_pointers: int = 16
    memory_size: int = 256
    skill_blocks: tuple[SkillBlockSpec, ...] = field(default=())

    def __post_init__(self) -> None:
        for name in ("n_general", "stack_size", "n_pointers", "memory_size"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"Layout.{name} must be a non-negative integer, got {value!r}")
        if self.n_general < 1:
            raise ValueError("Layout.n_general must be >= 1 (programs need a scratch register)")
        object.__setattr__(self, "skill_blocks", tuple(self.skill_blocks))
        names = [s.name for s in self.skill_blocks]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate skill block names in layout: {sorted(dup)}")

    # ----------------------------------------------------------------- blocks
    @cached_property
    def blocks(self) -> dict[str, Block]:
        """The top-level blocks, in address order."""
        sizes = [
            ("registers", len(SPECIAL_REGISTERS) + self.n_general),
            ("stack", self.stack_size),
            ("pointers", DESCRIPTOR_WIDTH * self.n_pointers),
            ("memory", self.memory_size),
            ("code", BOOT_SIZE + sum(_skill_size(s) for s in self.skill_blocks)),
        ]
        out, start = {}, 0
        for name, size in sizes:
            out[name] = Block(name, start, size)
            start += size
        return out

    def block(self, name: str) -> Block:
        try:
            return self.blocks[name]
        except KeyError:
            raise KeyError(f"unknown block {name!r}; blocks are {list(self.blocks)}") from None

    @property
    def n_cells(self) -> int:
        return self.blocks["code"].end

    @property
    def stack_base(self) -> int:
        return self.blocks["stack"].start

    @property
    def stack_end(self) -> int:
        return self.blocks["stack"].end

    @property
    def halt_address(self) -> int:
        """A ``HALT`` instruction: the return address pushed for a top-level call."""
        return self.blocks["code"].start

    @property
    def trap_address(self) -> int:
        """An invalid instruction: the Jacobian entry of a skill that has no Jacobian code."""
        return self.blocks["code"].start + WIDTH

    # -------------------------------------------------------------- registers
    @cached_property
    def register_names(self) -> tuple[str, ...]:
        return SPECIAL_REGISTERS + tuple(f"r{i}" for i in range(self.n_general))

    def register(self, name: str) -> int:
        """Address of a register by name (``pc``, ``sp``, ..., ``r0``...)."""
        try:
            return self.register_names.index(name.lower())
        except ValueError:
            raise KeyError(
                f"unknown register {name!r}; registers are {', '.join(self.register_names)}"
            ) from None

    # ----------------------------------------------------------- pointer table
    def pointer(self, index: int) -> int:
        """Address of pointer-table entry ``index`` (its ``addr`` field)."""
        if not 0 <= index < self.n_pointers:
            raise IndexError(f"pointer table has entries 0..{self.n_pointers - 1}, got {index}")
        return self.blocks["pointers"].start + DESCRIPTOR_WIDTH * index

    # ------------------------------------------------------------ skill blocks
    @cached_property
    def skills(self) -> dict[str, SkillBlock]:
        out, base = {}, self.blocks["code"].start + BOOT_SIZE
        for spec in self.skill_blocks:
            out[spec.name] = SkillBlock(spec, base)
            base += _skill_size(spec)
        return out

    def skill(self, name: str) -> SkillBlock:
        try:
            return self.skills[name]
        except KeyError:
            raise KeyError(
                f"no skill block {name!r} in this layout; it has {list(self.skills) or 'none'}"
            ) from None

    # -------------------------------------------------------------- masks
    @cached_property
    def protected_mask(self) -> np.ndarray:
        """Boolean mask of cells that data writes may not touch (read-only array)."""
        mask = np.zeros(self.n_cells, dtype=bool)
        for name in PROTECTED_REGISTERS:
            mask[self.register(name)] = True
        code = self.blocks["code"]
        mask[code.start : code.start + BOOT_SIZE] = True
        for sb in self.skills.values():
            mask[sb.base : sb.base + HEADER_WIDTH] = True
            mask[sb.code_start : sb.end] = True
        mask.setflags(write=False)
        return mask

    @cached_property
    def block_ids(self) -> np.ndarray:
        """Per-cell index of its top-level block (0 registers ... 4 code), read-only."""
        ids = np.zeros(self.n_cells, dtype=np.int64)
        for i, b in enumerate(self.blocks.values()):
            ids[b.start : b.end] = i
        ids.setflags(write=False)
        return ids

    def describe(self, address: int) -> str:
        """A human name for an address, e.g. ``r0``, ``stack+3``, ``vadd.slot1.rows``."""
        if 0 <= address < len(self.register_names):
            return self.register_names[address]
        for sb in self.skills.values():
            if sb.base <= address < sb.end:
                if address < sb.base + HEADER_WIDTH:
                    return f"{sb.name}.header+{address - sb.base}"
                if address < sb.code_start:
                    k, f = divmod(address - sb.slot(0), DESCRIPTOR_WIDTH)
                    return f"{sb.name}.slot{k}.{DESCRIPTOR_FIELDS[f]}"
                return f"{sb.name}.code+{address - sb.code_start}"
        for b in self.blocks.values():
            if address in b:
                return f"{b.name}+{address - b.start}"
        return f"<outside:{address}>"

    # --------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        return {
            "n_general": self.n_general,
            "stack_size": self.stack_size,
            "n_pointers": self.n_pointers,
            "memory_size": self.memory_size,
            "skill_blocks": [[s.name, s.n_args, s.code_size] for s in self.skill_blocks],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Layout:
        if not isinstance(data, dict):
            raise TypeError(f"layout must be a JSON object, got {type(data).__name__}")
        expected = {"n_general", "stack_size", "n_pointers", "memory_size", "skill_blocks"}
        missing, extra = expected - set(data), set(data) - expected
        if missing or extra:
            raise ValueError(
                f"layout keys wrong: missing {sorted(missing)}, unexpected {sorted(extra)}"
            )
        blocks = tuple(SkillBlockSpec(str(n), int(a), int(c)) for n, a, c in data["skill_blocks"])
        return cls(
            n_general=int(data["n_general"]),
            stack_size=int(data["stack_size"]),
            n_pointers=int(data["n_pointers"]),
            memory_size=int(data["memory_size"]),
            skill_blocks=blocks,
        )


def _skill_size(spec: SkillBlockSpec) -> int:
    return HEADER_WIDTH + DESCRIPTOR_WIDTH * (spec.n_args + 1) + spec.code_size
