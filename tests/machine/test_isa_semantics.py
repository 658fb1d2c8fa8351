"""Each opcode and operand mode does what isa.py says, in both dtypes."""

from __future__ import annotations

import numpy as np
import pytest

from algind_gym.machine.isa import BY_NAME, OPCODES, WIDTH, encode, opcode
from tests.machine.conftest import run_source


def reg(state, name):
    return state.register(name)[0]


def test_table_is_consistent():
    codes = [op.code for op in OPCODES]
    assert len(set(codes)) == len(codes)
    assert 0 not in codes, "opcode 0 must stay invalid so zeroed code traps"
    assert len(OPCODES) >= 20
    assert all(len(op.operands) <= WIDTH - 1 for op in OPCODES)
    assert opcode("subleq") == BY_NAME["SUBLEQ"].code
    with pytest.raises(ValueError, match="unknown mnemonic"):
        opcode("FROB")
    with pytest.raises(ValueError, match="takes 3 operand"):
        encode("ADD", 1, 2)


def test_movi_mov(dtype):
    s, _ = run_source("movi r0, -2.5\nmov r1, r0\nhalt", dtype=dtype)
    assert reg(s, "r0") == -2.5 and reg(s, "r1") == -2.5
    assert s.dtype == np.dtype(dtype)


def test_load_store_indirect_with_offset(dtype):
    src = """
    .data xs 10 20 30
    .data p xs
    .zero ys 3
    .data q ys
        load r0, p, 2       ; xs[2]
        movi r1, 7
        store q, 1, r1      ; ys[1] = 7
        halt
    """
    s, d = run_source(src, dtype=dtype)
    assert reg(s, "r0") == 30
    assert s.read(d["ys"], 3)[0].tolist() == [0, 7, 0]


def test_frame_relative_and_lea(dtype):
    src = """
        enter 2
        movi r0, 4
        stf 1, r0           ; local 1 = 4
        ldf r1, 1
        lea r2, 1           ; r2 = FP + 1
        ldf r3, -1          ; saved FP
        leave
        halt
    """
    s, _ = run_source(src, dtype=dtype)
    base = s.layout.stack_base
    assert reg(s, "r1") == 4
    # the boot call pushed one return address, so ENTER saved FP at base + 1
    assert reg(s, "r2") == base + 2 + 1
    assert reg(s, "r3") == base  # the FP before ENTER
    assert reg(s, "fp") == base and reg(s, "sp") == base + 1


@pytest.mark.parametrize(
    ("op", "u", "v", "want"),
    [
        ("add", 1.5, 2.25, 3.75),
        ("sub", 1.5, 2.25, -0.75),
        ("mul", -3.0, 0.5, -1.5),
        ("div", 1.0, 4.0, 0.25),
        ("min", 2.0, -1.0, -1.0),
        ("max", 2.0, -1.0, 2.0),
        ("lt", 1.0, 2.0, 1.0),
        ("lt", 2.0, 2.0, 0.0),
        ("le", 2.0, 2.0, 1.0),
        ("le", 3.0, 2.0, 0.0),
        ("eq", 2.0, 2.0, 1.0),
        ("eq", 2.0, 2.5, 0.0),
    ],
)
def test_alu(op, u, v, want, dtype):
    s, _ = run_source(f".data u {u}\n.data v {v}\n{op} r0, u, v\nhalt", dtype=dtype)
    assert reg(s, "r0") == want


def test_alu_rounds_in_the_state_dtype():
    src = ".data u 0.1\n.data v 0.2\nadd r0, u, v\nhalt"
    s32, _ = run_source(src, dtype=np.float32)
    s64, _ = run_source(src, dtype=np.float64)
    assert s32.register("r0")[0] == np.float32(0.1) + np.float32(0.2)
    assert s64.register("r0")[0] == 0.1 + 0.2


def test_min_max_select_first_operand_on_ties():
    # -0.0 == 0.0: MIN/MAX return the first operand, exactly as documented
    s, _ = run_source(".data u -0.0\n.data v 0.0\nmin r0, u, v\nmax r1, v, u\nhalt")
    assert np.signbit(s.register("r0")[0]) and not np.signbit(s.register("r1")[0])


