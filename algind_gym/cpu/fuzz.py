"""Random valid programs and random machine states, for checking CPUs against the oracle.

:func:`random_machines` fills a batch with one random program per machine (a ``main``
skill that may CALL/CALLP a ``sub`` skill), random data, registers and stack contents.
Every opcode and operand mode appears; most operands are sensible (addresses of writable
cells, pointers into memory, jump targets at instruction starts) so that programs run
for a while, loop and call, and a tunable fraction is garbage: unknown or fractional
opcodes, negative/fractional/out-of-range addresses, protected targets, bad counts,
misaligned jumps, huge values that overflow, zero divisors, full and empty stacks,
corrupted PC/SP/FP. Generation is vectorised over the batch and seeded.
"""

from __future__ import annotations

import numpy as np

from algind_gym.machine.isa import MAX_OPCODE, OPCODES, WIDTH, Operand
from algind_gym.machine.layout import Layout, SkillBlockSpec
from algind_gym.machine.state import MachineState

_NONE, _DST, _SRC, _PTR, _OFF, _IMM, _CNT, _TGT = range(8)
_KIND = {
    Operand.DST: _DST,
    Operand.SRC: _SRC,
    Operand.PTR: _PTR,
    Operand.OFF: _OFF,
    Operand.IMM: _IMM,
    Operand.CNT: _CNT,
    Operand.TGT: _TGT,
}


def fuzz_layout() -> Layout:
    """The small layout the fuzzer uses (~260 cells: every block, two skill blocks)."""
    return Layout(
        n_general=8,
        stack_size=12,
        n_pointers=4,
        memory_size=24,
        skill_blocks=(SkillBlockSpec("main", 2, 96), SkillBlockSpec("sub", 1, 48)),
    )


def _kind_table() -> np.ndarray:
    table = np.zeros((MAX_OPCODE + 1, 3), dtype=np.int64)
    for op in OPCODES:
        for i, kind in enumerate(op.operands):
            table[op.code, i] = _KIND[kind]
    return table


def _values(rng: np.random.Generator, shape, huge: float) -> np.ndarray:
    """Data values: small integers (often valid addresses), floats, zeros, huge numbers."""
    choice = rng.choice(5, size=shape, p=[0.38, 0.28, 0.12, 0.1, 0.12])
    out = np.select(
        [choice == 0, choice == 1, choice == 2, choice == 3],
        [
            rng.integers(0, 64, shape).astype(np.float64),
            rng.normal(0, 10, shape),
            np.zeros(shape),
            huge * rng.uniform(-1, 1, shape),
        ],
        rng.integers(-8, 0, shape).astype(np.float64),
    )
    return out


