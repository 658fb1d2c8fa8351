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

Cost per instruction: the loop body is throughput-bound (its few hundred machine
instructions per pass, not a dependency chain, set the time: running two machines
interleaved in one loop gave nothing), so the cuts are in work per pass, each exact:

* registers in locals: PC, SP, FP, MODE, HALT, FAULT and ICOUNT are read from the cells
  once per machine and then carried from pass to pass (still written to the cells every
  pass, where the read heads find them); they are read back after a memory write into a
  register cell (MODE) and every pass if the write heads are not the read heads;
* fault conditions as a bit set (bit ``k`` for row ``k`` of
  :data:`~algind_gym.cpu.control.FAULT_CONDITIONS`), masked with the row's live conditions
  (bits with rank > 0, derived from the control table on a row's first use in a call): no
  fault, the common case, is one test; otherwise the highest rank among the set bits, the
  same maximum as the full computation. The count and stack conditions
  (:data:`STACK_CONDITIONS`) and the write's (:data:`WRITE_CONDITIONS`) are computed only
  for rows where one of them is live (masked away otherwise, so skipping them changes no
  rank); the address checks of fields a, b, c, d and FP + b ("integer in [0, n - 1]") are
  ``trunc(clamp(v)) == v`` on the clamp their gather computes anyway;
* rows whose jump condition is "never" and whose next SP and FP are SP and FP
  (:data:`PLAIN`, from the control table) take those values instead of building the ten
  other candidates of the last select layer;
* rows where only the value select reads an ALU unit (:data:`ALU_ALONE`: value select
  below :data:`C_ALU`, the jump/SP/FP selects at or above it) compute that one unit
  (:func:`_alu`, the same operation on the same operands) instead of all ten. On the
  vector env's DotProduct calls (float64, 256 envs x K = 8) 88% of the passes are PLAIN
  rows, mostly moves (STORE, LDF, STF, LOAD, MOVI: 74%), and every opcode that ran is
  ALU_ALONE (``experiments/profile_kernel_opcodes.py`` prints the opcode mix);
* ``error_model="numpy"`` (no zero-division check: the one division never divides by zero)
  and unsigned gather indices (no negative-index wraparound code).

Memory, not only work per pass: a DotProduct machine's row is 6,188 cells (48 KiB in
float64), so the rows of a 2048-machine call (100 MB) are far out of cache: replayed 8
machines at a time on rows just copied (in cache), those calls cost about 24 ns per
instruction, against 33 ns on the whole batch (before the prefetching below). A machine's
first touch of each code, register, stack and memory line is a miss. The K machines of one
env run the same program on different examples, so they read mostly the same cell
indices; :data:`fused_range_prefetch`, while machine ``i`` runs, prefetches
(``llvm.prefetch``: a hint, no load and no value; :func:`_prefetch`) those indices of the
next machine of its range: the registers' line once, then per pass the lines of the op
and of the a, b, FP + b and d gathers. It changes no value; on the recorded DotProduct
calls (float64, one thread) it took the time per instruction from about 31 to 23 ns. On
small rows in cache the prefetches are only extra work (and even an untaken ``if`` around
them cost about 10% there), so the prefetching variant is a separately compiled kernel
(:func:`_make_fused_range`) and the drivers take it only for ranges of rows of at least
:data:`PREFETCH_ROW_BYTES` that add up to at least :data:`PREFETCH_BATCH_BYTES`
(:func:`_prefetch_pays`); the thresholds are a judgement (a page, about an L2 cache), not
a tuned optimum.

``experiments/bench_kernel_v1.py`` replays recorded env and search calls through this
kernel and an older one side by side.

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
scratch arrays and error code); both run the same kernel on each machine (with or without
the prefetch hints, which change no value), so the results are bit-identical whatever the
thread count. Which one a call takes, and with how
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


if numba is not None:
    from llvmlite import ir as _ir
    from numba.core import cgutils as _cgutils
    from numba.core import types as _types
    from numba.extending import intrinsic as _intrinsic

    @_intrinsic
    def _prefetch(typingctx, arr, i, j):
        """Hint the CPU to fetch ``arr[i, j]``'s cache line (``llvm.prefetch``, no value)."""
        sig = _types.void(arr, i, j)

        def codegen(context, builder, sig, args):
            aryty = sig.args[0]
            ary = context.make_array(aryty)(context, builder, args[0])
            ptr = _cgutils.get_item_pointer(context, builder, aryty, ary, [args[1], args[2]])
            i32 = _ir.IntType(32)
            fnty = _ir.FunctionType(_ir.VoidType(), [ptr.type, i32, i32, i32])
            fn = _cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
            builder.call(fn, [ptr, i32(0), i32(3), i32(1)])
            return context.get_dummy_value()

        return sig, codegen

