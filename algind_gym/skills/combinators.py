"""Higher-order combinators: assembly that calls a skill passed by pointer.

A combinator's first argument ``f`` is a skill reference: a ``SKILL`` descriptor whose
``addr`` is the callee's header ``h``. The callee's argument slot ``i`` is at
``h + 4 + 4 * i`` (:mod:`algind_gym.machine.layout`), so the combinator writes a descriptor
there with ``STORE`` through the cell that holds ``h`` and then ``CALLP``\\ s. With these,
a straight-line composition of skill calls expresses a loop, so a composed program works
at every length.

The sources are generated from a few templates (one per loop shape) because the loops
differ only in which descriptor goes into which slot of ``f``; the generated text is
ordinary assembly, readable with ``algind-gym show-skill``. :func:`repeat_source` is public
so users can instantiate ``repeat`` for other forwarded signatures.

Calling convention (shared by every library skill; see :mod:`algind_gym.skills`):

* registers ``r0..`` are caller-saved scratch: a combinator keeps ``h``, the loop index
  and its argument descriptors in frame locals (``ENTER``/``LDF``/``STF``) and reloads
  them after every ``CALLP``;
* re-entrancy: slots are static per skill block, so a skill that calls others first copies
  its own slot descriptors into its frame (the *prologue snapshot*) and never reads its
  slots again; callers write the *full* descriptor (all four cells) into the callee's slots
  immediately before every call. The same block may therefore be active several times on
  the call stack (e.g. ``map`` whose ``f`` itself uses ``map``).
* a failed size check jumps to ``.word 0 0 0 0`` (opcode 0), an ``INVALID_INSTRUCTION``
  fault: a wrong binding stops the machine instead of writing outside a buffer.
* Jacobian (tangent) mode, ``MODE = 1``: ``map``, ``zipmap`` and ``mapc`` run the same loop
  but bind row ``i`` of the tangent matrix ``T`` (bound to ``out``, shape ``(n, P)``) to
  ``f``'s output slot; ``CALLP`` then enters ``f``'s Jacobian entry, which scales that row
  by ``d f / d (first argument)``. See :mod:`algind_gym.skills.compose`.
"""

from __future__ import annotations

from dataclasses import dataclass

SCALAR, VECTOR = 1, 2

# A recipe says what descriptor goes into one slot of f on iteration i:
#   ("elem", arg)   [arg.addr + i, 1, 1, SCALAR]            (element i)
#   ("row", arg)    [arg.addr + i * arg.cols, arg.cols, 1, VECTOR]   (row i)
#   ("whole", arg)  the argument's own descriptor
#   ("prev", arg)   [prev, 1, 1, SCALAR]: scan's carry (init, then out[i - 1])
Recipe = tuple[str, str]


@dataclass(frozen=True)
class CombinatorDef:
    """Metadata of one built-in combinator (the source is generated)."""

    name: str
    args: tuple[tuple[str, str, str], ...]  # (name, type, role); f's type is refined
    description: str
    source: str
    jacobian: str | None = None


