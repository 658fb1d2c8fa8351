"""The batched differentiable step of the gradient composer: every op of one program step
on the Transformer CPU in one call.

:class:`SoftStep` runs every op of one program step on the Transformer CPU in **one**
batched call: the rows ``v*K .. v*K+K-1`` of one state are op ``v`` on the K examples. Each
op's data slots are bound to slot buffers (shared between ops by shape class, since a row
runs one op) into which the mixed input values are written differentiably (one
``index_put``); then the torch-kernel CPU is looped with autograd until every row has returned, and the slot buffers are read
back. Gradients reach the mixed inputs (hence alpha and W^in) through the data path of the
CPU (reads, ALU, writes); addresses and control flow are discrete, so a skill that uses a
soft value as an address (``gather``'s indices) faults, and the caller excludes it.

Hybrid run (default, :attr:`SoftStep.hybrid`): the rows' values come from the exact
(numba) kernel -- the same fused computation, compiled -- and only the rows that carry a
gradient run again on the torch ops with autograd: rows of ops whose inputs require grad,
that did not fault, and whose op is not *values only* (an op whose outputs have no gradient
with respect to its inputs, found once by an autograd probe: ``s_lt``, ``len``, ``iota``,
the comparison combinators). The result and every gradient equal an all-torch run (tested);
``experiments/bench_gradient_iteration.py`` measures the difference in time.

Split cells (default, :attr:`SoftStep.split`): the torch rows hold their state as
:class:`~algind_gym.cpu.model.SplitCells`, the skills' protected code outside autograd, so
the backward pass covers the data cells only; values and gradients are the same bit for bit
(tested).

Approximation: an op reads copies of its inputs, so a discrete program that binds the
same buffer to an input and an output slot of a skill that reads after writing could
behave differently from its soft version (no built-in elementwise skill does).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from algind_gym.cpu.backend import empty_write_ranges, make_backend
from algind_gym.cpu.model import SplitCells
from algind_gym.machine.isa import Fault
from algind_gym.skills.image import Buffer, build_image
from algind_gym.skills.library import SkillLibrary

if TYPE_CHECKING:
    from agents.gradient.ops import Op, ShapeClass

_HALT, _FAULT, _ICOUNT = "halt", "fault", "icount"
_CHECK_EVERY = 16


@dataclass
class StepRun:
    """What one batched call produced: per op the written slots' values and fault codes."""

    outputs: list[dict[int, torch.Tensor]]
    """Per op: written slot index -> values ``(K, size)``."""
    faults: np.ndarray
    """``(n_ops, K)`` fault codes."""
    instructions: int
    cpu_s: float
    grad_rows: int = 0
    """Rows that ran on the torch ops with autograd (the rest only on the exact kernel)."""


class _BindOnly:
    """A backend whose ``run`` does nothing: lets ``execute_rows`` bind and call, not run."""

    name = "bind-only"

    def run(self, state, max_steps=0):
        return state


