"""`TransformerCPU`: the paper's execution module E, one instruction per forward pass.

Tokens and residual stream
--------------------------
Every cell is a token ``(value, sign, address code, block flags, protected flag)`` (see
:mod:`algind_gym.cpu.compiler`); one more token, the *CPU token*, holds the registers,
the fetched instruction, decoded control signals and operand values of the instruction
being executed. One forward pass is five attention + MLP layer pairs (docs/ARCHITECTURE.md asks
for at most six), the same for every instruction and every program length:

====  ==========================================  ==========================================
 #    attention (CPU token reads cells)            MLP (on the CPU token)
====  ==========================================  ==========================================
 1    registers PC..ICOUNT (constant queries)      fetch addresses PC+i, stack top, frame link
 2    fetch op, a, b, c; cell[SP-1]; cell[FP-1]    decode: ``onehot(op) @ decode_table``
 3    operands cell[a], cell[b], cell[c],          derived address ``d = cell[p] + off``,
      cell[FP+b]                                   write address
 4    cell[d]; protected flag at write address     ALU units + gated selects, next PC/SP/FP,
                                                   fault checks + priority encoder, commit
 5    write-back: every cell token attends to      (identity)
      the CPU token's write heads (memory + the
      six protected registers); gated select
====  ==========================================  ==========================================

The ALU is a layer of units, each one exactly rounded IEEE primitive: the bilinear
(GLU-style) product unit ``x * y`` for MUL, the additive unit ``x + y`` / ``x - y``, a
bilinear divide unit ``x / y`` for DIV (not reciprocal-then-multiply, which would round
twice), step units for LT/LE/EQ and select units for MIN/MAX (defined in the ISA as selects
for exactly this reason). Its output, the next PC/SP/FP and every operand choice are
*gated selects* driven by the one-hot decoder rows: mathematically ``m * v + (1 - m) * old``
with ``m`` in {0, 1}, implemented with ``torch.where``/``gather`` so that an ``inf`` in a lane
that is not selected (an overflowing MUL, say) never meets a zero weight (``0 * inf = NaN``)
and the sign of zero survives.

Two paths, one set of weights
-----------------------------
``path="dense"`` materialises the attention: queries are the address codes produced by the
compiled address-decoder MLP, keys the token address codes, scores ``q . k`` over all cells,
hard attention ``score > K - 1/2`` (one-hot), and reads ``w @ values`` (exact: one nonzero
term; a second head reads the sign feature so that ``-0.0`` stays ``-0.0``). The write-back
attends from every cell to the write heads the same way. ``path="fused"`` uses the fact
that the compiled attention is one-hot: reads are gathers at the integer address (one
``index_select`` per layer on the flattened cells) and the write-back copies the six register
columns and scatters one value per machine. Both paths run the same MLP code
on the same compiled tables, so they agree bit for bit, and with the reference
interpreter.

The fused path has two kernels. ``kernel="torch"`` runs the forward pass as eager torch ops
over the batch (about a hundred per step, so a step costs about a millisecond at any
batch size); ``kernel="numba"`` (:mod:`algind_gym.cpu.kernel`) fuses the same reads,
tables and selects into one compiled loop over the machines, about 30x faster on a CPU
and the default there (``kernel="auto"``). Autograd and non-CPU devices always take the
torch ops.

Deviations from the paper (docs/ARCHITECTURE.md): attention is *hard* (argmax one-hot via a step on the exact
integer score) rather than a softmax at high temperature, because a softmax is never
exactly one-hot in floating point; the special registers are written by dedicated write
heads besides the one memory write head, because every instruction updates them.

Differentiability: values flow through ``gather``/``w @ values``, the ALU units and the
gated writes, so autograd gives gradients with respect to data cells; addresses are
discrete (converted to integers) and carry no gradient.

Split cells (:meth:`TransformerCPU.forward_split`, fused torch path): a skill's code, the
skill headers and the boot block are protected, so no instruction writes them and no
gradient can reach a leaf through them, yet in one ``(B, N)`` tensor they are most of every
row (e.g. 3270 of 3674 cells) and autograd's backward of every read and write builds a full
``(B, N)`` gradient. :class:`SplitCells` holds the state as a differentiable *data* part
(every other cell, plus one sink column) and a constant *code* part without autograd; a
read gathers from both and keeps the one its address names (``torch.where``), a write
targets the data part only. The values are the same ops on the same numbers, so the
result and the gradients with respect to the data cells equal :meth:`forward`'s (tested).
A caller that knows more (the gradient composer knows, from an exact run of the same rows,
which cells they write) passes a ``data_mask`` (:meth:`TransformerCPU.split_map`): every
other cell holds its first value throughout and moves to the constant part; a write
outside the data part is a clear error, never a silent loss.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from algind_gym.cpu import kernel as _kernel
from algind_gym.cpu import threads as _threads
from algind_gym.cpu.compiler import CompiledCPU, compile_cpu
from algind_gym.cpu.control import N_SELECTS, control_table
from algind_gym.machine.isa import WIDTH
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


def _np_dtype(dtype: torch.dtype) -> np.dtype:
    return np.dtype(np.float32 if dtype == torch.float32 else np.float64)


class _SignedZeroRead(torch.autograd.Function):
    """``copysign(plain, sign)``: restores the sign of a zero read; gradient passes through.

    ``plain = w @ values`` equals the selected value exactly unless it is a zero, whose
    sign the other (zero) terms may flip; ``sign = w @ sign_feature`` is exactly +/-1.
    """

    @staticmethod
    def forward(ctx, plain: Tensor, sign: Tensor) -> Tensor:
        return torch.copysign(plain, sign)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


class TransformerCPU(nn.Module):
    """A compiled-weight Transformer that executes one instruction per ``forward``.

    Args:
        layout: the machine layout the weights are compiled for.
        dtype: float32 or float64 (torch or numpy dtype, or its name).
        device: where the weights live; inputs must be on the same device.
        path: ``"fused"`` (gather/scatter) or ``"dense"`` (materialised attention).
        kernel: how the fused path runs: ``"torch"`` (eager torch ops over the batch),
            ``"numba"`` (the same computation fused into one compiled loop over the
            machines, :mod:`algind_gym.cpu.kernel`; CPU inference only) or ``"auto"``
            (numba where it applies and is installed, else torch). Calls that need
            autograd, and tensors on other devices, always take the torch ops.
        threads: threads of a batched call on the numba kernel (None: ``$ALGIND_CPU_THREADS``
            or numba's thread count); the policy is in :mod:`algind_gym.cpu.threads`.
            Results do not depend on it.

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
        >>> cpu = TransformerCPU(lay, torch.float32)
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
        threads: int | None = None,
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
        self.dtype = _torch_dtype(dtype)
        self.np_dtype = _np_dtype(self.dtype)
        self.compiled: CompiledCPU = compile_cpu(layout)
        c = self.compiled
        self.n_cells = layout.n_cells
        self.n_bits = c.address_code.shape[1]
        self.stack_base = float(layout.stack_base)
        self.stack_end = float(layout.stack_end)
        dt = self.dtype

        def buf(name: str, array: np.ndarray, dtype: torch.dtype) -> None:
            self.register_buffer(name, torch.as_tensor(array, dtype=dtype, device=device))

        # Compiled weights (counted by n_parameters).
        buf("address_code", c.address_code, dt)
        buf("block_flags", c.block_flags, dt)
        buf("protected", c.protected, dt)
        buf("decoder_thresholds", c.decoder_thresholds, dt)
        buf("decoder_bit_weights", c.decoder_bit_weights, dt)
        buf("register_queries", c.register_queries, dt)
        buf("fetch_offsets", c.fetch_offsets, dt)
        buf("decode_table", c.decode_table, dt)
        buf("fault_priority", c.fault_priority, dt)
        buf("register_write_addresses", c.register_write_addresses, torch.int64)
        # The decoder's output layer in index form (:mod:`algind_gym.cpu.control`): select
        # positions, fault-condition ranks, halt and write flags, one column per opcode.
        # Decoding is ``control @ onehot(op)``, exact (one nonzero term), i.e. a gather.
        buf("_control", control_table(c), torch.uint8)
        n_ops = c.decode_table.shape[0]
        buf("_control_rows", np.arange(len(self._control))[:, None] * n_ops, torch.int32)
        buf("_fault_by_rank", c.fault_priority[::-1].copy(), dt)  # rank -> fault code
        n, end = float(self.n_cells), float("inf")
        # Bounds of the "integer in [lo, hi]" checks on pc, a (count), a, b, c, d, FP+a, FP+b,
        # FP-1 (see ``_faults``).
        buf("_check_lo", np.asarray([0, 0, 0, 0, 0, 0, 0, 0, layout.stack_base])[:, None], dt)
        buf("_check_hi", np.asarray([n - WIDTH, end] + [n - 1] * 6 + [end])[:, None], dt)
        buf("_protected_bool", c.protected != 0, torch.bool)
        buf("_mode_address", np.asarray(layout.register("mode")), torch.int64)
        self._batch_cache: dict[int, _BatchIndex] = {}
        # Split cells: by default the constant part is every protected cell of the code block
        # (never written); ``split_map`` builds others.
        code = layout.protected_mask.copy()
        code[: layout.block("code").start] = False
        self._code_mask = code
        self._registers_end = layout.block("stack").start
        self._default_split: SplitMap | None = None
        self._split_cache: dict[tuple, tuple[Tensor, Tensor, Tensor]] = {}
        self.kernel: Kernel = kernel
        self._split = write_split(layout)  # where the two write ranges meet (see ``run``)
        self._numba_args: tuple | None = None  # numpy views of the tables (built lazily)
        self.threads = _threads.resolve_threads(threads)
        self.parallel_min_rows = _threads.PARALLEL_MIN_ROWS  # see algind_gym/cpu/threads.py
        # Heads with constant queries (register reads and writes) attend the same way for
        # every input: their attention is computed once from the compiled weights.
        with torch.no_grad():
            reads = self._attention_weights(self.register_queries[None])[0]
            writes = self._attention_weights(self.register_write_addresses[None].to(dt))[0]
        self.register_buffer("_register_read_attention", reads)
        # Each cell token attends to at most one register write head: which one, and
        # whether any (the dense write-back reads all six heads with one gather).
        self.register_buffer("_register_written", (writes > 0.5).any(0))
        self.register_buffer("_register_head_of_cell", writes.argmax(0))

    # ------------------------------------------------------------------ reporting
    @property
    def n_layers(self) -> int:
        """Attention + MLP layer pairs per instruction (the same for every program)."""
        return self.compiled.n_layers

    @property
    def n_parameters(self) -> int:
        """Compiled weight entries held by the module (all buffers, none trained)."""
        return int(sum(getattr(self, n).numel() for n in CompiledCPU.WEIGHT_NAMES))

    def extra_repr(self) -> str:
        return (
            f"path={self.path}, kernel={self.kernel}, dtype={self.dtype}, n_cells={self.n_cells}, "
            f"layers={self.n_layers}, heads={self.compiled.n_heads}, "
            f"parameters={self.n_parameters}"
        )

    # ------------------------------------------------------------------ attention
    # Tensors on the CPU token are feature-major, ``(features, B)``: stacking and selecting
    # along the leading dimension is contiguous, which is what keeps the fused path fast.
    # Measured on CPU (torch 2.13): int64 arithmetic, ``(k, 1)``-broadcast operands and
    # transposed copies take several times longer than int32/uint8, full-size operands
    # and contiguous rows, so index arithmetic is int32 and constants are cached per batch.
    def _batch(self, b_size: int) -> _BatchIndex:
        """Index tensors that depend only on the batch size (built once, then cached)."""
        index = self._batch_cache.get(b_size)
        device = self.address_code.device
        if index is None or index.machine.device != device:
            # Flat indices go up to B * max(cells, select candidates); int32 where they fit.
            small = b_size * max(self.n_cells, 64) < 2**31
            idx_dtype = torch.int32 if small else torch.int64
            machine = torch.arange(b_size, device=device)[None]
            rows = machine * self.n_cells
            registers = self.register_queries.to(torch.int64)[:, None] + rows
            index = _BatchIndex(
                machine=machine.to(idx_dtype),
                rows=rows.to(idx_dtype),
                registers=registers.reshape(-1),
                true=torch.ones(1, b_size, dtype=torch.bool, device=device),
                # Full-size bounds: clamping against (9, 1) bounds takes a slow broadcast path.
                check_lo=self._check_lo.expand(-1, b_size).contiguous(),
                check_hi=self._check_hi.expand(-1, b_size).contiguous(),
            )
            if len(self._batch_cache) >= 8:  # a few batch sizes are live at a time
                self._batch_cache.clear()
            self._batch_cache[b_size] = index
        return index

    def _address_query(self, addr: Tensor) -> Tensor:
        """Address-decoder MLP: numbers ``(B, H)`` -> +/-1 codes ``(B, H, K)``."""
        hidden = (addr.unsqueeze(-1) >= self.decoder_thresholds).to(self.dtype)
        bits = hidden @ self.decoder_bit_weights
        return 2 * bits - 1

    def _attention_weights(self, addr: Tensor) -> Tensor:
        """Dense hard attention ``(B, H, N)``: one-hot where ``code(j) . q > K - 1/2``."""
        scores = self._address_query(addr) @ self.address_code.T
        return (scores > self.n_bits - 0.5).to(self.dtype)

    def _read(self, cells: Tensor, tokens: Tensor | None, addr: Tensor, rows: Tensor) -> Tensor:
        """Read heads: ``out[h, i]`` is cell ``addr[h, i]`` of machine ``i``; ``(H, B)``.

        Dense: ``tokens`` ``(B, N, 2)`` holds each token's value and sign features; one
        matmul reads both (see :class:`_SignedZeroRead`).
        """
        if isinstance(cells, SplitCells):
            return self._read_split(cells, addr)
        if self.path == "fused":
            idx = addr.clamp(0, self.n_cells - 1).to(rows.dtype).add_(rows)
            return cells.view(-1).index_select(0, idx.view(-1)).view(addr.shape)
        return self._attend(self._attention_weights(addr.T), tokens)

    @staticmethod
    def _attend(w: Tensor, tokens: Tensor) -> Tensor:
        """Dense read ``(H, B)`` with attention ``w`` (``(B, H, N)`` or ``(H, N)``)."""
        out = w @ tokens  # (B, H, 2): value and sign read by the same one-hot weights
        if torch.is_grad_enabled() and out.requires_grad:
            return _SignedZeroRead.apply(out[..., 0], out[..., 1]).T
        return torch.copysign(out[..., 0], out[..., 1]).T

    def _read_registers(self, cells: Tensor, tokens: Tensor | None, index: _BatchIndex) -> Tensor:
        """Layer-1 heads (constant queries): the registers PC..ICOUNT, ``(7, B)``."""
        if isinstance(cells, SplitCells):  # the registers are the data part's first cells
            flat = self._split_rows(cells)[2]
            return cells.data.reshape(-1).index_select(0, flat).view(-1, cells.data.shape[0])
        if self.path == "fused":
            return cells.view(-1).index_select(0, index.registers).view(-1, cells.shape[0])
        return self._attend(self._register_read_attention, tokens)

    def _read_indirect(
        self, cells: Tensor, tokens: Tensor | None, d: Tensor, waddr: Tensor, rows: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Layer-4 heads: ``cell[d]`` ``(B,)`` and the protected flag at ``waddr`` (bool)."""
        if self.path == "fused":
            prot = self._protected_bool.index_select(0, waddr.clamp(0, self.n_cells - 1).int())
            return self._read(cells, None, d[None], rows)[0], prot
        w = self._attention_weights(torch.stack([d, waddr], 1))
        return self._attend(w[:, :1], tokens)[0], (w[:, 1] @ self.protected) > 0.5

    def _write(
        self,
        cells: Tensor,
        regs: Tensor,
        mem_addr: Tensor,
        mem_value: Tensor,
        inplace: bool,
    ) -> Tensor:
        """Write-back heads: the six protected registers ``regs`` ``(6, B)`` and one memory
        cell per machine (``mem_addr`` ``(B,)``; a machine that writes nothing rewrites
        MODE with its own value)."""
        if isinstance(cells, SplitCells):
            pos = cells.map.data_pos.index_select(0, mem_addr)
            if bool((pos == cells.map.sink).any()):  # a constant cell
                raise RuntimeError(
                    "a machine writes a cell outside the data part of its split cells "
                    "(SplitMap.data_cols); build the split with that cell in data_mask"
                )
            out = cells.data.index_copy(1, self.register_write_addresses, regs.T)
            out = out.scatter_(1, pos[:, None], mem_value[:, None])
            return SplitCells(out, cells.code, cells.map)
        if self.path == "fused":
            # The register heads write fixed columns; then the memory head, which never
            # targets a protected register (a machine that writes nothing rewrites MODE).
            if inplace:
                out = cells.index_copy_(1, self.register_write_addresses, regs.T)
            else:
                out = cells.index_copy(1, self.register_write_addresses, regs.T)
            return out.scatter_(1, mem_addr[:, None], mem_value[:, None])
        # The register heads have constant queries, hence constant attention (computed
        # once): cell j reads head ``_register_head_of_cell[j]`` where it attends to one,
        # in one gated select for all six heads: new = m v + (1 - m) old.
        heads = regs.T.index_select(1, self._register_head_of_cell)  # (B, N)
        out = torch.where(self._register_written, heads, cells)
        m = self._attention_weights(mem_addr[:, None].to(self.dtype))[:, 0] > 0.5
        out = torch.where(m, mem_value[:, None], out)
        if inplace:
            return cells.copy_(out)
        return out

    @staticmethod
    def _select(cands: Tensor, index: Tensor) -> Tensor:
        """Gated select: ``out[j, i] = cands[index[j, i], i]`` (one-hot gate, exact)."""
        return cands.view(-1).index_select(0, index.view(-1)).view(index.shape)

    def _opcode_row(self, op: Tensor) -> Tensor:
        """Decoder input: the opcode as a row index, 0 (invalid) unless an integer row."""
        row = op.clamp(0, self.decode_table.shape[0] - 1).to(torch.int32)
        return row.mul_(row.to(self.dtype) == op)

    # -------------------------------------------------------------------- forward
    def forward(self, cells: Tensor, inplace: bool = False) -> Tensor:
        """Execute one instruction on every running machine of ``cells`` ``(B, N)``.

        Halted or faulted machines are returned unchanged. With ``inplace=True`` (and no
        autograd on ``cells``) the result is written into ``cells`` itself. On the numba
        kernel (see ``kernel``) the same pass runs as one compiled loop over the machines;
        :meth:`run` loops many passes per call.
        """
        self._check_cells(cells)
        if not cells.is_contiguous():
            cells, inplace = cells.contiguous(), False
        if inplace and cells.requires_grad and torch.is_grad_enabled():
            inplace = False
        if self.uses_numba(cells):
            out = cells if inplace else cells.clone()
            self._numba_run(out, 1)
            return out
        index = self._batch(cells.shape[0])
        tokens = None  # dense: the value and sign features of every token, (B, N, 2)
        if self.path == "dense":
            tokens = torch.stack([cells, torch.ones_like(cells).copysign_(cells)], -1)
        return self._fused_pass(cells, tokens, index, inplace)

    def forward_split(self, cells: SplitCells) -> SplitCells:
        """:meth:`forward` (torch ops, fused path) on cells held as :class:`SplitCells`
        (from :meth:`split_cells`): the same values, and autograd records the data part only.

        Raises:
            ValueError: on the dense path, or for parts of the wrong shape or dtype.
            RuntimeError: if a machine writes a cell of the constant part (a ``data_mask``
                that left out a cell the run writes; a write to protected code faults
                instead, as on whole cells).
        """
        if self.path != "fused":
            raise ValueError("forward_split runs the fused path; use path='fused'")
        self._check_split(cells)
        return self._fused_pass(cells, None, self._batch(cells.data.shape[0]), False)

    def _fused_pass(self, cells, tokens: Tensor | None, index: _BatchIndex, inplace: bool):
        """One instruction on the torch ops; ``cells`` is a ``(B, N)`` tensor or
        :class:`SplitCells` (the reads and the write-back dispatch on it)."""
        base, end, dt = self.stack_base, self.stack_end, self.dtype
        # ---- layer 1: read the registers; MLP: fetch addresses.
        regs = self._read_registers(cells, tokens, index)
        pc, sp, fp, mode, halt, fault, icount = regs
        top = torch.where(sp > base, sp - 1, base)  # cell[SP - 1] for POP / RET
        link = fp - 1  # LEAVE's t = FP - 1
        fetch = torch.cat([pc + self.fetch_offsets[:, None], top[None], link[None]])

        # ---- layer 2: fetch; MLP: decode (one-hot opcode row of the decode table).
        op, a, b, c, r_top, r_t = self._read(cells, tokens, fetch, index.rows)
        opi = self._opcode_row(op)
        # onehot(op) @ control, done as the row read it is: a gather of column ``op``.
        control = self._control.view(-1).index_select(0, (opi + self._control_rows).view(-1))
        control = control.view(-1, len(opi))
        sel = control[:N_SELECTS].to(index.machine.dtype).mul_(len(opi)).add_(index.machine)
        ranks, halt_op, write_op = control[N_SELECTS:-2], control[-2].bool(), control[-1].bool()

        # ---- layer 3: operands; MLP: derived address d = cell[p] + off, write address.
        fp_a, fp_b = fp + a, fp + b
        r_a, r_b, r_c, r_fb = self._read(cells, tokens, torch.stack([a, b, c, fp_b]), index.rows)
        # Candidate orders: see algind_gym.cpu.control (STAGE3/STAGE4/REGISTER_CANDIDATES).
        p, off = self._select(torch.stack([r_a, r_b, b, c, mode]), sel[0:2])
        d = p + off
        stack_w = torch.where(sp < end, torch.trunc(sp), 0.0)
        waddr = self._select(torch.stack([a, b, d, fp_a, stack_w]), sel[5])

        # ---- layer 4: indirect read, protected flag; MLP: ALU, next state, faults, commit.
        r_d, prot = self._read_indirect(cells, tokens, d, waddr, index.rows)
        width = torch.full_like(pc, WIDTH)
        cand = torch.stack([pc, fp, a, b, c, r_a, r_b, r_c, r_fb, r_d, r_top, width])
        x, y, target = self._select(cand, sel[2:5])
        y_zero = y == 0
        units = torch.stack(
            [
                x,
                x + y,
                x - y,
                x * y,
                x / torch.where(y_zero, 1.0, y),
                torch.where(x <= y, x, y),
                torch.where(x >= y, x, y),
                (x < y).to(dt),
                (x <= y).to(dt),
                (x == y).to(dt),
            ]
        )
        # One more select layer over [units | jump conditions | SP/FP candidates]. The
        # condition "value <= 0" looks at the subtract unit (SUBLEQ's value; the compiler
        # checks that only opcodes whose unit is "sub" use it).
        a_zero = (r_a == 0).to(dt)
        sp1 = sp + 1
        cand = torch.stack(
            [
                *units,
                torch.zeros_like(pc),
                torch.ones_like(pc),
                a_zero,
                1 - a_zero,
                (units[2] <= 0).to(dt),
                sp,
                sp1,
                sp - 1,
                sp1 + a,
                link,
                fp,
                r_t,
            ]
        )
        value, jump, new_sp, new_fp = self._select(cand, sel[6:10])
        new_pc = torch.where(jump != 0, target, pc + WIDTH)
        checks = torch.stack([pc, a, a, b, c, d, fp_a, fp_b, link])
        code = self._faults(checks, ranks, index, sp, top, y_zero, waddr, value, prot)

        # Commit: faulted machines get FAULT only; halted/faulted ones stay frozen.
        running = (halt == 0) & (fault == 0)
        good = running & (code == 0)
        new_regs = torch.stack([new_pc, new_sp, new_fp, torch.ones_like(halt), code, icount + 1])
        old_regs = torch.stack([pc, sp, fp, halt, fault, icount])
        halting = good & halt_op
        keep = torch.stack([good, good, good, halting, running & ~good, good])
        wen = good & (waddr >= 0) & write_op
        mem_addr = torch.where(wen, waddr.to(torch.int64), self._mode_address)
        mem_value = torch.where(wen, value, mode)
        regs_out = torch.where(keep, new_regs, old_regs)
        return self._write(cells, regs_out, mem_addr, mem_value, inplace)

    def _check_cells(self, cells: Tensor) -> None:
        """Clear errors for cells of the wrong shape or dtype."""
        if cells.dim() != 2 or cells.shape[1] != self.n_cells:
            raise ValueError(
                f"cells has shape {tuple(cells.shape)}; this CPU needs (batch, {self.n_cells})"
            )
        if cells.dtype != self.dtype:
            raise TypeError(f"cells are {cells.dtype}; this CPU was compiled for {self.dtype}")

    # ------------------------------------------------------------ split cells
    def split_map(self, data_mask: np.ndarray | None = None) -> SplitMap:
        """Which cells :meth:`split_cells` puts in the data part.

        Args:
            data_mask: ``(N,)`` bool, the cells that may carry a gradient: every cell the run
                will write and every input. The registers are always added and the
                protected code cells always left out (never written). None: every cell
                but the protected code (right for any run; cached).

        Raises:
            ValueError: for a mask of the wrong shape or dtype.
        """
        if data_mask is None and self._default_split is not None:
            return self._default_split
        keep = ~self._code_mask
        if data_mask is not None:
            data_mask = np.asarray(data_mask)
            if data_mask.shape != (self.n_cells,) or data_mask.dtype != np.bool_:
                raise ValueError(
                    f"data_mask must be a bool array of shape ({self.n_cells},), got "
                    f"{data_mask.dtype} {data_mask.shape}"
                )
            keep = keep & data_mask
            keep[: self._registers_end] = True
        data_cols, code_cols = np.flatnonzero(keep), np.flatnonzero(~keep)
        data_pos = np.full(self.n_cells, len(data_cols), np.int64)  # default: the sink
        data_pos[data_cols] = np.arange(len(data_cols))
        code_pos = np.zeros(self.n_cells, np.int64)
        code_pos[code_cols] = np.arange(len(code_cols))
        device = self.address_code.device

        def t(a: np.ndarray) -> Tensor:
            return torch.as_tensor(a, device=device)

        out = SplitMap(
            t(data_cols), t(code_cols), t(data_pos), t(code_pos), t(~keep), len(data_cols)
        )
        if data_mask is None:
            self._default_split = out
        return out

    def split_cells(self, cells: Tensor, data_mask: np.ndarray | None = None) -> SplitCells:
        """``(B, N)`` cells as :class:`SplitCells` (:meth:`split_map` of ``data_mask``): the
        data part keeps autograd (a differentiable ``index_select``), the constant part is
        detached and, when every row's is the same bit for bit, one row shared by all."""
        self._check_cells(cells)
        split = self.split_map(data_mask)
        data = cells.index_select(1, split.data_cols)
        data = torch.cat([data, data.new_zeros(len(data), 1)], 1)  # the sink column
        code = cells.detach().index_select(1, split.code_cols)
        bits = code.view(torch.int32 if self.dtype == torch.float32 else torch.int64)
        if len(code) > 1 and torch.equal(bits, bits[:1].expand_as(bits)):
            code = code[:1].contiguous()
        return SplitCells(data, code, split)

    def join_cells(self, cells: SplitCells) -> Tensor:
        """The ``(B, N)`` cells of :class:`SplitCells` (gradients flow to the data part)."""
        self._check_split(cells)
        b, split = cells.data.shape[0], cells.map
        whole = cells.data.new_zeros(b, self.n_cells).detach()
        whole.index_copy_(1, split.code_cols, cells.code.expand(b, -1))
        return whole.index_copy(1, split.data_cols, cells.data[:, :-1])

    def _check_split(self, cells: SplitCells) -> None:
        """Clear errors for split cells of the wrong shape or dtype."""
        n_data, n_code = cells.map.sink + 1, len(cells.map.code_cols)
        d, c = cells.data, cells.code
        if d.dim() != 2 or d.shape[1] != n_data or c.dim() != 2 or c.shape[1] != n_code:
            raise ValueError(
                f"split cells have parts {tuple(d.shape)} and {tuple(c.shape)}; their map "
                f"needs (batch, {n_data}) and (batch or 1, {n_code}): make them with split_cells"
            )
        if c.shape[0] not in (1, d.shape[0]):
            raise ValueError(f"the code part has {c.shape[0]} rows; expected 1 or {d.shape[0]}")
        if d.dtype != self.dtype or c.dtype != self.dtype:
            raise TypeError(f"split cells are {d.dtype}/{c.dtype}; this CPU needs {self.dtype}")
        if not d.is_contiguous() or not c.is_contiguous():
            raise ValueError("split cells must be contiguous")

    def _split_rows(self, cells: SplitCells) -> tuple[Tensor, Tensor, Tensor]:
        """Per part shapes: row offsets into the flat data and constant parts ``(1, B)`` and
        the flat indices of the register reads, feature-major (cached)."""
        key = (*cells.data.shape, *cells.code.shape)
        out = self._split_cache.get(key)
        if out is None:
            machine = torch.arange(key[0], device=cells.data.device)[None]
            data_rows = machine * key[1]
            code_rows = machine * key[3] if key[2] > 1 else torch.zeros_like(machine)
            registers = (self.register_queries.to(torch.int64)[:, None] + data_rows).reshape(-1)
            if len(self._split_cache) >= 8:
                self._split_cache.clear()
            out = self._split_cache[key] = (data_rows, code_rows, registers)
        return out

    def _read_split(self, cells: SplitCells, addr: Tensor) -> Tensor:
        """:meth:`_read` on split cells: both parts gathered, the addressed one kept."""
        split = cells.map
        data_rows, code_rows, _ = self._split_rows(cells)
        a = addr.clamp(0, self.n_cells - 1).to(torch.int64).reshape(-1)
        di = (split.data_pos.index_select(0, a).view(addr.shape) + data_rows).view(-1)
        ci = (split.code_pos.index_select(0, a).view(addr.shape) + code_rows).view(-1)
        from_data = cells.data.reshape(-1).index_select(0, di).view(addr.shape)
        from_code = cells.code.reshape(-1).index_select(0, ci).view(addr.shape)
        is_code = split.is_code.index_select(0, a).view(addr.shape)
        return torch.where(is_code, from_code, from_data)

    # ------------------------------------------------------------ numba kernel
    def uses_numba(self, cells: Tensor) -> bool:
        """Whether this call runs on the compiled loop (see the ``kernel`` argument)."""
        if self.path != "fused" or self.kernel == "torch" or cells.device.type != "cpu":
            return False
        if cells.requires_grad and torch.is_grad_enabled():
            return False
        return _kernel.AVAILABLE

    def _numba_run(self, cells: Tensor, n_steps: int, written: np.ndarray | None = None) -> None:
        """``n_steps`` forward passes per machine on the compiled loop, in place; widens
        ``written`` (see :meth:`run`) when given."""
        with torch.no_grad():
            self._kernel_call(cells.detach().numpy(), n_steps, written)

    def _kernel_call(self, c: np.ndarray, n_steps: int, written: np.ndarray | None) -> None:
        """The numba kernel on the numpy array ``c`` (shares memory with the caller's)."""
        if self._numba_args is None:  # the tables never change: built on first use
            self._numba_args = self._kernel_tables()
        rec = _NO_RANGES if written is None else written
        err = _threads.run_machines(
            c,
            int(n_steps),
            self._numba_args,
            rec,
            self._split,
            self.threads,
            self.parallel_min_rows,
        )
        if err:  # pragma: no cover - would be a compiler bug, never a program's fault
            raise RuntimeError(f"fused kernel error {err}: a write outside the state")

    def runs_on_arrays(self) -> bool:
        """Whether :meth:`run_array` can run this CPU's passes (the numba kernel on CPU)."""
        device = torch.device(self.address_code.device)
        return (
            self.path == "fused"
            and self.kernel != "torch"
            and device.type == "cpu"
            and _kernel.AVAILABLE
        )

    def run_array(self, cells: np.ndarray, n_steps: int, written: np.ndarray | None = None) -> None:
        """:meth:`run` on a numpy array, without a torch call (the numba kernel only: check
        :meth:`runs_on_arrays` first). Same results as :meth:`run` on
        ``torch.from_numpy(cells)``; used by the backend, whose calls are often one short
        run on a few machines, where torch's per-call costs would dominate.
        """
        if not self.runs_on_arrays():
            raise RuntimeError("run_array needs the numba kernel on CPU; use run")
        if n_steps < 0:
            raise ValueError(f"n_steps must be >= 0, got {n_steps}")
        if cells.ndim != 2 or cells.shape[1] != self.n_cells:
            raise ValueError(
                f"cells has shape {cells.shape}; this CPU needs (batch, {self.n_cells})"
            )
        if cells.dtype != self.np_dtype:
            raise TypeError(f"cells are {cells.dtype}; this CPU was compiled for {self.dtype}")
        if not cells.flags.c_contiguous or not cells.flags.writeable:
            raise ValueError("run_array works in place and needs a writeable C-contiguous array")
        if written is not None:
            check_write_ranges(written, cells.shape[0])
        self._kernel_call(cells, n_steps, written)

    def _kernel_tables(self) -> tuple:
        """The compiled tables the kernel reads, as numpy arrays (no copies of the state)."""
        dt = _np_dtype(self.dtype)
        lay = self.layout

        def np_(t: Tensor, dtype=None) -> np.ndarray:
            a = t.detach().cpu().numpy()
            return np.ascontiguousarray(a if dtype is None else a.astype(dtype))

        consts = np.zeros(_kernel.N_CONSTS, dt)
        consts[_kernel.C_ONE] = 1
        consts[_kernel.C_WIDTH] = WIDTH
        consts[_kernel.C_BASE] = lay.stack_base
        consts[_kernel.C_END] = lay.stack_end
        consts[_kernel.C_N] = self.n_cells
        consts[_kernel.C_LAST] = self.n_cells - 1
        consts[_kernel.C_LAST_OP] = self.decode_table.shape[0] - 1
        return (
            np_(self._control.T),  # (opcodes, control rows): the decoder's output rows
            N_SELECTS,
            np_(self._fault_by_rank, dt),
            np_(self._protected_bool),
            consts,
            np_(self.register_queries, np.int64),
            np_(self.register_write_addresses, np.int64),
            np_(self._check_lo[:, 0], dt),
            np_(self._check_hi[:, 0], dt),
            int(self._mode_address),
        )

    def run(self, cells: Tensor, n_steps: int, written: np.ndarray | None = None) -> Tensor:
        """``n_steps`` forward passes on ``cells`` in place (no autograd); returns ``cells``.

        Equal to calling ``self(cells, inplace=True)`` ``n_steps`` times. On the numba
        kernel each machine's loop runs in one call and stops once the machine is frozen.

        Args:
            cells: ``(B, N)`` contiguous machines, modified in place.
            n_steps: forward passes per machine.
            written: optional ``(B, 4)`` int64 write ranges, widened in place (the contract
                is in :mod:`algind_gym.cpu.backend`, "Write ranges"): on the numba kernel,
                by exactly the cells this call's memory write head wrote; on the torch ops,
                which do not record them, to the whole row.
        """
        if n_steps < 0:
            raise ValueError(f"n_steps must be >= 0, got {n_steps}")
        self._check_cells(cells)
        if not cells.is_contiguous():
            raise ValueError("run works in place and needs contiguous cells")
        if written is not None:
            check_write_ranges(written, cells.shape[0])
        with torch.no_grad():
            if self.uses_numba(cells):
                self._numba_run(cells, n_steps, written)
                return cells
            for _ in range(n_steps):
                cells = self(cells, inplace=True)
        if written is not None:
            widen_to_whole_rows(written, self.layout)
        return cells

    def _faults(
        self,
        checks: Tensor,
        ranks: Tensor,
        index: _BatchIndex,
        sp: Tensor,
        top: Tensor,
        y_zero: Tensor,
        waddr: Tensor,
        value: Tensor,
        prot: Tensor,
    ) -> Tensor:
        """Fault checks and priority encoder: the fault code of every machine, ``(B,)``.

        ``checks`` holds pc, a, a, b, c, d, FP+a, FP+b, FP-1, each tested for being an
        integer in ``[_check_lo, _check_hi]``. The conditions are stacked in the order of
        :data:`~algind_gym.cpu.control.FAULT_CONDITIONS`; ``ranks`` (decoded per machine) is 0
        where the opcode does not use a condition and higher for earlier checks of the ISA's
        fault order, so the highest rank among the failing conditions is the first failing
        check: one ``amax`` is the priority encoder.
        """
        n, base, end = self.n_cells, self.stack_base, self.stack_end
        # x is an integer in [lo, hi] iff clamp(floor(x), lo, hi) == x (one comparison).
        ok = torch.floor(checks).clamp_(index.check_lo, index.check_hi) == checks
        link = checks[8]
        link_ok = ok[8] & (link < sp)
        wpos = waddr >= 0
        a = checks[1]
        conds = torch.cat(
            [
                ~ok[:1],
                index.true,
                ~ok[1:8],
                torch.stack(
                    [
                        top >= n,
                        link_ok & (link >= n),
                        sp >= end,
                        sp + 1 + a > end,
                        sp <= base,
                        ~link_ok,
                        y_zero,
                        wpos & ~torch.isfinite(value),
                        wpos & prot,
                    ]
                ),
            ]
        )
        rank = (conds.view(torch.uint8) * ranks).amax(0)
        return self._fault_by_rank.index_select(0, rank.to(torch.int32))


class SplitMap(NamedTuple):
    """Where each cell lives in :class:`SplitCells` (:meth:`TransformerCPU.split_map`)."""

    data_cols: Tensor  # (n_data,) addresses of the data part's cells, ascending
    code_cols: Tensor  # (n_code,) addresses of the constant part's cells, ascending
    data_pos: Tensor  # (N,) a cell's column in the data part (``sink`` if constant)
    code_pos: Tensor  # (N,) a cell's column in the constant part (0 if data)
    is_code: Tensor  # (N,) bool: the cell is in the constant part
    sink: int  # the data part's last column (n_data)


class SplitCells(NamedTuple):
    """Machine cells in two parts (see "Split cells" in the module docstring).

    ``data`` ``(B, n_data + 1)``: the cells that may carry a gradient, in address order (the
    registers first, so a register's column is its address), then a sink column (reads of
    constant cells gather it and discard it). ``code`` ``(B, n_code)`` or ``(1, n_code)``
    (one row for all machines): every other cell, in address order (by default the
    protected cells of the code block); never written, no autograd. ``map``: which is
    which.
    """

    data: Tensor
    code: Tensor
    map: SplitMap


_NO_RANGES = np.zeros((0, 4), dtype=np.int64)
"""What the kernel gets when no write ranges are asked for (it records nothing)."""


def write_split(layout: Layout) -> int:
    """The first cell of the second write range: the start of the memory block (the first
    range covers registers, stack and pointer table; see :mod:`algind_gym.cpu.backend`)."""
    return layout.block("memory").start


def check_write_ranges(written: np.ndarray, batch: int) -> None:
    """Clear error unless ``written`` is a writable ``(batch, 4)`` C-contiguous int64 array."""
    ok = (
        isinstance(written, np.ndarray)
        and written.dtype == np.int64
        and written.shape == (batch, 4)
        and written.flags.c_contiguous
        and written.flags.writeable
    )
    if not ok:
        got = (
            f"{written.dtype} array of shape {written.shape}"
            if isinstance(written, np.ndarray)
            else type(written).__name__
        )
        raise ValueError(
            f"written must be a writable C-contiguous int64 array of shape ({batch}, 4), "
            f"got {got}; make one with algind_gym.cpu.backend.empty_write_ranges({batch})"
        )


def widen_to_whole_rows(written: np.ndarray, layout: Layout) -> None:
    """The conservative answer: every row's ranges become the whole row, ``[0, split - 1]``
    and ``[split, n_cells - 1]`` (:func:`write_split`)."""
    split = write_split(layout)
    written[:] = (0, split - 1, split, layout.n_cells - 1)


class _BatchIndex(NamedTuple):
    """Per batch size: machine ids, flat row offsets and the constant head indices."""

    machine: Tensor  # (1, B) machine ids (int32 unless B * cells needs int64)
    rows: Tensor  # (1, B) offset of each machine's row in the flattened cells
    registers: Tensor  # (7 * B,) flat indices of the register reads, feature-major
    true: Tensor  # (1, B) all true
    check_lo: Tensor  # (9, B) lower bounds of the address checks (see ``_faults``)
    check_hi: Tensor  # (9, B) upper bounds
