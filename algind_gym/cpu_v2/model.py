"""`TransformerCPU`: the paper's execution module E, one instruction per forward pass.

The model is the transformer that :func:`~algind_gym.cpu_v2.circuit.compile_circuit` builds
from the micro-op table: an embedding of every cell as a token, eleven layers of hard
attention (``W_Q``, ``W_K``, ``W_V``, ``W_O``) and MLPs (``W_1``, ``W_2``), and an
unembedding that reads the new cell values (see :mod:`algind_gym.cpu_v2.circuit` for what
each layer computes and :mod:`algind_gym.cpu_v2.blocks` for the three kinds of block).
:meth:`TransformerCPU.describe` prints the real block count, heads, ``d_model``,
parameter count and the non-zeros of every matrix.

Three executors run the same compiled matrices:

* ``path="dense"``: the transformer as written, with matmuls over every cell token
  (:class:`~algind_gym.cpu_v2.dense.DensePass`: on numpy arrays for inference on CPU, on
  torch tensors when autograd or another device needs them);
* ``path="fused"``, ``kernel="torch"``: the same blocks with hard attention resolved by
  decoding the query's code and the cell MLP evaluated only on the cells the write heads
  select (:meth:`~algind_gym.cpu_v2.layers.TorchCircuit.fused`); differentiable;
* ``path="fused"``, ``kernel="numba"`` (the default on CPU for inference): the sparse forms
  of the same matrices in one compiled loop per machine (:mod:`algind_gym.cpu_v2.kernel`).

Deviations from the paper (docs/ARCHITECTURE.md): attention is hard (the maximum score wins;
the sink on ties)
rather than a high-temperature softmax, which is never exactly one-hot in floating point;
values carry their sign bit in a second channel because a sum cannot keep the sign of a
zero; the MLPs use the activations of :data:`~algind_gym.cpu_v2.blocks.ACTIVATIONS` and a
divide unit for DIV.

Differentiability: values flow through attention reads, select products, the ALU units
and the write-back select, so autograd gives gradients with respect to data cells (the
dense and the torch fused path); addresses are decoded by step units and carry none.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from algind_gym.cpu_v2 import kernel as _kernel
from algind_gym.cpu_v2.blocks import Circuit
from algind_gym.cpu_v2.circuit import compile_circuit
from algind_gym.cpu_v2.dense import DensePass
from algind_gym.cpu_v2.layers import TorchCircuit
from algind_gym.machine.layout import Layout

Path = Literal["fused", "dense"]
Kernel = Literal["auto", "numba", "torch"]


def _torch_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        dt = dtype
    else:
        dt = {"float32": torch.float32, "float64": torch.float64}.get(np.dtype(dtype).name)
    if dt not in (torch.float32, torch.float64):
        raise TypeError(f"unsupported dtype {dtype!r}; expected float32 or float64")
    return dt


def check_cells(cells: Tensor | np.ndarray, n_cells: int) -> None:
    """Refuse a state a backend cannot run: wrong shape or non-finite cells.

    Every backend calls this at run entry, so a bad host-provided state gets the same
    clear error everywhere (a program itself can never write inf or NaN: it faults).
    """
    if cells.ndim != 2 or cells.shape[1] != n_cells:
        raise ValueError(
            f"cells has shape {tuple(cells.shape)}; this layout needs (batch, {n_cells})"
        )
    finite = torch.isfinite(cells) if isinstance(cells, Tensor) else np.isfinite(cells)
    if not bool(finite.all()):
        bad = np.argwhere(~np.asarray(finite.cpu() if isinstance(finite, Tensor) else finite))[0]
        raise_nonfinite(cells, int(bad[0]), int(bad[1]))


def raise_nonfinite(cells: Tensor | np.ndarray, machine: int, cell: int) -> None:
    """The error of :func:`check_cells` for a non-finite cell."""
    raise ValueError(
        f"cells must be finite: machine {machine} cell {cell} is "
        f"{float(cells[machine, cell])}; a program cannot write inf/NaN, so fix the "
        "value written from outside"
    )


class TransformerCPU(nn.Module):
    """A compiled-weight Transformer that executes one instruction per ``forward``.

    Args:
        layout: the machine layout the weights are compiled for.
        dtype: float32 or float64 (torch or numpy dtype, or its name).
        device: where the weights live; inputs must be on the same device.
        path: ``"fused"`` or ``"dense"`` (see the module docstring).
        kernel: how the fused path runs: ``"torch"``, ``"numba"`` (CPU inference only) or
            ``"auto"`` (numba where it applies and is installed). Calls that need autograd,
            and tensors on other devices, take the torch ops.

    Example:
        >>> import torch
        >>> from algind_gym.machine.isa import encode
        >>> from algind_gym.machine.layout import Layout, SkillBlockSpec
        >>> from algind_gym.machine.state import MachineState
        >>> lay = Layout(n_general=2, stack_size=4, n_pointers=1, memory_size=4,
        ...              skill_blocks=(SkillBlockSpec("main", 0, 8),))
        >>> s = MachineState.zeros(lay)
        >>> s.load_code(lay.skill("main").code_start, encode("MOVI", 7, 2.5) + encode("HALT"))
        >>> s.set_register("pc", lay.skill("main").code_start)
        >>> cpu = TransformerCPU(lay, torch.float32, path="dense")
        >>> cells = cpu(cpu(torch.from_numpy(s.cells)))
        >>> float(cells[0, 7]), float(cells[0, lay.register("halt")])
        (2.5, 1.0)
    """

    def __init__(
        self,
        layout: Layout,
        dtype=torch.float32,
        device: str | torch.device = "cpu",
        path: Path = "fused",
        kernel: Kernel = "auto",
        circuit: Circuit | None = None,
    ) -> None:
        super().__init__()
        if path not in ("fused", "dense"):
            raise ValueError(f"path must be 'fused' or 'dense', got {path!r}")
        if kernel not in ("auto", "numba", "torch"):
            raise ValueError(f"kernel must be 'auto', 'numba' or 'torch', got {kernel!r}")
        if kernel == "numba" and not _kernel.AVAILABLE:
            raise RuntimeError("kernel='numba' needs numba: pip install numba")
        if kernel == "numba" and path != "fused":
            raise ValueError("kernel='numba' runs the fused path; use path='fused'")
        self.layout = layout
        self.path: Path = path
        self.kernel: Kernel = kernel
        self.dtype = _torch_dtype(dtype)
        self.n_cells = layout.n_cells
        np_dt = np.float32 if self.dtype == torch.float32 else np.float64
        self._np_dtype = np.dtype(np_dt)
        self.compiled: Circuit = circuit or compile_circuit(layout, np_dt)
        self.device = device
        self._blocks: TorchCircuit | None = None  # the torch tensors, built on first use
        self._numba_program = None
        self._dense_np: DensePass | None = None  # the numpy dense pass, built on first use
        self._runs_numpy: bool | None = None

    @property
    def blocks(self) -> TorchCircuit:
        """The compiled matrices as torch tensors (built on first use: the numba kernel
        does not need them)."""
        if self._blocks is None:
            self._blocks = TorchCircuit(self.compiled, self.dtype, self.device)
        return self._blocks

    # ------------------------------------------------------------------ reporting
    @property
    def n_layers(self) -> int:
        """Layers (attention + MLP sublayers) per instruction, the same for every program."""
        return len(self.compiled.layers)

    @property
    def n_parameters(self) -> int:
        """Entries of every compiled weight matrix (none is trained)."""
        return int(sum(m.size for m in self.compiled.matrices().values()))

    def describe(self) -> str:
        """Blocks, heads, ``d_model``, parameters and non-zeros per matrix (``cpu-info``)."""
        return self.compiled.describe()

    def extra_repr(self) -> str:
        c = self.compiled
        return (
            f"path={self.path}, kernel={self.kernel}, dtype={self.dtype}, n_cells={self.n_cells}, "
            f"layers={self.n_layers}, blocks={c.n_blocks}, d_model={c.d_model}"
        )

    # -------------------------------------------------------------------- forward
    def forward(self, cells: Tensor, inplace: bool = False) -> Tensor:
        """Execute one instruction on every running machine of ``cells`` ``(B, N)``.

        Halted or faulted machines are returned unchanged. With ``inplace=True`` (and no
        autograd on ``cells``) the result is written into ``cells`` itself.
        """
        self._check_cells(cells)
        if self.uses_numba(cells):
            out = cells if inplace and cells.is_contiguous() else cells.contiguous().clone()
            self._numba_run(out, 1)
            return out
        if self.path == "dense" and self._dense_numpy_applies(cells):
            out = torch.from_numpy(self.dense_numpy(cells.detach().numpy()))
        elif self.path == "dense":
            out = self.blocks.dense(cells)
        else:
            out = self.blocks.fused(cells)
        if inplace and not (cells.requires_grad and torch.is_grad_enabled()):
            return cells.copy_(out)
        return out

    def _dense_numpy_applies(self, cells: Tensor) -> bool:
        return cells.device.type == "cpu" and not (cells.requires_grad and torch.is_grad_enabled())

    def dense_numpy(self, cells: np.ndarray) -> np.ndarray:
        """One dense forward pass on numpy ``cells`` ``(B, N)`` (a new array): the same
        matrices and operations as the torch dense pass, without torch's per-call cost."""
        if self._dense_np is None:
            self._dense_np = DensePass(self.compiled, self._np_dtype, "numpy")
        return self._dense_np(cells)

    def _check_cells(self, cells: Tensor) -> None:
        if cells.dim() != 2 or cells.shape[1] != self.n_cells:
            raise ValueError(
                f"cells has shape {tuple(cells.shape)}; this CPU needs (batch, {self.n_cells})"
            )
        if cells.dtype != self.dtype:
            raise TypeError(f"cells are {cells.dtype}; this CPU was compiled for {self.dtype}")

    # ------------------------------------------------------------ numba kernel
    def uses_numba(self, cells: Tensor) -> bool:
        """Whether this call runs on the compiled loop (see the ``kernel`` argument)."""
        if self.path != "fused" or self.kernel == "torch" or cells.device.type != "cpu":
            return False
        if cells.requires_grad and torch.is_grad_enabled():
            return False
        return _kernel.AVAILABLE

    def _numba_run(self, cells: Tensor, n_steps: int) -> None:
        with torch.no_grad():
            self.run_numpy(cells.detach().numpy(), n_steps)

    def runs_numpy(self) -> bool:
        """Whether :meth:`run_numpy` applies: the fused path on the numba kernel, on CPU."""
        if self._runs_numpy is None:
            self._runs_numpy = (
                self.path == "fused"
                and self.kernel != "torch"
                and _kernel.AVAILABLE
                and torch.device(self.device).type == "cpu"
            )
        return self._runs_numpy

    def run_numpy(self, cells: np.ndarray, n_steps: int, budget: float = 0.0) -> np.ndarray:
        """``n_steps`` passes of the numba kernel on C-contiguous numpy ``cells`` in place
        (the backends' path: no torch call at all, so a short call costs a few us); a
        non-zero ``budget`` is the fault code of machines still running at the end.

        The kernel first checks that every cell is finite and runs nothing otherwise:
        the error is :func:`check_cells`'s."""
        if not self.runs_numpy():
            raise RuntimeError("run_numpy needs path='fused' with the numba kernel on CPU")
        if cells.dtype != self._np_dtype or not cells.flags.c_contiguous or cells.ndim != 2:
            raise TypeError(f"cells must be a C-contiguous 2-d {self._np_dtype.name} array")
        if cells.shape[1] != self.n_cells:
            check_cells(cells, self.n_cells)  # the shape error
        if self._numba_program is None:  # the sparse forms never change: built on first use
            self._numba_program = _kernel.pack(
                _kernel.sparse_program(self.compiled, self._np_dtype)
            )
        bad = _kernel.run(cells, int(n_steps), self._numba_program, budget)
        if bad >= 0:
            raise_nonfinite(cells, bad // self.n_cells, bad % self.n_cells)
        return cells

    def run(self, cells: Tensor, n_steps: int) -> Tensor:
        """``n_steps`` forward passes on ``cells`` in place (no autograd); returns ``cells``.

        Equal to calling ``self(cells, inplace=True)`` ``n_steps`` times. On the numba
        kernel each machine's loop runs in one call and stops once the machine is frozen.
        """
        if n_steps < 0:
            raise ValueError(f"n_steps must be >= 0, got {n_steps}")
        self._check_cells(cells)
        if not cells.is_contiguous():
            raise ValueError("run works in place and needs contiguous cells")
        with torch.no_grad():
            if self.uses_numba(cells):
                self._numba_run(cells, n_steps)
                return cells
            for _ in range(n_steps):
                cells = self(cells, inplace=True)
        return cells
