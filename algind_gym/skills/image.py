"""Machine images and the one way to execute an action.

A :class:`MachineImage` is a :class:`~algind_gym.machine.layout.Layout` holding library skill
blocks plus named memory buffers, with the pointer table filled: one descriptor per buffer
(inputs, outputs, scratch, constants) and one ``SKILL`` descriptor per skill block (what a
combinator's ``f`` binds to). These pointer entries are exactly what an action can bind.

:meth:`MachineImage.execute` is the paper's action, F_comp with a hard alpha: copy the
bound pointer-table descriptors into the skill's slots (W^in), make the host-side
top-level call (:func:`algind_gym.machine.program.call`), and run the backend until the
skill returns, faults or exhausts its budget. It never raises for a bad action: an unknown
skill, a wrong number of bindings, an index outside the table, a type the slot does not
accept or a read-only entry (an input, a constant) in a slot the skill writes
(:meth:`MachineImage.can_bind`) sets ``FAULT = ADDRESS`` ("a pointer that is not
valid for this slot") on every machine and runs nothing. Machines already faulted stay
frozen (their cells are untouched), so a batch never resurrects a failed attempt.

The task layer (:mod:`algind_gym.tasks.workspace`) builds images for tasks; tests and
users can run a single skill with :func:`run_skill`.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from algind_gym.machine.isa import Fault
from algind_gym.machine.layout import DESCRIPTOR_WIDTH, DataType, Layout
from algind_gym.machine.program import Program, call, install_skill
from algind_gym.machine.state import MachineState
from algind_gym.skills.library import SkillLibrary, cached_per_library
from algind_gym.skills.signature import accepts, data_type, skill_type

BINDING_FAULT = Fault.ADDRESS
"""The fault a rejected action (bad skill, binding count, index or type) sets."""

DEFAULT_MAX_STEPS = 200_000


@dataclass(frozen=True)
class Buffer:
    """A named memory buffer: ``type`` scalar/vector/matrix, shape ``rows x cols``.

    ``value`` (optional) is written into every machine by :meth:`MachineImage.new_state`
    (constants). ``read_only`` buffers (a task's inputs and constants) may not be bound to
    a slot that the skill writes (role ``out`` or ``inout``).
    """

    name: str
    type: str
    rows: int
    cols: int = 1
    value: float | None = None
    read_only: bool = False

    @property
    def size(self) -> int:
        return self.rows * self.cols

    @property
    def shape(self) -> tuple[int, ...]:
        return {"scalar": (), "vector": (self.rows,), "matrix": (self.rows, self.cols)}[self.type]


@dataclass(frozen=True)
class PointerEntry:
    """One pointer-table entry: a buffer or a skill reference."""

    name: str
    type: str
    descriptor: tuple[int, int, int, int]
    skill: str | None = None
    read_only: bool = False


@dataclass
class ExecResult:
    """What one action did: per-machine fault codes and instructions executed."""

    faults: np.ndarray
    steps: np.ndarray
    error: str | None = None

    @property
    def ok(self) -> np.ndarray:
        return self.faults == Fault.NONE


_BACKENDS: dict[str, object] = {}


def resolve_backend(backend):
    """A backend object from a name (cached :func:`~algind_gym.cpu.backend.make_backend`)
    or an object with ``.run``, passed through."""
    if not isinstance(backend, str):
        return backend
    if backend not in _BACKENDS:
        from algind_gym.cpu.backend import make_backend

        _BACKENDS[backend] = make_backend(backend)
    return _BACKENDS[backend]


@dataclass
class MachineImage:
    """Skill blocks + buffers + pointer table of a batch of machines (see module docstring)."""

    library: SkillLibrary
    layout: Layout
    programs: dict[str, Program]
    pointers: tuple[PointerEntry, ...]
    buffers: dict[str, tuple[int, Buffer]]
    _template: np.ndarray | None = field(default=None, repr=False)
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {p.name: i for i, p in enumerate(self.pointers)}

    # ------------------------------------------------------------------ state
    def new_state(self, batch: int = 1, dtype=np.float64) -> MachineState:
        """Fresh idle (halted) machines: skills installed, pointer table filled, buffers zero
        (constants set)."""
        if self._template is None:
            row = _installed_skills(self.library, self.layout, self.programs)
            st = MachineState(self.layout, row[None].copy())
            for i, p in enumerate(self.pointers):
                st.write(self.layout.pointer(i), list(p.descriptor))
            for addr, buf in self.buffers.values():
                if buf.value is not None:
                    st.write(addr, [float(buf.value)] * buf.size)
            st.set_register("halt", 1)  # idle until an action calls a skill
            self._template = st.cells[0].copy()
        cells = np.repeat(self._template[None].astype(dtype), batch, axis=0)
        return MachineState(self.layout, cells)

    def write(self, state: MachineState, name: str, values) -> None:
        """Write buffer ``name`` in every machine; ``values`` has shape ``(batch, *shape)``
        or ``shape`` (broadcast)."""
        addr, buf = self.buffers[name]
        v = np.asarray(values, dtype=np.float64)
        if v.shape == buf.shape:
            v = np.broadcast_to(v, (state.batch, *buf.shape))
        if v.shape != (state.batch, *buf.shape):
            raise ValueError(
                f"buffer {name!r} has shape {buf.shape}; got values of shape {v.shape} "
                f"(expected {(state.batch, *buf.shape)} or {buf.shape})"
            )
        if buf.size:
            state.write(addr, v.reshape(state.batch, buf.size))

    def read(self, state: MachineState, name: str) -> np.ndarray:
        """Buffer ``name`` of every machine, shape ``(batch, *shape)`` (a copy)."""
        addr, buf = self.buffers[name]
        return state.read(addr, buf.size).reshape(state.batch, *buf.shape).copy()

    # --------------------------------------------------------------- binding
    @property
    def n_pointers(self) -> int:
        return len(self.pointers)

    def pointer_index(self, name: str) -> int:
        """Index of a pointer entry by name; skills as ``&NAME`` (latest) or ``&NAME@V``."""
        if name in self._index:
            return self._index[name]
        if name.startswith("&"):
            try:
                key = self.library.get(name[1:]).key
            except KeyError:
                key = None
            if key is not None and f"&{key}" in self._index:
                return self._index[f"&{key}"]
        raise KeyError(f"no pointer entry {name!r}; entries are {list(self._index)}")

    def can_bind(self, pointer: int, skill: str, slot: int) -> bool:
        """Whether pointer-table entry ``pointer`` may go into slot ``slot`` of ``skill``: the
        slot's type accepts the entry's (:func:`~algind_gym.skills.signature.accepts`), and
        a slot the skill writes (role ``out``/``inout``) gets no read-only entry."""
        try:
            sk = self.library.get(skill)
        except KeyError:
            return False
        if sk.key not in self.programs or not 0 <= slot < sk.n_slots:
            return False
        if not 0 <= pointer < len(self.pointers):
            return False
        return _binds(sk.slots[slot], self.pointers[pointer])

    def binding_mask(self, skill: str) -> np.ndarray:
        """Boolean ``(n_slots, n_pointers)``: which entries each slot of ``skill`` accepts
        (the rule of :meth:`can_bind`)."""
        sk = self.library.get(skill)
        return np.array(
            [[_binds(s, p) for p in self.pointers] for s in sk.slots], dtype=bool
        ).reshape(sk.n_slots, len(self.pointers))

    def check_action(self, skill: str, bindings: Sequence[int]) -> str | None:
        """None if ``(skill, bindings)`` is a valid action here, else why not."""
        try:
            sk = self.library.get(skill)
        except (KeyError, TypeError):
            return f"unknown skill {skill!r}"
        if sk.key not in self.programs:
            return f"skill {sk.key} is not installed in this image"
        if len(bindings) != sk.n_slots:
            return f"{sk.key} takes {sk.n_slots} binding(s), got {len(bindings)}"
        for i, p in enumerate(bindings):
            if isinstance(p, (bool, np.bool_)) or not isinstance(p, (int, np.integer)):
                return f"binding {i} must be a pointer-table index, got {p!r}"
            if not self.can_bind(int(p), sk.key, i):
                entry = self.pointers[int(p)] if 0 <= int(p) < len(self.pointers) else None
                if entry is not None and entry.read_only and _writes(sk.slots[i]):
                    return (
                        f"pointer {p} ({entry.name}) is read-only (an input or a constant) "
                        f"and slot {i} ({sk.slots[i].name}) of {sk.key} writes it"
                    )
                return f"pointer {p} cannot bind to slot {i} ({sk.slots[i].name}) of {sk.key}"
        return None

    # --------------------------------------------------------------- execute
    def execute(
        self,
        state: MachineState,
        skill: str,
        bindings: Sequence[int],
        backend="reference",
        max_steps: int = DEFAULT_MAX_STEPS,
        mode: int = 0,
    ) -> ExecResult:
        """Run one action on every machine of ``state`` (in place); never raises for a bad one.

        Args:
            state: machines built by :meth:`new_state`.
            skill: a skill name or key.
            bindings: one pointer-table index per slot (arguments, then weights).
            backend: a backend name (``"reference"``, ``"transformer"``, ...) or object.
            max_steps: instruction budget for this call (``BUDGET_EXHAUSTED`` beyond it).
            mode: 0 runs the output entry, 1 the Jacobian entry.
        """
        return self.execute_rows(state, [(slice(None), skill, bindings)], backend, max_steps, mode)[
            0
        ]

    def execute_rows(
        self,
        state: MachineState,
        calls: Sequence[tuple[slice | np.ndarray, str, Sequence[int]]],
        backend="reference",
        max_steps: int = DEFAULT_MAX_STEPS,
        mode: int = 0,
    ) -> list[ExecResult]:
        """Run different actions on different rows of one batch, in one backend call.

        Each call ``(rows, skill, bindings)`` binds and calls ``skill`` on the machines
        ``rows`` (disjoint across calls); then the backend runs the whole batch once. Rows
        that get no call are idle (halted) and stay untouched, as do faulted rows. A
        rejected action faults its rows and runs nothing there. This is how the vector
        environment runs every sub-environment's action in one batched CPU call;
        :meth:`execute` is the one-call case.

        Returns:
            One :class:`ExecResult` per call, for its rows.
        """
        before = state.register("icount").copy()
        fault_col, sp = self.layout.register("fault"), self.layout.register("sp")
        errors: list[str | None] = []
        row_sets: list[np.ndarray] = []
        started = False
        for rows, skill, bindings in calls:
            idx = np.arange(state.batch)[rows]
            row_sets.append(idx)
            live = idx[state.cells[idx, fault_col] == Fault.NONE]
            error = self.check_action(skill, list(bindings))
            if error is None and (state.cells[live, sp] >= self.layout.stack_end).any():
                error = "the stack is full"
            errors.append(error)
            if error is not None:
                state.cells[live, fault_col] = BINDING_FAULT
                continue
            sb = self.layout.skill(self.library.get(skill).block_name)
            for i, p in enumerate(bindings):
                src = self.layout.pointer(int(p))
                state.cells[live, sb.slot(i) : sb.slot(i) + DESCRIPTOR_WIDTH] = state.cells[
                    live, src : src + DESCRIPTOR_WIDTH
                ]
            call(state, sb.header, mode, rows=live)
            started = started or live.size > 0
        if started:
            resolve_backend(backend).run(state, max_steps)
        steps = (state.register("icount") - before).astype(np.int64)
        return [
            ExecResult(state.faults[idx].copy(), steps[idx], error)
            for idx, error in zip(row_sets, errors, strict=True)
        ]


def _writes(slot) -> bool:
    return slot.role in ("out", "inout")


def _binds(slot, entry: PointerEntry) -> bool:
    """The binding rule: the slot's type accepts the entry's, and no read-only entry goes
    into a slot the skill writes."""
    return accepts(slot.type, entry.type) and not (entry.read_only and _writes(slot))


_INSTALLED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Per library: a zero machine with the skills installed, by (layout, skill keys)."""


def _installed_skills(
    library: SkillLibrary, layout: Layout, programs: dict[str, Program]
) -> np.ndarray:
    """One float64 row: a zero machine of ``layout`` with ``programs`` installed (cached;
    skills never change once in the library, so resets of an environment reuse it)."""

    def build() -> np.ndarray:
        st = MachineState.zeros(layout, 1, np.float64)
        for k, prog in programs.items():
            install_skill(st, library.get(k).block_name, prog)
        row = st.cells[0].copy()
        row.flags.writeable = False
        return row

    return cached_per_library(_INSTALLED, library, (layout, tuple(programs)), build)


def default_stack_size(buffer_cells: int) -> int:
    """Stack cells for an image whose buffers hold ``buffer_cells`` cells."""
    return 1024 + 4 * buffer_cells


def build_image(
    library: SkillLibrary,
    buffers: Sequence[Buffer],
    *,
    skills: Sequence[str] | None = None,
    n_general: int = 8,
    stack_size: int | None = None,
    memory_size: int | None = None,
) -> MachineImage:
    """Place ``buffers`` and skills (default: the whole library) into one layout.

    The pointer table holds the buffers in order, then ``&key`` for every placed skill.
    The stack defaults to :func:`default_stack_size` of the buffers' cells: temporaries of
    composed skills scale with the argument sizes. ``memory_size`` (at least the buffers'
    cells) leaves free memory after them, so images of different sizes can share a layout.
    """
    keys = library.keys() if skills is None else library.closure(list(skills))
    names = [b.name for b in buffers]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate buffer names: {names}")
    total = sum(b.size for b in buffers)
    if memory_size is not None and memory_size < total:
        raise ValueError(f"memory_size {memory_size} is smaller than the buffers' {total} cells")
    layout = Layout(
        n_general=n_general,
        stack_size=stack_size if stack_size is not None else default_stack_size(total),
        n_pointers=len(buffers) + len(keys),
        memory_size=total if memory_size is None else memory_size,
        skill_blocks=library.block_specs(keys),
    )
    programs = library.link(layout, keys)
    addr = layout.block("memory").start
    placed: dict[str, tuple[int, Buffer]] = {}
    pointers: list[PointerEntry] = []
    for b in buffers:
        placed[b.name] = (addr, b)
        pointers.append(
            PointerEntry(
                b.name,
                b.type,
                (addr, b.rows, b.cols, int(data_type(b.type))),
                read_only=b.read_only,
            )
        )
        addr += b.size
    for k in keys:
        sk = library.get(k)
        header = layout.skill(sk.block_name).header
        pointers.append(
            PointerEntry(
                f"&{k}",
                skill_type([a.type for a in sk.args]),
                (header, 0, 0, int(DataType.SKILL)),
                k,
            )
        )
    return MachineImage(library, layout, programs, tuple(pointers), placed)


def buffer_for(name: str, value: np.ndarray, *, batched: bool = True) -> Buffer:
    """A :class:`Buffer` shaped like ``value`` (leading batch axis if ``batched``)."""
    shape = np.shape(value)[1:] if batched else np.shape(value)
    if len(shape) == 0:
        return Buffer(name, "scalar", 1, 1)
    if len(shape) == 1:
        return Buffer(name, "vector", shape[0], 1)
    if len(shape) == 2:
        return Buffer(name, "matrix", shape[0], shape[1])
    raise ValueError(
        f"buffer {name!r}: values must be scalars, vectors or matrices, got shape {shape}"
    )


def run_skill(
    library: SkillLibrary,
    skill: str,
    args: dict[str, object],
    *,
    batch: int = 1,
    mode: int = 0,
    backend="reference",
    max_steps: int = DEFAULT_MAX_STEPS,
    dtype=np.float64,
) -> tuple[dict[str, np.ndarray], ExecResult]:
    """Run one skill on ``batch`` machines and read every data argument back.

    Args:
        library: holds ``skill`` and its dependencies.
        skill: name or key.
        args: a value per slot name (``"weights"`` for the weights slot): an array of shape
            ``(batch, *shape)`` (scalars ``(batch,)``) for data, including outputs (their
            initial contents), or a skill name for a skill argument.
        batch, mode, backend, max_steps, dtype: see :meth:`MachineImage.execute`.

    Returns:
        ``(values, result)``: every data buffer after the run, and the :class:`ExecResult`.

    Example:
        >>> import numpy as np
        >>> from algind_gym.skills.builtin import builtin_library
        >>> out, res = run_skill(builtin_library(), "zipmap",
        ...     {"f": "s_add", "x": np.array([[1.0, 2.0]]), "y": np.array([[10.0, 20.0]]),
        ...      "out": np.zeros((1, 2))})
        >>> out["out"].tolist(), int(res.faults[0])
        ([[11.0, 22.0]], 0)
    """
    sk = library.get(skill)
    buffers, refs = [], []
    for slot in sk.slots:
        if slot.name not in args:
            raise KeyError(f"run_skill: no value for argument {slot.name!r} of {sk.key}")
        v = args[slot.name]
        if isinstance(v, str):
            refs.append(library.get(v).key)
        else:
            buffers.append(buffer_for(slot.name, np.asarray(v, dtype=np.float64)))
    image = build_image(library, buffers, skills=[sk.key, *refs])
    state = image.new_state(batch, dtype)
    for b in buffers:
        image.write(state, b.name, args[b.name])
    bindings = []
    for slot in sk.slots:
        v = args[slot.name]
        bindings.append(
            image.pointer_index(f"&{library.get(v).key}" if isinstance(v, str) else slot.name)
        )
    result = image.execute(state, sk.key, bindings, backend, max_steps, mode)
    return {b.name: image.read(state, b.name) for b in buffers}, result
