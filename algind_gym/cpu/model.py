"""`TransformerCPU`: the paper's execution module E, one instruction per forward pass.

Tokens and residual stream
--------------------------
Every cell is a token ``(value, sign, address code, block flags, protected flag)`` (see
:mod:`algind_gym.cpu.compiler`); one more token, the *CPU token*, holds the registers,
the fetched instruction, decoded control signals and operand values of the instruction
being executed. One forward pass is five attention + MLP layer pairs (DESIGN.md asks for
at most six), the same for every instruction and every program length:

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
that the compiled attention is one-hot: reads are ``gather`` at the integer address and the
write-back is one ``scatter`` of seven values per machine. Both paths run the same MLP code
on the same compiled tables, so they agree bit for bit, and with the reference
interpreter.

Deviations from DESIGN.md: attention is *hard* (argmax one-hot via a step on the exact
integer score) rather than a softmax at high temperature, because a softmax is never
exactly one-hot in floating point; the special registers are written by dedicated write
heads besides the one memory write head, because every instruction updates them.

Differentiability: values flow through ``gather``/``w @ values``, the ALU units and the
gated writes, so autograd gives gradients with respect to data cells; addresses are
discrete (converted to integers) and carry no gradient.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from algind_gym.cpu.compiler import (
    ALU_UNITS,
    FP_UPDATES,
    GROUPS,
    PC_CONDS,
    PC_TARGETS,
    SP_UPDATES,
    STACK_CHECKS,
    WRITE_TARGETS,
    X_SOURCES,
    Y_SOURCES,
    CompiledCPU,
    compile_cpu,
    decode_columns,
)
from algind_gym.machine.isa import WIDTH
from algind_gym.machine.layout import Layout

Path = Literal["fused", "dense"]

# Candidate vectors the gated selects choose from (compiled one-hot groups -> positions).
_STAGE3 = ("r_a", "r_b", "b", "c", "mode")  # pointer and offset of d = cell[p] + off
_STAGE4 = ("pc", "fp", "a", "b", "c", "r_a", "r_b", "r_c", "r_fb", "r_d", "r_top", "width")
_REGS = ("sp", "sp_plus_1", "sp_minus_1", "sp_plus_1_plus_a", "fp_minus_1", "fp", "r_t")
_ALIASES = {"imm_b": "b", "imm_c": "c", "mode": "mode"}


def _torch_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        dt = dtype
    else:
        dt = {"float32": torch.float32, "float64": torch.float64}.get(np.dtype(dtype).name)
    if dt not in (torch.float32, torch.float64):
        raise TypeError(f"unsupported dtype {dtype!r}; expected float32 or float64")
    return dt


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
    ) -> None:
        super().__init__()
        if path not in ("fused", "dense"):
            raise ValueError(f"path must be 'fused' or 'dense', got {path!r}")
        self.layout = layout
        self.path: Path = path
        self.dtype = _torch_dtype(dtype)
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
        # Index views of the same weights, for gather-based selects.
        cols = decode_columns()
        lo, hi = cols.groups["check"]
        buf("_flags", c.decode_table != 0, torch.bool)
        self._check_cols = (lo, hi)
        buf("_select_rows", self._select_table(c), torch.int64)
        self._fault_codes = [float(f) for f in c.fault_priority[:-1]]
        self._row_cache: dict[int, tuple[Tensor, Tensor]] = {}
        buf("_protected_bool", c.protected != 0, torch.bool)
        buf("_width", np.asarray(float(WIDTH)), dt)
        buf("_zero", np.asarray(0.0), dt)
        buf("_one", np.asarray(1.0), dt)
        self._mode_address = float(layout.register("mode"))

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
            f"path={self.path}, dtype={self.dtype}, n_cells={self.n_cells}, "
            f"layers={self.n_layers}, heads={self.compiled.n_heads}, "
            f"parameters={self.n_parameters}"
        )

    @staticmethod
    def _select_table(c: CompiledCPU) -> np.ndarray:
        """Per opcode, positions in the candidate vectors of each gated select."""
        group_of = {g: i for i, (g, _) in enumerate(GROUPS)}
        idx = c.decode_indices
        vocab = dict(GROUPS)

        def pos(group: str, cands: tuple[str, ...]) -> np.ndarray:
            names = [vocab[group][i] for i in idx[:, group_of[group]]]
            return np.asarray([cands.index(_ALIASES.get(n, n)) for n in names])

        write = np.asarray([WRITE_TARGETS[i] for i in idx[:, group_of["write"]]])
        n_units, n_conds = len(ALU_UNITS), len(PC_CONDS)
        cols = [
            pos("ptr", _STAGE3),
            pos("off", _STAGE3),
            pos("x", _STAGE4),
            pos("y", _STAGE4),
            pos("pc_target", _STAGE4),
            np.maximum(idx[:, group_of["write"]] - 1, 0),  # candidate of the write address
            idx[:, group_of["unit"]],
            n_units + idx[:, group_of["pc_cond"]],
            n_units + n_conds + pos("sp", _REGS),
            n_units + n_conds + pos("fp", _REGS),
            (write != "none").astype(np.int64),
            idx[:, group_of["stack"]],
        ]
        assert X_SOURCES and Y_SOURCES and PC_TARGETS and SP_UPDATES and FP_UPDATES
        assert ALU_UNITS[0] == "pass" and PC_CONDS[:2] == ("never", "always")
        assert STACK_CHECKS == ("none", "push", "enter", "pop", "leave")
        return np.stack(cols, axis=1)

    # ------------------------------------------------------------------ attention
    # Tensors on the CPU token are feature-major, ``(features, B)``: stacking and selecting
    # along the leading dimension is contiguous, which is what keeps the fused path fast.
    def _rows(self, b_size: int) -> Tensor:
        """``(1, B)`` machine indices and row offsets into the flattened cells (cached)."""
        rows = self._row_cache.get(b_size)
        if rows is None or rows[0].device != self.address_code.device:
            machine = torch.arange(b_size, device=self.address_code.device)[None]
            rows = (machine, machine * self.n_cells)
            self._row_cache[b_size] = rows
        return rows

    def _address_query(self, addr: Tensor) -> Tensor:
        """Address-decoder MLP: numbers ``(B, H)`` -> +/-1 codes ``(B, H, K)``."""
        hidden = (addr.unsqueeze(-1) >= self.decoder_thresholds).to(self.dtype)
        bits = hidden @ self.decoder_bit_weights
        return 2 * bits - 1

    def _attention_weights(self, addr: Tensor) -> Tensor:
        """Dense hard attention ``(B, H, N)``: one-hot where ``code(j) . q > K - 1/2``."""
        scores = self._address_query(addr) @ self.address_code.T
        return (scores > self.n_bits - 0.5).to(self.dtype)

    def _read(self, cells: Tensor, sign: Tensor | None, addr: Tensor) -> Tensor:
        """Read heads: ``out[h, i]`` is cell ``addr[h, i]`` of machine ``i``; ``(H, B)``."""
        if self.path == "fused":
            idx = addr.clamp(0, self.n_cells - 1).to(torch.int64) + self._rows(addr.shape[1])[1]
            return torch.take(cells, idx)
        w = self._attention_weights(addr.T)
        plain = (w @ cells.unsqueeze(-1)).squeeze(-1)
        s = (w @ sign.unsqueeze(-1)).squeeze(-1)
        return _SignedZeroRead.apply(plain, s).T

    def _read_protected(self, addr: Tensor) -> Tensor:
        """Head reading the token's protected flag at ``addr`` ``(B,)``, as bool."""
        if self.path == "fused":
            return torch.take(self._protected_bool, addr.clamp(0, self.n_cells - 1).to(torch.int64))
        w = self._attention_weights(addr.unsqueeze(1))
        return (w @ self.protected).squeeze(1) > 0.5

    def _write(
        self, cells: Tensor, regs: Tensor, mem_addr: Tensor, mem_value: Tensor, inplace: bool
    ) -> Tensor:
        """Write-back heads: the six protected registers ``regs`` ``(6, B)`` and one memory
        cell per machine (``mem_addr`` ``(B,)``; a machine that writes nothing rewrites
        MODE with its own value)."""
        if self.path == "fused":
            # Registers 0..6 are one contiguous slice; MODE (3) is rewritten with itself
            # before the memory write, which may target it.
            block = torch.cat([regs[:3], cells[:, 3:4].T, regs[3:]]).T
            if inplace:
                cells[:, : block.shape[1]] = block
                return cells.scatter_(1, mem_addr[:, None], mem_value[:, None])
            out = torch.cat([block, cells[:, block.shape[1] :]], 1)
            return out.scatter(1, mem_addr[:, None], mem_value[:, None])
        addr = torch.cat([self.register_write_addresses[:, None].expand_as(regs), mem_addr[None]])
        values = torch.cat([regs, mem_value[None]])
        m = self._attention_weights(addr.T.to(self.dtype)) > 0.5  # (B, H, N)
        out = cells
        for h in range(addr.shape[0]):  # one gated select per head: new = m v + (1-m) old
            out = torch.where(m[:, h], values[h][:, None], out)
        if inplace:
            return cells.copy_(out)
        return out

    @staticmethod
    def _select(cands: Tensor, index: Tensor) -> Tensor:
        """Gated select: ``out[j, i] = cands[index[j, i], i]`` (one-hot gate, exact)."""
        return torch.take(cands, index)

    # -------------------------------------------------------------------- forward
    def forward(self, cells: Tensor, inplace: bool = False) -> Tensor:
        """Execute one instruction on every running machine of ``cells`` ``(B, N)``.

        Halted or faulted machines are returned unchanged. With ``inplace=True`` (and no
        autograd on ``cells``) the result is written into ``cells`` itself.
        """
        if cells.dim() != 2 or cells.shape[1] != self.n_cells:
            raise ValueError(
                f"cells has shape {tuple(cells.shape)}; this CPU needs (batch, {self.n_cells})"
            )
        if cells.dtype != self.dtype:
            raise TypeError(f"cells are {cells.dtype}; this CPU was compiled for {self.dtype}")
        if not cells.is_contiguous():
            cells, inplace = cells.contiguous(), False
        if inplace and cells.requires_grad and torch.is_grad_enabled():
            inplace = False
        n, base, end, dt = self.n_cells, self.stack_base, self.stack_end, self.dtype
        b_size = cells.shape[0]
        machine = self._rows(b_size)[0]
        sign = None
        if self.path == "dense":
            sign = torch.where(torch.signbit(cells), -1.0, 1.0).to(dt)

        # ---- layer 1: read the registers; MLP: fetch addresses.
        regs = self._read(cells, sign, self.register_queries[:, None].expand(-1, b_size))
        pc, sp, fp, mode, halt, fault, icount = regs
        top = torch.where(sp > base, sp - 1, base)  # cell[SP - 1] for POP / RET
        link = fp - 1  # LEAVE's t = FP - 1
        fetch = torch.cat([pc + self.fetch_offsets[:, None], top[None], link[None]])

        # ---- layer 2: fetch; MLP: decode (one-hot opcode row of the decode table).
        op, a, b, c, r_top, r_t = self._read(cells, sign, fetch)
        known = (torch.floor(op) == op) & (op >= 1) & (op < self.decode_table.shape[0])
        opi = torch.where(known, op, 0).to(torch.int64)
        flags = self._flags.index_select(0, opi).T  # (signals, B): onehot(op) @ table
        dec = self._select_rows.index_select(0, opi).T  # the same rows, as select positions
        sel = dec[:10] * b_size + machine  # flat indices of the gated selects
        valid, count_a, halt_op, div_op = flags[:4]

        # ---- layer 3: operands; MLP: derived address d = cell[p] + off, write address.
        fp_a, fp_b = fp + a, fp + b
        r_a, r_b, r_c, r_fb = self._read(cells, sign, torch.stack([a, b, c, fp_b]))
        p, off = self._select(torch.stack([r_a, r_b, b, c, mode]), sel[0:2])
        d = p + off
        stack_w = torch.where(sp < end, torch.trunc(sp), 0.0)
        waddr = self._select(torch.stack([a, b, d, fp_a, stack_w]), sel[5])

        # ---- layer 4: indirect read, protected flag; MLP: ALU, next state, faults, commit.
        r_d = self._read(cells, sign, d[None])[0]
        prot = self._read_protected(waddr)
        width, zero, one = (t.expand(b_size) for t in (self._width, self._zero, self._one))
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
        cand = torch.cat(
            [
                units,
                torch.stack([zero, one, a_zero, 1 - a_zero, (units[2] <= 0).to(dt)]),
                torch.stack([sp, sp1, sp - 1, sp1 + a, link, fp, r_t]),
            ]
        )
        value, jump, new_sp, new_fp = self._select(cand, sel[6:10])
        new_pc = torch.where(jump != 0, target, pc + WIDTH)

        # Fault checks, in the ISA's priority order.
        pc_bad = ~((torch.floor(pc) == pc) & (pc >= 0) & (pc <= n - WIDTH))
        invalid = ~valid | (count_a & ~((torch.floor(a) == a) & (a >= 0)))
        addrs = torch.stack([a, b, c, d, fp_a, fp_b])
        addr_ok = (torch.floor(addrs) == addrs) & (addrs >= 0) & (addrs < n)
        lo, hi = self._check_cols
        addr_bad = (flags[lo:hi] & ~addr_ok).any(0)
        stack = dec[11]
        link_ok = (torch.floor(link) == link) & (link >= base) & (link < sp)
        is_pop, is_leave = stack == 3, stack == 4
        addr_bad |= (is_pop & (top >= n)) | (is_leave & link_ok & (link >= n))
        overflow = ((stack == 1) & (sp >= end)) | ((stack == 2) & (sp1 + a > end))
        underflow = (is_pop & (sp <= base)) | (is_leave & ~link_ok)
        writes = (dec[10] == 1) & (waddr >= 0)
        checks = (
            pc_bad,
            invalid,
            addr_bad,
            overflow,
            underflow,
            div_op & y_zero,
            writes & ~torch.isfinite(value),
            writes & prot,
        )
        # Priority encoder: apply the checks from the last to the first, so the first wins.
        code = torch.zeros_like(pc)
        for check, fault_code in zip(checks[::-1], self._fault_codes[::-1], strict=True):
            code = torch.where(check, fault_code, code)

        # Commit: faulted machines get FAULT only; halted/faulted ones stay frozen.
        running = (halt == 0) & (fault == 0)
        good = running & (code == 0)
        new_regs = torch.stack([new_pc, new_sp, new_fp, torch.ones_like(halt), code, icount + 1])
        old_regs = torch.stack([pc, sp, fp, halt, fault, icount])
        keep = torch.stack([good, good, good, good & halt_op, running & ~good, good])
        wen = good & writes
        mem_addr = torch.where(wen, waddr, self._mode_address).to(torch.int64)
        mem_value = torch.where(wen, value, mode)
        return self._write(
            cells, torch.where(keep, new_regs, old_regs), mem_addr, mem_value, inplace
        )
