"""Straight-line numba source emitted from the per-opcode specialised weights.

:func:`generate` turns the programs of :func:`algind_gym.cpu_v2.program.programs` (the
sparse records of the compiled matrices, partially evaluated per opcode by
:mod:`algind_gym.cpu_v2.specialise`) into Python source: one function per program (one per
opcode value, one general) in which every head, MLP unit, step bank and cell write of that
program is written out with its weights and channel indices as literals of the state's dtype
(module constants ``k_<bits> = F(value)``, ``F`` being ``np.float32`` or ``np.float64``),
and a driver that runs the dispatch prefix (PC read, PC decoder, opcode fetch) and calls the
function of the fetched opcode (the general one for any other opcode value). The CPU token's
channels are local variables (``x17``), and so are a cell token's (``c3``). What the source
does not hold is passed as arrays: the cell tokens' constant embedding (read by a decoded
head's copies and a cell token's units), the decoded heads' key tables, each step bank's
thresholds, prefix rows and guess, and the cell count (``consts``, ``tables``, ``fb``,
``ib``), so a function's source holds only its weights and channels: two layouts share a
function when its weights agree (on the benchmark and fuzz layouts, 26 of the 35 functions;
the others read layout-dependent biases such as the stack's bounds).

The emitted code performs the operations of :func:`algind_gym.cpu_v2.kernel._run_py` on the
same records in the same order: each sum starts from zero and adds its terms in the same
order, pending adds are applied after their sublayer in the same order, a unit whose output
is zero adds nothing, a product whose gate is zero is skipped. A step bank's count is the
array kernel's: the emitted code first guesses it from the bank's input by a slope and an
intercept fitted at build time and keeps the guess when the bank's probe is proved monotone
and the guess's two neighbouring probes bracket it (then it is the count the binary search
finds, whatever the input: :mod:`algind_gym.cpu_v2.bank_guess`); otherwise it runs the
array kernel's binary search. A decoded head whose query reads only constants and
channels that are functions of one bank's count (followed along the emitted operations by
:mod:`algind_gym.cpu_v2.bank_values`) looks its cell up by that count in a table that the
generator computes per count with the kernel's decode (``ib[ib[slot] + count]``); the
prefix's bank count is passed to the programs for that. Small helpers (``_acc``: add
``w * h`` unless ``h`` is zero, ``_ge``: a step, ...) keep the branches out of the long
functions. Two changes are exact by IEEE arithmetic: a weight of 1 is not multiplied
(``1 * v`` is ``v``), and a unit with no input terms (a constant) is evaluated at
generation time with numpy scalars of the dtype. So the generated kernel gives the array
kernel's bits (``tests/cpu_v2/test_codegen.py`` checks it against the array kernel and the
reference interpreter, runs the generated source by Python against the reference, and
checks that a weight only one opcode's program reads changes that program's function, the
general one and the driver only; ``tests/cpu_v2/test_bank_guess.py`` checks the emitted
bank code against the binary search).

:func:`~algind_gym.cpu_v2.codegen_runtime.load` writes each function's module to a file
named by the hash of its source in a cache directory (``ALGIND_GYM_CACHE_DIR``, default
``~/.cache/algind_gym``) and imports it; its functions are ``numba.njit(cache=True)``, so
numba compiles a function once per machine and reuses its code in later processes and for
every layout with the same function source.
Compiling is slow: every function of one circuit and dtype, about 17,500 lines, takes numba
minutes on a cold cache (``experiments/bench_cpu.py`` prints the time).
"""

from __future__ import annotations

import math

import numpy as np

from algind_gym.cpu_v2.bank_values import ChannelValues
from algind_gym.cpu_v2.codegen_runtime import HEADER, Buffers, Literals, load, module_name
from algind_gym.cpu_v2.sparse import (
    DIV,
    ID,
    LINEAR,
    MUL,
    NEVER,
    NONFINITE,
    SATURATE,
    STEP_GE,
    STEP_GT,
    SparseLayer,
    SparseUnit,
)


