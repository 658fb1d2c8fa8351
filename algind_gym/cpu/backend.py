"""One switch for the execution backend used by everything above the CPU layer.

``make_backend("transformer")`` (the default: the fused path, on the compiled numba loop
where numba is installed), ``"transformer-torch"`` (the fused path as eager torch ops),
``"transformer-dense"`` (materialised attention) and ``"reference"`` (the numpy
interpreter) all have ``.name``, ``.step(state)`` and ``.run(state, max_steps)``; both
mutate the :class:`MachineState` in place and return it.

The Transformer backends compile one :class:`TransformerCPU` per (layout, dtype) and keep
it. ``run`` converts numpy to torch once (on CPU ``torch.from_numpy`` shares the memory, so
there is no copy at all), loops the forward pass, and copies back once. Its driver
semantics are those of :func:`algind_gym.machine.interpreter.run`: stop when no machine is
running, and give ``BUDGET_EXHAUSTED`` to machines still running after ``max_steps``.

Write ranges
------------
``run(state, max_steps, written=w)`` also reports, per machine, which cells the run may have
changed, so that a caller that restores machines (the vector env's autoreset) can rewrite
only those. ``w`` is a ``(B, 4)`` int64 array made by :func:`empty_write_ranges`: two
``[lo, hi]`` ranges of cell indices per machine (``lo > hi``: nothing written), columns 0-1
for cells below the memory block (general registers, stack, pointer table) and columns 2-3
for the memory block and above (data, outputs, scratch; skill slots), split at
:func:`~algind_gym.cpu.model.write_split`. Two ranges, because programs write both the
stack (calls, frames) and the data far above it, and one range would span everything
between. ``run`` widens each range in place to cover every cell written by that
machine's *memory write head* during the call, so the ranges accumulate over calls until
the caller resets them. Not included: the six protected registers PC, SP, FP, HALT,
FAULT, ICOUNT (every instruction writes them, and ``run`` may set FAULT to
``BUDGET_EXHAUSTED``); MODE is included when an instruction writes it and not when an
instruction without a memory write rewrites its own value. So after the call, every cell
of a machine outside its two ranges and outside those six registers holds what it held
before. The numba kernel (``"transformer"`` on CPU) reports exact ranges; backends that do
not track writes (``"reference"``, ``"transformer-torch"``, ``"transformer-dense"``, a
kernel that falls back to the torch ops) widen both ranges to the whole row, a
conservative answer that is always correct. For any backend object,
:func:`run_recording_writes` passes ``written`` where the backend's ``run`` accepts it
(its ``records_writes`` attribute is true) and otherwise runs plainly and widens every row
to the whole row (the v2 backends, user objects).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from algind_gym.cpu.model import TransformerCPU, check_write_ranges, widen_to_whole_rows
from algind_gym.cpu.threads import resolve_threads
from algind_gym.machine import interpreter
from algind_gym.machine.isa import Fault
from algind_gym.machine.layout import Layout
from algind_gym.machine.state import MachineState

BACKENDS = ("transformer", "transformer-torch", "transformer-dense", "reference")
"""Names accepted by :func:`make_backend`."""

OPT_IN_BACKENDS = ("transformer-v2", "transformer-v2-torch", "transformer-v2-dense")
"""Also accepted by :func:`make_backend`: the compiled-transformer CPU v2
(:mod:`algind_gym.cpu_v2`, bit-exact but much slower), imported only when asked for."""

_FAULT, _HALT = 5, 4
_CHECK_EVERY = 16
"""Steps between "is anything still running?" checks (each one is a device sync).
Extra steps on a batch where nothing runs are no-ops, so results do not depend on it."""


NOTHING_WRITTEN = int(np.iinfo(np.int64).max)
"""The ``lo`` of an empty write range (its ``hi`` is -1): see "Write ranges" above."""


def empty_write_ranges(batch: int) -> np.ndarray:
    """``(batch, 4)`` int64 write ranges that record nothing yet: ``[2**63 - 1, -1]`` twice
    per row (``lo > hi``; see "Write ranges" in the module docs).

    Example:
        >>> empty_write_ranges(1).tolist()
        [[9223372036854775807, -1, 9223372036854775807, -1]]
    """
    if batch < 0:
        raise ValueError(f"batch must be >= 0, got {batch}")
    out = np.empty((batch, 4), dtype=np.int64)
    out[:] = (NOTHING_WRITTEN, -1, NOTHING_WRITTEN, -1)
    return out


class Backend(Protocol):
    """What every backend offers."""

    name: str

    def step(self, state: MachineState) -> MachineState: ...

    def run(self, state: MachineState, max_steps: int = 10_000) -> MachineState: ...


class ReferenceBackend:
    """The numpy reference interpreter behind the backend interface."""

    name = "reference"
    records_writes = True  # run accepts ``written`` (and answers with whole rows)

    def step(self, state: MachineState) -> MachineState:
        """Execute one instruction on every running machine (in place)."""
        return interpreter.step(state)

    def run(
        self, state: MachineState, max_steps: int = 10_000, written: np.ndarray | None = None
    ) -> MachineState:
        """Run until all machines stop or ``max_steps`` (in place). ``written``: write
        ranges (module docs); the interpreter does not track them, so every row becomes
        the whole row."""
        if written is not None:
            check_write_ranges(written, state.batch)
        interpreter.run(state, max_steps)
        if written is not None:
            widen_to_whole_rows(written, state.layout)
        return state


@dataclass
class TransformerBackend:
    """The Transformer CPU (``path`` "fused" or "dense") behind the backend interface.

    ``kernel`` is the fused path's kernel (see :class:`TransformerCPU`): "auto" (numba on
    CPU where installed) or "torch" (eager torch ops). ``threads``: threads of a batched
    call on the numba kernel (None: ``$ALGIND_CPU_THREADS`` or numba's thread count; the
    policy is in :mod:`algind_gym.cpu.threads`); results do not depend on it.
    """

    path: str = "fused"
    device: str | torch.device = "cpu"
    kernel: str = "auto"
    threads: int | None = None
    _models: dict = field(default_factory=dict, repr=False)
    _last: tuple | None = field(default=None, repr=False)
    records_writes = True  # run accepts ``written`` (see the module docs)

    def __post_init__(self) -> None:
        self.threads = resolve_threads(self.threads)  # a clear error at construction

    @property
    def name(self) -> str:
        if self.path == "fused":
            return "transformer-torch" if self.kernel == "torch" else "transformer"
        return f"transformer-{self.path}"

    def model(self, layout: Layout, dtype) -> TransformerCPU:
        """The compiled CPU for ``layout`` and ``dtype`` (compiled once, then cached)."""
        last = self._last
        if last is not None and last[0] is layout and last[1] == dtype:
            return last[2]  # the common case: the same layout object as the previous call
        key = (layout, np.dtype(dtype).name)
        if key not in self._models:
            kernel = self.kernel if self.path == "fused" else "torch"
            self._models[key] = TransformerCPU(
                layout, dtype, self.device, self.path, kernel, self.threads
            )
        cpu = self._models[key]
        # Hashing a Layout (a frozen dataclass of blocks) costs ~50 us, as much as a short
        # kernel run; identity of the previous call's layout is checked first.
        self._last = (layout, dtype, cpu, cpu.runs_on_arrays())
        return cpu

    def _to_torch(self, state: MachineState) -> torch.Tensor:
        if not state.cells.flags.c_contiguous:
            state.cells = np.ascontiguousarray(state.cells)
        return torch.from_numpy(state.cells).to(self.device)

    def _back(self, state: MachineState, cells: torch.Tensor) -> None:
        if cells.device.type != "cpu" or cells.data_ptr() != state.cells.ctypes.data:
            state.cells[...] = cells.cpu().numpy()

    def step(self, state: MachineState) -> MachineState:
        """Execute one instruction on every running machine (in place)."""
        cpu = self.model(state.layout, state.dtype)
        cells = self._to_torch(state)
        with torch.inference_mode():
            cells = cpu(cells, inplace=True)
        self._back(state, cells)
        return state

    def run(
        self, state: MachineState, max_steps: int = 10_000, written: np.ndarray | None = None
    ) -> MachineState:
        """Run until all machines stop or ``max_steps`` (in place); see the module docs.

        ``written``: optional ``(B, 4)`` int64 write ranges, widened in place ("Write
        ranges" in the module docs): exact on the numba kernel, whole rows otherwise.
        """
        if max_steps < 0:
            raise ValueError(f"max_steps must be >= 0, got {max_steps}")
        cpu = self.model(state.layout, state.dtype)
        if self._last[3]:  # the numba kernel: numpy in, numpy out, no torch call
            if not state.cells.flags.c_contiguous:
                state.cells = np.ascontiguousarray(state.cells)
            c = state.cells
            cpu.run_array(c, max_steps, written)
            _budget_exhausted(c)
            return state
        if written is not None:
            check_write_ranges(written, state.batch)
        cells = self._to_torch(state)
        with torch.inference_mode():
            done = 0
            if cpu.uses_numba(cells):  # every machine's loop in one call
                cpu.run(cells, max_steps, written)
                done = max_steps
            elif written is not None:
                widen_to_whole_rows(written, state.layout)
            while done < max_steps and bool(_running(cells).any()):
                for _ in range(min(_CHECK_EVERY, max_steps - done)):
                    cells = cpu(cells, inplace=True)
                    done += 1
            still = _running(cells)
            cells[:, _FAULT] = torch.where(still, float(Fault.BUDGET_EXHAUSTED), cells[:, _FAULT])
        self._back(state, cells)
        return state


def run_recording_writes(
    backend, state: MachineState, max_steps: int, written: np.ndarray
) -> MachineState:
    """``backend.run(state, max_steps)`` that also widens the write ranges ``written`` (module
    docs): through ``run``'s ``written`` argument where the backend has one
    (``records_writes``), else by widening every row to the whole row after a plain run."""
    if getattr(backend, "records_writes", False):
        return backend.run(state, max_steps, written=written)
    check_write_ranges(written, state.batch)
    out = backend.run(state, max_steps)
    widen_to_whole_rows(written, state.layout)
    return out


def _budget_exhausted_py(c: np.ndarray) -> None:
    """Give ``BUDGET_EXHAUSTED`` to the machines still running (HALT == 0 and int(FAULT) ==
    0) in the cells ``c`` (in place), one pass over the rows (compiled by numba where it is
    installed: the registers of each row are read once, not once per numpy operation)."""
    exhausted = _BUDGET_EXHAUSTED
    for r in range(c.shape[0]):
        if c[r, _HALT] == 0 and np.trunc(c[r, _FAULT]) == 0:
            c[r, _FAULT] = exhausted


def _budget_exhausted_numpy(c: np.ndarray) -> None:
    """:func:`_budget_exhausted_py` with numpy operations."""
    still = (c[:, _HALT] == 0) & (np.trunc(c[:, _FAULT]) == 0)
    c[still, _FAULT] = _BUDGET_EXHAUSTED


_BUDGET_EXHAUSTED = float(Fault.BUDGET_EXHAUSTED)
try:  # numba is a dependency; without it the numpy version runs
    import numba

    _budget_exhausted = numba.njit(cache=True, nogil=True, boundscheck=False)(_budget_exhausted_py)
except ImportError:  # pragma: no cover - exercised only without numba
    _budget_exhausted = _budget_exhausted_numpy


def _running(cells: torch.Tensor) -> torch.Tensor:
    """:attr:`MachineState.running` on a tensor: HALT == 0 and int(FAULT) == 0."""
    return (cells[:, _HALT] == 0) & (torch.trunc(cells[:, _FAULT]) == 0)


def make_backend(
    name: str = "transformer", device: str | torch.device = "cpu", threads: int | None = None
) -> Backend:
    """Return the execution backend called ``name`` (see :data:`BACKENDS` and
    :data:`OPT_IN_BACKENDS`).

    ``threads`` sets the threads of the numba kernel's batched calls (``"transformer"``;
    None: ``$ALGIND_CPU_THREADS`` or numba's thread count, :mod:`algind_gym.cpu.threads`);
    the other backends have no such kernel and refuse a value.

    Example:
        >>> make_backend().name, make_backend("transformer-torch").name
        ('transformer', 'transformer-torch')
    """
    if threads is not None and name != "transformer" and name in BACKENDS + OPT_IN_BACKENDS:
        raise ValueError(
            f"threads applies to the 'transformer' backend (its numba kernel), not {name!r}; "
            "leave threads=None"
        )
    if name == "reference":
        return ReferenceBackend()
    if name == "transformer":
        return TransformerBackend("fused", device, threads=threads)
    if name == "transformer-torch":
        return TransformerBackend("fused", device, "torch")
    if name == "transformer-dense":
        return TransformerBackend("dense", device)
    if name in OPT_IN_BACKENDS:
        from algind_gym.cpu_v2.backend import make_v2_backend

        return make_v2_backend(name, device)
    names = ", ".join(BACKENDS + OPT_IN_BACKENDS)
    raise ValueError(f"unknown backend {name!r}; expected one of {names}")