else:  # pragma: no cover - exercised only without numba

    def _prefetch(arr, i, j):
        """No-op without numba."""


AVAILABLE = numba is not None
"""Whether the compiled kernel can be used (numba imports)."""


# Layout of the ``consts`` array (the state's dtype).
C_ZERO, C_ONE, C_WIDTH, C_BASE, C_END, C_N, C_LAST, C_LAST_OP = range(8)
N_CONSTS = 8

STACK_CONDITIONS = (1 << 2) | (0b111111 << 9)
"""Bits of the fault conditions (rows of control.FAULT_CONDITIONS) computed only for an
opcode where one of them is live: the count operand and the six stack conditions."""

WRITE_CONDITIONS = 0b11 << 16
"""Bits of the write's conditions (value not finite, protected cell), computed only for an
opcode where one of them is live."""
PLAIN = np.int64(1) << 32
"""Flag (beside the condition bits) of an opcode whose jump condition is "never" and whose
next SP and FP are SP and FP (the last select layer's candidates ``C_NEVER``, ``C_SP``,
``C_FP``): the kernel then takes those values without building the other candidates."""
C_NEVER, C_SP, C_FP = 10, 15, 20
C_ALU = 10
ALU_ALONE = np.int64(1) << 33
PREFETCH_ROW_BYTES = 4096
PREFETCH_BATCH_BYTES = 1 << 20
"""The kernel prefetches the next machine's lines (module docs) only in a call whose rows
are at least ``PREFETCH_ROW_BYTES`` long and whose rows in the range add up to at least
``PREFETCH_BATCH_BYTES`` (larger than a core's L2 cache): on small rows or batches in
cache the prefetches are only extra work."""
"""The ALU units are candidates ``0 .. C_ALU - 1`` of the last select layer."""

# Error codes returned by the kernels (never expected; a nonzero one is a bug report).
ERR_WRITE_OUT_OF_RANGE = 1


_OPTIONS = {"cache": True, "nogil": True, "boundscheck": False, "error_model": "numpy"}
"""numba options of every function here; ``error_model="numpy"``: no zero-division check
(the kernel's one division never divides by zero: ``y == 0`` is replaced by one), no
``fastmath`` (exactness notes)."""


def _njit(fn):
    if numba is None:  # pragma: no cover
        return fn
    return numba.njit(**_OPTIONS, inline="always")(fn)


def _kernel_njit(fn):
    """The machine-range kernel: compiled once, called (not inlined) by both drivers."""
    if numba is None:  # pragma: no cover
        return fn
    return numba.njit(**_OPTIONS)(fn)


def _parallel_njit(fn):
    if numba is None:  # pragma: no cover
        return fn
    return numba.njit(**_OPTIONS, parallel=True)(fn)


@_njit
def _clamp(v, zero, last):
    """``clamp(v, 0, n - 1)``, in ``v``'s dtype (``int`` of it is the gather index)."""
    if v < zero:
        v = zero
    if v > last:
        v = last
    return v


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


@_njit
def _alu(sel, x, y, y_zero, zero, one):
    """ALU unit ``sel`` (``sel < C_ALU``, order of compiler.ALU_UNITS) on ``x, y``: the
    value the last select layer takes from candidate ``sel``, computed alone."""
    if sel == 0:
        return x
    if sel == 1:
        return x + y
    if sel == 2:
        return x - y
    if sel == 3:
        return x * y
    if sel == 4:
        return x / (one if y_zero else y)
    if sel == 5:
        return x if x <= y else y
    if sel == 6:
        return x if x >= y else y
    if sel == 7:
        return one if x < y else zero
    if sel == 8:
        return one if x <= y else zero
    return one if x == y else zero