def random_machines(
    batch: int,
    seed: int | np.random.Generator = 0,
    dtype=np.float32,
    garbage: float = 0.03,
    layout: Layout | None = None,
) -> MachineState:
    """A batch of random machines, each with its own random program and data.

    Args:
        batch: number of machines.
        seed: a seed or a numpy Generator.
        dtype: float32 or float64.
        garbage: probability that any one field, opcode or register is garbage.
        layout: defaults to :func:`fuzz_layout`; needs skill blocks ``main`` and ``sub``.

    Example:
        >>> s = random_machines(4, seed=1)
        >>> s.batch, bool(s.running.any())
        (4, True)
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    lay = layout or fuzz_layout()
    n = lay.n_cells
    huge = float(np.finfo(dtype).max) / 4
    state = MachineState.zeros(lay, batch, dtype)
    cells = np.zeros((batch, n))
    cells[:] = state.cells

    regs = lay.blocks["registers"]
    stack, ptrs, mem = lay.blocks["stack"], lay.blocks["pointers"], lay.blocks["memory"]
    main, sub = lay.skill("main"), lay.skill("sub")
    general = np.arange(lay.register("r0"), regs.end)
    writable = np.concatenate(
        [general, np.arange(stack.start, stack.end), np.arange(ptrs.start, mem.end)]
    )
    readable = np.arange(n)
    pointer_cells = np.concatenate([ptrs.start + 4 * np.arange(lay.n_pointers), general[:3]])
    bad_addr = np.asarray([-1.0, -3.0, 2.5, n, n + 7, 1e9, 0.0, 4.0, 5.0, 6.0, main.code_start])

    # Data: registers, stack, pointer table, memory.
    cells[:, general] = _values(rng, (batch, general.size), huge)
    cells[:, general[:3]] = rng.integers(mem.start, mem.end, (batch, 3))
    cells[:, stack.start : stack.end] = _values(rng, (batch, stack.size), huge)
    # Half the stack holds return addresses (instruction starts), so RET usually lands in code.
    returns = main.code_start + WIDTH * rng.integers(
        0, main.spec.code_size // WIDTH, (batch, stack.size)
    )
    cells[:, stack.start : stack.end] = np.where(
        rng.random((batch, stack.size)) < 0.5, returns, cells[:, stack.start : stack.end]
    )
    cells[:, ptrs.start : ptrs.end] = rng.integers(mem.start, mem.end - 4, (batch, ptrs.size))
    cells[:, ptrs.start + 4] = sub.header  # a skill reference for CALLP
    cells[:, general[2]] = np.where(rng.random(batch) < 0.5, sub.header, cells[:, general[2]])
    cells[:, mem.start : mem.end] = _values(rng, (batch, mem.size), huge)
    cells[:, lay.register("mode")] = rng.integers(0, 2, batch)
    depth = rng.integers(0, stack.size + 1, batch)
    cells[:, lay.register("sp")] = stack.start + depth
    cells[:, lay.register("fp")] = stack.start + rng.integers(0, stack.size + 1, batch)
    cells[:, lay.register("pc")] = main.code_start
    cells[:, lay.register("icount")] = rng.integers(0, 5, batch)

    kinds = _kind_table()
    for block, last in ((main, "HALT"), (sub, "RET")):
        n_instr = block.spec.code_size // WIDTH
        starts = block.code_start + WIDTH * np.arange(n_instr)
        ops = rng.integers(1, MAX_OPCODE + 1, (batch, n_instr)).astype(np.float64)
        ops[:, -1] = next(op.code for op in OPCODES if op.name == last)
        bad = rng.random(ops.shape) < garbage
        ops = np.where(bad, rng.choice([0.0, MAX_OPCODE + 1.0, 2.5, -1.0, 99.0], ops.shape), ops)
        kind = kinds[np.clip(ops, 0, MAX_OPCODE).astype(np.int64)]  # (batch, n_instr, 3)
        shape = kind.shape
        cand = {
            _DST: rng.choice(writable, shape).astype(np.float64),
            _SRC: rng.choice(readable, shape).astype(np.float64),
            _PTR: rng.choice(pointer_cells, shape).astype(np.float64),
            _OFF: rng.integers(-3, 4, shape).astype(np.float64),
            _IMM: _values(rng, shape, huge),
            _CNT: rng.integers(0, 4, shape).astype(np.float64),
            _TGT: rng.choice(np.concatenate([starts, [sub.code_start]]), shape).astype(np.float64),
        }
        cand[_DST] = np.where(rng.random(shape) < 0.5, rng.choice(general, shape), cand[_DST])
        fields = np.zeros(shape)
        for k, v in cand.items():
            fields = np.where(kind == k, v, fields)
        bad = rng.random(shape) < garbage
        garbage_field = np.where(
            kind == _CNT, rng.choice([-1.0, 0.5, 1e9], shape), rng.choice(bad_addr, shape)
        )
        fields = np.where(bad & (kind != _NONE) & (kind != _IMM), garbage_field, fields)
        code = np.concatenate([ops[..., None], fields], axis=2).reshape(batch, -1)
        cells[:, block.code_start : block.end] = code
    cells[:, sub.header] = sub.code_start
    cells[:, sub.header + 1] = np.where(rng.random(batch) < 0.5, lay.trap_address, sub.code_start)
    cells[:, main.header] = main.code_start

    # Corrupted special registers, now and then.
    for name, junk in (
        ("pc", [main.code_start + 1.0, -4.0, 1e6, 0.5, n - 2.0, lay.halt_address]),
        ("sp", [stack.start - 1.0, stack.end + 0.0, stack.start + 0.5, -0.5, 1e6, 3.0]),
        ("fp", [stack.start + 0.0, -2.0, 2.5, 1e6, stack.end + 1.0]),
        ("mode", [0.5, -1.0, 1e6]),
        ("halt", [1.0, 0.5]),
        ("fault", [2.0, 0.5]),
    ):
        hit = rng.random(batch) < garbage / 2
        cells[hit, lay.register(name)] = rng.choice(junk, int(hit.sum()))

    state.cells[:] = cells.astype(dtype)
    state.cells[~np.isfinite(state.cells)] = 0
    return state