class _Emitter:
    """Source lines of one function, with the CPU channels it uses."""

    def __init__(self, lit, cpu_ch: int, n: int, k: int, d_k: int, buf: Buffers) -> None:
        self.lines: list[str] = []
        self.lit, self.cpu_ch, self.n, self.k, self.d_k, self.buf = lit, cpu_ch, n, k, d_k, buf
        self.used: set[int] = set()  # CPU channels read or written
        self.defined: set[int] = set()  # channels written so far in this function
        self.read_first: set[int] = set()  # channels read before this function wrote them
        self.tmp = 0
        self.unembed: tuple[int, int] = (0, 1)
        self.bank_guess = True  # False: every bank is the binary search (for benchmarks)
        self.head_tables = True  # False: every decoded head decodes its query (benchmarks)
        self.values = ChannelValues(buf.dt, lambda ch: _start(buf.dt, ch == cpu_ch))
        self.bank_cols: dict[str, tuple[str, np.ndarray]] = {}  # bank add -> (count, column)
        self.unit_vals: dict[str, object] = {}  # a CPU-side unit's output -> its known value
        self.counts: set[str] = set()  # bank counts that head lookups read
        self.tag = ""  # a prefix of this function's local names

    def new(self, stem: str) -> str:
        self.tmp += 1
        return f"{self.tag}{stem}{self.tmp}"

    def put(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def x(self, ch: int) -> str:
        """A read of CPU channel ``ch``."""
        self.used.add(ch)
        if ch not in self.defined:
            self.read_first.add(ch)
        return f"x{ch}"

    def wx(self, ch: int) -> str:
        """A write of CPU channel ``ch`` (``x = x + ...`` reads it first)."""
        self.used.add(ch)
        if ch not in self.defined:
            self.read_first.add(ch)
        self.defined.add(ch)
        return f"x{ch}"

    # ------------------------------------------------------------ MLP units
    def dot(self, d: int, name: str, terms, bias: float | None, rd) -> None:
        """``name = ZERO + w0 * v0 + w1 * v1 ... + bias``: Python adds left to right, the
        kernel's order (``((0 + w0 v0) + w1 v1) ... + b``)."""
        expr = "ZERO" + "".join(f" + {self.term(w, rd(ch))}" for ch, w in terms)
        if bias is not None:
            expr += f" + {self.lit(bias)}"
        self.put(d, f"{name} = {expr}")

    def term(self, w, v: str) -> str:
        """``w * v``; ``v`` itself for a weight of 1 (``1 * v`` is ``v`` in IEEE arithmetic,
        and LLVM folds it so anyway)."""
        return v if self.buf.dt.type(w) == 1 else f"{self.lit(w)} * {v}"

    def unit(self, d: int, u: SparseUnit, rd) -> list:
        """Emit unit ``u`` (inputs read by ``rd``); returns its adds ``(channel, weight,
        value)``: the kernel adds ``weight * value`` unless ``value`` is zero."""
        if not u.w1 and u.op == LINEAR:  # a constant: evaluated here, in the dtype
            dt = self.buf.dt.type
            h = _act_value(dt(0.0) + dt(u.b1), u.act, dt)
            if h == 0:
                return []
            return [(ch, None, self.lit(dt(w) * h)) for ch, w in u.w2]
        pre, h = self.new("p"), self.new("h")
        self.dot(d, pre, u.w1, u.b1, rd)
        if u.op == LINEAR:
            value = pre
        elif u.op in (MUL, DIV):
            pb = self.new("p")
            self.dot(d, pb, u.w1b, u.b1b, rd)
            value = f"{pre} {'*' if u.op == MUL else '/'} {pb}"
        else:
            raise ValueError(f"unknown op code {u.op}")
        if u.act not in _ACT:
            raise ValueError(f"unknown activation code {u.act}")
        value = f"{_ACT[u.act]}({value})" if _ACT[u.act] else value
        if u.op == MUL:  # a closed gate (pre == 0) adds nothing
            value = f"_gate({pre}, {value})"
        self.put(d, f"{h} = {value}")
        if rd == self.x and self.head_tables:  # its value where the weights determine it
            self.unit_vals[h] = self.values.unit_value(u)
        return [(ch, "ONE" if self.buf.dt.type(w) == 1 else self.lit(w), h) for ch, w in u.w2]

    def bank(self, d: int, b, rd) -> list:
        """A step bank: the count from a guess whose two probes bracket it, else the binary
        search of the kernel (:mod:`algind_gym.cpu_v2.bank_guess`); returns its adds."""
        slot = 1 + self.buf.STRIDE * self.buf.bank(b)
        s, lo, hi, mid, z = (self.new(v) for v in ("s", "lo", "hi", "mid", "z"))
        t0, a0, p0, g0 = (self.new(v) for v in ("b", "a", "o", "g"))
        self.dot(d, s, b.bank_w, None, rd)
        self.put(d, f"{t0}, {a0}, {p0} = ib[{slot}], ib[{slot + 1}], ib[{slot + 2}]")
        self.put(d, f"{hi} = ib[{slot + 3}]")
        if self.bank_guess:
            self.put(d, f"{g0} = ib[{slot + 4}]")
            self.put(d, f"{lo} = _guess({s}, fb[{g0}], fb[{g0} + 1], {hi}, ib[{slot + 5}])")
            # Exact when the probe is monotone (ib[slot + 5]): the count is the one place
            # where it turns false. Otherwise (or a wrong guess) the binary search.
            below = f"({lo} > 0 and not _up({s} + fb[{t0} + {lo} - 1], ib[{a0} + {lo} - 1]))"
            above = f"({lo} < {hi} and _up({s} + fb[{t0} + {lo}], ib[{a0} + {lo}]))"
            self.put(d, f"if {lo} < 0 or {below} or {above}:")
        else:
            self.put(d, "if True:")
        self.put(d + 1, f"{lo} = 0")
        self.put(d + 1, f"while {lo} < {hi}:")
        self.put(d + 2, f"{mid} = ({lo} + {hi}) // 2")
        self.put(d + 2, f"{z} = {s} + fb[{t0} + {mid}]")
        # The kernel's probes, as selects rather than branches.
        up = self.new("up")
        self.put(d + 2, f"{up} = ({z} > ZERO) | (({z} == ZERO) & (ib[{a0} + {mid}] == 1))")
        self.put(d + 2, f"{lo} = _sel({up}, {mid} + 1, {lo})")
        self.put(d + 2, f"{hi} = _sel({up}, {hi}, {mid})")
        row = self.new("r")
        self.put(d, f"{row} = {p0} + {lo} * {len(b.outs)}")
        prefix = np.asarray(b.prefix, self.buf.dt).reshape(len(b.units) + 1, len(b.outs))
        adds = []
        for t, ch in enumerate(b.outs):
            adds.append((int(ch), None, f"_nz(fb[{row} + {t}])"))
            self.bank_cols[adds[-1][2]] = (lo, prefix[:, t])
        return adds

    def mlp(self, d: int, blocks, rd) -> list:
        adds = []
        for b in blocks:
            if b.bank:
                adds += self.bank(d, b, rd)
            else:
                for u in b.units:
                    adds += self.unit(d, u, rd)
        return adds

    def apply(self, d: int, adds, target, cpu: bool = False) -> None:
        """Pending adds into ``target(ch)``, in order: ``x + w * h`` unless ``h`` is zero
        (``_acc``); a constant or a bank value (``_nz``: kept only when non-zero) as is.
        ``cpu``: the targets are CPU channels, whose known values follow the adds."""
        for ch, w, val in adds:
            if cpu and w is None and val in self.bank_cols:
                self.values.add_bank(ch, *self.bank_cols[val])
            elif cpu and w is None:
                self.values.add_constant(ch, self.lit.values[val])
            elif cpu:
                weight = None if w == "ONE" else self.lit.values[w]
                self.values.add_unit(ch, weight, self.unit_vals.get(val))
            dst = target(ch)
            if w is None and val.startswith("_nz("):
                self.put(d, f"{dst} = _add({dst}, {val[4:-1]})")
            elif w is None:
                self.put(d, f"{dst} = {dst} + {val}")
            elif w == "ONE":
                self.put(d, f"{dst} = _add({dst}, {val})")
            else:
                self.put(d, f"{dst} = _acc({dst}, {w}, {val})")

    # ------------------------------------------------------------ heads
    def decode(self, d: int, h, cell_side_sink: bool) -> str:
        """The cell a decoded head selects (a local: ``-1`` for none): looked up by a bank's
        count when the query is a function of it (:mod:`algind_gym.cpu_v2.bank_values`),
        else decoded from the query."""
        found = self.values.head_targets(h, self.n, self.k) if self.head_tables else None
        if found is not None:
            count, targets = found
            t = self.new("t")
            self.put(
                d, f"{t} = ib[ib[{1 + self.buf.STRIDE * self.buf.targets(targets)}] + {count}]"
            )
            self.counts.add(count)
            return t
        comps: dict[int, list] = {}
        for ch, comp, w in h.q:
            comps.setdefault(comp, []).append((ch, w))
        q = []
        for b in range(self.d_k):
            if b in comps:
                q.append(self.new("q"))
                self.dot(d, q[-1], comps[b], None, self.x)
            else:
                q.append("ZERO")
        j, jj, t = self.new("j"), self.new("j"), self.new("t")
        bits = " + ".join(f"({q[b]} > ZERO) * {1 << b}" for b in range(self.k))
        self.put(d, f"{j} = {bits or 0}")
        self.put(d, f"{jj} = _clip({j}, n)")  # loads in range; the pick checks j < n
        tb = self.buf.table(h)
        sc, ss = self.new("sc"), self.new("ss")
        keys = [f"tables[{tb}, {jj}, {b}]" for b in range(self.d_k)]
        self.put(d, f"{sc} = ZERO" + "".join(f" + {keys[b]} * {q[b]}" for b in range(self.d_k)))
        if cell_side_sink:
            terms = "".join(f" + {keys[b]} * {self.lit(h.sink[b])}" for b in range(self.d_k))
        else:
            terms = "".join(f" + {self.lit(h.sink[b])} * {q[b]}" for b in range(self.d_k))
        self.put(d, f"{ss} = ZERO{terms}")
        self.put(d, f"{t} = _pick({j}, n, {sc}, {ss})")
        return t

    def read_heads(self, d: int, heads, consts: np.ndarray) -> None:
        targets = []
        for h in heads:
            if h.fixed == NEVER:
                continue
            targets.append((h, h.fixed if h.fixed >= 0 else self.decode(d, h, False)))
        for h, t in targets:
            for src, dst in h.v:
                if src == 0:
                    val = f"cells[i, {t}]"
                elif src == 1:
                    val = f"_sgn(cells[i, {t}])"
                elif isinstance(t, int):
                    val = self.lit(consts[t, src])
                else:  # t == -1 reads the last row (wrap-around); ``_addif`` drops it
                    val = f"consts[{t}, {src}]"
                x = self.wx(dst)
                self.values.forget(dst)
                if isinstance(t, int):
                    self.put(d, f"{x} = {x} + {val}")
                else:
                    self.put(d, f"{x} = _addif({x}, {val}, {t})")


def _start(dt: np.dtype, one: bool):
    """A CPU channel's value at the start of a pass: one for the constant channel, else 0."""
    return dt.type(1.0) if one else dt.type(0.0)


_ACT = {ID: "", STEP_GE: "_ge", STEP_GT: "_gt", SATURATE: "_sat", NONFINITE: "_nf"}


def _act_value(pre, act: int, dt):
    if act == ID:
        return pre
    if act == STEP_GE:
        return dt(1.0) if pre >= 0 else dt(0.0)
    if act == STEP_GT:
        return dt(1.0) if pre > 0 else dt(0.0)
    if act == SATURATE:
        big = np.finfo(dt).max
        return big if pre > big else (-big if pre < -big else pre)
    return dt(0.0) if math.isfinite(pre) else dt(1.0)


def _write_layer(e: _Emitter, d: int, la: SparseLayer, consts, dl: int, layer: int) -> None:
    """The write heads of a layer: targets, then each selected cell's MLP and write (the
    kernel's order: the first head on a cell handles it, with every later head on it)."""
    heads = [h for h in la.write if h.fixed != NEVER]
    targets = [h.fixed if h.fixed >= 0 else e.decode(d, h, True) for h in heads]
    for a, (h, t) in enumerate(zip(heads, targets, strict=True)):
        conds = [] if isinstance(t, int) else [f"{t} >= 0"]
        same = []  # (later head, condition that it is on the same cell)
        first = True
        for b, tb in enumerate(targets):
            if b == a:
                continue
            if isinstance(t, int) and isinstance(tb, int):
                if tb == t and b < a:
                    first = False
                elif tb == t:
                    same.append((b, None))
            elif b < a:
                conds.append(f"{t} != {tb}")
            else:
                same.append((b, f"{t} == {tb}"))
        if not first:
            continue
        if conds:
            e.put(d, "if " + " and ".join(conds) + ":")
            d1 = d + 1
        else:
            d1 = d

        def shared(dd: int, a=a, t=t, same=same) -> None:
            # Several heads on one cell (or no own program): the layer's cell MLP on ``tok``.
            e.put(dd, f"for c in range({dl}):")
            e.put(dd + 1, f"tok[c] = consts[{t}, c]")
            e.put(dd, f"tok[0] = cells[i, {t}]")
            e.put(dd, f"tok[1] = _sgn(cells[i, {t}])")
            for b, cond in [(a, None), *same]:
                d2 = dd
                if cond is not None and heads[b].v:
                    e.put(dd, f"if {cond}:")
                    d2 += 1
                for src, dst in heads[b].v:
                    e.put(d2, f"tok[{dst}] = tok[{dst}] + {e.x(src)}")
            e.put(dd, f"_cell_{layer}(cells, i, {t}, tok)")

        def own(dd: int, h=h, t=t) -> None:
            if h.keeps_cell:
                e.put(dd, "pass  # a write that keeps the cell's value")
            else:
                _own_cell(e, dd, h, t, consts, e.unembed)

        if h.cell is None or any(cond is None for _, cond in same):
            shared(d1)
        elif not same:
            own(d1)
        else:
            e.put(d1, "if " + " and ".join(f"not ({c})" for _, c in same) + ":")
            own(d1 + 1)
            e.put(d1, "else:")
            shared(d1 + 1)


def _own_cell(e: _Emitter, d: int, h, t, consts, unembed) -> None:
    """A cell that head ``h`` alone selects: its specialised cell MLP on local channels."""
    new_v, new_s = unembed
    reads = {ch for b in h.cell for u in b.units for ch, _ in (*u.w1, *u.w1b)}
    reads |= {ch for b in h.cell if b.bank for ch, _ in b.bank_w}
    reads |= {new_v, new_s, *(dst for _, dst in h.v)}
    names = {}
    for ch in sorted(reads):
        name = e.new("c")
        names[ch] = name
        if ch == 0:
            e.put(d, f"{name} = cells[i, {t}]")
        elif ch == 1:
            e.put(d, f"{name} = _sgn(cells[i, {t}])")
        elif isinstance(t, int):
            e.put(d, f"{name} = {e.lit(consts[t, ch])}")
        else:
            e.put(d, f"{name} = consts[{t}, {ch}]")
    for src, dst in h.v:
        e.put(d, f"{names[dst]} = {names[dst]} + {e.x(src)}")
    adds = e.mlp(d, h.cell, names.__getitem__)
    _unembed(e, d, adds, names[new_v], names[new_s], t, unembed)


def _unembed(e: _Emitter, d: int, adds, tok_v: str, tok_s: str, t, unembed) -> None:
    ov, os_ = e.new("ov"), e.new("os")
    e.put(d, f"{ov} = ZERO")
    e.put(d, f"{os_} = ZERO")
    outs = {unembed[0]: ov, unembed[1]: os_}
    e.apply(d, [a for a in adds if a[0] in outs], outs.__getitem__)
    v, s = e.new("v"), e.new("s")
    e.put(d, f"{v} = {tok_v} + {ov}")
    e.put(d, f"{s} = {tok_s} + {os_}")
    e.put(d, f"cells[i, {t}] = (ONE - ({s} + {s})) * abs({v})")


def _layers(e: _Emitter, d: int, layers, consts, dl: int, unembed) -> None:
    for li, la in enumerate(layers):
        for ch, v in la.init:
            e.put(d, f"{e.wx(ch)} = {e.lit(v)}")
            e.values.set(ch, e.buf.dt.type(v))
        e.read_heads(d, la.read, consts)
        if la.write:
            _write_layer(e, d, la, consts, dl, li)
        adds = e.mlp(d, la.cpu, e.x)
        e.apply(d, adds, e.wx, cpu=True)


def _cell_function(e: _Emitter, layer: int, blocks, unembed) -> list[str]:
    """``_cell_<layer>(cells, i, j, tok)``: a layer's (general) cell MLP on token ``tok``."""
    adds = e.mlp(1, blocks, lambda ch: f"tok[{ch}]")
    _unembed(e, 1, adds, f"tok[{unembed[0]}]", f"tok[{unembed[1]}]", "j", unembed)
    return ["@numba.njit(**_opts)", f"def _cell_{layer}(cells, i, j, tok):", *e.lines]


def _module(head: str, imports: dict[str, list[str]], e: _Emitter, body: list[str]) -> str:
    lines = [f"from {head} import *  # noqa: F403"]
    lines += [f"from {mod} import {', '.join(names)}" for mod, names in imports.items()]
    return "\n".join([*lines, *e.lit.lines, "", "", *body, ""])


def generate(
    progs: list,
    disp: int,
    meta: dict,
    consts: np.ndarray,
    dtype,
    bank_guess: bool = True,
    head_tables: bool = True,
) -> tuple:
    """Sources and arrays of the generated kernel for ``progs`` (see the module docstring).

    ``progs``: one program per opcode value, then the general program, then the dispatch
    prefix (:func:`algind_gym.cpu_v2.program.programs` with ``specialised=True``); ``meta``
    has ``n_cells``, ``n_bits``, ``d_k``, ``cpu``, ``dl``, ``new.v``, ``new.s``;
    ``bank_guess=False`` emits every step bank as the binary search alone (the code before
    :mod:`algind_gym.cpu_v2.bank_guess`) and ``head_tables=False`` every decoded head as
    the decode of its query (before :mod:`algind_gym.cpu_v2.bank_values`), both kept for
    side-by-side benchmarks.

    Returns ``(sources, fb, ib, tables)``: one module source per function, in import order
    (the helpers, each layer's cell MLP, each program, the driver, whose ``run`` and
    ``run_parallel`` are the kernel), each module named by :func:`module_name`.
    """
    dt = np.dtype(dtype)
    buf = Buffers(dt, meta["n_cells"])
    n_ops = len(progs) - 2
    unembed = (meta["new.v"], meta["new.s"])
    dl, cpu_ch = meta["dl"], meta["cpu"]

    def emitter() -> _Emitter:
        e = _Emitter(Literals(dt), cpu_ch, meta["n_cells"], meta["n_bits"], meta["d_k"], buf)
        e.unembed = unembed
        e.bank_guess, e.head_tables = bank_guess, head_tables
        return e

    header = HEADER.format(dtype=dt.name)
    head = module_name(header)
    sources = [header]
    cells_of: dict[str, list[str]] = {}
    cell_layers = sorted(
        {li for prog in progs for li, la in enumerate(prog) for h in la.write if h.fixed != NEVER}
    )
    for li in cell_layers:
        blocks = next(prog[li].cell for prog in progs if prog[li].write)
        e = emitter()
        sources.append(_module(head, {}, e, _cell_function(e, li, blocks, unembed)))
        cells_of[module_name(sources[-1])] = [f"_cell_{li}"]
    # The dispatch prefix (in the driver) and which of its channels the programs read.
    pre = emitter()
    pre.tag = "d"  # the prefix's bank counts are passed to the programs by name
    pre.defined.add(cpu_ch)
    pre.used.add(cpu_ch)  # set at the start of every pass, for the programs that read it
    _layers(pre, 4, progs[-1], consts, dl, unembed)

    def after_prefix(ch: int):
        if ch in pre.values.written:
            return pre.values.known.get(ch)
        return _start(dt, ch == cpu_ch)

    bodies = []
    for prog in progs[:-1]:
        e = emitter()
        e.values = ChannelValues(dt, after_prefix)
        _layers(e, 1, prog, consts, dl, unembed)
        bodies.append(e)
    passed = sorted(set().union(*(e.read_first for e in bodies)) & pre.defined)
    # The prefix's bank counts that the programs' head lookups read.
    counts = sorted(c for c in set().union(*(e.counts for e in bodies)) if c.startswith(pre.tag))
    params = "".join(f", x{ch}" for ch in passed) + "".join(f", {c}" for c in counts)
    ops: dict[str, list[str]] = {}
    for p, e in enumerate(bodies):
        name = f"_op_{p}" if p < n_ops else "_general"
        inits = [f"    x{ch} = {'ONE' if ch == cpu_ch else 'ZERO'}" for ch in sorted(e.used)]
        inits = [line for line in inits if int(line.split()[0][1:]) not in passed]
        body = [
            "@numba.njit(**_opts)",
            f"def {name}(cells, i, consts, tables, fb, ib, tok{params}):",
            "    n = ib[0]",
            *inits,
            *e.lines,
            "    return",
        ]
        sources.append(_module(head, cells_of, e, body))
        ops[module_name(sources[-1])] = [name]
    d4 = " " * 16
    call = f"(cells, i, consts, tables, fb, ib, tok{params})"
    dispatch = [
        f"{d4}code = x{disp}",
        f"{d4}if code >= ZERO and code < {n_ops} and code == math.floor(code):",
        f"{d4}    p = int(code)",
        f"{d4}else:",
        f"{d4}    p = {n_ops}",
    ]
    for p in range(n_ops):
        dispatch += [f"{d4}{'if' if p == 0 else 'elif'} p == {p}:", f"{d4}    _op_{p}{call}"]
    dispatch += [f"{d4}else:", f"{d4}    _general{call}"]
    driver = [
        "def _run_py(cells, n_steps, budget, consts, tables, fb, ib, n_chunks):",
        "    n_machines = cells.shape[0]",
        "    n = ib[0]",
        "    for i in range(n_machines):  # the entry check: every cell finite, else run nothing",
        "        for j in range(cells.shape[1]):",
        "            if not math.isfinite(cells[i, j]):",
        "                return i * cells.shape[1] + j",
        "    for chunk in numba.prange(n_chunks):",
        f"        tok = np.zeros({dl}, cells.dtype)",
        "        n0 = chunk * n_machines // n_chunks",
        "        n1 = (chunk + 1) * n_machines // n_chunks",
        "        for i in range(n0, n1):",
        "            for _ in range(n_steps):",
        "                if cells[i, 4] != ZERO or cells[i, 5] != ZERO:",
        "                    break  # halted or faulted",
        *[f"{d4}x{ch} = {'ONE' if ch == cpu_ch else 'ZERO'}" for ch in sorted(pre.used)],
        *pre.lines,
        *dispatch,
        "            # the driver's rule (interpreter.run): still running after the budget",
        "            if budget != ZERO and cells[i, 4] == ZERO and math.trunc(cells[i, 5]) == ZERO:",
        "                cells[i, 5] = budget",
        "    return -1",
        "",
        "",
        "run = numba.njit(**_opts)(_run_py)",
        "run_parallel = numba.njit(parallel=True, **_opts)(_run_py)",
    ]
    sources.append(_module(head, ops, pre, driver))
    return (sources, *buf.arrays())


def generated_kernel(
    c, dtype, progs: list, disp: int, bank_guess: bool = True, head_tables: bool = True
):
    """``(module, consts, tables, fb, ib)``: the generated kernel of circuit ``c``'s
    specialised ``progs`` (:func:`algind_gym.cpu_v2.program.programs`), compiled by numba on
    its first call (or loaded from numba's cache); ``bank_guess`` and ``head_tables`` as in
    :func:`generate`."""
    dt = np.dtype(dtype)
    consts = np.ascontiguousarray(np.asarray(c.cell_constants, dt))
    sources, fb, ib, tables = generate(
        progs, disp, circuit_meta(c), consts, dt, bank_guess, head_tables
    )
    return load(sources), consts, tables, fb, ib


def circuit_meta(c) -> dict:
    """What :func:`generate` reads of circuit ``c`` besides its programs: sizes and the
    channels of the CPU token and of the new cell value and sign."""
    return {
        "n_cells": c.meta["n_cells"],
        "n_bits": c.meta["n_bits"],
        "d_k": c.d_k,
        "cpu": c.cpu["cpu"],
        "dl": len(c.cell),
        "new.v": c.cell["new.v"],
        "new.s": c.cell["new.s"],
    }
