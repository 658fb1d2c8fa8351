"""Assembler errors name the line and column; assemble/disassemble round-trips exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from algind_gym.machine.assembler import AssemblyError, assemble, parse
from algind_gym.machine.disassembler import disassemble, disassemble_program
from algind_gym.machine.isa import OPCODES, WIDTH, Operand
from algind_gym.machine.layout import Layout, SkillBlockSpec
from algind_gym.machine.program import Program, build_machine

LAYOUT = Layout(skill_blocks=(SkillBlockSpec("vadd", 3, 256),))
SB = LAYOUT.skill("vadd")


def asm(src: str, **kw):
    return assemble(src, LAYOUT, code_base=SB.code_start, slot_base=SB.slot(0), **kw)


@pytest.mark.parametrize(
    ("source", "line", "column", "fragment"),
    [
        ("halt\nfrob r0, r1", 2, 1, "unknown mnemonic 'frob'"),
        ("  jmp nowhere", 1, 7, "unknown symbol 'nowhere'"),
        ("movi r0", 1, 1, "MOVI takes 2 operand(s) (dst, imm), got 1"),
        ("add r0, r1", 1, 1, "ADD takes 3 operand(s)"),
        ("halt\n\nmovi r0, 1.2.3", 3, 10, "bad number '1.2.3'"),
        ("movi r0, 1e999", 1, 10, "bad number"),
        ("mov r0, r99", 1, 9, "unknown symbol 'r99'"),
        ("mov 2.5, r0", 1, 5, "must be an integer"),
        ("mov 99999, r0", 1, 5, "outside the state"),
        ("enter -1", 1, 7, "count must be >= 0"),
        ("a: halt\na: halt", 2, 1, "label 'a' defined twice"),
        (".data xs 1 two", 1, 12, "unknown symbol 'two'"),  # data may name addresses
        (".bogus", 1, 1, "unknown directive"),
        (".word 1 2 3", 1, 6, ".word takes exactly 4 numbers"),
        ("add r0, r1, ", 1, 12, "empty operand"),
        (".skill f(x: tensor)", 1, 7, "unknown type 'tensor'"),
        (".jacobian nope\nhalt", 1, 11, "unknown label 'nope'"),
    ],
)
def test_errors_name_line_and_column(source, line, column, fragment):
    with pytest.raises(AssemblyError) as info:
        build_machine(source, filename="prog.asm")
    err = info.value
    assert fragment in err.message, err.message
    assert (err.filename, err.line) == ("prog.asm", line)
    assert err.column == column, str(err)
    assert str(err).startswith(f"prog.asm:{line}:{column}: ")


def test_symbols_registers_slots_and_expressions():
    src = """
    .skill vadd(x: vector, y: vector, out: vector)
    .equ K 3
        mov  r0, x.rows
        load r1, x, K
        add  r2, y.addr, r0
        movi r3, out+1
        jmp  end-4
    end:
        ret
    """
    p = asm(src)
    lay = LAYOUT
    assert p.args == (("x", "vector"), ("y", "vector"), ("out", "vector"))
    assert p.code[0:4] == (4.0, lay.register("r0"), SB.slot(0) + 1, 0.0)
    assert p.code[4:8] == (5.0, lay.register("r1"), SB.slot(0), 3.0)
    assert p.code[8:12] == (10.0, lay.register("r2"), SB.slot(1), lay.register("r0"))
    assert p.code[12:16] == (3.0, lay.register("r3"), SB.slot(2) + 1, 0.0)
    assert p.code[16:20] == (20.0, p.labels["end"] - 4, 0.0, 0.0)


def test_program_json_round_trip_and_bad_input():
    _state, p = build_machine("""
    .data xs 1 2
    start: halt
    """)
    assert Program.from_dict(p.to_dict()) == p
    with pytest.raises(ValueError, match="format tag"):
        Program.from_dict({"code": []})
    bad = p.to_dict() | {"version": 99}
    with pytest.raises(ValueError, match="version 99"):
        Program.from_dict(bad)


# ------------------------------------------------------------- round trip
N = LAYOUT.n_cells
CODE = SB.code_start


def field(kind: Operand, n_instr: int):
    if kind.is_address:
        return st.integers(0, N - 1).map(float)
    if kind is Operand.TGT:
        inside = st.integers(0, max(n_instr - 1, 0)).map(lambda i: float(CODE + WIDTH * i))
        return st.one_of(inside, st.integers(-5, 2 * N).map(float))
    if kind is Operand.CNT:
        return st.integers(0, 100).map(float)
    if kind is Operand.OFF:
        return st.integers(-N, N).map(float)
    return st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def instructions(draw):
    n = draw(st.integers(1, 24))
    cells: list[float] = []
    for _ in range(n):
        if draw(st.integers(0, 9)) == 0:  # raw cells: anything finite
            cells += draw(
                st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=4, max_size=4)
            )
            continue
        op = draw(st.sampled_from(OPCODES))
        fields = [draw(field(k, n)) for k in op.operands]
        cells += [float(op.code), *fields] + [0.0] * (WIDTH - 1 - len(fields))
    return cells


def same_bits(a, b) -> bool:
    return np.array_equal(
        np.asarray(a, np.float64).view(np.int64), np.asarray(b, np.float64).view(np.int64)
    )


@settings(max_examples=300, deadline=None)
@given(instructions())
def test_disassemble_then_assemble_is_identity(cells):
    text = disassemble(
        cells, LAYOUT, code_base=CODE, slot_names=["x", "y", "out", "weights"], slot_base=SB.slot(0)
    )
    again = assemble(
        ".skill vadd(x: vector, y: vector, out: vector)\n.weights\n" + text,
        LAYOUT,
        code_base=CODE,
        slot_base=SB.slot(0),
    )
    assert same_bits(again.code, cells), text
    # and the text is a fixed point: disassembling the re-assembled cells gives it again
    assert (
        disassemble(
            again.code,
            LAYOUT,
            code_base=CODE,
            slot_names=["x", "y", "out", "weights"],
            slot_base=SB.slot(0),
        )
        == text
    )


@pytest.mark.parametrize("example", ["factorial", "dot_product", "subleq_add"])
def test_examples_round_trip(example):
    from algind_gym.cli import read_source

    text, _ = read_source(example)
    state, p = build_machine(text)
    listing = disassemble_program(p, state.layout)
    state2, p2 = build_machine(listing)
    assert p2.code == p.code and p2.data == p.data and state2.layout == state.layout


def test_parse_sizes_do_not_depend_on_placement():
    parsed = parse(".data a 1 2 3\n.zero b 4\nhalt\nnop")
    assert parsed.code_size == 2 * WIDTH and parsed.data_size == 7