def _make_fused_range(prefetch: bool):
    """The machine-range kernel, compiled with ``prefetch`` as a constant: numba prunes the
    prefetches from the ``False`` one, whose code is then the kernel without them (an
    untaken ``if`` on a run-time flag still cost about 10% on small rows, measured)."""

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
        ``prefetch`` (a constant of the compiled function, see :func:`_make_fused_range`):
        prefetch the next machine's lines (module docs).
        """
        n = cells.shape[1]
        record = written.shape[0] > 0
        dt = cells.dtype
        cand3 = np.empty(5, dt)
        cand4 = np.empty(12, dt)
        cand_last = np.empty(22, dt)
        zero, one, width, base, end = k[C_ZERO], k[C_ONE], k[C_WIDTH], k[C_BASE], k[C_END]
        last, last_op, n_f = k[C_LAST], k[C_LAST_OP], k[C_N]
        two, three = one + one, one + one + one
        halt_col, write_col = control.shape[1] - 2, control.shape[1] - 1
        r = n_selects  # first rank row of the control column
        n_conds = halt_col - r
        # Per opcode, the bit set of its live fault conditions (rank > 0), filled on first use.
        live = np.full(control.shape[0], -1, np.int64)
        cand4[11] = width  # the constant candidates, written once
        cand_last[10] = zero
        cand_last[11] = one
        # Register reads and writes (see "Registers in locals" in the module docs).
        a_pc, a_sp, a_fp, a_mode = reg_read[0], reg_read[1], reg_read[2], reg_read[3]
        a_halt, a_fault, a_icount = reg_read[4], reg_read[5], reg_read[6]
        w_pc, w_sp, w_fp = reg_write[0], reg_write[1], reg_write[2]
        w_halt, w_fault, w_icount = reg_write[3], reg_write[4], reg_write[5]
        # Locals equal the cells after a pass when the write heads write what the read heads
        # read; otherwise (never for a compiled layout) every pass reloads them.
        same_heads = (
            w_pc == a_pc
            and w_sp == a_sp
            and w_fp == a_fp
            and w_halt == a_halt
            and w_fault == a_fault
            and w_icount == a_icount
            and mode_address == a_mode
        )
        reg_top = max(a_pc, a_sp, a_fp, a_mode, a_halt, a_fault, a_icount)
        # Checks 2-7 (fields a, b, c, d, FP + a, FP + b) are "integer in [0, n - 1]": with those
        # bounds, ``v`` passes iff ``trunc(clamp(v, 0, n - 1)) == v``, the clamp of its gather.
        gather_checks = True
        for j in range(2, 8):
            if check_lo[j] != zero or check_hi[j] != last:
                gather_checks = False
        for i in range(start, stop, stride):
            lo, hi, lo_m, hi_m = n, -1, n, -1
            nxt = np.uintp(i + stride if i + stride < stop else i)
            if prefetch:
                _prefetch(cells, nxt, np.uintp(a_pc))
            if record:
                lo, hi, lo_m, hi_m = written[i, 0], written[i, 1], written[i, 2], written[i, 3]
            reload = True
            pc = sp = fp = mode = halt = fault = icount = zero
            for _ in range(n_steps):
                # ---- layer 1: registers; MLP: fetch addresses.
                if reload:
                    pc = cells[i, a_pc]
                    sp = cells[i, a_sp]
                    fp = cells[i, a_fp]
                    mode = cells[i, a_mode]
                    halt = cells[i, a_halt]
                    fault = cells[i, a_fault]
                    icount = cells[i, a_icount]
                    reload = not same_heads
                if halt != zero or fault != zero:
                    break  # frozen: every further pass is a no-op
                top = sp - one if sp > base else base
                link = fp - one
                # ---- layer 2: fetch (PC + 0..3, stack top, frame link); MLP: decode.
                i_pc = np.uintp(_clamp_index(pc, zero, last))
                if prefetch:
                    _prefetch(cells, nxt, i_pc)
                op = cells[i, i_pc]
                a = cells[i, np.uintp(_clamp_index(pc + one, zero, last))]
                b = cells[i, np.uintp(_clamp_index(pc + two, zero, last))]
                cf = cells[i, np.uintp(_clamp_index(pc + three, zero, last))]
                r_top = cells[i, np.uintp(_clamp_index(top, zero, last))]
                r_t = cells[i, np.uintp(_clamp_index(link, zero, last))]
                row_f = op
                if row_f < zero:
                    row_f = zero
                if row_f > last_op:
                    row_f = last_op
                opi = int(row_f)
                if opi != op:  # the row is kept only if op is that integer (else row 0: invalid)
                    opi = 0
                # The decoder: row ``opi`` of the control table (read as control[opi, j] below).
                mask = live[opi]
                if mask < 0:  # first use of this row in the call: its live conditions
                    mask = 0
                    for j in range(n_conds):
                        if control[opi, r + j] != 0:
                            mask |= np.int64(1) << j
                    jump_sel, sp_sel, fp_sel = control[opi, 7], control[opi, 8], control[opi, 9]
                    if jump_sel == C_NEVER and sp_sel == C_SP and fp_sel == C_FP:
                        mask |= PLAIN
                    if control[opi, 6] < C_ALU and min(jump_sel, sp_sel, fp_sel) >= C_ALU:
                        mask |= ALU_ALONE
                    live[opi] = mask
                # ---- layer 3: operands; MLP: derived address, write address.
                fp_a = fp + a
                fp_b = fp + b
                ca = _clamp(a, zero, last)
                cb = _clamp(b, zero, last)
                cc = _clamp(cf, zero, last)
                cfb = _clamp(fp_b, zero, last)
                r_a = cells[i, np.uintp(int(ca))]
                r_b = cells[i, np.uintp(int(cb))]
                r_c = cells[i, np.uintp(int(cc))]
                r_fb = cells[i, np.uintp(int(cfb))]
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
                cd = _clamp(d, zero, last)
                r_d = cells[i, np.uintp(int(cd))]
                if prefetch:
                    _prefetch(cells, nxt, np.uintp(int(ca)))
                    _prefetch(cells, nxt, np.uintp(int(cb)))
                    _prefetch(cells, nxt, np.uintp(int(cfb)))
                    _prefetch(cells, nxt, np.uintp(int(cd)))
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
                x = cand4[control[opi, 2]]
                y = cand4[control[opi, 3]]
                target = cand4[control[opi, 4]]
                y_zero = y == zero
                # ALU units (order of compiler.ALU_UNITS), then jump conditions, then SP/FP candidates.
                sel = control[opi, 6]
                if mask & ALU_ALONE:  # no select but the value's reads an ALU unit: that one alone
                    value = _alu(sel, x, y, y_zero, zero, one)
                    if mask & PLAIN:  # the candidates "never", SP, FP: what the selects would take
                        jump, new_sp, new_fp = zero, sp, fp
                    else:
                        a_zero = one if r_a == zero else zero
                        cand_last[12] = a_zero
                        cand_last[13] = one - a_zero
                        cand_last[14] = one if x - y <= zero else zero
                        cand_last[15] = sp
                        cand_last[16] = sp + one
                        cand_last[17] = sp - one
                        cand_last[18] = sp + one + a
                        cand_last[19] = link
                        cand_last[20] = fp
                        cand_last[21] = r_t
                        jump = cand_last[control[opi, 7]]
                        new_sp = cand_last[control[opi, 8]]
                        new_fp = cand_last[control[opi, 9]]
                else:
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
                    cand_last[12] = a_zero
                    cand_last[13] = one - a_zero
                    cand_last[14] = one if cand_last[2] <= zero else zero
                    cand_last[15] = sp
                    cand_last[16] = sp + one
                    cand_last[17] = sp - one
                    cand_last[18] = sp + one + a
                    cand_last[19] = link
                    cand_last[20] = fp
                    cand_last[21] = r_t
                    value = cand_last[sel]
                    if mask & PLAIN:  # the candidates "never", SP, FP: what the selects would take
                        jump, new_sp, new_fp = zero, sp, fp
                    else:
                        jump = cand_last[control[opi, 7]]
                        new_sp = cand_last[control[opi, 8]]
                        new_fp = cand_last[control[opi, 9]]
                new_pc = target if jump != zero else pc + width
                # Fault conditions in control.FAULT_CONDITIONS order, as bit k of ``failing``
                # for condition row k (row 1, invalid opcode, is in every rank: its rank is 0
                # on valid rows); the highest rank among the live failing ones wins.
                wpos = waddr >= zero
                if gather_checks:  # the address checks from the gather indices (module docs)
                    failing = (
                        (np.int64(np.trunc(ca) != a) << 3)
                        | (np.int64(np.trunc(cb) != b) << 4)
                        | (np.int64(np.trunc(cc) != cf) << 5)
                        | (np.int64(np.trunc(cd) != d) << 6)
                        | (np.int64(not _check(fp_a, check_lo[6], check_hi[6])) << 7)
                        | (np.int64(np.trunc(cfb) != fp_b) << 8)
                    )
                else:
                    failing = (
                        (np.int64(not _check(a, check_lo[2], check_hi[2])) << 3)
                        | (np.int64(not _check(b, check_lo[3], check_hi[3])) << 4)
                        | (np.int64(not _check(cf, check_lo[4], check_hi[4])) << 5)
                        | (np.int64(not _check(d, check_lo[5], check_hi[5])) << 6)
                        | (np.int64(not _check(fp_a, check_lo[6], check_hi[6])) << 7)
                        | (np.int64(not _check(fp_b, check_lo[7], check_hi[7])) << 8)
                    )
                failing |= np.int64(not _check(pc, check_lo[0], check_hi[0])) | (
                    np.int64(y_zero) << 15
                )
                if mask & WRITE_CONDITIONS:  # the write's conditions, where live
                    prot = protected[np.uintp(_clamp_index(waddr, zero, last))]
                    failing |= (np.int64(wpos and not np.isfinite(value)) << 16) | (
                        np.int64(wpos and prot) << 17
                    )
                if mask & STACK_CONDITIONS:  # the count and stack conditions, where live
                    link_ok = _check(link, check_lo[8], check_hi[8]) and link < sp
                    failing |= (
                        (np.int64(not _check(a, check_lo[1], check_hi[1])) << 2)
                        | (np.int64(top >= n_f) << 9)
                        | (np.int64(link_ok and link >= n_f) << 10)
                        | (np.int64(sp >= end) << 11)
                        | (np.int64(sp + one + a > end) << 12)
                        | (np.int64(sp <= base) << 13)
                        | (np.int64(not link_ok) << 14)
                    )
                rank = control[opi, r + 1]  # invalid opcode (live only on invalid rows)
                failing &= mask
                if failing != 0:  # a fault (rare): the highest rank among the failing ones
                    for j in range(n_conds):
                        if (failing >> j) & 1:
                            rank = max(rank, control[opi, r + j])
                code = fault_by_rank[rank]
                # ---- commit: faulted machines get FAULT only (running: not frozen, above).
                good = code == zero
                halt_op = control[opi, halt_col] != 0
                write_op = control[opi, write_col] != 0
                if good:
                    pc, sp, fp = new_pc, new_sp, new_fp
                    if halt_op:
                        halt = one
                    icount = icount + one
                else:
                    fault = code
                cells[i, w_pc] = pc
                cells[i, w_sp] = sp
                cells[i, w_fp] = fp
                cells[i, w_halt] = halt
                cells[i, w_fault] = fault
                cells[i, w_icount] = icount
                if good and wpos and write_op:
                    w = int(waddr)
                    if w >= n:
                        return ERR_WRITE_OUT_OF_RANGE
                    cells[i, w] = value
                    if w <= reg_top:  # a register cell: read the registers back
                        reload = True
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

    return fused_range


fused_range = _make_fused_range(False)
"""The kernel over machines ``range(start, stop, stride)`` (see :func:`_make_fused_range`)."""
fused_range_prefetch = _make_fused_range(True)
""":data:`fused_range` with the next machine's lines prefetched (module docs)."""


