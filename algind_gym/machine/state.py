"""`MachineState`: a batch of machines, one flat row of cells each.

The paper's state S (section 3.2.1) is a vector in R^n. Here it is ``cells`` of shape
``(batch, layout.n_cells)``: batch dimension first, numpy, float32 or float64. Blocks are
views (``state.block("memory")`` writes through), registers are columns.

Every cell is finite: :class:`MachineState` refuses inf/NaN on construction and the
interpreter faults rather than writing one. The Transformer CPU relies on this (a zero
weight times inf would be NaN).

SP and FP are integers inside the stack block, ``stack_base <= SP, FP <= stack_end``:
:class:`MachineState` refuses a host-provided state that breaks this (the constructor and
:meth:`MachineState.from_dict`), naming the machine, the register, its value and the
range. :meth:`MachineState.set_register` writes any finite value (the CPU's equivalence
tests use it to build hostile states). Programs cannot write SP, and every instruction
that moves it checks the bounds, so SP stays valid while machines run; FP is restored by
``LEAVE`` from a stack cell that a program may have overwritten, so a machine-produced
state can hold any finite FP (every instruction that uses FP checks the address it forms,
so the interpreter and the CPU agree on it). :meth:`MachineState.copy` and
``check_registers=False`` therefore take such states as they are; the fuzzers
(:mod:`algind_gym.cpu.fuzz`) write corrupted registers into the cells directly to test
exactly that agreement.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from algind_gym.machine.isa import WIDTH, Fault
from algind_gym.machine.layout import DESCRIPTOR_WIDTH, DataType, Layout

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
STATE_FORMAT_VERSION = 1
STACK_REGISTERS = ("sp", "fp")


def _check_stack_register(layout: Layout, name: str, values: np.ndarray) -> None:
    """``ValueError`` unless every value is an integer in ``[stack_base, stack_end]``."""
    v = np.asarray(values, dtype=np.float64)
    bad = ~((np.floor(v) == v) & (v >= layout.stack_base) & (v <= layout.stack_end))
    if bad.any():
        m = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"machine {m}: {name.upper()} = {v[m]!r} is not an integer inside the stack block "
            f"[{layout.stack_base}, {layout.stack_end}] (the stack occupies cells "
            f"{layout.stack_base}..{layout.stack_end - 1}; {name.upper()} = {layout.stack_base} "
            "is an empty stack, as MachineState.zeros sets it)"
        )


def _check_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in SUPPORTED_DTYPES:
        raise TypeError(f"unsupported dtype {dt}; expected float32 or float64")
    return dt


class MachineState:
    """A batch of machines sharing one :class:`Layout`.

    Args:
        layout: the block sizes.
        cells: array of shape ``(batch, layout.n_cells)``, float32 or float64, finite.
            It is used as is (not copied).
        check_registers: refuse SP or FP outside the stack block (see the module
            docstring); ``False`` for states the machine itself produced.

    Example:
        >>> from algind_gym.machine.layout import Layout
        >>> s = MachineState.zeros(Layout(), batch=2)
        >>> s.set_register("r0", [1.5, 2.5])
        >>> s.register("r0").tolist()
        [1.5, 2.5]
    """

    def __init__(self, layout: Layout, cells: np.ndarray, *, check_registers: bool = True) -> None:
        if not isinstance(cells, np.ndarray):
            raise TypeError(f"cells must be a numpy array, got {type(cells).__name__}")
        _check_dtype(cells.dtype)
        if cells.ndim != 2 or cells.shape[1] != layout.n_cells:
            raise ValueError(
                f"cells has shape {cells.shape}; this layout needs (batch, {layout.n_cells})"
            )
        if not np.isfinite(cells).all():
            bad = np.argwhere(~np.isfinite(cells))[0]
            raise ValueError(
                f"cells must be finite; machine {bad[0]} cell {bad[1]} "
                f"({layout.describe(int(bad[1]))}) is {cells[bad[0], bad[1]]}"
            )
        if check_registers:
            for name in STACK_REGISTERS:
                _check_stack_register(layout, name, cells[:, layout.register(name)])
        self.layout = layout
        self.cells = cells

    # ------------------------------------------------------------ construction
    @classmethod
    def zeros(cls, layout: Layout, batch: int = 1, dtype=np.float32) -> MachineState:
        """A fresh batch: all zeros, SP and FP at the stack base."""
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        cells = np.zeros((batch, layout.n_cells), dtype=_check_dtype(dtype))
        cells[:, layout.register("sp")] = layout.stack_base
        cells[:, layout.register("fp")] = layout.stack_base
        cells[:, layout.halt_address] = 1.0  # HALT opcode
        cells[:, layout.trap_address] = 0.0  # opcode 0 is invalid: a trap
        return cls(layout, cells)

    def copy(self) -> MachineState:
        """An independent copy (taken as is: the registers were checked, or the machine
        produced them)."""
        return MachineState(self.layout, self.cells.copy(), check_registers=False)

    # ------------------------------------------------------------------ views
    @property
    def batch(self) -> int:
        return self.cells.shape[0]

    @property
    def dtype(self) -> np.dtype:
        return self.cells.dtype

    def block(self, name: str) -> np.ndarray:
        """A writable view ``(batch, size)`` of a top-level block."""
        b = self.layout.block(name)
        return self.cells[:, b.start : b.end]

    def register(self, name: str) -> np.ndarray:
        """A writable view ``(batch,)`` of one register."""
        return self.cells[:, self.layout.register(name)]

    def set_register(self, name: str, value) -> None:
        with np.errstate(over="ignore"):
            v = np.asarray(value, dtype=self.dtype)
        self.cells[:, self.layout.register(name)] = self._finite(v, f"register {name}")

    @property
    def halted(self) -> np.ndarray:
        return self.register("halt") != 0

    @property
    def faults(self) -> np.ndarray:
        """Per-machine fault codes as ints (see :class:`~algind_gym.machine.isa.Fault`)."""
        return self.register("fault").astype(np.int64)

    @property
    def running(self) -> np.ndarray:
        return ~self.halted & (self.faults == Fault.NONE)

    def write(self, address: int, values) -> None:
        """Write ``values`` (shape ``(k,)`` or ``(batch, k)``) at ``address`` in every machine."""
        with np.errstate(over="ignore"):
            v = np.asarray(values, dtype=self.dtype)
        self._finite(v, f"write at {address} ({self.layout.describe(address)})")
        k = v.shape[-1] if v.ndim else 1
        if address < 0 or address + k > self.layout.n_cells:
            raise IndexError(
                f"write of {k} cells at {address} leaves the state (0..{self.layout.n_cells - 1})"
            )
        self.cells[:, address : address + k] = v.reshape(v.shape if v.ndim == 2 else (-1,))

    def read(self, address: int, length: int) -> np.ndarray:
        """Cells ``[address, address + length)`` of every machine, shape ``(batch, length)``."""
        if address < 0 or length < 0 or address + length > self.layout.n_cells:
            raise IndexError(
                f"read of {length} cells at {address} leaves the state (0..{self.layout.n_cells - 1})"
            )
        return self.cells[:, address : address + length]

    def set_pointer(
        self, index: int, address: int, rows: int, cols: int = 1, dtype: DataType = DataType.VECTOR
    ) -> None:
        """Fill pointer-table entry ``index`` with ``[address, rows, cols, type]``."""
        self.write(self.layout.pointer(index), [address, rows, cols, int(dtype)])

    def descriptor(self, address: int) -> np.ndarray:
        """The ``[addr, rows, cols, type]`` descriptor stored at ``address``, per machine."""
        return self.read(address, DESCRIPTOR_WIDTH)

    def load_code(self, address: int, cells: Sequence[float]) -> None:
        """Write assembled code (a multiple of the instruction width) at ``address``."""
        if len(cells) % WIDTH:
            raise ValueError(f"code length {len(cells)} is not a multiple of {WIDTH}")
        self.write(address, list(cells))

    # ----------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        """JSON-compatible data; floats round-trip exactly."""
        return {
            "format": "algind_gym.MachineState",
            "version": STATE_FORMAT_VERSION,
            "dtype": self.dtype.name,
            "layout": self.layout.to_dict(),
            "cells": self.cells.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict, *, check_registers: bool = True) -> MachineState:
        if not isinstance(data, dict) or data.get("format") != "algind_gym.MachineState":
            raise ValueError("not a serialised MachineState (missing format tag)")
        if data.get("version") != STATE_FORMAT_VERSION:
            raise ValueError(
                f"MachineState format version {data.get('version')!r} is not supported "
                f"(this algind_gym reads version {STATE_FORMAT_VERSION})"
            )
        dtype = _check_dtype(data["dtype"])
        layout = Layout.from_dict(data["layout"])
        cells = np.asarray(data["cells"], dtype=dtype)
        if cells.ndim == 1:
            cells = cells[None]
        return cls(layout, cells, check_registers=check_registers)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MachineState):
            return NotImplemented
        return (
            self.layout == other.layout
            and self.dtype == other.dtype
            and np.array_equal(self.cells, other.cells)
        )

    def __repr__(self) -> str:
        return f"MachineState(batch={self.batch}, n_cells={self.layout.n_cells}, dtype={self.dtype.name})"

    def _finite(self, value, what: str):
        arr = np.asarray(value)
        if not np.isfinite(arr).all():
            raise ValueError(
                f"{what}: values must be finite in {self.dtype.name}, got {value!r} "
                "(out of range for this dtype?)"
            )
        return value
