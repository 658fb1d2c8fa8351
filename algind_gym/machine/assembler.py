"""Text assembly -> cells.

Syntax (one statement a line; ``;`` starts a comment; mnemonics and registers are
case-insensitive)::

    .skill vadd(x: vector, y: vector, out: vector)   ; optional: declares argument slots
    .weights                                          ; optional: the skill has a weights slot
    .jacobian jac                                     ; optional: label of the Jacobian entry
    .output start                                     ; optional: label of the output entry
    .equ N 4                                          ; a named constant
    .data xs 1 2 3.5                                  ; cells in the data area, named
    .zero buf 8                                       ; 8 zero cells in the data area, named
    start:                                            ; a label (a code address)
        movi r0, 0
        load r1, x, 2          ; r1 = x[2]: cell[cell[x.addr] + 2]
        add  r2, r1, x.rows    ; slot fields: x (= x.addr), x.rows, x.cols, x.type
        jz   r2, done
    done:
        ret
        .word 30 1 2 3         ; raw cells (any 4 numbers), e.g. self-modified code

Operands are numbers (``3``, ``-2``, ``1.5e-3``), register names (``pc sp fp mode halt
fault icount r0 ..``), symbols (labels, data names, ``.equ`` constants, slot fields,
``weights``, and any extra symbols the caller passes), or ``symbol+k`` / ``symbol-k``.
What a field means (address, immediate, offset, count, jump target) is decided by the
opcode (:mod:`algind_gym.machine.isa`), so no sigils are needed.

Assembly is two steps: :func:`parse` (text -> statements, labels as code offsets, sizes;
no addresses) and :func:`link` (statements + where code, slots and data go -> a
:class:`~algind_gym.machine.program.Program`). :func:`assemble` does both. Errors are
:class:`AssemblyError` and name file, line and column.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from algind_gym.machine.isa import BY_NAME, WIDTH, Operand
from algind_gym.machine.layout import DESCRIPTOR_FIELDS, DESCRIPTOR_WIDTH, DataType, Layout
from algind_gym.machine.program import Program

ARG_TYPES: dict[str, DataType] = {
    "scalar": DataType.SCALAR,
    "vector": DataType.VECTOR,
    "matrix": DataType.MATRIX,
    "skill": DataType.SKILL,
}

_SYMBOL = r"[A-Za-z_][A-Za-z0-9_.]*"
_EXPR = re.compile(rf"^\s*({_SYMBOL}|[-+]?[0-9][0-9.eE+-]*)\s*(?:([-+])\s*([0-9]+))?\s*$")
_LABEL = re.compile(rf"^\s*({_SYMBOL})\s*:")
_SKILL = re.compile(rf"^\s*({_SYMBOL})\s*\((.*)\)\s*$")


class AssemblyError(ValueError):
    """A problem in assembly text, located by file, line and column (1-based)."""

    def __init__(self, message: str, filename: str = "<string>", line: int = 0, column: int = 0):
        self.message, self.filename, self.line, self.column = message, filename, line, column
        super().__init__(f"{filename}:{line}:{column}: {message}")


@dataclass(frozen=True)
class Token:
    text: str
    line: int
    column: int


@dataclass(frozen=True)
class Statement:
    """An instruction (``mnemonic`` set) or raw ``.word`` cells (``mnemonic`` None)."""

    mnemonic: str | None
    operands: tuple[Token, ...]
    line: int
    column: int


@dataclass
class ParsedSource:
    """Everything in a source text that does not depend on where it is placed."""

    filename: str
    name: str = "main"
    args: list[tuple[str, str]] = field(default_factory=list)
    has_weights: bool = False
    statements: list[Statement] = field(default_factory=list)
    labels: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (cell offset, line)
    data: dict[str, tuple[list[Token], int]] = field(default_factory=dict)  # name -> (values, line)
    equs: dict[str, float] = field(default_factory=dict)
    output_label: Token | None = None
    jacobian_label: Token | None = None

    @property
    def code_size(self) -> int:
        return WIDTH * len(self.statements)

    @property
    def data_size(self) -> int:
        return sum(len(v) for v, _ in self.data.values())

    def error(self, message: str, line: int, column: int = 1) -> AssemblyError:
        return AssemblyError(message, self.filename, line, column)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _split_operands(rest: str, line: int, offset: int) -> list[Token]:
    tokens, col = [], offset
    for part in rest.split(","):
        stripped = part.strip()
        lead = len(part) - len(part.lstrip())
        tokens.append(Token(stripped, line, col + lead + 1))
        col += len(part) + 1
    return tokens


def parse(source: str, filename: str = "<string>") -> ParsedSource:
    """Parse assembly text; raises :class:`AssemblyError` naming the line and column."""
    out = ParsedSource(filename)
    seen_skill = False
    for lineno, raw in enumerate(source.splitlines(), start=1):
        text = raw.split(";", 1)[0].rstrip()
        pos = 0
        while m := _LABEL.match(text[pos:]):
            name = m.group(1)
            if name in out.labels:
                raise out.error(
                    f"label {name!r} defined twice (first on line {out.labels[name][1]})",
                    lineno,
                    pos + m.start(1) + 1,
                )
            out.labels[name] = (WIDTH * len(out.statements), lineno)
            pos += m.end()
        body = text[pos:]
        if not body.strip():
            continue
        col = pos + len(body) - len(body.lstrip()) + 1
        head, _, rest = body.strip().partition(" ")
        rest_col = col + len(head)
        if head.startswith("."):
            _directive(out, head.lower(), rest, lineno, col, rest_col, seen_skill)
            seen_skill |= head.lower() == ".skill"
            continue
        spec = BY_NAME.get(head.upper())
        if spec is None:
            raise out.error(
                f"unknown mnemonic {head!r}; expected one of {', '.join(sorted(BY_NAME))} "
                "or a directive (.skill .weights .output .jacobian .equ .data .zero .word)",
                lineno,
                col,
            )
        operands = _split_operands(rest, lineno, rest_col) if rest.strip() else []
        if len(operands) != len(spec.operands):
            kinds = ", ".join(k.value for k in spec.operands) or "none"
            raise out.error(
                f"{spec.name} takes {len(spec.operands)} operand(s) ({kinds}), got {len(operands)}",
                lineno,
                col,
            )
        for tok in operands:
            if not tok.text:
                raise out.error(f"empty operand in {spec.name}", lineno, tok.column)
        out.statements.append(Statement(spec.name, tuple(operands), lineno, col))
    return out


def _directive(out: ParsedSource, head, rest, lineno, col, rest_col, seen_skill) -> None:
    words = rest.split()
    if head == ".skill":
        if seen_skill:
            raise out.error("only one .skill declaration is allowed per source", lineno, col)
        m = _SKILL.match(rest)
        if not m:
            raise out.error("expected '.skill NAME(arg: type, ...)'", lineno, rest_col)
        out.name = m.group(1)
        for part in filter(None, (p.strip() for p in m.group(2).split(","))):
            arg, _, typ = (s.strip() for s in part.partition(":"))
            if not re.fullmatch(_SYMBOL, arg) or "." in arg:
                raise out.error(f"bad argument name {arg!r}", lineno, rest_col)
            if typ.lower() not in ARG_TYPES:
                raise out.error(
                    f"argument {arg!r} has unknown type {typ!r}; expected one of {list(ARG_TYPES)}",
                    lineno,
                    rest_col,
                )
            if arg in (a for a, _ in out.args):
                raise out.error(f"argument {arg!r} declared twice", lineno, rest_col)
            out.args.append((arg, typ.lower()))
    elif head == ".weights":
        out.has_weights = True
    elif head in (".output", ".jacobian"):
        if len(words) != 1:
            raise out.error(f"expected '{head} LABEL'", lineno, rest_col)
        tok = Token(words[0], lineno, rest_col + 1)
        setattr(out, "output_label" if head == ".output" else "jacobian_label", tok)
    elif head == ".equ":
        if len(words) != 2 or _number(words[1]) is None:
            raise out.error("expected '.equ NAME NUMBER'", lineno, rest_col)
        out.equs[words[0]] = float(words[1])
    elif head in (".data", ".zero"):
        if len(words) < 2:
            raise out.error(
                f"expected '{head} NAME {'VALUES...' if head == '.data' else 'COUNT'}'",
                lineno,
                rest_col,
            )
        name = words[0]
        if name in out.data:
            raise out.error(f"data {name!r} defined twice", lineno, rest_col)
        if head == ".zero":
            n = _number(words[1])
            if n is None or n < 0 or n != int(n) or len(words) != 2:
                raise out.error(
                    f"bad count {words[1]!r}: expected a non-negative integer", lineno, rest_col
                )
            values = [Token("0", lineno, rest_col)] * int(n)
        else:  # numbers or symbols (e.g. the address of other data), resolved by link()
            values = [Token(w, lineno, rest_col + rest.find(w) + 1) for w in words[1:]]
        out.data[name] = (values, lineno)
    elif head == ".word":
        if len(words) != WIDTH:
            raise out.error(
                f".word takes exactly {WIDTH} numbers, got {len(words)}", lineno, rest_col
            )
        toks = tuple(Token(w, lineno, rest_col + rest.find(w) + 1) for w in words)
        out.statements.append(Statement(None, toks, lineno, col))
    else:
        raise out.error(
            f"unknown directive {head!r}; expected .skill .weights .output .jacobian .equ .data .zero .word",
            lineno,
            col,
        )


def link(
    parsed: ParsedSource,
    layout: Layout,
    *,
    code_base: int,
    slot_base: int | None = None,
    data_base: int | None = None,
    symbols: dict[str, float] | None = None,
) -> Program:
    """Resolve every operand of ``parsed`` placed at the given addresses.

    Args:
        parsed: the output of :func:`parse`.
        layout: gives the register names.
        code_base: absolute address of the first instruction.
        slot_base: address of argument slot 0 (required if the source declares arguments
            or weights); slots are :data:`DESCRIPTOR_WIDTH` cells apart.
        data_base: where ``.data``/``.zero`` cells go (required if there are any).
        symbols: extra names, e.g. other skills' header addresses.
    """
    table: dict[str, float] = {}
    if (parsed.args or parsed.has_weights) and slot_base is None:
        raise AssemblyError(
            f"{parsed.name!r} declares argument slots but no slot_base was given", parsed.filename
        )
    slot_names = [a for a, _ in parsed.args] + (["weights"] if parsed.has_weights else [])
    for i, arg in enumerate(slot_names):
        base = slot_base + DESCRIPTOR_WIDTH * i
        table[arg] = base
        for k, f in enumerate(DESCRIPTOR_FIELDS):
            table[f"{arg}.{f}"] = base + k
    if parsed.data and data_base is None:
        raise AssemblyError(
            f"{parsed.name!r} has .data but no data_base was given", parsed.filename
        )
    addr = data_base
    for name, (values, _) in parsed.data.items():
        table[name] = addr
        addr += len(values)
    labels = {name: code_base + off for name, (off, _) in parsed.labels.items()}
    table.update(labels)
    table.update(parsed.equs)
    table.update(symbols or {})
    registers = {name: i for i, name in enumerate(layout.register_names)}

    def value(tok: Token) -> float:
        m = _EXPR.match(tok.text)
        if not m:
            raise parsed.error(f"cannot read operand {tok.text!r}", tok.line, tok.column)
        head, sign, k = m.groups()
        if (num := _number(head)) is not None:
            v = num
        elif head.lower() in registers:
            v = registers[head.lower()]
        elif head in table:
            v = table[head]
        elif head[0].isdigit() or head[0] in "+-":
            raise parsed.error(f"bad number {head!r}", tok.line, tok.column)
        else:
            raise parsed.error(
                f"unknown symbol {head!r} (not a register, label, data name, slot or constant)",
                tok.line,
                tok.column,
            )
        if sign:
            v = v + int(k) if sign == "+" else v - int(k)
        return float(v)

    data = {
        name: (int(table[name]), tuple(value(tok) for tok in values))
        for name, (values, _) in parsed.data.items()
    }
    code: list[float] = []
    for st in parsed.statements:
        if st.mnemonic is None:
            for tok in st.operands:
                v = _number(tok.text)
                if v is None:
                    raise parsed.error(f"bad number {tok.text!r}", tok.line, tok.column)
                code.append(v)
            continue
        spec = BY_NAME[st.mnemonic]
        fields = []
        for kind, tok in zip(spec.operands, st.operands, strict=True):
            v = value(tok)
            if kind is not Operand.IMM and v != int(v):
                raise parsed.error(
                    f"{spec.name}: operand {tok.text!r} is a {kind.value} and must be an integer, got {v}",
                    tok.line,
                    tok.column,
                )
            if kind is Operand.CNT and v < 0:
                raise parsed.error(
                    f"{spec.name}: count must be >= 0, got {v}", tok.line, tok.column
                )
            if kind.is_address and not 0 <= v < layout.n_cells:
                raise parsed.error(
                    f"{spec.name}: address {tok.text!r} = {int(v)} is outside the state "
                    f"(0..{layout.n_cells - 1})",
                    tok.line,
                    tok.column,
                )
            fields.append(v)
        code += [float(spec.code), *fields] + [0.0] * (WIDTH - 1 - len(fields))

    def entry(tok: Token | None) -> int | None:
        if tok is None:
            return None
        if tok.text not in labels:
            raise parsed.error(f"unknown label {tok.text!r}", tok.line, tok.column)
        return labels[tok.text]

    out_entry = entry(parsed.output_label)
    return Program(
        name=parsed.name,
        code=tuple(code),
        code_base=code_base,
        entry=code_base if out_entry is None else out_entry,
        jacobian_entry=entry(parsed.jacobian_label),
        data=data,
        labels=labels,
        args=tuple(parsed.args),
        has_weights=parsed.has_weights,
        lines=tuple(st.line for st in parsed.statements),
        slot_base=slot_base,
    )


def assemble(
    source: str,
    layout: Layout | None = None,
    *,
    code_base: int = 0,
    slot_base: int | None = None,
    data_base: int | None = None,
    symbols: dict[str, float] | None = None,
    filename: str = "<string>",
) -> Program:
    """Parse and link in one call.

    Example:
        >>> from algind_gym.machine.layout import Layout
        >>> p = assemble("movi r0, 2\\nadd r0, r0, r0\\nhalt", Layout())
        >>> p.code[:4]
        (3.0, 7.0, 2.0, 0.0)
    """
    return link(
        parse(source, filename),
        layout or Layout(),
        code_base=code_base,
        slot_base=slot_base,
        data_base=data_base,
        symbols=symbols,
    )