@_njit
def _prefetch_pays(cells, start, stop, stride):
    """Whether a range's rows are large and out of cache (:data:`PREFETCH_ROW_BYTES`)."""
    row_bytes = cells.shape[1] * cells.itemsize
    n_rows = (stop - start + stride - 1) // stride
    return row_bytes >= PREFETCH_ROW_BYTES and n_rows * row_bytes >= PREFETCH_BATCH_BYTES


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
    """The serial driver: :data:`fused_range` (:data:`fused_range_prefetch` where
    :func:`_prefetch_pays`) over every machine of ``cells``, one thread.

    Returns the error code (0 = fine).
    """
    args = (cells, 0, cells.shape[0], 1, n_steps, control, n_selects, fault_by_rank,
            protected, k, reg_read, reg_write, check_lo, check_hi, mode_address, written, split)  # fmt: skip
    if _prefetch_pays(cells, 0, cells.shape[0], 1):
        return fused_range_prefetch(*args)
    return fused_range(*args)


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

    Chunk ``c`` runs :data:`fused_range` (or :data:`fused_range_prefetch`, as the serial
    driver chooses) over machines ``c, c + n_chunks, ...`` (strided,
    so that machines that stop early are spread over the chunks); each chunk has its own
    scratch arrays and its own error code (a ``prange`` body cannot return). Machines are
    independent, so every machine's result equals the serial driver's bit for bit.
    Returns the first nonzero chunk error code in chunk order (0 = fine); after an error
    the other chunks have still run, so only the error code, not the cells, matches the
    serial driver then (an error is a bug report, never a program's fault).
    """
    errors = np.zeros(n_chunks, np.int64)
    for c in numba.prange(n_chunks):
        args = (cells, c, cells.shape[0], n_chunks, n_steps, control, n_selects, fault_by_rank,
                protected, k, reg_read, reg_write, check_lo, check_hi, mode_address, written,
                split)  # fmt: skip
        if _prefetch_pays(cells, c, cells.shape[0], n_chunks):
            errors[c] = fused_range_prefetch(*args)
        else:
            errors[c] = fused_range(*args)
    for c in range(n_chunks):
        if errors[c] != 0:
            return errors[c]
    return 0
