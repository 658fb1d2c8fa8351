"""Compile the micro-op table and a layout into the blocks of the Transformer CPU.

Input: :data:`~algind_gym.cpu_v2.compiler.MICROCODE` (per opcode: operand sources, ALU unit,
write target, PC/SP/FP updates, stack check), the ISA table (operand kinds, fault order)
and a :class:`~algind_gym.machine.layout.Layout`; output: a
:class:`~algind_gym.cpu_v2.blocks.Circuit`. The decode table (one row of control signals
per opcode, :func:`~algind_gym.cpu_v2.compiler.decode_table`) becomes the second matrix of
the decoder MLP; every later block is gated by those control channels, so what an opcode
does is written only in the micro-op table.

One instruction is one pass through these layers (CPU token unless said otherwise):

===  ===========================================  =============================================
 #   attention                                    MLP
===  ===========================================  =============================================
 1   registers PC..ICOUNT (constant queries)      decoders of PC..PC+3, SP-1, SP, FP-1 (+1...)
 2   fetch op, a, b, c; stack top                 decode (op -> control); decoders of a, b, c,
                                                  FP+a, FP+b, frame link; count / link checks
 3   cell[a], cell[b], cell[c], cell[FP+b],       pointer and offset selects; next SP and FP;
     cell[FP-1]                                   ``== 0`` tests
 4   -                                            decoder of ``d = cell[p] + off``; integer tests
 5   cell[d]                                      x, y, jump-target selects; write address
 6   protected flag at the write address          ALU units (add, sub, product, divide, steps)
 7   -                                            gates: min/max, sign bits, overflow, jump
 8   -                                            result selects; next PC; fault conditions
 9   -                                            fault priority encoder
10   -                                            commit gates
11   write-back: cells attend to 7 write heads    (cell tokens) gated select old/new
===  ===========================================  =============================================
"""

from __future__ import annotations

import numpy as np

from algind_gym.cpu_v2 import chamber as ch
from algind_gym.cpu_v2.blocks import MLP, Circuit, Layer, Stream
from algind_gym.cpu_v2.compiler import (
    FAULT_PRIORITY,
    GROUPS,
    decode_columns,
    decode_table,
    n_address_bits,
)
from algind_gym.machine.isa import OPCODES, WIDTH
from algind_gym.machine.layout import PROTECTED_REGISTERS, SPECIAL_REGISTERS, Layout

X_CHANNELS = {"imm_b": "b", "imm_c": "c"}
"""Micro-op source names that are instruction fields (the rest are channels of that name)."""
REGISTER_CANDIDATES = {
    "sp": "sp",
    "sp_plus_1": "sp1",
    "sp_minus_1": "spm1",
    "sp_plus_1_plus_a": "sp1a",
    "fp_minus_1": "link",
    "fp": "fp",
    "r_t": "r_t",
}
WRITE_CODES = {"a": "a", "b": "b", "d": "d", "fp_a": "fpa", "stack": "sw"}
FAULT_CLASSES = [name for name, _ in FAULT_PRIORITY]


def _mantissa_half(dtype) -> float:
    """``2^(p-1)``: adding it rounds a number in ``[0, 2^(p-1))`` to an integer."""
    return float(2 ** (np.finfo(dtype).nmant))