class SoftStep:
    """One machine image holding every op's slot buffers; runs ops on soft inputs.

    Args:
        library: the skills.
        ops: the ops (see :func:`enumerate_ops`).
        k: examples per op (rows per op).
        max_steps: instruction budget of one call.
        backend: a CPU backend from :func:`algind_gym.cpu.backend.make_backend` whose
            ``model(layout, dtype)`` gives a torch-kernel :class:`TransformerCPU`.
        dtype: cell dtype of the soft run (float32 halves the backward pass's traffic).
        stack_size: default ``256 + 8 * slot cells`` (enough for the built-in skills at
            training lengths; an overflow is a fault the caller reports).
        private: the ops' written slots are private channels
            (:mod:`agents.gradient.dag`): the soft forward stores each op's result
            unmixed instead of mixing it into shared buffers by alpha.
    """

    def __init__(
        self,
        library: SkillLibrary,
        ops: list[Op],
        k: int,
        max_steps: int,
        backend,
        dtype=np.float64,
        stack_size: int | None = None,
        private: bool = False,
    ) -> None:
        self.ops, self.k, self.max_steps = ops, k, max_steps
        self.private = private
        self.compact = True
        """Step only the rows still running (False: every row, for benchmarks)."""
        self.hybrid = True
        """Values of every row on the exact (numba) kernel and only the rows that carry a
        gradient on the torch ops (:meth:`run`); False: every row on the torch ops."""
        self.split = True
        """Torch rows hold their state as :class:`~algind_gym.cpu.model.SplitCells`: the
        protected code cells outside autograd (same values and gradients; False: whole
        ``(B, N)`` cells, for benchmarks and the equality test)."""
        self.narrow = True
        """With :attr:`split` on the hybrid run: the data part is only the cells the exact run
        wrote on the torch rows and the slot buffers (:meth:`_data_mask`); False: every cell
        but the code."""
        self.values_only: np.ndarray | None = None
        """Per op: its outputs have no gradient with respect to its inputs (found by the
        :attr:`probe` on the first call that needs gradients); None until then."""
        self.probe = "perturb"
        """How :attr:`values_only` is found: ``"perturb"`` (:meth:`_perturb_probe`, on the
        exact kernel, cheap) or ``"autograd"`` (:meth:`_probe`, a full torch pass)."""
        # Rows run one op each, so ops share slot buffers: the n-th data slot of class c of
        # any op uses buffer ``c<i>_<n>`` (a few buffers in all, a small state per row).
        class_ids: dict[ShapeClass, int] = {}
        need: dict[tuple[int, int], ShapeClass] = {}
        self._slot_buffer: dict[tuple[int, int], str] = {}
        for v, op in enumerate(ops):
            seen: dict[ShapeClass, int] = {}
            for j in op.data_slots:
                cls = op.slots[j].shape
                ci = class_ids.setdefault(cls, len(class_ids))
                n = seen.get(cls, 0)
                seen[cls] = n + 1
                name = f"c{ci}_{n}"
                need[(ci, n)] = cls
                self._slot_buffer[(v, j)] = name
        buffers = [Buffer(f"c{ci}_{n}", *cls) for (ci, n), cls in sorted(need.items())]
        cells = sum(b.size for b in buffers)
        skills = sorted(
            {op.skill for op in ops} | {s.skill for op in ops for s in op.slots if s.skill}
        )
        self.image = build_image(
            library, buffers, skills=skills, stack_size=stack_size or 256 + 8 * cells
        )
        self.layout = self.image.layout
        self.dtype = dtype
        self.cpu = backend.model(self.layout, dtype)
        exact = make_backend("transformer").model(self.layout, dtype)
        self._exact = exact if exact.runs_on_arrays() else None
        self._template: torch.Tensor | None = None
        n = self.layout.n_cells
        # flat cell indices of every op's data slots over its K rows: (K, size) blocks
        self._slot_index: dict[tuple[int, int], torch.Tensor] = {}
        for (v, j), name in self._slot_buffer.items():
            rows = np.arange(v * k, (v + 1) * k)
            addr, buf = self.image.buffers[name]
            idx = rows[:, None] * n + addr + np.arange(buf.size)[None, :]
            self._slot_index[(v, j)] = torch.from_numpy(idx.astype(np.int64))
        self._regs = {r: self.layout.register(r) for r in (_HALT, _FAULT, _ICOUNT)}
        self._varies: np.ndarray | None = None
        self._slot_mask = np.zeros(n, dtype=bool)
        for addr, buf in self.image.buffers.values():
            self._slot_mask[addr : addr + buf.size] = True

    @property
    def batch(self) -> int:
        return len(self.ops) * self.k

    def template(self) -> torch.Tensor:
        """Cells of all rows with every op's slots bound and its call started (cached)."""
        if self._template is None:
            state = self.image.new_state(self.batch, self.dtype)
            calls = []
            for v, op in enumerate(self.ops):
                binds = [
                    self.image.pointer_index(
                        f"&{s.skill}" if s.skill else self._slot_buffer[(v, j)]
                    )
                    for j, s in enumerate(op.slots)
                ]
                calls.append((slice(v * self.k, (v + 1) * self.k), op.skill, binds))
            results = self.image.execute_rows(state, calls, _BindOnly(), self.max_steps)
            for op, res in zip(self.ops, results, strict=True):
                if res.error is not None:  # pragma: no cover - enumerate_ops only makes valid ops
                    raise RuntimeError(f"op {op.label} cannot be bound: {res.error}")
            self._template = torch.from_numpy(state.cells.copy())
        return self._template

    def run(self, inputs: dict[tuple[int, int], torch.Tensor]) -> StepRun:
        """Run every op with slot ``(v, j)`` holding ``inputs[(v, j)]`` ``(K, size)``.

        With :attr:`hybrid` (and the numba kernel installed): every row runs first on the
        exact kernel (values, faults, instruction counts), and only the rows that carry a
        gradient run again on the torch ops with autograd -- the rows of ops that are not
        :attr:`values_only`, whose inputs require grad, and that did not fault. Their
        values are the same computation (the fused path), so the result and every
        gradient equal an all-torch run (tested)."""
        base = self.template()
        keys = list(inputs)
        idx = torch.cat([self._slot_index[key].reshape(-1) for key in keys])
        vals = torch.cat([inputs[key].reshape(-1) for key in keys])
        grad = torch.is_grad_enabled() and any(inputs[key].requires_grad for key in keys)
        halt, fault, icount = (self._regs[r] for r in (_HALT, _FAULT, _ICOUNT))
        start = time.perf_counter()
        if self._exact is None or not self.hybrid:
            cells = self._loop(base.reshape(-1).index_put((idx,), vals).reshape(base.shape))
            raw, sub, pos, grad_rows = cells.detach(), cells, None, len(cells)
        else:
            raw = base.clone()
            raw.view(-1)[idx] = vals.detach().to(raw.dtype)
            written = empty_write_ranges(self.batch)
            self._exact.run_array(raw.numpy(), self.max_steps, written)
            sub, pos, grad_rows = None, None, 0
            if grad:
                if self.values_only is None:
                    if self.probe == "autograd":
                        self.values_only = self._probe(base, keys, inputs, idx)
                    else:
                        self.values_only = self._perturb_probe(base, raw, keys, inputs, idx)
                rows = self._grad_rows(inputs, raw[:, fault] == 0)
                grad_rows = len(rows)
                if grad_rows:
                    pos = torch.full((self.batch,), -1, dtype=torch.int64)
                    pos[rows] = torch.arange(grad_rows)
                    sub_idx, sub_vals = [], []
                    for key in keys:
                        i, rows_of_key = self._sub_index(key, pos)
                        if len(rows_of_key):
                            sub_idx.append(i.reshape(-1))
                            sub_vals.append(inputs[key][rows_of_key].reshape(-1))
                    cells = base.index_select(0, rows).reshape(-1)
                    cells = cells.index_put((torch.cat(sub_idx),), torch.cat(sub_vals))
                    sub = self._loop(cells.reshape(grad_rows, -1), self._data_mask(written, rows))
        cpu_s = time.perf_counter() - start
        faults = raw[:, fault].numpy().astype(np.int64).copy()
        still = (raw[:, halt] == 0) & (raw[:, fault] == 0)
        faults[still.numpy()] = int(Fault.BUDGET_EXHAUSTED)
        instructions = int((raw[:, icount] - base[:, icount]).sum())
        flat = raw.reshape(-1)
        outputs: list[dict[int, torch.Tensor]] = []
        for v, op in enumerate(self.ops):
            outs = {}
            for j in op.data_slots:
                if not op.slots[j].written:
                    continue
                if pos is None and sub is not None:  # every row on torch
                    outs[j] = sub.reshape(-1)[self._slot_index[(v, j)]]
                    continue
                out = flat[self._slot_index[(v, j)]]
                if pos is not None:
                    i, rows_of_key = self._sub_index((v, j), pos)
                    if len(rows_of_key):
                        out = out.index_put((rows_of_key,), sub.reshape(-1)[i])
                outs[j] = out
            outputs.append(outs)
        return StepRun(
            outputs, faults.reshape(len(self.ops), self.k), instructions, cpu_s, grad_rows
        )

    def _loop(self, cells: torch.Tensor, data_mask: np.ndarray | None = None) -> torch.Tensor:
        """The torch ops (autograd) on ``cells`` until every row has returned (on split cells
        whose data part is ``data_mask``'s cells, see :meth:`_loop_split`)."""
        if self.split and self.cpu.path == "fused":
            return self._loop_split(cells, data_mask)
        halt, fault = self._regs[_HALT], self._regs[_FAULT]
        done = 0
        while done < self.max_steps:
            running = (cells[:, halt] == 0) & (cells[:, fault] == 0)
            if not bool(running.any()):
                break
            # Only the running rows are stepped: a halted or faulted machine is frozen, and
            # a pass costs time per row (every row holds the whole state), so rows of
            # quick ops stop costing once they return.
            live = running.nonzero().squeeze(1) if self.compact else None
            if live is not None and len(live) == len(cells):
                live = None
            sub = cells if live is None else cells.index_select(0, live)
            for _ in range(min(_CHECK_EVERY, self.max_steps - done)):
                sub = self.cpu(sub)
                done += 1
            cells = sub if live is None else cells.index_copy(0, live, sub)
        return cells

    def _loop_split(self, cells: torch.Tensor, data_mask: np.ndarray | None) -> torch.Tensor:
        """:meth:`_loop` on :class:`~algind_gym.cpu.model.SplitCells` (the registers are
        the data part's first columns, so ``halt`` and ``fault`` index it directly).
        ``data_mask``: the cells that may carry a gradient (None: all but the code)."""
        halt, fault = self._regs[_HALT], self._regs[_FAULT]
        data, code, split = self.cpu.split_cells(cells, data_mask)
        done = 0
        while done < self.max_steps:
            running = (data[:, halt] == 0) & (data[:, fault] == 0)
            if not bool(running.any()):
                break
            live = running.nonzero().squeeze(1) if self.compact else None
            if live is not None and len(live) == len(data):
                live = None
            if live is None:
                sub = SplitCells(data, code, split)
            else:
                sub_code = code if len(code) == 1 else code.index_select(0, live)
                sub = SplitCells(data.index_select(0, live), sub_code, split)
            for _ in range(min(_CHECK_EVERY, self.max_steps - done)):
                sub = self.cpu.forward_split(sub)
                done += 1
            data = sub.data if live is None else data.index_copy(0, live, sub.data)
        return self.cpu.join_cells(SplitCells(data, code, split))

    def _data_mask(self, written: np.ndarray, rows: torch.Tensor) -> np.ndarray | None:
        """The cells that may carry a gradient on the torch ``rows`` (None without
        :attr:`narrow`): every slot buffer (the inputs) and every cell the exact run wrote on
        those rows (their write ranges; the torch rows compute the same, so they write the
        same cells). The rest hold the template's values throughout; the few of those that
        differ between rows (each op's bound slots) stay in the data part too, so that the
        constant part is one row shared by all."""
        if not self.narrow:
            return None
        if self._varies is None:  # cells whose template differs between rows (bound slots)
            t = self.template()
            self._varies = (t != t[:1]).any(0).numpy()
        mask = self._slot_mask | self._varies  # the rest is one constant row for all rows
        w = written[rows.numpy()]
        for lo, hi in ((w[:, 0], w[:, 1]), (w[:, 2], w[:, 3])):
            hit = lo <= hi
            if hit.any():
                mask[lo[hit].min() : hi[hit].max() + 1] = True
        return mask

    def _grad_rows(self, inputs: dict, ok: torch.Tensor) -> torch.Tensor:
        """Rows that run on the torch ops: of ops that carry a gradient (not
        :attr:`values_only`) with an input that requires grad, where the exact run did not
        fault (a faulted row's result never enters the mixture)."""
        ops = [
            v
            for v, op in enumerate(self.ops)
            if not self.values_only[v]
            and any((v, j) in inputs and inputs[(v, j)].requires_grad for j in op.data_slots)
        ]
        rows = torch.arange(self.batch).reshape(len(self.ops), self.k)[ops].reshape(-1)
        return rows[ok[rows]]

    def _sub_index(self, key: tuple[int, int], pos: torch.Tensor):
        """Flat indices of slot ``key`` within the torch rows (``pos``: row -> its place
        there, -1 if absent) and the op's rows (0..K-1) that are there."""
        v = key[0]
        n = self.layout.n_cells
        here = pos[v * self.k : (v + 1) * self.k]
        rows_of_key = (here >= 0).nonzero().squeeze(1)
        offsets = self._slot_index[key][rows_of_key] - (v * self.k + rows_of_key)[:, None] * n
        return here[rows_of_key][:, None] * n + offsets, rows_of_key

    def _perturb_probe(self, base, raw, keys, inputs, idx, trials: int = 2) -> np.ndarray:
        """:attr:`values_only` on the exact kernel: an op is values only when, on every row,
        its outputs and fault code stay bit for bit the same after each of ``trials``
        random perturbations of all its inputs (each value moved by ``1e-4 (|value| + 1)``,
        random signs; hundreds of float32 ulps) -- locally constant in the data, so its gradient is 0.
        A comparison that flips makes the op count as carrying a gradient (the safe side);
        a smooth op could only be missed if such a move of every input left every output
        unchanged in float32 on every row, i.e. a gradient that is negligible anyway."""
        gen = torch.Generator().manual_seed(0)
        fault = self._regs[_FAULT]
        vals = torch.cat([inputs[key].detach().reshape(-1) for key in keys]).to(raw.dtype)
        changed = np.zeros(len(self.ops), dtype=bool)
        for _ in range(trials):
            sign = torch.randint(0, 2, vals.shape, generator=gen).to(vals.dtype) * 2 - 1
            moved = base.clone()
            moved.view(-1)[idx] = vals + sign * (1e-4 * vals.abs() + 1e-4)
            self._exact.run_array(moved.numpy(), self.max_steps)
            diff = (moved[:, fault] != raw[:, fault]).reshape(len(self.ops), self.k)
            changed |= diff.any(1).numpy()
            for v, op in enumerate(self.ops):
                for j in op.data_slots:
                    if op.slots[j].written:
                        a = raw.view(-1)[self._slot_index[(v, j)]].numpy()
                        b = moved.view(-1)[self._slot_index[(v, j)]].numpy()
                        changed[v] |= not np.array_equal(a, b, equal_nan=True)
        return ~changed

    def _probe(self, base, keys, inputs, idx) -> np.ndarray:
        """Which ops are *values only*: on this call's inputs (every row on the torch ops,
        leaf copies of the inputs), no output has a nonzero gradient with respect to any
        input on any row -- the op's results come from comparisons, counters or constants
        (``s_lt``, ``len``, ``iota``, ...), piecewise constant in the data. Such ops run on
        the exact kernel only from then on: their gradient is zero, so nothing changes but
        the cost. Rows that fault or give non-finite gradients count as carrying one."""
        leaves = {
            key: inputs[key].detach().clone().requires_grad_(inputs[key].requires_grad)
            for key in keys
        }
        with torch.enable_grad():
            vals = torch.cat([leaves[key].reshape(-1) for key in keys])
            cells = self._loop(base.reshape(-1).index_put((idx,), vals).reshape(base.shape))
            flat = cells.reshape(-1)
            gen = torch.Generator().manual_seed(0)
            total = flat.new_zeros(())
            for v, op in enumerate(self.ops):
                for j in op.data_slots:
                    if op.slots[j].written:
                        out = flat[self._slot_index[(v, j)]]
                        weights = torch.randn(out.shape, generator=gen, dtype=out.dtype)
                        total = total + (out * weights).sum()
            need = [key for key in keys if leaves[key].requires_grad]
            grads = torch.autograd.grad(total, [leaves[key] for key in need], allow_unused=True)
        carries = np.zeros(len(self.ops), dtype=bool)
        for key, g in zip(need, grads, strict=True):
            if g is not None and bool((g != 0).any()):
                carries[key[0]] = True
        return ~carries
