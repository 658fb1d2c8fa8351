"""Partial evaluation of the compiled weights per opcode (a JIT's constant folding).

The decoder MLP's output (the control channels ``ctl.*``) is a function of the fetched
opcode, and every later block is gated by those channels. :func:`specialise` therefore
builds, from the sparse records of :mod:`algind_gym.cpu_v2.sparse`, one program per opcode
value ``c`` in ``0..MAX_OPCODE`` (plus a general one for an opcode cell that is not such an
integer), at kernel build time:

1. **Dispatch.** The items the pass needs to know the opcode (the backward slice of the
   channel ``op.v``: the PC register read, the PC decoder bank, the opcode fetch head) form
   a prefix program that the kernel runs first; :func:`dispatch_slice` checks that running
   them early changes nothing (no other item writes what they write, and nothing reads it
   before they would have written it).
2. **Constant propagation** (abstract interpretation, :mod:`algind_gym.cpu_v2.abstract`):
   every CPU channel is an exact constant of the state's dtype or an interval; with
   ``op.v = c`` the decoder bank's output is a constant row, and so on through the layers.
   A unit whose output is the constant 0 (a closed gate, a step that cannot fire) is
   dropped; a unit with a constant non-zero output becomes a constant unit that adds the
   same values (``W_2[:, u] * h`` computed in the dtype) at the same place; a bank whose
   input is constant becomes its constant prefix row; a head whose query (or key) is
   constant selects a fixed cell (or none), computed once.
3. **Liveness** (backward): a unit, bank or read head whose outputs no later live item
   reads is dropped; the write heads (they change cells) are the roots. A term of a live
   unit whose input is exactly zero is dropped (not in a divide unit), and a product whose
   gate is the constant 1 becomes its second factor.
4. **Constants out of the pass** (:func:`_prefill`): a channel that only constant units
   write, all before anything reads it, is written once at the program's start.
5. **Write-back** (:func:`_cell_program`, :func:`_keeps_cell`): each write head gets the
   cell MLP specialised to a cell that it alone selects, and a write that provably gives
   back the cell's value for every 0/1 value of its gates (the SP write of an opcode that
   keeps SP) is skipped by the kernel.

:func:`program_work` counts what a program does per pass (the figures in the README).

Exactness: every remaining sum keeps its terms in the dense matmul's order (only units and
terms whose value is exactly zero, or whose output is never read, are dropped); constants
are computed with the kernel's operations in the state's dtype; an interval decides a step
only when its bounds are small integers, where the dtype's rounding is exact and monotone.
"""

from __future__ import annotations

import itertools

import numpy as np

from algind_gym.cpu_v2.abstract import (
    UNKNOWN,
    ZERO,
    Stream,
    bank_output,
    interval,
    tag,
    unit_output,
)
from algind_gym.cpu_v2.sparse import (
    DECODE,
    DIV,
    LINEAR,
    MUL,
    NEVER,
    SparseBlock,
    SparseHead,
    SparseLayer,
    SparseUnit,
)
from algind_gym.cpu_v2.sparse import fixed_target as _fixed_target

_READ, _WRITE, _MLP = 0, 1, 2
"""Sub-steps of a layer in the kernel's order (write heads see the read heads' adds)."""


def _reads(item) -> set[int]:
    if isinstance(item, SparseHead):
        return {ch for ch, _, _ in item.q} | (
            {s for s, _ in item.v} if item.kind == "write" else set()
        )
    if item.bank:
        return {ch for ch, _ in item.bank_w}
    return {ch for u in item.units for ch, _ in (*u.w1, *u.w1b)}


def _writes(item) -> set[int]:
    if isinstance(item, SparseHead):
        return {d for _, d in item.v} if item.kind == "read" else set()
    if item.bank:
        return {int(ch) for ch in item.outs}
    return {ch for u in item.units for ch, _ in u.w2}


def _positions(layers: list[SparseLayer]):
    """``(position, item)`` of every CPU-side item in the kernel's order."""
    for li, la in enumerate(layers):
        for h in la.read:
            yield (li, _READ), h
        for h in la.write:
            yield (li, _WRITE), h
        for b in la.cpu:
            yield (li, _MLP), b


