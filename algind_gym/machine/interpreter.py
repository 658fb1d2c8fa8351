"""The reference interpreter: plain numpy, batched, written to be obviously right.

It is the oracle that the Transformer CPU is checked against bit for bit, and the
``"reference"`` backend. It implements the semantics written in
:mod:`algind_gym.machine.isa` and nothing else.

One :func:`step` executes one instruction on every running machine of a batch:

1. fetch ``[op, a, b, c]`` at PC (ADDRESS if PC is not a valid fetch address);
2. decode; the opcode's handler (one small function per opcode, below) computes the
   instruction's *effects*: at most one memory write ``(address, value)`` and the new PC,
   SP, FP and HALT, raising faults in the documented order;
3. commit: rows that faulted get only ``FAULT = code``; the others get the write, the
   register updates and ``ICOUNT += 1``.

Machines are grouped by opcode so each handler runs once per step on all the machines
that execute it; this keeps the code one-instruction-at-a-time readable while staying
vectorised over the batch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from algind_gym.machine.isa import BY_NAME, MAX_OPCODE, OPCODES, WIDTH, Fault, Operand
from algind_gym.machine.layout import Layout
from algind_gym.machine.state import MachineState

PC, SP, FP, MODE, HALT, FAULT, ICOUNT = range(7)


def _is_int(x: np.ndarray) -> np.ndarray:
    return np.floor(x) == x


class _Step:
    """Decoded instruction fields and pending effects for the running machines of one step."""

    def __init__(self, cells: np.ndarray, layout: Layout, rows: np.ndarray) -> None:
        self.cells, self.layout, self.rows = cells, layout, rows
        self.n_cells = cells.shape[1]
        n = rows.size
        self.pc = cells[rows, PC]
        self.sp = cells[rows, SP]
        self.fp = cells[rows, FP]
        self.mode = cells[rows, MODE]
        self.fault = np.zeros(n, dtype=np.int64)
        # Effects, defaulting to "fall through, change nothing".
        self.w_addr = np.full(n, -1, dtype=np.int64)
        self.w_val = np.zeros(n, dtype=cells.dtype)
        self.new_pc = self.pc + WIDTH
        self.new_sp = self.sp.copy()
        self.new_fp = self.fp.copy()
        self.halt = np.zeros(n, dtype=bool)

    # -- faults ---------------------------------------------------------------
    def raise_fault(self, s: np.ndarray, bad: np.ndarray, code: Fault) -> None:
        """Set ``code`` on rows ``s[bad]`` that have no earlier fault."""
        hit = s[bad]
        hit = hit[self.fault[hit] == 0]
        self.fault[hit] = code

    def address(self, s: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Check that ``x`` are addresses inside the state (ADDRESS fault otherwise).

        Returns integer addresses, with 0 standing in for the faulted rows so that the
        handler can keep indexing harmlessly.
        """
        ok = _is_int(x) & (x >= 0) & (x < self.n_cells)
        self.raise_fault(s, ~ok, Fault.ADDRESS)
        return np.where(ok, x, 0).astype(np.int64)

    def read(self, s: np.ndarray, addr: np.ndarray) -> np.ndarray:
        return self.cells[self.rows[s], addr]

    def write(self, s: np.ndarray, addr: np.ndarray, value: np.ndarray) -> None:
        self.w_addr[s] = addr
        self.w_val[s] = value