class _Asm:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, text: str) -> None:
        flush = text.endswith(":") or text.startswith((";", ".skill", ".jacobian", ".weights"))
        self.lines.append(text if flush else f"    {text}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _loop_source(
    name: str,
    args: list[tuple[str, str]],
    f_slots: list[Recipe],
    count: tuple[str, str],
    *,
    comment: str,
    jacobian_out: int | None = None,
    mode: str = "map",
) -> str:
    """Generate a combinator whose body is ``for i < n: f(<recipes>)``.

    Args:
        name: the skill name.
        args: the combinator's arguments after ``f`` as ``(name, type)``.
        f_slots: one recipe per slot of ``f``.
        count: ``("size", arg)`` (rows * cols) or ``("rows", arg)``: the loop count n.
        comment: a first line for the source.
        jacobian_out: index of ``f``'s output slot if the combinator has tangent mode.
        mode: ``"map"``; ``"fold"`` (out = init first); ``"reduce"`` (out = x[0], i from
            1, nothing if n == 0); ``"scan"`` (a ``prev`` recipe carries the state).
    """
    loc = {a: 1 + 4 * j for j, (a, _) in enumerate(args)}
    n_loc, i_loc, prev_loc = 1 + 4 * len(args), 2 + 4 * len(args), 3 + 4 * len(args)
    asm = _Asm()
    asm(f"; {name}: {comment}")
    sig = ", ".join(["f: skill"] + [f"{a}: {t}" for a, t in args])
    asm(f".skill {name}({sig})")
    if jacobian_out is not None:
        asm(".jacobian jac")

    def prologue() -> None:
        if mode == "fold":
            asm("load   r0, init, 0")
            asm("store  out, 0, r0          ; out = init")
        asm(f"enter  {prev_loc + 1}")
        asm("stf    0, f                  ; h: f's header")
        for a, _ in args:
            for k in range(4):
                asm(f"stf    {loc[a] + k}, {a}+{k}")
        kind, arg = count
        asm(f"ldf    r0, {loc[arg] + 1}")
        if kind == "size":
            asm(f"ldf    r1, {loc[arg] + 2}")
            asm("mul    r0, r0, r1")
        asm(f"stf    {n_loc}, r0             ; n")

    def checks(recipes: list[Recipe]) -> None:
        for kind, arg in recipes:
            if kind in ("elem", "row") and arg != count[1]:
                asm(f"ldf    r1, {loc[arg] + 1}")
                if kind == "elem":
                    asm(f"ldf    r2, {loc[arg] + 2}")
                    asm("mul    r1, r1, r2")
                asm("lt     r2, r1, r0")
                asm(f"jnz    r2, trap              ; {arg} is too small")

    def body(p: str, recipes: list[Recipe]) -> None:
        start = 0
        if mode == "reduce":
            asm(f"jz     r0, {p}done             ; n == 0: out is left as it is")
            asm(f"ldf    r1, {loc['x']}")
            asm("load   r1, r1, 0")
            asm("store  out, 0, r1          ; out = x[0]")
            start = 1
        if mode == "scan":
            asm(f"ldf    r1, {loc['init']}")
            asm(f"stf    {prev_loc}, r1          ; prev = &init")
        asm(f"movi   r1, {start}")
        asm(f"stf    {i_loc}, r1")
        asm(f"{p}loop:")
        asm(f"ldf    r0, {i_loc}              ; i")
        asm(f"ldf    r1, {n_loc}")
        asm("lt     r2, r0, r1")
        asm(f"jz     r2, {p}done")
        asm("ldf    r3, 0                  ; h")
        asm("movi   r4, 1")
        asm("movi   r7, 2")
        for s, (kind, arg) in enumerate(recipes):
            off = 4 + 4 * s
            if kind in ("elem", "prev"):
                if kind == "elem":
                    asm(f"ldf    r5, {loc[arg]}")
                    asm("add    r5, r5, r0")
                else:
                    asm(f"ldf    r5, {prev_loc}")
                asm(f"store  r3, {off}, r5          ; f.slot{s} = {kind} {arg}")
                for k in (1, 2, 3):
                    asm(f"store  r3, {off + k}, r4")
            elif kind == "row":
                asm(f"ldf    r6, {loc[arg] + 2}")
                asm("mul    r5, r6, r0")
                asm(f"ldf    r1, {loc[arg]}")
                asm("add    r5, r5, r1")
                asm(f"store  r3, {off}, r5          ; f.slot{s} = row i of {arg}")
                asm(f"store  r3, {off + 1}, r6")
                asm(f"store  r3, {off + 2}, r4")
                asm(f"store  r3, {off + 3}, r7")
            else:  # whole
                for k in range(4):
                    asm(f"ldf    r5, {loc[arg] + k}")
                    asm(
                        f"store  r3, {off + k}, r5"
                        + (f"          ; f.slot{s} = {arg}" if not k else "")
                    )
        if mode == "scan":
            asm(f"ldf    r5, {loc['out']}")
            asm("add    r5, r5, r0")
            asm(f"stf    {prev_loc}, r5          ; prev = &out[i]")
        asm("callp  r3")
        asm(f"ldf    r0, {i_loc}")
        asm("addi   r0, r0, 1")
        asm(f"stf    {i_loc}, r0")
        asm(f"jmp    {p}loop")
        asm(f"{p}done:")
        asm("leave")
        asm("ret")

    prologue()
    checks(f_slots)
    body("", f_slots)
    if jacobian_out is not None:
        jrec = list(f_slots)
        jrec[jacobian_out] = ("row", jrec[jacobian_out][1])  # row i of the tangent matrix
        asm("; tangent mode: out is bound to T (n x P); f scales row i of T in place")
        asm("jac:")
        prologue()
        checks(jrec)
        body("j", jrec)
    asm("trap:")
    asm(".word  0 0 0 0                 ; a size check failed: INVALID_INSTRUCTION")
    return _Asm_fix(asm.text())


def _Asm_fix(text: str) -> str:
    return (
        "\n".join(
            line.strip() if line.strip().endswith(":") else line for line in text.splitlines()
        )
        + "\n"
    )


