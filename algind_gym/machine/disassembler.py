"""Cells -> readable assembly: how a person reads any skill, hand-written or learned.

The output assembles back to the same cells (:func:`disassemble` then
:func:`~algind_gym.machine.assembler.assemble` with the same placement is the identity):
jump targets inside the code become labels ``L0, L1, ...``, register addresses become
register names, slot addresses become slot names, and anything that is not a well-formed
instruction (unknown opcode, fractional fields, junk in unused fields) is written as
``.word`` so that nothing is lost.
"""

from __future__ import annotations

from collections.abc import Sequence

from algind_gym.machine.isa import BY_CODE, WIDTH, Operand
from algind_gym.machine.layout import DESCRIPTOR_FIELDS, DESCRIPTOR_WIDTH, Layout
from algind_gym.machine.program import Program


def _num(v: float) -> str:
    v = float(v)
    return str(int(v)) if v == int(v) and abs(v) < 2**53 and str(v) != "-0.0" else repr(v)


def disassemble(
    cells: Sequence[float],
    layout: Layout | None = None,
    *,
    code_base: int = 0,
    slot_names: Sequence[str] = (),
    slot_base: int | None = None,
    labels: dict[str, int] | None = None,
    name: str | None = None,
    args: Sequence[tuple[str, str]] = (),
    has_weights: bool = False,
    entry: int | None = None,
    jacobian_entry: int | None = None,
    address_names: dict[int, str] | None = None,
    data: dict[str, tuple[int, Sequence[float]]] | None = None,
) -> str:
    """Disassemble instruction cells placed at ``code_base``.

    Args:
        cells: code cells (a multiple of the instruction width).
        layout: for register names (default :class:`Layout`).
        code_base: the absolute address of ``cells[0]``.
        slot_names / slot_base: name the slot fields (``x``, ``x.rows``, ...).
        labels: known label names for code addresses (others get ``L<n>``).
        name, args, has_weights, entry, jacobian_entry: emit the ``.skill`` header lines.
        address_names: names for other addresses (e.g. data), used for address operands.
        data: ``.data`` lines to emit, name -> (address, values); their addresses are named.
    """
    layout = layout or Layout()
    if len(cells) % WIDTH:
        raise ValueError(f"code length {len(cells)} is not a multiple of {WIDTH}")
    end = code_base + len(cells)
    regs = dict(enumerate(layout.register_names))
    slots: dict[int, str] = {}
    if slot_base is not None:
        for i, s in enumerate(slot_names):
            for k, f in enumerate(DESCRIPTOR_FIELDS):
                slots[slot_base + DESCRIPTOR_WIDTH * i + k] = s if k == 0 else f"{s}.{f}"
    names = dict(address_names or {})
    names.update({addr: n for n, (addr, _) in (data or {}).items()})
    label_at: dict[int, str] = {addr: n for n, addr in (labels or {}).items()}
    instrs = [tuple(float(v) for v in cells[i : i + WIDTH]) for i in range(0, len(cells), WIDTH)]

    def well_formed(ins: tuple[float, ...]) -> bool:
        op = ins[0]
        if op != int(op) or int(op) not in BY_CODE:
            return False
        spec = BY_CODE[int(op)]
        used = len(spec.operands)
        if any(v != 0 or str(v) == "-0.0" for v in ins[1 + used :]):
            return False
        for kind, v in zip(spec.operands, ins[1:], strict=False):
            if kind is not Operand.IMM and (v != int(v) or str(v) == "-0.0"):
                return False
            if kind.is_address and not 0 <= v < layout.n_cells:
                return False
            if kind is Operand.CNT and v < 0:
                return False
        return True

    def in_code(v: float) -> bool:
        return code_base <= v < end and (v - code_base) % WIDTH == 0

    for ins in instrs:
        if well_formed(ins):
            spec = BY_CODE[int(ins[0])]
            for kind, v in zip(spec.operands, ins[1:], strict=False):
                if kind is Operand.TGT and in_code(v) and int(v) not in label_at:
                    label_at[int(v)] = f"L{sum(1 for k in label_at.values() if k.startswith('L'))}"
    for extra in (entry, jacobian_entry):
        if (
            extra is not None
            and in_code(extra)
            and extra != code_base
            and int(extra) not in label_at
        ):
            label_at[int(extra)] = "jacobian" if extra == jacobian_entry else "start"

    def operand(kind: Operand, v: float) -> str:
        if kind is Operand.TGT and in_code(v):
            return label_at[int(v)]
        if kind.is_address:
            iv = int(v)
            if iv in regs:
                return regs[iv]
            if iv in slots:
                return slots[iv]
            if iv in names:
                return names[iv]
        return _num(v)

    lines: list[str] = []
    if name is not None and (args or has_weights or name != "main"):
        lines.append(f".skill {name}({', '.join(f'{a}: {t}' for a, t in args)})")
    if has_weights:
        lines.append(".weights")
    for dname, (_, values) in (data or {}).items():
        lines.append(f".data {dname} {' '.join(_num(v) for v in values)}".rstrip())
    if entry is not None and entry != code_base:
        lines.append(f".output {label_at[int(entry)]}")
    if jacobian_entry is not None and in_code(jacobian_entry):
        if jacobian_entry == code_base and code_base not in label_at:
            label_at[code_base] = "jacobian"
        lines.append(f".jacobian {label_at[int(jacobian_entry)]}")
    for i, ins in enumerate(instrs):
        addr = code_base + WIDTH * i
        if addr in label_at:
            lines.append(f"{label_at[addr]}:")
        if well_formed(ins):
            spec = BY_CODE[int(ins[0])]
            ops = [operand(k, v) for k, v in zip(spec.operands, ins[1:], strict=False)]
            lines.append(f"    {spec.name.lower():<7}{', '.join(ops)}".rstrip())
        else:
            lines.append(f"    .word  {' '.join(_num(v) for v in ins)}")
    return "\n".join(lines) + "\n"


def disassemble_program(program: Program, layout: Layout | None = None) -> str:
    """Disassemble a linked :class:`Program`, keeping its labels, slots and entries."""
    return disassemble(
        program.code,
        layout,
        code_base=program.code_base,
        slot_names=program.slot_names,
        slot_base=program.slot_base,
        labels=program.labels,
        name=program.name,
        args=program.args,
        has_weights=program.has_weights,
        entry=program.entry,
        jacobian_entry=program.jacobian_entry,
        data=program.data,
    )
