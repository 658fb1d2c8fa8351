"""Argument types, signatures and the binding-compatibility rule.

A skill's argument is an :class:`ArgSpec`: a name, a type and a role. Types are strings:

* ``"scalar"``, ``"vector"``, ``"matrix"``: data, passed as a descriptor
  ``[addr, rows, cols, type]``;
* ``"skill(t1,t2,...)"``: a reference to a skill whose (weightless) argument types are
  ``t1, t2, ...`` -- what a combinator's ``f`` needs. Plain ``"skill"`` accepts any skill.

The assembler only knows the four base names (``.skill f(x: skill)``); the refined
``skill(...)`` type lives in the library's metadata.

:func:`accepts` is the one binding rule, used by the composition compiler and by the
action masks of the environments: equal types bind, and a *vector slot accepts a matrix*
(every vector skill iterates over ``rows * cols`` elements, so a matrix binds as its
row-major flattening; this is how ``Scale`` and ``VectorSub`` update a weight matrix).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from algind_gym.machine.layout import DataType

DATA_TYPES = ("scalar", "vector", "matrix")
ROLES = ("in", "out", "inout")
_SKILL_TYPE = re.compile(r"^skill(?:\((.*)\))?$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_name(name: str, what: str = "name") -> str:
    """Return ``name`` if it is an identifier, else raise ``ValueError``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{what} {name!r} must be an identifier ([A-Za-z_][A-Za-z0-9_]*)")
    return name


def parse_type(type_: str) -> tuple[str, tuple[str, ...] | None]:
    """Split a type into its base and, for skills, the argument types (None = any skill).

    Example:
        >>> parse_type("skill(scalar,scalar)")
        ('skill', ('scalar', 'scalar'))
        >>> parse_type("vector")
        ('vector', None)
    """
    if type_ in DATA_TYPES:
        return type_, None
    m = _SKILL_TYPE.match(type_.replace(" ", "")) if isinstance(type_, str) else None
    if not m:
        raise ValueError(
            f"unknown type {type_!r}; expected scalar, vector, matrix, skill or skill(t1,...)"
        )
    if m.group(1) is None:
        return "skill", None
    parts = tuple(p for p in _split_top(m.group(1)) if p)
    for p in parts:
        parse_type(p)
    return "skill", parts


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses (skill types nest)."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += (ch == "(") - (ch == ")")
        if depth < 0:
            raise ValueError(f"unbalanced parentheses in type {text!r}")
        cur += ch
    if depth:
        raise ValueError(f"unbalanced parentheses in type {text!r}")
    return [*parts, cur]


def base_type(type_: str) -> str:
    """``"skill(scalar)"`` -> ``"skill"``; data types unchanged."""
    return parse_type(type_)[0]


def data_type(type_: str) -> DataType:
    """The descriptor ``type`` code of a type."""
    return DataType[base_type(type_).upper()]


def skill_type(arg_types: tuple[str, ...] | list[str]) -> str:
    """The refined type of a reference to a skill with these argument types."""
    return f"skill({','.join(arg_types)})"


def accepts(slot_type: str, value_type: str) -> bool:
    """Whether a value of ``value_type`` may be bound to a slot of ``slot_type``.

    Example:
        >>> accepts("vector", "matrix"), accepts("matrix", "vector")
        (True, False)
        >>> accepts("skill(scalar,scalar)", "skill(scalar,scalar)")
        True
    """
    key = (slot_type, value_type)
    known = (
        _ACCEPTS.get(key) if isinstance(slot_type, str) and isinstance(value_type, str) else None
    )
    if known is not None:
        return known
    sb, ssig = parse_type(slot_type)
    vb, vsig = parse_type(value_type)
    if sb == "skill" or vb == "skill":
        ok = sb == vb and (ssig is None or ssig == vsig)
    else:
        ok = sb == vb or (sb == "vector" and vb == "matrix")
    if len(_ACCEPTS) < 100_000:  # action tables ask about the same few pairs very often
        _ACCEPTS[key] = ok
    return ok


_ACCEPTS: dict[tuple[str, str], bool] = {}
"""Answers of :func:`accepts` by (slot type, value type), both valid type strings."""


@dataclass(frozen=True)
class ArgSpec:
    """One argument of a skill or a task.

    Attributes:
        name: an identifier.
        type: see the module docstring.
        role: ``"in"`` (read), ``"out"`` (written) or ``"inout"`` (read, then written).
    """

    name: str
    type: str
    role: str = "in"

    def __post_init__(self) -> None:
        check_name(self.name, "argument name")
        parse_type(self.type)
        if self.role not in ROLES:
            raise ValueError(
                f"argument {self.name!r}: role must be one of {ROLES}, got {self.role!r}"
            )

    def to_json(self) -> dict:
        return {"name": self.name, "type": self.type, "role": self.role}

    @classmethod
    def from_json(cls, data: dict) -> ArgSpec:
        return cls(str(data["name"]), str(data["type"]), str(data.get("role", "in")))


def format_signature(name: str, args: tuple[ArgSpec, ...], weights: str | None = None) -> str:
    """``"DotProduct(x: vector, y: vector) -> out: scalar"``-style text."""
    ins = [
        f"{'inout ' if a.role == 'inout' else ''}{a.name}: {a.type}"
        for a in args
        if a.role != "out"
    ]
    outs = [f"{a.name}: {a.type}" for a in args if a.role == "out"]
    text = f"{name}({', '.join(ins)})"
    if weights:
        text += f" [weights: {weights}]"
    return text + (f" -> {', '.join(outs)}" if outs else "")
