"""The fused path as one compiled loop: the kernel behind ``TransformerCPU(kernel="numba")``.

The fused path (:class:`~algind_gym.cpu.model.TransformerCPU`, ``path="fused"``) runs a
forward pass as about a hundred eager torch ops over the whole batch: gathers for the
one-hot attention heads, a gather of the control column for the decoder, stacks and
gathers for the gated selects, the ALU units, the fault conditions and the write heads.
Each op costs a few microseconds of dispatch, so a step costs about a millisecond
whatever the batch. This module fuses those ops into one loop over the machines, compiled
by numba: the same reads, the same compiled tables (control table, fault ranks, fault
codes, protected flags, address-check bounds, register heads) and the same gated selects
in the same order, on scalars instead of ``(features, B)`` rows. Nothing here knows the
opcodes: what an instruction does is entirely in the control table that
:func:`~algind_gym.cpu.control.control_table` derives from the compiled decode table.

The forward pass is written out inside :func:`fused_range` rather than in a helper called
per step: numba reference-counts every array passed to a call (an atomic increment and
decrement each), and with a dozen table arguments that cost three times the arithmetic
(110 ns against 34 ns per instruction, measured). The helpers take scalars only; the
drivers call :func:`fused_range` once per chunk of machines, not per step.

Machines are independent, so :func:`fused_range` loops the forward pass per machine
(``S(t + 1) = E(S(t))`` for one machine row, which stays in cache) and stops a machine's
loop once it is frozen (halted or faulted machines are unchanged by a forward pass, so the
extra passes would be no-ops). The tests and ``algind-gym verify-cpu`` check this kernel
against the eager fused path, the dense path and the reference interpreter, bit for bit,
in float32 and float64.

Write ranges: given a ``(B, 4)`` int64 array, the kernel widens row ``i`` in place:
``[lo, hi]`` in columns 0-1 to cover every cell ``w < split`` that machine ``i``'s memory
write head writes (general registers, stack, pointer table), columns 2-3 every cell
``w >= split`` (the memory block and above). That is three comparisons on local integers
per write, stored once per machine; the six protected-register heads and the MODE rewrite
of an instruction that writes nothing are not recorded (the contract is in
:mod:`algind_gym.cpu.backend`, "Write ranges"). A ``(0, 4)`` array records nothing.

Exactness notes: every arithmetic operation is on two values of the state's dtype
(constants are passed in an array of that dtype, never as Python literals, which numba
would widen to float64); numba compiles without ``fastmath``, so there is no contraction
into FMAs and no reassociation; ``np.floor``/``np.trunc`` keep the float type.

Threads: :func:`fused_range` is the kernel over a range of machines, :func:`fused_run` the
serial driver (the whole batch on the calling thread) and :func:`fused_run_parallel` the
parallel one (chunks of machines on numba's threads with ``prange``, each chunk with its own
scratch arrays and error code); both run the same compiled kernel on each machine, so the
results are bit-identical whatever the thread count. Which one a call takes, and with how
many threads, is the policy of :mod:`algind_gym.cpu.threads`.

Inference only: no autograd and CPU only. The model falls back to the eager fused path
when gradients are needed or the tensors are on another device.
"""

from __future__ import annotations

import numpy as np

try:  # numba is a dependency, but a broken install must not break the eager paths
    import numba
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None

AVAILABLE = numba is not None
"""Whether the compiled kernel can be used (numba imports)."""

if AVAILABLE and numba.config.THREADING_LAYER == "default":
    numba.config.THREADING_LAYER = "forksafe"  # see algind_gym/cpu/threads.py

# Layout of the ``consts`` array (the state's dtype).
C_ZERO, C_ONE, C_WIDTH, C_BASE, C_END, C_N, C_LAST, C_LAST_OP = range(8)
N_CONSTS = 8

# Error codes returned by the kernels (never expected; a nonzero one is a bug report).
ERR_WRITE_OUT_OF_RANGE = 1


def _njit(fn):
    if numba is None:  # pragma: no cover
        return fn
    return numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")(fn)