def repeat_source(name: str, forwarded: list[tuple[str, str]], row_args: tuple[str, ...]) -> str:
    """Source of a ``repeat`` combinator: ``for t < k: f(forwarded args)``.

    Each forwarded argument is passed whole, except those named in ``row_args``: they are
    matrices and ``f`` receives their row ``t mod N`` (N = rows of the first of them), so a
    training step streams through a data set.

    Args:
        name: the skill name.
        forwarded: ``(name, type)`` of the arguments after ``f`` and ``k``, in ``f``'s order.
        row_args: the matrix arguments streamed by rows (may be empty).

    Example:
        >>> src = repeat_source("repeat_v", [("x", "vector")], ())
        >>> src.splitlines()[1]
        '.skill repeat_v(f: skill, k: scalar, x: vector)'
    """
    loc = {a: 1 + 4 * j for j, (a, _) in enumerate(forwarded)}
    k_loc = 1 + 4 * len(forwarded)
    n_loc, t_loc, i_loc = k_loc + 1, k_loc + 2, k_loc + 3
    asm = _Asm()
    rows = f"; row t mod N of {', '.join(row_args)}" if row_args else ""
    asm(f"; {name}: for t < k: f({', '.join(a for a, _ in forwarded)}){rows}")
    sig = ", ".join(["f: skill", "k: scalar"] + [f"{a}: {t}" for a, t in forwarded])
    asm(f".skill {name}({sig})")
    asm(f"enter  {i_loc + 1}")
    asm("stf    0, f")
    for a, _ in forwarded:
        for k in range(4):
            asm(f"stf    {loc[a] + k}, {a}+{k}")
    asm("load   r0, k, 0")
    asm(f"stf    {k_loc}, r0             ; k")
    if row_args:
        asm(f"ldf    r0, {loc[row_args[0]] + 1}")
        asm(f"stf    {n_loc}, r0             ; N: rows streamed")
        asm("jz     r0, done               ; no data: nothing to repeat")
        for a in row_args[1:]:
            asm(f"ldf    r1, {loc[a] + 1}")
            asm("lt     r2, r1, r0")
            asm(f"jnz    r2, trap              ; {a} has fewer rows than {row_args[0]}")
    asm("movi   r0, 0")
    asm(f"stf    {t_loc}, r0")
    asm(f"stf    {i_loc}, r0")
    asm("loop:")
    asm(f"ldf    r0, {t_loc}")
    asm(f"ldf    r1, {k_loc}")
    asm("lt     r2, r0, r1")
    asm("jz     r2, done")
    asm("ldf    r3, 0")
    asm(f"ldf    r0, {i_loc}")
    asm("movi   r4, 1")
    asm("movi   r7, 2")
    for s, (a, _) in enumerate(forwarded):
        off = 4 + 4 * s
        if a in row_args:
            asm(f"ldf    r6, {loc[a] + 2}")
            asm("mul    r5, r6, r0")
            asm(f"ldf    r1, {loc[a]}")
            asm("add    r5, r5, r1")
            asm(f"store  r3, {off}, r5          ; f.slot{s} = row i of {a}")
            asm(f"store  r3, {off + 1}, r6")
            asm(f"store  r3, {off + 2}, r4")
            asm(f"store  r3, {off + 3}, r7")
        else:
            for k in range(4):
                asm(f"ldf    r5, {loc[a] + k}")
                asm(f"store  r3, {off + k}, r5")
    asm("callp  r3")
    asm(f"ldf    r0, {t_loc}")
    asm("addi   r0, r0, 1")
    asm(f"stf    {t_loc}, r0")
    if row_args:
        asm(f"ldf    r0, {i_loc}")
        asm("addi   r0, r0, 1")
        asm(f"ldf    r1, {n_loc}")
        asm("eq     r2, r0, r1")
        asm("jz     r2, keep")
        asm("movi   r0, 0                  ; wrap around the data set")
        asm("keep:")
        asm(f"stf    {i_loc}, r0")
    asm("jmp    loop")
    asm("done:")
    asm("leave")
    asm("ret")
    asm("trap:")
    asm(".word  0 0 0 0")
    return _Asm_fix(asm.text())


S, V, M = "scalar", "vector", "matrix"


def _sig(*types: str) -> str:
    return f"skill({','.join(types)})"