def dispatch_slice(layers: list[SparseLayer], channel: int) -> set[int]:
    """``id`` of every item needed to compute ``channel`` (the opcode), checked hoistable.

    Raises:
        ValueError: if ``channel`` is not written by exactly one read head, or if running
            the slice first could change a result (see the module docstring).
    """
    writers = [(li, h) for li, la in enumerate(layers) for h in la.read if channel in _writes(h)]
    if len(writers) != 1:
        raise ValueError(f"dispatch channel {channel} must be written by one read head")
    li0, head = writers[0]
    items, needed = {id(head)}, {ch for ch, _, _ in head.q}
    for li in range(li0 - 1, -1, -1):
        for b in layers[li].cpu:
            if _writes(b) & needed:
                items.add(id(b))
                needed |= _reads(b)
        for h in layers[li].read:
            if _writes(h) & needed:
                items.add(id(h))
                needed |= _reads(h)
    written: dict[int, tuple] = {}
    for pos, item in _positions(layers):
        if id(item) in items:
            for ch in _writes(item):
                written.setdefault(ch, pos)
    for pos, item in _positions(layers):
        if id(item) in items:
            continue
        if _writes(item) & set(written):
            raise ValueError(f"cannot hoist the opcode fetch: another item writes {item.name}")
        for ch in _reads(item) & set(written):
            if pos <= written[ch]:
                raise ValueError(f"cannot hoist the opcode fetch: {item.name} reads it earlier")
    return items


class _Cache:
    """Shared specialised copies, so that programs reuse identical heads and blocks."""

    def __init__(self) -> None:
        self.heads: dict[tuple, SparseHead] = {}
        self.blocks: dict[tuple, SparseBlock] = {}

    def head(self, h: SparseHead, fixed: int, cell: tuple | None = None) -> SparseHead:
        if fixed == h.fixed and cell is None:
            return h
        blocks, keeps = cell or (None, False)
        key = (id(h), fixed, keeps, None if blocks is None else tuple(id(b) for b in blocks))
        if key not in self.heads:
            self.heads[key] = SparseHead(
                h.name, h.kind, h.q, h.v, h.sink, h.table, fixed, blocks, keeps
            )
        return self.heads[key]

    def block(self, b: SparseBlock, units: list[SparseUnit]) -> SparseBlock:
        if len(units) == len(b.units) and all(u is v for u, v in zip(units, b.units, strict=True)):
            return b
        key = tuple((u.op, u.act, u.b1, u.b1b, u.w1, u.w1b, u.w2) for u in units)
        if key not in self.blocks:
            self.blocks[key] = SparseBlock(b.name, b.side, units)
        return self.blocks[key]


def _const_unit(adds: list[tuple[int, float]]) -> SparseUnit:
    """Adds fixed values: ``pre = 1``, ``h = 1``, ``W_2[:, u] = adds`` (exact: ``w * 1``)."""
    return SparseUnit(0, 0, 1.0, 0.0, (), (), tuple(adds))


