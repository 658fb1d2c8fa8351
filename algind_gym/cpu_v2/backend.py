"""The v2 backends: ``make_v2_backend("transformer-v2")`` (the fused path on the compiled
numba loop where numba is installed), ``"transformer-v2-torch"`` (the fused path as eager
torch ops) and ``"transformer-v2-dense"`` (the transformer with every matmul over every cell
token). They have ``.name``, ``.step(state)`` and ``.run(state, max_steps)`` like the
backends of :mod:`algind_gym.cpu.backend`, which creates them lazily for these names.

Each backend compiles one :class:`TransformerCPU` per (layout, dtype) and keeps it. On CPU
the numba kernel and the dense pass run on the state's numpy array itself (the dense pass
is :meth:`TransformerCPU.dense_numpy`, the same matrices and operations as the torch dense
pass, without a torch call per step); otherwise ``run`` converts numpy to torch once (on
CPU ``torch.from_numpy`` shares the memory), loops the forward pass, and copies back once. Its driver semantics are those
of :func:`algind_gym.machine.interpreter.run`: stop when no machine is running, and give
``BUDGET_EXHAUSTED`` to machines still running after ``max_steps``. Every entry point first
checks that the state's cells are finite (:func:`check_state`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from algind_gym.cpu_v2.model import TransformerCPU, check_cells
from algind_gym.machine.isa import Fault
from algind_gym.machine.layout import Layout
from algind_gym.machine.state import MachineState

V2_BACKENDS = ("transformer-v2", "transformer-v2-torch", "transformer-v2-dense")
"""Names accepted by :func:`make_v2_backend`."""

_FAULT, _HALT = 5, 4
_CHECK_EVERY = 16
"""Steps between "is anything still running?" checks (each one is a device sync).
Extra steps on a batch where nothing runs are no-ops, so results do not depend on it."""


def check_state(state: MachineState) -> None:
    """Every v2 backend's entry check of a host-provided state (the same error everywhere):
    the state's cells must be finite (a program never writes inf/NaN; it faults)."""
    check_cells(state.cells, state.layout.n_cells)


@dataclass
class TransformerBackend:
    """The Transformer CPU (``path`` "fused" or "dense") behind the backend interface.

    ``kernel`` is the fused path's kernel (see :class:`TransformerCPU`): "auto" (numba on
    CPU where installed) or "torch" (eager torch ops).
    """

    path: str = "fused"
    device: str | torch.device = "cpu"
    kernel: str = "auto"
    _models: dict = field(default_factory=dict, repr=False)
    _last: tuple | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        if self.path == "fused":
            return "transformer-v2-torch" if self.kernel == "torch" else "transformer-v2"
        return f"transformer-v2-{self.path}"

    def model(self, layout: Layout, dtype) -> TransformerCPU:
        """The compiled CPU for ``layout`` and ``dtype`` (compiled once, then cached)."""
        last = self._last
        if last is not None and last[0] is layout and last[1] == dtype:
            return last[2]  # the common case: the same layout object as the last call
        key = (layout, np.dtype(dtype).name)
        if key not in self._models:
            kernel = self.kernel if self.path == "fused" else "torch"
            self._models[key] = TransformerCPU(layout, dtype, self.device, self.path, kernel)
        self._last = (layout, dtype, self._models[key])
        return self._models[key]

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
        if cpu.runs_numpy():  # it checks the state itself (in the kernel: cheaper)
            cpu.run_numpy(_contiguous(state), 1)
            return state
        check_state(state)
        if self._dense_numpy(cpu):
            state.cells[...] = cpu.dense_numpy(state.cells)
            return state
        cells = self._to_torch(state)
        with torch.inference_mode():
            cells = cpu(cells, inplace=True)
        self._back(state, cells)
        return state

    def run(self, state: MachineState, max_steps: int = 10_000) -> MachineState:
        """Run until all machines stop or ``max_steps`` (in place); see the module docs."""
        if max_steps < 0:
            raise ValueError(f"max_steps must be >= 0, got {max_steps}")
        cpu = self.model(state.layout, state.dtype)
        if cpu.runs_numpy():  # every machine's loop in one call, on numpy: no torch overhead
            # (run_numpy checks the state first, in the kernel, with check_state's errors)
            cpu.run_numpy(_contiguous(state), max_steps, float(Fault.BUDGET_EXHAUSTED))
            return state
        check_state(state)
        if self._dense_numpy(cpu):
            _run_dense_numpy(cpu, state, max_steps)
            return state
        cells = self._to_torch(state)
        with torch.inference_mode():
            done = 0
            if cpu.uses_numba(cells):  # every machine's loop in one call
                cpu.run(cells, max_steps)
                done = max_steps
            while done < max_steps and bool(_running(cells).any()):
                for _ in range(min(_CHECK_EVERY, max_steps - done)):
                    cells = cpu(cells, inplace=True)
                    done += 1
            still = _running(cells)
            cells[:, _FAULT] = torch.where(still, float(Fault.BUDGET_EXHAUSTED), cells[:, _FAULT])
        self._back(state, cells)
        return state

    def _dense_numpy(self, cpu: TransformerCPU) -> bool:
        """Whether the dense path runs on numpy here (on CPU: no torch call per step)."""
        return self.path == "dense" and torch.device(self.device).type == "cpu"


def _run_dense_numpy(cpu: TransformerCPU, state: MachineState, max_steps: int) -> None:
    """:meth:`TransformerBackend.run`'s loop on numpy arrays, the same passes as torch's."""
    cells, done = state.cells, 0
    while done < max_steps and bool(_running_np(cells).any()):
        for _ in range(min(_CHECK_EVERY, max_steps - done)):
            cells = cpu.dense_numpy(cells)
            done += 1
    cells[_running_np(cells), _FAULT] = float(Fault.BUDGET_EXHAUSTED)
    if cells is not state.cells:
        state.cells[...] = cells


def _running_np(cells: np.ndarray) -> np.ndarray:
    """:attr:`MachineState.running` of numpy ``cells``: HALT == 0 and int(FAULT) == 0."""
    return (cells[:, _HALT] == 0) & (np.trunc(cells[:, _FAULT]) == 0)


def _contiguous(state: MachineState) -> np.ndarray:
    if not state.cells.flags.c_contiguous:
        state.cells = np.ascontiguousarray(state.cells)
    return state.cells


def _running(cells: torch.Tensor) -> torch.Tensor:
    """:attr:`MachineState.running` on a tensor: HALT == 0 and int(FAULT) == 0."""
    return (cells[:, _HALT] == 0) & (torch.trunc(cells[:, _FAULT]) == 0)


def make_v2_backend(
    name: str = "transformer-v2", device: str | torch.device = "cpu"
) -> TransformerBackend:
    """Return the v2 backend called ``name`` (see :data:`V2_BACKENDS`).

    Example:
        >>> make_v2_backend().name, make_v2_backend("transformer-v2-dense").name
        ('transformer-v2', 'transformer-v2-dense')
    """
    if name == "transformer-v2":
        return TransformerBackend("fused", device)
    if name == "transformer-v2-torch":
        return TransformerBackend("fused", device, "torch")
    if name == "transformer-v2-dense":
        return TransformerBackend("dense", device)
    raise ValueError(f"unknown v2 backend {name!r}; expected one of {', '.join(V2_BACKENDS)}")