def builtin_combinators() -> list[CombinatorDef]:
    """The combinators of the built-in library, in dependency-free order."""
    defs = []

    def add(name, args, desc, src, jac=None):
        defs.append(CombinatorDef(name, tuple(args), desc, src, jac))

    add(
        "map",
        [("f", _sig(S, S), "in"), ("x", V, "in"), ("out", V, "out")],
        "Apply a unary scalar skill f to every element: out[i] = f(x[i]).",
        _loop_source(
            "map",
            [("x", V), ("out", V)],
            [("elem", "x"), ("elem", "out")],
            ("size", "x"),
            comment="out[i] = f(x[i])",
            jacobian_out=1,
        ),
        "elementwise_if_f",
    )
    add(
        "zipmap",
        [("f", _sig(S, S, S), "in"), ("x", V, "in"), ("y", V, "in"), ("out", V, "out")],
        "Apply a binary scalar skill f elementwise to two vectors: out[i] = f(x[i], y[i]).",
        _loop_source(
            "zipmap",
            [("x", V), ("y", V), ("out", V)],
            [("elem", "x"), ("elem", "y"), ("elem", "out")],
            ("size", "x"),
            comment="out[i] = f(x[i], y[i])",
            jacobian_out=2,
        ),
        "elementwise_if_f",
    )
    add(
        "mapc",
        [("f", _sig(S, S, S), "in"), ("x", V, "in"), ("c", S, "in"), ("out", V, "out")],
        "Map a binary scalar skill f over a vector with a fixed scalar second argument "
        "(broadcast): out[i] = f(x[i], c).",
        _loop_source(
            "mapc",
            [("x", V), ("c", S), ("out", V)],
            [("elem", "x"), ("whole", "c"), ("elem", "out")],
            ("size", "x"),
            comment="out[i] = f(x[i], c)",
            jacobian_out=2,
        ),
        "elementwise_if_f",
    )
    add(
        "fold",
        [("f", _sig(S, S, S), "in"), ("x", V, "in"), ("init", S, "in"), ("out", S, "out")],
        "Fold (left reduce) a vector with a binary scalar skill and an initial value: "
        "out = f(...f(f(init, x[0]), x[1])..., x[n-1]).",
        _loop_source(
            "fold",
            [("x", V), ("init", S), ("out", S)],
            [("whole", "out"), ("elem", "x"), ("whole", "out")],
            ("size", "x"),
            comment="out = init; out = f(out, x[i]) for each i",
            mode="fold",
        ),
    )
    add(
        "reduce",
        [("f", _sig(S, S, S), "in"), ("x", V, "in"), ("out", S, "out")],
        "Reduce a non-empty vector with a binary scalar skill, seeded with the first "
        "element: out = f(...f(x[0], x[1])..., x[n-1]). An empty x leaves out unchanged.",
        _loop_source(
            "reduce",
            [("x", V), ("out", S)],
            [("whole", "out"), ("elem", "x"), ("whole", "out")],
            ("size", "x"),
            comment="out = x[0]; out = f(out, x[i]) for i >= 1",
            mode="reduce",
        ),
    )
    add(
        "scan",
        [("f", _sig(S, S, S), "in"), ("x", V, "in"), ("init", S, "in"), ("out", V, "out")],
        "Prefix scan with a carried state (the previous output): out[i] = f(carry, x[i]) "
        "where carry = init for i = 0 and out[i-1] afterwards.",
        _loop_source(
            "scan",
            [("x", V), ("init", S), ("out", V)],
            [("prev", "init"), ("elem", "x"), ("elem", "out")],
            ("size", "x"),
            comment="out[i] = f(out[i-1] or init, x[i])",
            mode="scan",
        ),
    )
    add(
        "map_rows",
        [("f", _sig(V, V, S), "in"), ("M", M, "in"), ("y", V, "in"), ("out", V, "out")],
        "Map over the rows of a matrix with a fixed vector: out[i] = f(M[i, :], y).",
        _loop_source(
            "map_rows",
            [("M", M), ("y", V), ("out", V)],
            [("row", "M"), ("whole", "y"), ("elem", "out")],
            ("rows", "M"),
            comment="out[i] = f(M[i, :], y)",
        ),
    )
    add(
        "outer",
        [("f", _sig(S, V, V), "in"), ("x", V, "in"), ("y", V, "in"), ("out", M, "out")],
        "Build a matrix row by row: out[i, :] = f(x[i], y).",
        _loop_source(
            "outer",
            [("x", V), ("y", V), ("out", M)],
            [("elem", "x"), ("whole", "y"), ("row", "out")],
            ("size", "x"),
            comment="out[i, :] = f(x[i], y)",
        ),
    )
    add(
        "mapv",
        [("f", _sig(V, S, S), "in"), ("x", V, "in"), ("y", V, "in"), ("out", V, "out")],
        "Map over a vector with a fixed vector as first argument: out[i] = f(y, x[i]).",
        _loop_source(
            "mapv",
            [("x", V), ("y", V), ("out", V)],
            [("whole", "y"), ("elem", "x"), ("elem", "out")],
            ("size", "x"),
            comment="out[i] = f(y, x[i])",
        ),
    )
    fwd = [("W", M), ("b", V), ("X", M), ("Y", M), ("lr", S)]
    add(
        "repeat",
        [
            ("f", _sig(M, V, V, V, S), "in"),
            ("k", S, "in"),
            ("W", M, "inout"),
            ("b", V, "inout"),
            ("X", M, "in"),
            ("Y", M, "in"),
            ("lr", S, "in"),
        ],
        "Repeat a training step k times: f(W, b, X[t mod N], Y[t mod N], lr) for t < k, "
        "streaming the rows of the data matrices X and Y (N = rows of X).",
        repeat_source("repeat", fwd, ("X", "Y")),
    )
    return defs