def specialise(
    layers: list[SparseLayer],
    consts: np.ndarray,
    n_bits: int,
    n_channels: int,
    cpu_channel: int,
    dtype,
    dispatch: int | None = None,
    opcode: int | None = None,
    skip: set[int] | None = None,
    cache: _Cache | None = None,
    unembed: tuple[int, int] | None = None,
) -> list[SparseLayer]:
    """The program of one opcode (``opcode``; ``None``: any opcode) without the items in
    ``skip`` (the dispatch slice, which the kernel runs first). See the module docstring.

    With ``unembed`` (the cell channels ``new.v``, ``new.s`` the unembedding reads), every
    write head also gets the cell MLP specialised to a cell that it alone selects."""
    dt = np.dtype(dtype)
    n_cells = consts.shape[0]
    skip = skip or set()
    cache = cache or _Cache()
    x = Stream(n_channels, dt)
    x.set_const(cpu_channel, 1.0)
    # ---------------------------------------------------------------- forward
    head_fix: dict[int, int] = {}  # id(head) -> resolved target (or NEVER)
    unit_val: dict[int, object] = {}  # id(unit) -> ZERO, a constant or an interval
    bank_row: dict[int, list] = {}  # id(bank) -> its constant adds
    head_cell: dict[int, tuple] = {}  # id(write head) -> (its cell MLP, keeps the cell)
    zero_in: dict[int, frozenset] = {}  # id(unit) -> its inputs that are exactly zero
    gate_one: dict[int, bool] = {}  # id(unit) -> a product whose gate is the constant 1
    for la in layers:
        pend = []
        for h in la.read:
            j = h.fixed
            if j == DECODE and all(x.known(ch) for ch, _, _ in h.q):
                j = _fixed_target(h, x.values(), n_cells, n_bits, dt)
            head_fix[id(h)] = j
            if j == NEVER:
                continue
            for src, dst in h.v:
                pend.append((dst, x.head_value(consts, src, j)))
        for dst, v in pend:
            x.add(dst, v)
        if opcode is not None and any(dispatch in _writes(h) for h in la.read):
            x.set_const(dispatch, float(opcode))
        for h in la.write:
            j = h.fixed
            if j == DECODE and all(x.known(ch) for ch, _, _ in h.q):
                j = _fixed_target(h, x.values(), n_cells, n_bits, dt)
            head_fix[id(h)] = j
            if unembed is not None and j != NEVER:
                head_cell[id(h)] = _cell_program(la.cell, h, j, x, consts, unembed, cache)
        pend = []
        for b in la.cpu:
            if b.bank:
                is_const, row = bank_output(b, x, dt)
                if is_const:
                    bank_row[id(b)] = row
                    pend += [(ch, x.const(v)) for ch, v in row]
                else:
                    pend += row
                continue
            for u in b.units:
                h = unit_output(u, x, dt)
                unit_val[id(u)] = h
                zero_in[id(u)] = _zero_inputs(u, x)
                gate_one[id(u)] = u.op == MUL and x.dot(u.w1, u.b1)[2] == 1.0
                if h is not ZERO:
                    pend += [(ch, x.scale(h, w)) for ch, w in u.w2]
        for dst, v in pend:
            x.add(dst, v)
    # ---------------------------------------------------------------- backward
    live: set[int] = set()
    out = [SparseLayer(la.name) for la in layers]
    for la, new in zip(reversed(layers), reversed(out), strict=True):
        blocks = []
        for b in la.cpu:
            if id(b) in skip:
                continue
            if b.bank:
                if not set(int(ch) for ch in b.outs) & live:
                    continue
                if id(b) in bank_row:
                    blocks.append((b, [_const_unit(bank_row[id(b)])], ()))
                else:
                    blocks.append((b, None, _reads(b)))
                continue
            units, reads, run = [], set(), []
            for u in b.units:
                h = unit_val[id(u)]
                adds = [(ch, w) for ch, w in u.w2 if ch in live]
                if h is ZERO or not adds:
                    continue
                if x.is_const(h):
                    run += [(ch, float(x.scale_const(h, w))) for ch, w in adds]
                    continue
                if run:
                    units.append(_const_unit(run))
                    run = []
                u = _trim(u, adds, zero_in[id(u)], gate_one[id(u)])
                units.append(u)
                reads |= {ch for ch, _ in (*u.w1, *u.w1b)}
            if run:
                units.append(_const_unit(run))
            if units:
                blocks.append((b, units, reads))
        new_blocks = []
        for b, units, reads in blocks:
            live |= set(reads)
            new_blocks.append(b if units is None else cache.block(b, units))
        new.cpu = new_blocks
        new.cell = list(la.cell)
        for h in la.write:
            j = head_fix[id(h)]
            if id(h) in skip or j == NEVER:
                continue
            new.write.append(cache.head(h, j, head_cell.get(id(h))))
            live |= {s for s, _ in h.v} | ({ch for ch, _, _ in h.q} if j == DECODE else set())
        for h in la.read:
            j = head_fix[id(h)]
            if id(h) in skip or j == NEVER or not _writes(h) & live:
                continue
            new.read.append(cache.head(h, j))
            if j == DECODE:
                live |= {ch for ch, _, _ in h.q}
    return _prefill(out, x, cache)


def _is_const_unit(u: SparseUnit) -> bool:
    return u.op == 0 and u.act == 0 and u.b1 == 1.0 and not u.w1 and not u.w1b