# ----------------------------------------------------------------- handlers
# One function per opcode; ``s`` indexes the running machines that execute it and
# ``a, b, c`` are the instruction fields of those machines.
Handler = Callable[[_Step, np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]


def _halt(x, s, a, b, c):
    x.halt[s] = True
    x.new_pc[s] = x.pc[s]


def _nop(x, s, a, b, c):
    pass


def _movi(x, s, a, b, c):
    x.write(s, x.address(s, a), b)


def _mov(x, s, a, b, c):
    d = x.address(s, a)
    x.write(s, d, x.read(s, x.address(s, b)))


def _load(x, s, a, b, c):
    d = x.address(s, a)
    p = x.address(s, b)
    src = x.address(s, x.read(s, p) + c)
    x.write(s, d, x.read(s, src))


def _store(x, s, a, b, c):
    p = x.address(s, a)
    v = x.read(s, x.address(s, c))
    x.write(s, x.address(s, x.read(s, p) + b), v)


def _ldf(x, s, a, b, c):
    d = x.address(s, a)
    x.write(s, d, x.read(s, x.address(s, x.fp[s] + b)))


def _stf(x, s, a, b, c):
    v = x.read(s, x.address(s, b))
    x.write(s, x.address(s, x.fp[s] + a), v)


def _lea(x, s, a, b, c):
    x.write(s, x.address(s, a), x.fp[s] + b)


def _binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Handler:
    def handler(x, s, a, b, c):
        d = x.address(s, a)
        u = x.read(s, x.address(s, b))
        v = x.read(s, x.address(s, c))
        x.write(s, d, fn(u, v))

    return handler


def _div(x, s, a, b, c):
    d = x.address(s, a)
    u = x.read(s, x.address(s, b))
    v = x.read(s, x.address(s, c))
    x.raise_fault(s, v == 0, Fault.DIVISION_BY_ZERO)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        x.write(s, d, u / np.where(v == 0, 1, v))


def _addi(x, s, a, b, c):
    d = x.address(s, a)
    x.write(s, d, x.read(s, x.address(s, b)) + c)


def _jmp(x, s, a, b, c):
    x.new_pc[s] = a


def _jz(x, s, a, b, c):
    v = x.read(s, x.address(s, a))
    x.new_pc[s] = np.where(v == 0, b, x.pc[s] + WIDTH)


def _jnz(x, s, a, b, c):
    v = x.read(s, x.address(s, a))
    x.new_pc[s] = np.where(v != 0, b, x.pc[s] + WIDTH)


def _push_return(x, s, target):
    """Shared by CALL and CALLP: push PC + WIDTH, jump to ``target``."""
    sp = x.sp[s]
    x.raise_fault(s, sp >= x.layout.stack_end, Fault.STACK_OVERFLOW)
    x.write(s, np.where(sp < x.layout.stack_end, sp, 0).astype(np.int64), x.pc[s] + WIDTH)
    x.new_sp[s] = sp + 1
    x.new_pc[s] = target


def _call(x, s, a, b, c):
    _push_return(x, s, a)


def _callp(x, s, a, b, c):
    header = x.read(s, x.address(s, a))
    entry = x.address(s, header + x.mode[s])
    _push_return(x, s, x.read(s, entry))


def _pop_guard(x, s) -> np.ndarray:
    """STACK_UNDERFLOW unless the stack holds a value; returns the top address.

    A corrupted SP (set from outside; programs cannot write it) may put the top beyond
    the state: that read address is an ADDRESS fault (ISA fault rule 3), not a crash.
    """
    sp = x.sp[s]
    x.raise_fault(s, sp <= x.layout.stack_base, Fault.STACK_UNDERFLOW)
    top = np.where(sp > x.layout.stack_base, sp - 1, x.layout.stack_base)
    x.raise_fault(s, top >= x.n_cells, Fault.ADDRESS)
    return np.where(top < x.n_cells, top, x.layout.stack_base).astype(np.int64)


def _ret(x, s, a, b, c):
    top = _pop_guard(x, s)
    x.new_pc[s] = x.read(s, top)
    x.new_sp[s] = x.sp[s] - 1


def _push(x, s, a, b, c):
    v = x.read(s, x.address(s, a))
    sp = x.sp[s]
    x.raise_fault(s, sp >= x.layout.stack_end, Fault.STACK_OVERFLOW)
    x.write(s, np.where(sp < x.layout.stack_end, sp, 0).astype(np.int64), v)
    x.new_sp[s] = sp + 1


def _pop(x, s, a, b, c):
    d = x.address(s, a)
    top = _pop_guard(x, s)
    x.write(s, d, x.read(s, top))
    x.new_sp[s] = x.sp[s] - 1


def _enter(x, s, a, b, c):
    sp = x.sp[s]
    x.raise_fault(s, sp + 1 + a > x.layout.stack_end, Fault.STACK_OVERFLOW)
    x.write(s, np.where(sp < x.layout.stack_end, sp, 0).astype(np.int64), x.fp[s])
    x.new_fp[s] = sp + 1
    x.new_sp[s] = sp + 1 + a


def _leave(x, s, a, b, c):
    t = x.fp[s] - 1
    ok = _is_int(t) & (t >= x.layout.stack_base) & (t < x.sp[s])
    x.raise_fault(s, ~ok, Fault.STACK_UNDERFLOW)
    x.raise_fault(s, ok & (t >= x.n_cells), Fault.ADDRESS)  # corrupted SP/FP: no crash
    ok &= t < x.n_cells
    ti = np.where(ok, t, x.layout.stack_base).astype(np.int64)
    x.new_sp[s] = t
    x.new_fp[s] = x.read(s, ti)


def _subleq(x, s, a, b, c):
    u = x.read(s, x.address(s, a))
    d = x.address(s, b)
    result = x.read(s, d) - u
    x.write(s, d, result)
    x.new_pc[s] = np.where(result <= 0, c, x.pc[s] + WIDTH)


def _where(cond: np.ndarray, dtype) -> np.ndarray:
    return cond.astype(dtype)


HANDLERS: dict[int, Handler] = {
    BY_NAME["HALT"].code: _halt,
    BY_NAME["NOP"].code: _nop,
    BY_NAME["MOVI"].code: _movi,
    BY_NAME["MOV"].code: _mov,
    BY_NAME["LOAD"].code: _load,
    BY_NAME["STORE"].code: _store,
    BY_NAME["LDF"].code: _ldf,
    BY_NAME["STF"].code: _stf,
    BY_NAME["LEA"].code: _lea,
    BY_NAME["ADD"].code: _binary(lambda u, v: u + v),
    BY_NAME["SUB"].code: _binary(lambda u, v: u - v),
    BY_NAME["MUL"].code: _binary(lambda u, v: u * v),
    BY_NAME["DIV"].code: _div,
    BY_NAME["MIN"].code: _binary(lambda u, v: np.where(u <= v, u, v)),
    BY_NAME["MAX"].code: _binary(lambda u, v: np.where(u >= v, u, v)),
    BY_NAME["ADDI"].code: _addi,
    BY_NAME["LT"].code: _binary(lambda u, v: _where(u < v, u.dtype)),
    BY_NAME["LE"].code: _binary(lambda u, v: _where(u <= v, u.dtype)),
    BY_NAME["EQ"].code: _binary(lambda u, v: _where(u == v, u.dtype)),
    BY_NAME["JMP"].code: _jmp,
    BY_NAME["JZ"].code: _jz,
    BY_NAME["JNZ"].code: _jnz,
    BY_NAME["CALL"].code: _call,
    BY_NAME["CALLP"].code: _callp,
    BY_NAME["RET"].code: _ret,
    BY_NAME["PUSH"].code: _push,
    BY_NAME["POP"].code: _pop,
    BY_NAME["ENTER"].code: _enter,
    BY_NAME["LEAVE"].code: _leave,
    BY_NAME["SUBLEQ"].code: _subleq,
}
assert set(HANDLERS) == {op.code for op in OPCODES}, "every opcode in the table needs a handler"
_KNOWN = np.zeros(MAX_OPCODE + 1, dtype=bool)  # lookup: opcode -> has a handler
_KNOWN[list(HANDLERS)] = True
_COUNT = np.zeros(MAX_OPCODE + 1, dtype=bool)  # lookup: opcode -> field a is a count
_COUNT[[op.code for op in OPCODES if op.operands[:1] == (Operand.CNT,)]] = True


def step_cells(cells: np.ndarray, layout: Layout) -> None:
    """Execute one instruction on every running machine of ``cells`` (in place)."""
    rows = np.flatnonzero((cells[:, HALT] == 0) & (cells[:, FAULT] == 0))
    if rows.size == 0:
        return
    x = _Step(cells, layout, rows)
    n_cells = cells.shape[1]

    # 1. fetch
    pc_ok = _is_int(x.pc) & (x.pc >= 0) & (x.pc <= n_cells - WIDTH)
    x.fault[~pc_ok] = Fault.ADDRESS
    pci = np.where(pc_ok, x.pc, 0).astype(np.int64)
    instr = cells[rows[:, None], pci[:, None] + np.arange(WIDTH)]
    op, a, b, c = instr.T

    # 2. decode
    known = _is_int(op) & (op >= 1) & (op <= MAX_OPCODE)
    opi = np.where(known, op, 0).astype(np.int64)
    known &= _KNOWN[opi]
    bad_count = _COUNT[opi] & ~(_is_int(a) & (a >= 0))
    x.raise_fault(np.arange(rows.size), (~known | bad_count) & pc_ok, Fault.INVALID_INSTRUCTION)
    opi[x.fault != 0] = 0  # faulted rows execute nothing

    # 3. execute: one handler per opcode present, on all machines that run it
    order = np.argsort(opi, kind="stable")
    codes, starts = np.unique(opi[order], return_index=True)
    for code, s in zip(codes, np.split(order, starts[1:]), strict=True):
        if code == 0:
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            HANDLERS[int(code)](x, s, a[s], b[s], c[s])

    # 4. write checks: value finite, then target not protected
    writes = np.flatnonzero(x.w_addr >= 0)
    x.raise_fault(writes, ~np.isfinite(x.w_val[writes]), Fault.NON_FINITE)
    x.raise_fault(writes, layout.protected_mask[x.w_addr[writes]], Fault.PROTECTED_WRITE)

    # 5. commit
    ok = x.fault == 0
    bad_rows = rows[~ok]
    cells[bad_rows, FAULT] = x.fault[~ok]
    w = ok & (x.w_addr >= 0)
    cells[rows[w], x.w_addr[w]] = x.w_val[w]
    r = rows[ok]
    cells[r, PC] = x.new_pc[ok]
    cells[r, SP] = x.new_sp[ok]
    cells[r, FP] = x.new_fp[ok]
    cells[r, HALT] = np.where(x.halt[ok], 1, cells[r, HALT])
    cells[r, ICOUNT] += 1


def step(state: MachineState) -> MachineState:
    """Execute one instruction on every running machine of ``state`` (in place); returns it."""
    step_cells(state.cells, state.layout)
    return state


def run(
    state: MachineState,
    max_steps: int = 10_000,
    step_fn: Callable[[MachineState], MachineState] = step,
) -> MachineState:
    """Step until every machine halts or faults, at most ``max_steps`` times (in place).

    Machines still running after ``max_steps`` steps get ``BUDGET_EXHAUSTED``. Every backend
    shares this driver, so budget faults agree across backends by construction.
    """
    if max_steps < 0:
        raise ValueError(f"max_steps must be >= 0, got {max_steps}")
    for _ in range(max_steps):
        if not state.running.any():
            break
        step_fn(state)
    still = state.running
    state.cells[still, FAULT] = Fault.BUDGET_EXHAUSTED
    return state