def compile_circuit(layout: Layout, dtype=np.float32) -> Circuit:
    """Build every block for ``layout`` (the count/link integer tests depend on ``dtype``).

    Example:
        >>> from algind_gym.machine.layout import Layout
        >>> c = compile_circuit(Layout(n_general=2, stack_size=4, n_pointers=1, memory_size=8))
        >>> len(c.layers), c.n_blocks
        (11, 17)
    """
    n = layout.n_cells
    k = n_address_bits(n)
    base, end = layout.stack_base, layout.stack_end
    big = _mantissa_half(dtype)
    cols = decode_columns()
    table = decode_table()
    ctl = {name: f"ctl.{name}" for name in cols.names}

    cpu, cell = Stream("cpu"), Stream("cell")
    cell.add("v", "s", *[f"code.{i}" for i in range(k)], "prot", "one")
    cpu.add("cpu")
    layers: list[Layer] = []

    def declare(*names: str) -> None:
        for name in names:
            if name not in cpu.index:
                cpu.add(name)

    def pair(*names: str) -> None:
        for name in names:
            declare(f"{name}.v", f"{name}.s")

    def codes(*names: str) -> None:
        for name in names:
            declare(*ch.code_channels(name, k))

    def mlp(name: str, units, doc: str = "") -> MLP:
        return MLP(name, "cpu", list(units), doc=doc)

    regs = list(SPECIAL_REGISTERS)
    # ------------------------------------------------------------- 1: registers
    pair(*regs)
    heads = [ch.read_head(f"read_{r}", k, layout.register(r), r) for r in regs]
    codes("f0", "f1", "f2", "f3", "top", "sw")
    pair("sp1", "spm1", "link", "icount1", "pc4")
    declare("ok_pc", "wpos_sw", "top_ge_n", "sp_ge_end", "sp_le_base", "halt_zero", "fault_zero")
    fetch_out = ch.code_outputs("f0", k, ok="ok_pc")

    def fetch_codes(m: int) -> dict[str, float]:
        out = fetch_out(m)
        for i in range(1, WIDTH):
            out |= dict(zip(ch.code_channels(f"f{i}", k), ch.code(m + i, k), strict=True))
        return out

    top = [(base, True, _diff("top", k, base - 1, base))]
    top += [(m, False, _diff("top", k, m - 1, m - 2)) for m in range(base + 1, n + 1)]
    sw = [(-1, True, _diff("sw", k, 0, None) | {"wpos_sw": 1.0})]
    sw += [(m, False, _diff("sw", k, m, m - 1)) for m in range(1, end)]
    sw += [(end, False, _diff("sw", k, 0, end - 1))]

    def plus(name: str, src: str, c: float) -> list:
        return [
            ch.linear(f"{name}.v", {f"{src}.v": 1.0}, c, act="saturate"),
            ch.step(f"{name}.s", {f"{src}.v": -1.0}, -c, strict=True),
        ]

    m1 = [
        ch.integer_bank("decode_pc", {"pc.v": 1.0}, 0, n - WIDTH, fetch_codes),
        ch.step_bank("decode_top", {"sp.v": 1.0}, top, doc="code of trunc(max(SP - 1, base))"),
        ch.step_bank("decode_stack", {"sp.v": 1.0}, sw, doc="code of the push address"),
        mlp(
            "registers",
            [
                ch.const(dict(zip(ch.code_channels("top", k), ch.code(base, k), strict=True))),
                ch.step("top_ge_n", {"sp.v": 1.0}, -(n + 1.0)),
                ch.step("sp_ge_end", {"sp.v": 1.0}, -float(end)),
                ch.step("sp_le_base", {"sp.v": -1.0}, float(base)),
                *plus("sp1", "sp", 1.0),
                *plus("spm1", "sp", -1.0),
                *plus("link", "fp", -1.0),
                *plus("icount1", "icount", 1.0),
                *plus("pc4", "pc", float(WIDTH)),
                *ch.equals_zero("halt_zero", "halt.v"),
                *ch.equals_zero("fault_zero", "fault.v"),
                ch.const({"halt_zero": -1.0, "fault_zero": -1.0}),
            ],
        ),
    ]
    layers.append(Layer("L1", heads, m1))

    # ------------------------------------------------------------- 2: fetch, decode
    pair("op", "a", "b", "c", "r_top")
    heads = [ch.read_head(f"fetch_{f}", k, f"f{i}", f) for i, f in enumerate(("op", "a", "b", "c"))]
    heads.append(ch.read_head("read_top", k, "top", "r_top"))
    declare(*ctl.values())
    codes("a", "b", "c", "fpa", "fpb", "link")
    declare("ok_a", "ok_b", "ok_c", "ok_fpa", "ok_fpb", "ok_link", "u_cnt", "cnt_ge0", "cnt_big")
    declare("u_link", "link_ge_base", "link_lt_sp", "link_big", "link_ge_n", "enter_ovf")
    declare("running")
    pair("sp1a")
    decode_points = []
    for op in OPCODES:
        row = {ctl[cols.names[j]]: float(v) for j, v in enumerate(table[op.code]) if v}
        decode_points += [(op.code, False, row), (op.code, True, {c: -v for c, v in row.items()})]
    m2 = [
        ch.step_bank("decode", {"op.v": 1.0}, decode_points, doc="opcode -> control signals"),
        *[
            ch.integer_bank(
                f"decode_{f}", {f"{f}.v": 1.0}, 0, n - 1, ch.code_outputs(f, k, f"ok_{f}")
            )
            for f in ("a", "b", "c")
        ],
        ch.integer_bank(
            "decode_fp_a", {"fp.v": 1.0, "a.v": 1.0}, 0, n - 1, ch.code_outputs("fpa", k, "ok_fpa")
        ),
        ch.integer_bank(
            "decode_fp_b", {"fp.v": 1.0, "b.v": 1.0}, 0, n - 1, ch.code_outputs("fpb", k, "ok_fpb")
        ),
        ch.integer_bank(
            "decode_link", {"link.v": 1.0}, base, n - 1, ch.code_outputs("link", k, "ok_link")
        ),
        mlp(
            "checks",
            [
                ch.linear("u_cnt", {"a.v": 1.0}, big, act="saturate"),
                ch.step("cnt_ge0", {"a.v": 1.0}),
                ch.step("cnt_big", {"a.v": 1.0}, -big),
                ch.linear("u_link", {"link.v": 1.0}, big, act="saturate"),
                ch.step("link_ge_base", {"link.v": 1.0}, -float(base)),
                ch.step("link_lt_sp", {"sp.v": 1.0, "link.v": -1.0}, strict=True),
                ch.step("link_big", {"link.v": 1.0}, -big),
                ch.step("link_ge_n", {"link.v": 1.0}, -float(n)),
                ch.step("enter_ovf", {"sp1.v": 1.0, "a.v": 1.0}, -float(end), strict=True),
                ch.linear("sp1a.v", {"sp1.v": 1.0, "a.v": 1.0}, act="saturate"),
                ch.step("sp1a.s", {"sp1.v": -1.0, "a.v": -1.0}, strict=True),
                ch.both("running", ["halt_zero", "fault_zero"]),
            ],
        ),
    ]
    layers.append(Layer("L2", heads, m2))

    # ------------------------------------------------------------- 3: operands
    pair("r_a", "r_b", "r_c", "r_fb", "r_t", "new_sp", "new_fp")
    heads = [ch.read_head(f"read_{f}", k, f, f"r_{f}") for f in ("a", "b", "c")]
    heads += [
        ch.read_head("read_fp_b", k, "fpb", "r_fb"),
        ch.read_head("read_link", k, "link", "r_t"),
    ]
    declare("p", "off", "v_cnt", "v_link", "z.r_c", "z.c", "z.b", "z.r_a")
    ptr = [(ctl[f"ptr.{s}"], f"{s}.v") for s in dict(GROUPS)["ptr"]]
    off = [(ctl[f"off.{s}"], f"{X_CHANNELS.get(s, s)}.v") for s in dict(GROUPS)["off"]]
    m3 = [
        mlp(
            "selects",
            [
                *ch.select("p", ptr),
                *ch.select("off", off),
                ch.linear("v_cnt", {"u_cnt": 1.0}, -big),
                ch.linear("v_link", {"u_link": 1.0}, -big),
                *[u for z in ("r_c", "c", "b", "r_a") for u in ch.equals_zero(f"z.{z}", f"{z}.v")],
                ch.const({f"z.{z}": -1.0 for z in ("r_c", "c", "b", "r_a")}),
                *ch.signed_select(
                    "new_sp",
                    [(ctl[f"sp.{s}"], REGISTER_CANDIDATES[s]) for s in dict(GROUPS)["sp"]],
                ),
                *ch.signed_select(
                    "new_fp",
                    [(ctl[f"fp.{s}"], REGISTER_CANDIDATES[s]) for s in dict(GROUPS)["fp"]],
                ),
            ],
        )
    ]
    layers.append(Layer("L3", heads, m3))

    # ------------------------------------------------------------- 4: indirect address
    codes("d")
    declare("ok_d", "int_cnt", "int_link")
    m4 = [
        ch.integer_bank(
            "decode_d", {"p": 1.0, "off": 1.0}, 0, n - 1, ch.code_outputs("d", k, "ok_d")
        ),
        mlp(
            "integer_tests",
            [
                step_pair("int_cnt", "v_cnt", "a.v"),
                step_pair("int_cnt", "a.v", "v_cnt"),
                step_pair("int_link", "v_link", "link.v"),
                step_pair("int_link", "link.v", "v_link"),
                ch.const({"int_cnt": -1.0, "int_link": -1.0}),
            ],
        ),
    ]
    layers.append(Layer("L4", [], m4))

    # ------------------------------------------------------------- 5: operand selects
    pair("r_d", "x", "y", "tgt")
    codes("w")
    declare("wpos", "y_zero", "ok_cnt", "link_ok")
    heads = [ch.read_head("read_d", k, "d", "r_d")]

    def src(name: str) -> str:
        return X_CHANNELS.get(name, name)

    ys = [(ctl[f"y.{s}"], None if s == "width" else src(s)) for s in dict(GROUPS)["y"]]
    y_units = ch.signed_select("y", ys) + ch.select("y.v", [(ctl["y.width"], float(WIDTH))])
    write_units = []
    for target, code_name in WRITE_CODES.items():
        for i, c in enumerate(ch.code_channels(code_name, k)):
            write_units.append(ch.product(f"code.w.{i}", {ctl[f"write.{target}"]: 1.0}, {c: 1.0}))
    codes_w = [f"code.w.{i}" for i in range(k)]
    assert codes_w == ch.code_channels("w", k)
    m5 = [
        mlp(
            "operand_selects",
            [
                *ch.signed_select("x", [(ctl[f"x.{s}"], src(s)) for s in dict(GROUPS)["x"]]),
                *y_units,
                *ch.signed_select(
                    "tgt", [(ctl[f"pc_target.{s}"], src(s)) for s in dict(GROUPS)["pc_target"]]
                ),
                *write_units,
                ch.linear("wpos", {ctl[f"write.{t}"]: 1.0 for t in ("a", "b", "d", "fp_a")}),
                ch.product("wpos", {ctl["write.stack"]: 1.0}, {"wpos_sw": 1.0}),
                *ch.select(
                    "y_zero",
                    [(ctl[f"y.{s}"], f"z.{src(s)}") for s in ("r_c", "imm_c", "imm_b", "r_a")],
                ),
                # No y source at all (an invalid opcode): y = 0, so the divide unit's
                # denominator y + y_zero must still be 1.
                ch.linear("y_zero", {ctl[f"y.{s}"]: -1.0 for s in dict(GROUPS)["y"]}, 1.0),
                ch.step("ok_cnt", {"cnt_ge0": 2.0, "cnt_big": 1.0, "int_cnt": 1.0}, -3.0),
                ch.step(
                    "link_ok",
                    {"link_ge_base": 2.0, "link_lt_sp": 2.0, "link_big": 1.0, "int_link": 1.0},
                    -5.0,
                ),
            ],
        )
    ]
    layers.append(Layer("L5", heads, m5))

    # ------------------------------------------------------------- 6: ALU
    declare("prot_w")
    heads = [ch.read_head("read_protected", k, "w", "prot_w", src=("prot",))]
    alu = ["r_add", "nf_add", "lt0_add", "z1_add", "z2_add", "r_sub", "nf_sub", "lt0_sub"]
    alu += ["z1_sub", "z2_sub", "r_mul", "nf_mul", "r_div", "nf_div", "xor", "c_le", "c_ge"]
    alu += ["r_lt", "r_eq"]
    declare(*alu)
    xy, x_y = {"x.v": 1.0, "y.v": 1.0}, {"x.v": 1.0, "y.v": -1.0}
    neg = {key: -v for key, v in xy.items()}
    y_x = {key: -v for key, v in x_y.items()}
    div = {"y.v": 1.0, "y_zero": 1.0}
    m6 = [
        mlp(
            "alu",
            [
                ch.linear("r_add", xy, act="saturate"),
                ch.linear("nf_add", xy, act="nonfinite"),
                ch.step("lt0_add", neg, strict=True),
                ch.step("z1_add", xy),
                ch.step("z2_add", neg),
                ch.linear("r_sub", x_y, act="saturate"),
                ch.linear("nf_sub", x_y, act="nonfinite"),
                ch.step("lt0_sub", y_x, strict=True),
                ch.step("z1_sub", x_y),
                ch.step("z2_sub", y_x),
                _bilinear("r_mul", "mul", "saturate", {"x.v": 1.0}, {"y.v": 1.0}),
                _bilinear("nf_mul", "mul", "nonfinite", {"x.v": 1.0}, {"y.v": 1.0}),
                _bilinear("r_div", "div", "saturate", {"x.v": 1.0}, div),
                _bilinear("nf_div", "div", "nonfinite", {"x.v": 1.0}, div),
                ch.step("xor", {"x.s": 1.0, "y.s": 1.0}, -1.0),
                ch.step("xor", {"x.s": 1.0, "y.s": 1.0}, -2.0, weight=-1.0),
                ch.step("c_le", y_x),
                ch.step("c_ge", x_y),
                ch.step("r_lt", y_x, strict=True),
                ch.step("r_eq", y_x),
                ch.step("r_eq", x_y),
                ch.const({"r_eq": -1.0}),
            ],
        )
    ]
    layers.append(Layer("L6", heads, m6))

    # ------------------------------------------------------------- 7: gates
    declare("gmin_x", "gmin_y", "gmax_x", "gmax_y", "nf_val", "jump")
    pair("value")
    u = {name: ctl[f"unit.{name}"] for name in dict(GROUPS)["unit"]}
    pc_cond = {name: ctl[f"pc_cond.{name}"] for name in dict(GROUPS)["pc_cond"]}
    m7 = [
        mlp(
            "gates",
            [
                ch.both("gmin_x", [u["min"], "c_le"]),
                ch.both("gmin_y", [u["min"]], ["c_le"]),
                ch.both("gmax_x", [u["max"], "c_ge"]),
                ch.both("gmax_y", [u["max"]], ["c_ge"]),
                # sign bits of results (IEEE round-to-nearest): a zero sum is -0 only if
                # both addends are -0; a product or quotient's sign is the XOR of signs.
                ch.both("value.s", [u["add"], "lt0_add"]),
                ch.both("value.s", [u["add"], "z1_add", "z2_add", "x.s", "y.s"]),
                ch.both("value.s", [u["sub"], "lt0_sub"]),
                ch.both("value.s", [u["sub"], "z1_sub", "z2_sub", "x.s"], ["y.s"]),
                ch.both("value.s", [u["mul"], "xor"]),
                ch.both("value.s", [u["div"], "xor"]),
                *[ch.both("nf_val", [u[a], f"nf_{a}"]) for a in ("add", "sub", "mul", "div")],
                ch.linear("jump", {pc_cond["always"]: 1.0}),
                ch.both("jump", [pc_cond["r_a_zero"], "z.r_a"]),
                ch.both("jump", [pc_cond["r_a_nonzero"]], ["z.r_a"]),
                ch.both("jump", [pc_cond["value_le_zero"], "c_le"]),
            ],
        )
    ]
    layers.append(Layer("L7", [], m7))

    # ------------------------------------------------------------- 8: results, faults
    pair("new_pc")
    fc = {name: f"fc.{name}" for name in FAULT_CLASSES}
    declare(*dict.fromkeys(fc.values()))
    value_terms = [(u["pass"], "x"), (u["add"], "r_add"), (u["sub"], "r_sub")]
    value_terms += [(u["mul"], "r_mul"), (u["div"], "r_div"), ("gmin_x", "x"), ("gmin_y", "y")]
    value_terms += [("gmax_x", "x"), ("gmax_y", "y"), (u["lt"], "r_lt"), (u["le"], "c_le")]
    value_terms += [(u["eq"], "r_eq")]
    signed = {"x", "y"}
    st = {name: ctl[f"stack.{name}"] for name in dict(GROUPS)["stack"]}
    conditions = [
        ("pc", [], ["ok_pc"]),
        ("decode", [], [ctl["valid"]]),
        ("decode", [ctl["count_a"]], ["ok_cnt"]),
        *[("operand_address", [ctl[f"check_{f}"]], [f"ok_{f.replace('_', '')}"]) for f in "abcd"],
        ("operand_address", [ctl["check_fp_a"]], ["ok_fpa"]),
        ("operand_address", [ctl["check_fp_b"]], ["ok_fpb"]),
        ("operand_address", [st["pop"], "top_ge_n"], []),
        ("operand_address", [st["leave"], "link_ok", "link_ge_n"], []),
        ("stack_overflow", [st["push"], "sp_ge_end"], []),
        ("stack_overflow", [st["enter"], "enter_ovf"], []),
        ("stack_underflow", [st["pop"], "sp_le_base"], []),
        ("stack_underflow", [st["leave"]], ["link_ok"]),
        ("divide", [ctl["div"], "y_zero"], []),
        ("non_finite", ["wpos", "nf_val"], []),
        ("protected", ["wpos", "prot_w"], []),
    ]
    m8 = [
        mlp(
            "results",
            [
                *[
                    ch.product("value.v", {g: 1.0}, {(f"{v}.v" if v in signed else v): 1.0})
                    for g, v in value_terms
                ],
                *[
                    ch.product("value.s", {g: 1.0}, {f"{v}.s": 1.0})
                    for g, v in value_terms
                    if v in signed
                ],
                ch.product("new_pc.v", {"jump": 1.0}, {"tgt.v": 1.0}),
                ch.product("new_pc.v", {"jump": -1.0}, {"pc4.v": 1.0}, gate_b=1.0),
                ch.product("new_pc.s", {"jump": 1.0}, {"tgt.s": 1.0}),
                ch.product("new_pc.s", {"jump": -1.0}, {"pc4.s": 1.0}, gate_b=1.0),
            ],
        ),
        mlp(
            "fault_conditions",
            [ch.both(fc[cls], on, off) for cls, on, off in conditions],
            doc="one step unit per fault condition, counted per class of the ISA's order",
        ),
    ]
    layers.append(Layer("L8", [], m8))

    # ------------------------------------------------------------- 9: priority encoder
    declare("fault_code", "any_fault")
    encoder = []
    for i, (name, code) in enumerate(FAULT_PRIORITY):
        earlier = {fc[e]: -16.0 for e, _ in FAULT_PRIORITY[:i]}
        encoder.append(
            ch.Unit(
                out={"fault_code": float(code), "any_fault": 1.0},
                w={fc[name]: 1.0} | earlier,
                b=-1.0,
                act="step_ge",
            )
        )
    layers.append(Layer("L9", [], [mlp("priority_encoder", encoder)]))

    # ------------------------------------------------------------- 10: commit gates
    declare("good", "g_mem", "g_halt", "g_fault")
    m10 = [
        mlp(
            "commit",
            [
                ch.step("good", {"running": 1.0, "any_fault": -1.0}, -1.0),
                ch.step("g_mem", {"running": 1.0, "any_fault": -1.0, "wpos": 1.0}, -2.0),
                ch.step("g_halt", {"running": 1.0, "any_fault": -1.0, ctl["halt"]: 1.0}, -2.0),
                ch.step("g_fault", {"running": 1.0, "any_fault": 1.0}, -2.0),
            ],
        )
    ]
    layers.append(Layer("L10", [], m10))

    # ------------------------------------------------------------- 11: write-back
    sources = {
        "pc": ("new_pc", "good"),
        "sp": ("new_sp", "good"),
        "fp": ("new_fp", "good"),
        "icount": ("icount1", "good"),
    }
    heads, names = (
        [ch.write_head("write_memory", k, "w", _wb("memory", "value", "g_mem"))],
        ["memory"],
    )
    for r in PROTECTED_REGISTERS:
        if r == "halt":
            values = [("cpu", "wb.halt.v"), ("g_halt", "wb.halt.g")]
        elif r == "fault":
            values = [("fault_code", "wb.fault.v"), ("g_fault", "wb.fault.g")]
        else:
            values = _wb(r, *sources[r])
        heads.append(ch.write_head(f"write_{r}", k, layout.register(r), values))
        names.append(r)
    for h in names:
        cell.add(f"wb.{h}.v", f"wb.{h}.s", f"wb.{h}.g")
    cell.add("new.v", "new.s")
    keep = {f"wb.{h}.g": -1.0 for h in names}
    units = [
        ch.product("new.v", keep, {"v": 1.0}, gate_b=1.0),
        ch.product("new.s", keep, {"s": 1.0}, gate_b=1.0),
    ]
    for h in names:
        units.append(ch.product("new.v", {f"wb.{h}.g": 1.0}, {f"wb.{h}.v": 1.0}))
        units.append(ch.product("new.s", {f"wb.{h}.g": 1.0}, {f"wb.{h}.s": 1.0}))
    layers.append(Layer("L11", heads, [MLP("write_select", "cell", units)]))

    constants = np.zeros((n, len(cell)))
    for j in range(n):
        constants[j, cell["code.0"] : cell["code.0"] + k] = ch.code(j, k)
    constants[:, cell["prot"]] = layout.protected_mask
    constants[:, cell["one"]] = 1.0
    circuit = Circuit(cpu, cell, layers, k + 1, constants, {"n_cells": n, "n_bits": k})
    circuit.check()
    return circuit


def _diff(prefix: str, k: int, new: int, old: int | None) -> dict[str, float]:
    """Output jump of a decoder bank: ``code(new) - code(old)`` (``old=None``: from zero)."""
    before = np.zeros(k) if old is None else ch.code(old, k)
    delta = ch.code(new, k) - before
    return {c: float(v) for c, v in zip(ch.code_channels(prefix, k), delta, strict=True) if v}


def step_pair(out: str, a: str, b: str):
    """``[a - b >= 0]`` into ``out`` (two of them and a -1 make ``[a == b]``)."""
    return ch.step(out, {a: 1.0, b: -1.0})


def _bilinear(out: str, op: str, act: str, w: dict, w2: dict):
    return ch.Unit(out={out: 1.0}, w=w, op=op, act=act, w2=w2)


def _wb(head: str, value: str, gate: str) -> list[tuple[str, str]]:
    return [(f"{value}.v", f"wb.{head}.v"), (f"{value}.s", f"wb.{head}.s"), (gate, f"wb.{head}.g")]