def _prefill(layers: list[SparseLayer], x: Stream, cache: _Cache) -> list[SparseLayer]:
    """Move constants out of the pass: a channel whose every writer is a constant unit and
    whose every reader comes after its last writer is written once, with its final value
    ``x``, at the start of the program (``layers[0].init``), instead of by those units."""
    const_at: dict[int, tuple] = {}  # channel -> last position a constant unit writes it
    varying: set[int] = set()  # channels some other item writes
    first_read: dict[int, tuple] = {}
    for pos, item in _positions(layers):
        reads = _reads(item)
        if isinstance(item, SparseHead) and item.fixed != DECODE:
            reads -= {ch for ch, _, _ in item.q}  # a fixed head's query is not computed
        for ch in reads:
            first_read.setdefault(ch, pos)
        if isinstance(item, SparseBlock) and not item.bank:
            for u in item.units:
                for ch, _ in u.w2:
                    if _is_const_unit(u):
                        const_at[ch] = max(const_at.get(ch, pos), pos)
                    else:
                        varying.add(ch)
        else:
            varying |= _writes(item)
    moved = {
        ch
        for ch, pos in const_at.items()
        if ch not in varying and x.known(ch) and first_read.get(ch, (1 << 30,)) > pos
    }
    for la in layers:
        blocks = []
        for b in la.cpu:
            if b.bank or not any(_is_const_unit(u) for u in b.units):
                blocks.append(b)
                continue
            units = []
            for u in b.units:
                if _is_const_unit(u):
                    adds = [(ch, w) for ch, w in u.w2 if ch not in moved]
                    if len(adds) != len(u.w2):
                        u = _const_unit(adds) if adds else None
                if u is not None:
                    units.append(u)
            if units:
                blocks.append(cache.block(b, units))
        la.cpu = blocks
    layers[0].init = [(ch, float(x.v[ch][2])) for ch in sorted(moved)]
    return layers


def _zero_inputs(u: SparseUnit, x: Stream) -> frozenset[int]:
    """Input channels of ``u`` that are exactly zero (either sign) on stream ``x``."""
    return frozenset(ch for ch, _ in (*u.w1, *u.w1b) if x.v[ch][:2] == (0.0, 0.0))


def _trim(
    u: SparseUnit, adds: list[tuple[int, float]], zero: frozenset[int], gate_one: bool = False
) -> SparseUnit:
    """``u`` with only the outputs ``adds`` and without its terms on zero inputs.

    A term ``w * 0`` changes a sum at most by the sign of a zero, and only a divide unit's
    result depends on that sign (a product's zero factor, a step's or an identity's zero
    output do not), so a divide unit keeps every term. With ``gate_one`` (a product whose
    first factor is the constant 1) the unit becomes its second factor, computed by the
    same terms in the same order."""
    w1, w1b = u.w1, u.w1b
    if u.op != DIV and zero:
        w1 = tuple((ch, w) for ch, w in w1 if ch not in zero)
        w1b = tuple((ch, w) for ch, w in w1b if ch not in zero)
    if gate_one:  # 1 * y is y in IEEE arithmetic: the product is its second factor
        return SparseUnit(LINEAR, u.act, u.b1b, 0.0, w1b, (), tuple(adds))
    if len(adds) == len(u.w2) and len(w1) == len(u.w1) and len(w1b) == len(u.w1b):
        return u
    return SparseUnit(u.op, u.act, u.b1, u.b1b, w1, w1b, tuple(adds))