def test_addi(dtype):
    s, _ = run_source("movi r0, 3\naddi r0, r0, -5\nhalt", dtype=dtype)
    assert reg(s, "r0") == -2


def test_jumps():
    src = """
        movi r0, 0
        jz r0, a        ; taken
        movi r1, 99
    a:  movi r2, 1
        jnz r2, b       ; taken
        movi r1, 98
    b:  jz r2, c        ; not taken
        jnz r0, c       ; not taken
        movi r3, 5
        jmp c
        movi r1, 97
    c:  halt
    """
    s, _ = run_source(src)
    assert reg(s, "r1") == 0 and reg(s, "r3") == 5


def test_push_pop_and_stack_pointer():
    s, _ = run_source("movi r0, 1\nmovi r1, 2\npush r0\npush r1\npop r2\npop r3\nhalt")
    assert (reg(s, "r2"), reg(s, "r3")) == (2, 1)
    assert reg(s, "sp") == s.layout.stack_base + 1  # only the boot return address left


def test_nop_and_halt_keep_pc_on_halt():
    s, _ = run_source("nop\nhalt")
    code = s.layout.skill("main").code_start
    assert reg(s, "pc") == code + WIDTH and reg(s, "halt") == 1 and reg(s, "icount") == 2


def test_nested_calls_and_ret_to_boot_halt():
    src = """
        call f
        addi r0, r0, 100
        ret                  ; returns to the boot HALT
    f:  call g
        addi r0, r0, 10
        ret
    g:  movi r0, 1
        ret
    """
    s, _ = run_source(src)
    assert reg(s, "r0") == 111 and reg(s, "halt") == 1
    assert reg(s, "pc") == s.layout.halt_address
    assert reg(s, "sp") == s.layout.stack_base


def test_recursive_factorial_example(dtype):
    from algind_gym.cli import read_source

    src, _ = read_source("factorial")
    for n, want in [(0, 1), (1, 1), (5, 120), (10, 3628800)]:
        s, _ = run_source(src, dtype=dtype, setup=lambda st, d, n=n: st.write(d["n"], [n]))
        assert reg(s, "r0") == want and s.faults[0] == 0


def test_callp_selects_entry_by_mode():
    src = """
    .data hdr 0              ; filled by setup with a fake skill header address
        callp hdr
        halt
    out: movi r0, 1
        ret
    jac: movi r0, 2
        ret
    """
    from algind_gym.machine.program import build_machine

    for mode, want in [(0, 1), (1, 2)]:
        state, program = build_machine(src)
        # a header in free memory: [output entry, jacobian entry]
        header = state.layout.block("memory").start + 10
        state.write(header, [program.labels["out"], program.labels["jac"]])
        state.write(program.data["hdr"][0], [header])
        state.set_register("mode", mode)
        from algind_gym.machine.interpreter import run

        run(state)
        assert state.register("r0")[0] == want


def test_subleq_programs():
    from algind_gym.cli import read_source

    src, _ = read_source("subleq_add")
    s, d = run_source(src)
    assert s.read(d["b"], 1)[0, 0] == 42
    # multiply by repeated subtraction: out = x * y with SUBLEQ only (y > 0)
    mul = """
    .data x 6
    .data y 7
    .data one 1
    .data out 0
    .data nx 0
    .data z 0
        subleq x, nx, loop       ; nx = -x
    loop:
        subleq nx, out, next     ; out += x
    next:
        subleq one, y, end       ; y -= 1; stop at 0
        subleq z, z, loop
    end:
        halt
    """
    s, d = run_source(mul)
    assert s.read(d["out"], 1)[0, 0] == 42


def test_batch_runs_machines_independently():
    src = ".data n 0\nmov r0, n\nmovi r1, 0\nloop: jz r0, done\naddi r1, r1, 2\naddi r0, r0, -1\njmp loop\ndone: halt"

    def setup(st, d):
        st.cells[:, d["n"]] = [0, 1, 5]

    s, _ = run_source(src, batch=3, setup=setup)
    assert s.register("r1").tolist() == [0, 2, 10]
    assert s.register("icount").tolist() == [4, 8, 24]