def _kernel_njit(fn):
    """The machine-range kernel: compiled once, called (not inlined) by both drivers."""
    if numba is None:  # pragma: no cover
        return fn
    return numba.njit(cache=True, nogil=True, boundscheck=False)(fn)


def _parallel_njit(fn):
    if numba is None:  # pragma: no cover
        return fn
    return numba.njit(cache=True, nogil=True, boundscheck=False, parallel=True)(fn)


@_njit
def _clamp_index(v, zero, last):
    """``int(clamp(v, 0, n - 1))``: the fused path's gather index of address ``v``.

    Scalars only: an array argument would cost a reference-count pair per call.
    """
    if v < zero:
        v = zero
    if v > last:
        v = last
    return int(v)


@_njit
def _check(v, lo, hi):
    """``v`` is an integer in ``[lo, hi]``: ``clamp(floor(v), lo, hi) == v``."""
    f = np.floor(v)
    if f < lo:
        f = lo
    if f > hi:
        f = hi
    return f == v


@_kernel_njit
def fused_range(
    cells,
    start,
    stop,
    stride,
    n_steps,
    control,
    n_selects,
    fault_by_rank,
    protected,
    k,
    reg_read,
    reg_write,
    check_lo,
    check_hi,
    mode_address,
    written,
    split,
):
    """``n_steps`` forward passes on machines ``range(start, stop, stride)`` of ``cells``
    ``(B, N)``, in place; the other machines are not touched.

    A machine's loop stops once it is halted or faulted (frozen: further passes are
    no-ops). Returns an error code (0 = fine); on an error it returns at once, leaving
    the machine it was running part-way.

    ``written`` is ``(B, 4)`` int64 or ``(0, 4)`` (not recorded): row ``i``'s ``[lo, hi]``
    pairs are widened in place over every cell ``w`` the memory write head of machine ``i``
    writes in this call, columns 0-1 for ``w < split``, 2-3 for the others (module docs).
    The scratch arrays (``cand3`` ...) are allocated here, so each call has its own.
    """
    n = cells.shape[1]
    record = written.shape[0] > 0
    dt = cells.dtype
    cand3 = np.empty(5, dt)
    cand4 = np.empty(12, dt)
    cand_last = np.empty(22, dt)
    regs_out = np.empty(6, dt)
    checks = np.empty(8, dt)
    zero, one, width, base, end = k[C_ZERO], k[C_ONE], k[C_WIDTH], k[C_BASE], k[C_END]
    last, last_op, n_f = k[C_LAST], k[C_LAST_OP], k[C_N]
    halt_col, write_col = control.shape[1] - 2, control.shape[1] - 1
    for i in range(start, stop, stride):
        lo, hi, lo_m, hi_m = n, -1, n, -1
        if record:
            lo, hi, lo_m, hi_m = written[i, 0], written[i, 1], written[i, 2], written[i, 3]
        for _ in range(n_steps):
            if cells[i, reg_read[4]] != zero or cells[i, reg_read[5]] != zero:
                break  # frozen: every further pass is a no-op
            # ---- layer 1: registers; MLP: fetch addresses.
            pc = cells[i, reg_read[0]]
            sp = cells[i, reg_read[1]]
            fp = cells[i, reg_read[2]]
            mode = cells[i, reg_read[3]]
            halt = cells[i, reg_read[4]]
            fault = cells[i, reg_read[5]]
            icount = cells[i, reg_read[6]]
            top = sp - one if sp > base else base
            link = fp - one
            # ---- layer 2: fetch (PC + 0..3, stack top, frame link); MLP: decode.
            op = cells[i, _clamp_index(pc, zero, last)]
            a = cells[i, _clamp_index(pc + one, zero, last)]
            b = cells[i, _clamp_index(pc + (one + one), zero, last)]
            cf = cells[i, _clamp_index(pc + (one + one + one), zero, last)]
            r_top = cells[i, _clamp_index(top, zero, last)]
            r_t = cells[i, _clamp_index(link, zero, last)]
            row_f = op
            if row_f < zero:
                row_f = zero
            if row_f > last_op:
                row_f = last_op
            opi = int(row_f)
            if opi != op:  # the row is kept only if op is that integer (else row 0: invalid)
                opi = 0
            # The decoder: row ``opi`` of the control table (read as control[opi, j] below).
            # ---- layer 3: operands; MLP: derived address, write address.
            fp_a = fp + a
            fp_b = fp + b
            r_a = cells[i, _clamp_index(a, zero, last)]
            r_b = cells[i, _clamp_index(b, zero, last)]
            r_c = cells[i, _clamp_index(cf, zero, last)]
            r_fb = cells[i, _clamp_index(fp_b, zero, last)]
            cand3[0] = r_a
            cand3[1] = r_b
            cand3[2] = b
            cand3[3] = cf
            cand3[4] = mode
            d = cand3[control[opi, 0]] + cand3[control[opi, 1]]
            stack_w = np.trunc(sp) if sp < end else zero
            cand3[0] = a
            cand3[1] = b
            cand3[2] = d
            cand3[3] = fp_a
            cand3[4] = stack_w
            waddr = cand3[control[opi, 5]]
            # ---- layer 4: indirect read, protected flag; MLP: ALU, next state, faults.
            r_d = cells[i, _clamp_index(d, zero, last)]
            prot = protected[_clamp_index(waddr, zero, last)]
            cand4[0] = pc
            cand4[1] = fp
            cand4[2] = a
            cand4[3] = b
            cand4[4] = cf
            cand4[5] = r_a
            cand4[6] = r_b
            cand4[7] = r_c
            cand4[8] = r_fb
            cand4[9] = r_d
            cand4[10] = r_top
            cand4[11] = width
            x = cand4[control[opi, 2]]
            y = cand4[control[opi, 3]]
            target = cand4[control[opi, 4]]
            y_zero = y == zero
            # ALU units (order of compiler.ALU_UNITS), then jump conditions, then SP/FP candidates.
            cand_last[0] = x
            cand_last[1] = x + y
            cand_last[2] = x - y
            cand_last[3] = x * y
            cand_last[4] = x / (one if y_zero else y)
            cand_last[5] = x if x <= y else y
            cand_last[6] = x if x >= y else y
            cand_last[7] = one if x < y else zero
            cand_last[8] = one if x <= y else zero
            cand_last[9] = one if x == y else zero
            a_zero = one if r_a == zero else zero
            sp1 = sp + one
            cand_last[10] = zero
            cand_last[11] = one
            cand_last[12] = a_zero
            cand_last[13] = one - a_zero
            cand_last[14] = one if cand_last[2] <= zero else zero
            cand_last[15] = sp
            cand_last[16] = sp1
            cand_last[17] = sp - one
            cand_last[18] = sp1 + a
            cand_last[19] = link
            cand_last[20] = fp
            cand_last[21] = r_t
            value = cand_last[control[opi, 6]]
            jump = cand_last[control[opi, 7]]
            new_sp = cand_last[control[opi, 8]]
            new_fp = cand_last[control[opi, 9]]
            new_pc = target if jump != zero else pc + width
            # Fault conditions in control.FAULT_CONDITIONS order; the highest live rank wins.
            link_ok = _check(link, check_lo[8], check_hi[8]) and link < sp
            wpos = waddr >= zero
            r = n_selects  # first rank row of the control column
            rank = control[opi, r + 1]  # invalid opcode (live only on invalid rows)
            # "integer in [lo, hi]" checks of pc, a (count), a, b, c, d, FP + a, FP + b:
            # check j is condition row j + 1 except the PC's (row 0, before the opcode's).
            checks[0] = pc
            checks[1] = a
            checks[2] = a
            checks[3] = b
            checks[4] = cf
            checks[5] = d
            checks[6] = fp_a
            checks[7] = fp_b
            for j in range(8):
                if not _check(checks[j], check_lo[j], check_hi[j]):
                    rank = max(rank, control[opi, r + j + (1 if j > 0 else 0)])
            if top >= n_f:
                rank = max(rank, control[opi, r + 9])
            if link_ok and link >= n_f:
                rank = max(rank, control[opi, r + 10])
            if sp >= end:
                rank = max(rank, control[opi, r + 11])
            if sp1 + a > end:
                rank = max(rank, control[opi, r + 12])
            if sp <= base:
                rank = max(rank, control[opi, r + 13])
            if not link_ok:
                rank = max(rank, control[opi, r + 14])
            if y_zero:
                rank = max(rank, control[opi, r + 15])
            if wpos and not np.isfinite(value):
                rank = max(rank, control[opi, r + 16])
            if wpos and prot:
                rank = max(rank, control[opi, r + 17])
            code = fault_by_rank[rank]
            # ---- commit: faulted machines get FAULT only; halted/faulted ones stay frozen.
            running = halt == zero and fault == zero
            good = running and code == zero
            halt_op = control[opi, halt_col] != 0
            write_op = control[opi, write_col] != 0
            regs_out[0] = new_pc if good else pc
            regs_out[1] = new_sp if good else sp
            regs_out[2] = new_fp if good else fp
            regs_out[3] = one if good and halt_op else halt
            regs_out[4] = code if running and not good else fault
            regs_out[5] = icount + one if good else icount
            wen = good and wpos and write_op
            for h in range(6):
                cells[i, reg_write[h]] = regs_out[h]
            if wen:
                w = int(waddr)
                if w >= n:
                    return ERR_WRITE_OUT_OF_RANGE
                cells[i, w] = value
                if w < split:
                    if w < lo:
                        lo = w
                    if w > hi:
                        hi = w
                else:
                    if w < lo_m:
                        lo_m = w
                    if w > hi_m:
                        hi_m = w
            else:
                cells[i, mode_address] = mode
        if record:
            written[i, 0], written[i, 1], written[i, 2], written[i, 3] = lo, hi, lo_m, hi_m
    return 0