def _cell_program(
    cell_blocks: list[SparseBlock],
    h: SparseHead,
    j: int,
    x: Stream,
    consts: np.ndarray,
    unembed: tuple[int, int],
    cache: _Cache,
) -> list[SparseBlock]:
    """The cell MLP on a cell token that write head ``h`` alone selects (cell ``j``, or any
    cell if ``j`` is :data:`DECODE`): the token is the cell's embedding plus ``h``'s copies
    of the CPU channels ``x``; only units that add to ``unembed`` channels are kept.

    Returns ``(blocks, keeps)``: ``keeps`` is true when the write provably gives back the
    cell's value (:func:`_keeps_cell`)."""
    tok = Stream(consts.shape[1], x.dt)
    for ch in range(consts.shape[1]):
        col = consts[:, ch]
        tok.v[ch] = tok.const(col[j]) if j >= 0 else interval(float(col.min()), float(col.max()))
    cell = j if j >= 0 else "self"  # the cell's value and sign bit
    tok.v[0], tok.v[1] = (*UNKNOWN, ("cell", cell, 0)), (0.0, 1.0, None, ("cell", cell, 1))
    for src, dst in h.v:
        tok.add(dst, x.v[src])
    blocks = []
    for b in cell_blocks:
        if b.bank:
            blocks.append(b)
            continue
        units, run = [], []
        for u in b.units:
            hv = unit_output(u, tok, x.dt)
            adds = [(ch, w) for ch, w in u.w2 if ch in unembed]
            if hv is ZERO or not adds:
                continue
            if tok.is_const(hv):
                run += [(ch, float(tok.scale_const(hv, w))) for ch, w in adds]
                continue
            if run:
                units.append(_const_unit(run))
                run = []
            units.append(_trim(u, adds, _zero_inputs(u, tok)))
        if run:
            units.append(_const_unit(run))
        if units:
            blocks.append(cache.block(b, units))
    keeps = not any(b.bank for b in blocks) and _keeps_cell(
        [u for b in blocks for u in b.units], tok, unembed, j
    )
    return blocks, keeps


def _keeps_cell(units: list[SparseUnit], tok: Stream, unembed: tuple[int, int], j) -> bool:
    """Whether the cell MLP ``units`` on token ``tok`` leave the cell as it was.

    For every 0/1 value of the step outputs (``"bool"`` tags) the units read, the units are
    evaluated on the token with those values, and ``new.v`` must be the cell's own value
    (up to the sign of a zero) and ``new.s`` its sign bit (tags ``("cell", j, 0 / 1)``,
    :mod:`algind_gym.cpu_v2.abstract`): the unembedding ``(1 - 2 new.s) |new.v|`` then gives
    back the cell's (finite) value bit for bit. Example: the stack-pointer write of an
    opcode that keeps SP, ``(1 - g) * sp + g * sp'`` with ``sp'`` the SP register read."""
    cell = j if j >= 0 else "self"
    bools = sorted({ch for u in units for ch, _ in (*u.w1, *u.w1b) if tag(tok.v[ch]) == "bool"})
    if len(bools) > 3:
        return False
    for case in itertools.product((0.0, 1.0), repeat=len(bools)):
        t = Stream(0, tok.dt)
        t.v = list(tok.v)
        for ch, value in zip(bools, case, strict=True):
            t.set_const(ch, value)
        acc = Stream(2, tok.dt)  # the unembedding's sums of new.v and new.s, from 0
        for u in units:
            h = unit_output(u, t, t.dt)
            if h is ZERO:
                continue
            for ch, w in u.w2:
                if ch in unembed:
                    acc.add(unembed.index(ch), t.scale(h, w))
        for part, ch in enumerate(unembed):
            out = Stream(1, tok.dt)
            out.v[0] = t.v[ch]
            out.add(0, acc.v[part])
            if tag(out.v[0]) != ("cell", cell, part):
                return False
    return True


def program_work(layers: list[SparseLayer]) -> dict[str, int]:
    """What one pass of a program does at most: heads (decoded / fixed), banks, MLP units
    (CPU side) and their ``W_2`` entries, write heads whose cell keeps its value, and the
    constants written at the start."""
    read = [h for la in layers for h in la.read]
    write = [h for la in layers for h in la.write]
    blocks = [b for la in layers for b in la.cpu]
    units = [u for b in blocks if not b.bank for u in b.units]
    return {
        "decoded_heads": sum(h.fixed == DECODE for h in (*read, *write)),
        "fixed_heads": sum(h.fixed >= 0 for h in (*read, *write)),
        "banks": sum(b.bank for b in blocks),
        "units": len(units),
        "w2_entries": sum(len(u.w2) for u in units),
        "cell_writes": sum(not h.keeps_cell for h in write),
        "cell_units": sum(len(b.units) for h in write for b in (h.cell or [])),
        "constants": sum(len(la.init) for la in layers),
    }
