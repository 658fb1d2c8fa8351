"""Composed skills: a list of (skill, bindings) steps compiled into a skill block.

This is the paper's F_C stored as code (docs/ARCHITECTURE.md, paper to code): the compiled block CALLs its
sub-skills directly, so a composed skill is ordinary assembly that the disassembler reads
and any backend runs.

Data
----
A :class:`Composition` has arguments (:class:`~algind_gym.skills.signature.ArgSpec`), an
optional weights slot, temporaries (:class:`Temp`) and steps (:class:`Step`). A step's
bindings give one value per slot of the sub-skill (its arguments, then its weights slot):

* a string naming an argument, ``"weights"`` or a temporary;
* a string ``"&NAME"`` or ``"&NAME@V"``: a reference to a library skill (for combinators);
* a number: a constant, materialised as a scalar in the frame.

Temporaries live on the stack, sized at run time from the argument shapes: a
:class:`Temp` shape is a tuple of dimension expressions, each an integer or
``"arg.rows"``, ``"arg.cols"`` or ``"arg.size"`` (rows * cols).

Generated code
--------------
``enter`` a frame; copy every own slot descriptor into it (the prologue snapshot, which
makes the block re-entrant, see :mod:`algind_gym.skills.combinators`); push the
temporaries (zero-filled) and record their descriptors in the frame; then per step write
the bound descriptors into the sub-skill's slots (``LDF`` straight into the slot cell) and
``CALL`` its entry; ``leave``; ``ret``.

Jacobian code by the chain rule
-------------------------------
Two Jacobian contracts exist (MODE = 1, see ``isa.py``):

* ``"weights"``: the skill has weights w; the buffer bound to its output receives
  ``J = d out / d w`` as a ``(len(out), len(w))`` row-major matrix.
* ``"elementwise"``: the skill has no weights and ``out[i]`` depends only on ``x[i]`` of
  its first data argument; the buffer bound to its output holds a tangent matrix ``T``
  (one row per element) that is multiplied in place: ``T <- diag(d out / d x) T``.
  Combinators ``map``/``zipmap``/``mapc`` have it when their ``f`` has it
  (``"elementwise_if_f"``).

A composition gets Jacobian code when its data flow is a chain the rule covers: with
weights, exactly one step binds them (to a ``"weights"`` sub-skill); without, the chain
starts at the first argument. Every later step that reads a tracked value must be
``"elementwise"`` in that value (bound to its first data slot) and its output becomes
tracked; the chain ends in the composition's output. The generated Jacobian entry runs the
other steps forward (MODE 0) for the values the derivatives need, then the chain's
Jacobian entries (MODE 1) in order, all writing the output buffer in place
(``J <- D_k ... D_1 J_w``), and restores MODE = 1. Compositions outside this pattern
(a tracked value read twice, a reduction of a tracked value) simply have no Jacobian
code; :func:`jacobian_plan` says why.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from algind_gym.skills.signature import (
    ArgSpec,
    accepts,
    base_type,
    check_name,
    data_type,
    parse_type,
    skill_type,
)

Binding = str | float | int
_DIM = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\.(rows|cols|size)$")


@dataclass(frozen=True)
class Temp:
    """A temporary buffer of a composition: ``type`` and a shape of dimension expressions.

    A scalar has shape ``()``, a vector ``(n,)``, a matrix ``(rows, cols)``.
    """

    name: str
    type: str
    shape: tuple[int | str, ...] = ()

    def __post_init__(self) -> None:
        check_name(self.name, "temporary name")
        object.__setattr__(self, "shape", tuple(self.shape))
        want = {"scalar": 0, "vector": 1, "matrix": 2}.get(self.type)
        if want is None:
            raise ValueError(f"temporary {self.name!r}: type must be scalar, vector or matrix")
        if len(self.shape) != want:
            raise ValueError(
                f"temporary {self.name!r}: a {self.type} needs {want} dimension(s), "
                f"got {self.shape}"
            )
        for d in self.shape:
            if isinstance(d, bool) or not (
                (isinstance(d, int) and d >= 0) or (isinstance(d, str) and _DIM.match(d))
            ):
                raise ValueError(
                    f"temporary {self.name!r}: dimension {d!r} must be an int >= 0 or "
                    "'arg.rows', 'arg.cols', 'arg.size'"
                )

    def to_json(self) -> list:
        return [self.name, self.type, list(self.shape)]


@dataclass(frozen=True)
class Step:
    """One call: the sub-skill (a name, ``name@version`` after compilation) and its bindings."""

    skill: str
    bindings: tuple[Binding, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "bindings", tuple(self.bindings))

    def to_json(self) -> list:
        return [self.skill, list(self.bindings)]


@dataclass(frozen=True)
class Composition:
    """A composed program: arguments, optional weights type, temporaries, steps."""

    args: tuple[ArgSpec, ...]
    steps: tuple[Step, ...]
    temps: tuple[Temp, ...] = ()
    weights: str | None = None

    def to_json(self) -> dict:
        return {
            "args": [a.to_json() for a in self.args],
            "weights": self.weights,
            "temps": [t.to_json() for t in self.temps],
            "steps": [s.to_json() for s in self.steps],
        }

    @classmethod
    def from_json(cls, data: dict) -> Composition:
        return cls(
            args=tuple(ArgSpec.from_json(a) for a in data["args"]),
            weights=data.get("weights"),
            temps=tuple(Temp(str(n), str(t), tuple(s)) for n, t, s in data.get("temps", [])),
            steps=tuple(Step(str(k), tuple(b)) for k, b in data["steps"]),
        )


class SkillView:
    """What the compiler needs to know about a sub-skill (duck-typed ``Skill``)."""

    key: str
    args: tuple[ArgSpec, ...]
    weights: str | None
    jacobian: str | None


@dataclass
class Compiled:
    """Output of :func:`compile_composition`."""

    source: str
    dependencies: tuple[str, ...]
    args: tuple[ArgSpec, ...]
    jacobian: str | None
    jacobian_note: str
    steps: tuple[Step, ...] = field(default=())


def is_const(b: Binding) -> bool:
    return isinstance(b, (int, float)) and not isinstance(b, bool)


def _slots(sk: SkillView) -> list[ArgSpec]:
    out = list(sk.args)
    if sk.weights:
        out.append(ArgSpec("weights", sk.weights, "in"))
    return out


def compile_composition(
    name: str,
    comp: Composition,
    lookup: Callable[[str], SkillView],
    *,
    infer_roles: bool = True,
) -> Compiled:
    """Type-check ``comp`` and generate its assembly (output and, if possible, Jacobian).

    Args:
        name: the new skill's name.
        comp: the composition.
        lookup: resolves a skill name or ``name@version`` to a library skill.
        infer_roles: replace the argument roles by those the steps imply.

    Raises:
        ValueError: naming the step and slot, for unknown names, wrong arity or types.
    """
    check_name(name, "skill name")
    names: dict[str, str] = {}
    for a in comp.args:
        if a.name in names or a.name == "weights":
            raise ValueError(f"{name}: argument name {a.name!r} is duplicated or reserved")
        names[a.name] = a.type
    if comp.weights:
        if base_type(comp.weights) not in ("vector", "matrix"):
            raise ValueError(f"{name}: weights must be a vector or a matrix, got {comp.weights!r}")
        names["weights"] = comp.weights
    for t in comp.temps:
        if t.name in names:
            raise ValueError(f"{name}: temporary {t.name!r} clashes with another name")
        for d in t.shape:
            if isinstance(d, str):
                arg = _DIM.match(d).group(1)
                if arg not in names or arg not in {a.name for a in comp.args} | {"weights"}:
                    raise ValueError(
                        f"{name}: temporary {t.name!r} sizes from unknown argument {arg!r}"
                    )
                if base_type(names[arg]) == "skill":
                    raise ValueError(f"{name}: temporary {t.name!r} sizes from a skill argument")
        names[t.name] = t.type
    if not comp.steps:
        raise ValueError(f"{name}: a composition needs at least one step")

    deps: list[str] = []
    steps: list[Step] = []
    reads: dict[str, int] = {}
    writes: dict[str, int] = {}
    for n, st in enumerate(comp.steps):
        where = f"{name}: step {n} ({st.skill})"
        try:
            sub = lookup(st.skill)
        except KeyError as e:
            raise ValueError(f"{where}: {e.args[0] if e.args else e}") from None
        slots = _slots(sub)
        if len(st.bindings) != len(slots):
            raise ValueError(
                f"{where}: takes {len(slots)} binding(s) ({', '.join(s.name for s in slots)}), "
                f"got {len(st.bindings)}"
            )
        bound: list[Binding] = []
        for slot, b in zip(slots, st.bindings, strict=True):
            if is_const(b):
                vtype = "scalar"
                if slot.role != "in":
                    raise ValueError(f"{where}: constant {b!r} bound to output slot {slot.name!r}")
                bound.append(float(b))
                if not accepts(slot.type, vtype):
                    raise ValueError(
                        f"{where}: slot {slot.name!r} ({slot.type}) cannot take a constant"
                    )
                continue
            if not isinstance(b, str):
                raise ValueError(f"{where}: binding {b!r} must be a name, '&skill' or a number")
            if b.startswith("&"):
                try:
                    ref = lookup(b[1:])
                except KeyError as e:
                    raise ValueError(f"{where}: {e.args[0] if e.args else e}") from None
                if ref.weights:
                    raise ValueError(
                        f"{where}: skill {ref.key} has weights and cannot be passed as f"
                    )
                vtype = skill_type([a.type for a in ref.args])
                if ref.key not in deps:
                    deps.append(ref.key)
                b = "&" + ref.key
            elif b in names:
                vtype = names[b]
                if slot.role in ("in", "inout"):
                    reads.setdefault(b, n)
                if slot.role in ("out", "inout"):
                    writes.setdefault(b, n)
            else:
                raise ValueError(f"{where}: unknown name {b!r} for slot {slot.name!r}")
            if not accepts(slot.type, vtype):
                raise ValueError(
                    f"{where}: slot {slot.name!r} has type {slot.type}, "
                    f"cannot bind {b!r} of type {vtype}"
                )
            bound.append(b)
        if sub.key not in deps:
            deps.append(sub.key)
        steps.append(Step(sub.key, tuple(bound)))

    args = comp.args
    if infer_roles:
        roles = []
        for a in comp.args:
            r, w = reads.get(a.name), writes.get(a.name)
            role = "in" if w is None else ("out" if r is None or w < r else "inout")
            if r is not None and w is not None and r == w:
                role = "inout"
            roles.append(ArgSpec(a.name, a.type, role))
        args = tuple(roles)
    comp = Composition(args, tuple(steps), comp.temps, comp.weights)
    plan, note = jacobian_plan(comp, lookup)
    source = _generate(name, comp, deps, lookup, plan)
    return Compiled(
        source, tuple(deps), args, None if plan is None else plan[0], note, tuple(steps)
    )


# ------------------------------------------------------------------ jacobian plan
def _effective_jacobian(st: Step, lookup) -> str | None:
    sub = lookup(st.skill)
    if sub.jacobian == "elementwise_if_f":
        f = st.bindings[0]
        if isinstance(f, str) and f.startswith("&") and lookup(f[1:]).jacobian == "elementwise":
            return "elementwise"
        return None
    return sub.jacobian


def jacobian_plan(comp: Composition, lookup) -> tuple[tuple | None, str]:
    """Decide whether the chain rule covers ``comp``; returns ``(plan, reason)``.

    ``plan`` is ``(kind, chain)`` with ``chain`` the step indices whose Jacobian entries
    run, in order; ``None`` with a reason when no Jacobian code is generated.
    """
    outs = [a for a in comp.args if a.role == "out"]
    if len(outs) != 1 or any(a.role == "inout" for a in comp.args):
        return None, "the chain rule needs exactly one output argument and no inout ones"
    out = outs[0].name
    data_args = [a for a in comp.args if base_type(a.type) != "skill"]
    if comp.weights:
        kind, tracked = "weights", {"weights"}
    else:
        if not data_args or data_args[0].role != "in":
            return None, "no input argument to differentiate"
        kind, tracked = "elementwise", {data_args[0].name}
    chain: list[int] = []
    for n, st in enumerate(comp.steps):
        sub = lookup(st.skill)
        slots = _slots(sub)
        touched = [
            (i, s) for i, (s, b) in enumerate(zip(slots, st.bindings, strict=True)) if b in tracked
        ]
        if not touched:
            continue
        ek = _effective_jacobian(st, lookup)
        outs_ = [i for i, s in enumerate(slots) if s.role == "out"]
        if len(outs_) != 1 or any(s.role == "inout" for s in slots):
            return None, f"step {n} ({st.skill}) does not have exactly one output"
        if any(s.role != "in" for _, s in touched):
            return None, f"step {n} ({st.skill}) overwrites a differentiated value"
        if len(touched) != 1:
            return None, f"step {n} ({st.skill}) reads a differentiated value twice"
        i, s = touched[0]
        first_data = next(j for j, x in enumerate(slots) if base_type(x.type) != "skill")
        if st.bindings[i] == "weights":
            if s.name != "weights" or ek != "weights" or chain:
                return None, f"step {n} ({st.skill}) uses the weights without weights-Jacobian code"
        elif ek != "elementwise" or i != first_data:
            return None, (
                f"step {n} ({st.skill}) is not elementwise-differentiable in its first argument"
            )
        chain.append(n)
        tracked.add(st.bindings[outs_[0]])
    if (
        not chain
        or comp.steps[chain[-1]].bindings[
            next(
                i
                for i, s in enumerate(_slots(lookup(comp.steps[chain[-1]].skill)))
                if s.role == "out"
            )
        ]
        != out
    ):
        return None, f"the differentiated chain does not end in the output {out!r}"
    for n in chain[:-1]:
        st = comp.steps[n]
        o = next(i for i, s in enumerate(_slots(lookup(st.skill))) if s.role == "out")
        if st.bindings[o] == out:
            return None, "the output is written before the end of the chain"
    return (kind, tuple(chain)), f"chain rule over steps {chain}"


# ------------------------------------------------------------------ code generation
def _generate(name, comp: Composition, deps: list[str], lookup, plan) -> str:
    sym = {k: f"S{j}" for j, k in enumerate(deps)}
    own = [(a.name, a.type) for a in comp.args] + (
        [("weights", comp.weights)] if comp.weights else []
    )
    loc: dict[str, int] = {}
    nxt = 0
    for a, _ in own:
        loc[a] = nxt
        nxt += 4
    vec_temps = [t for t in comp.temps if t.type != "scalar"]
    cells: dict[str, int] = {}  # frame cell holding a scalar temp / constant value
    consts: dict[float, str] = {}
    for t in comp.temps:
        loc[t.name] = nxt
        nxt += 4
    for st in comp.steps:
        for b in st.bindings:
            if is_const(b) and float(b) not in consts:
                consts[float(b)] = f"#c{len(consts)}"
                loc[consts[float(b)]] = nxt
                nxt += 4
    for key in [t.name for t in comp.temps if t.type == "scalar"] + list(consts.values()):
        cells[key] = nxt
        nxt += 1
    n_locals = nxt

    L: list[str] = []

    def emit(s: str) -> None:
        L.append(s if s.endswith(":") or s.startswith((";", ".")) else "    " + s)

    def dim(d, reg: str) -> None:
        if isinstance(d, int):
            emit(f"movi   {reg}, {d}")
            return
        arg, what = _DIM.match(d).groups()
        if what == "size":
            emit(f"ldf    {reg}, {loc[arg] + 1}")
            emit(f"ldf    r7, {loc[arg] + 2}")
            emit(f"mul    {reg}, {reg}, r7")
        else:
            emit(f"ldf    {reg}, {loc[arg] + (1 if what == 'rows' else 2)}")

    def prologue(p: str = "") -> None:
        emit(f"enter  {n_locals}")
        for a, _ in own:
            for k in range(4):
                emit(f"stf    {loc[a] + k}, {a}+{k}")
        for key, c in cells.items():
            is_c = key.startswith("#c")
            value = next(v for v, k in consts.items() if k == key) if is_c else 0.0
            emit(f"movi   r0, {_num(value)}")
            emit(f"stf    {c}, r0")
            emit(f"lea    r0, {c}")
            emit(f"stf    {loc[key]}, r0")
            emit("movi   r0, 1")
            for k in (1, 2, 3):
                emit(f"stf    {loc[key] + k}, r0")
        if vec_temps:
            emit("mov    r1, sp                 ; temporaries start at the stack top")
            emit("movi   r2, 0                  ; cells allocated so far")
            for t in vec_temps:
                shape = t.shape if t.type == "matrix" else (t.shape[0], 1)
                dim(shape[0], "r3")
                dim(shape[1], "r4")
                emit("add    r5, r1, r2")
                emit(f"stf    {loc[t.name]}, r5      ; {t.name}: [addr, rows, cols, type]")
                emit(f"stf    {loc[t.name] + 1}, r3")
                emit(f"stf    {loc[t.name] + 2}, r4")
                emit(f"movi   r5, {int(data_type(t.type))}")
                emit(f"stf    {loc[t.name] + 3}, r5")
                emit("mul    r3, r3, r4")
                emit("add    r2, r2, r3")
            emit("movi   r6, 0")
            emit(f"{p}alloc:")
            emit(f"jz     r2, {p}allocated")
            emit("push   r6")
            emit("addi   r2, r2, -1")
            emit(f"jmp    {p}alloc")
            emit(f"{p}allocated:")

    def call(n: int, st: Step, entry: str, out_override: str | None = None) -> None:
        sub = lookup(st.skill)
        s = sym[st.skill]
        emit(f"; step {n}: {st.skill}")
        slots = _slots(sub)
        for i, (slot, b) in enumerate(zip(slots, st.bindings, strict=True)):
            if out_override is not None and slot.role == "out":
                b = out_override
            if isinstance(b, str) and b.startswith("&"):
                emit(f"movi   {s}.slot{i}, {sym[b[1:]]}.h")
                emit(f"movi   {s}.slot{i}+1, 0")
                emit(f"movi   {s}.slot{i}+2, 0")
                emit(f"movi   {s}.slot{i}+3, 4")
                continue
            src = loc[consts[float(b)]] if is_const(b) else loc[b]
            for k in range(4):
                emit(f"ldf    {s}.slot{i}+{k}, {src + k}")
        emit(f"call   {s}.{entry}")

    sig = ", ".join(f"{a.name}: {base_type(a.type)}" for a in comp.args)
    emit(f"; {name}: composed from {', '.join(dict.fromkeys(st.skill for st in comp.steps))}")
    emit(f".skill {name}({sig})")
    if comp.weights:
        emit(".weights")
    if plan is not None:
        emit(".jacobian jac")
    prologue()
    for n, st in enumerate(comp.steps):
        call(n, st, "entry")
    emit("leave")
    emit("ret")
    if plan is not None:
        kind, chain = plan
        out = next(a.name for a in comp.args if a.role == "out")
        emit(f"; Jacobian entry ({kind}): forward values, then the chain rule in place in {out}")
        emit("jac:")
        prologue("j")
        emit("movi   mode, 0")
        for n, st in enumerate(comp.steps):
            if n == chain[-1]:
                continue
            sub_out = [
                b
                for s, b in zip(_slots(lookup(st.skill)), st.bindings, strict=True)
                if s.role == "out"
            ]
            if out in sub_out:
                continue
            call(n, st, "entry")
        emit("movi   mode, 1")
        for n in chain:
            call(n, comp.steps[n], "jac", out_override=out)
        emit("movi   mode, 1")
        emit("leave")
        emit("ret")
    return "\n".join(L) + "\n"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 2**53 else repr(float(v))


def dim_value(expr: int | str, shapes: dict[str, tuple[int, int]]) -> int:
    """Evaluate a dimension expression against concrete ``(rows, cols)`` shapes."""
    if isinstance(expr, int):
        return expr
    arg, what = _DIM.match(expr).groups()
    rows, cols = shapes[arg]
    return {"rows": rows, "cols": cols, "size": rows * cols}[what]


def temp_shape(temp: Temp, shapes: dict[str, tuple[int, int]]) -> tuple[int, int]:
    """Concrete ``(rows, cols)`` of a temporary (scalars are ``(1, 1)``)."""
    if temp.type == "scalar":
        return 1, 1
    if temp.type == "vector":
        return dim_value(temp.shape[0], shapes), 1
    return dim_value(temp.shape[0], shapes), dim_value(temp.shape[1], shapes)


__all__ = [
    "Binding",
    "Compiled",
    "Composition",
    "Step",
    "Temp",
    "compile_composition",
    "dim_value",
    "jacobian_plan",
    "parse_type",
    "temp_shape",
]