@_kernel_njit
def fused_run(
    cells,
    n_steps,
    control,
    n_selects,
    fault_by_rank,
    protected,
    k,
    reg_read,
    reg_write,
    check_lo,
    check_hi,
    mode_address,
    written,
    split,
):
    """The serial driver: :func:`fused_range` over every machine of ``cells``, one thread.

    Returns the error code (0 = fine).
    """
    return fused_range(
        cells,
        0,
        cells.shape[0],
        1,
        n_steps,
        control,
        n_selects,
        fault_by_rank,
        protected,
        k,
        reg_read,
        reg_write,
        check_lo,
        check_hi,
        mode_address,
        written,
        split,
    )


@_parallel_njit
def fused_run_parallel(
    cells,
    n_steps,
    control,
    n_selects,
    fault_by_rank,
    protected,
    k,
    reg_read,
    reg_write,
    check_lo,
    check_hi,
    mode_address,
    written,
    split,
    n_chunks,
):
    """The parallel driver: ``n_chunks`` chunks of machines on numba's threads (``prange``).

    Chunk ``c`` runs :func:`fused_range` over machines ``c, c + n_chunks, ...`` (strided,
    so that machines that stop early are spread over the chunks); each chunk has its own
    scratch arrays and its own error code (a ``prange`` body cannot return). Machines are
    independent, so every machine's result equals the serial driver's bit for bit.
    Returns the first nonzero chunk error code in chunk order (0 = fine); after an error
    the other chunks have still run, so only the error code, not the cells, matches the
    serial driver then (an error is a bug report, never a program's fault).
    """
    errors = np.zeros(n_chunks, np.int64)
    for c in numba.prange(n_chunks):
        errors[c] = fused_range(
            cells,
            c,
            cells.shape[0],
            n_chunks,
            n_steps,
            control,
            n_selects,
            fault_by_rank,
            protected,
            k,
            reg_read,
            reg_write,
            check_lo,
            check_hi,
            mode_address,
            written,
            split,
        )
    for c in range(n_chunks):
        if errors[c] != 0:
            return errors[c]
    return 0
