"""`Workspace`: a task at one length as a batch of machines; the one way to run an action.

Given a library, a task, a length and K examples, a workspace

1. generates K examples with ``numpy.random.default_rng(seed)`` (same seed, same inputs),
2. builds a :class:`~algind_gym.skills.image.MachineImage`: every library skill block plus
   memory sized for the task at that length, and a pointer table with, in this order, the
   task's arguments, the task's own scratch buffers (if any), the machine's scratch pool
   (``tmp_v0``, ..., see :mod:`algind_gym.tasks.pool`), the constants (``zero``, ``one``,
   the task's) and one ``&name@version`` entry per skill -- everything an action can bind,
3. writes each example's inputs into its machine and *uninitialised* values (random,
   different per example, seeded) into the outputs and scratch buffers
   (:meth:`Workspace.reset`, :func:`uninitialised_values`),
4. runs actions (:meth:`Workspace.execute`, which is
   :meth:`~algind_gym.skills.image.MachineImage.execute`: bind W^in, top-level call, run),
5. reads outputs and scores them against the oracle (:meth:`Workspace.score`).

The environments (``algind_gym.envs``), ``verify-tasks`` and the curriculum runner all use
this class, so an action means the same thing everywhere. A solved program becomes a skill
with :func:`compile_task_program`, which first checks it at every training length
(:func:`verify_task_program`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from algind_gym.machine.isa import Fault
from algind_gym.machine.state import MachineState
from algind_gym.skills.compose import Temp, temp_shape
from algind_gym.skills.image import (
    Buffer,
    ExecResult,
    MachineImage,
    build_image,
    default_stack_size,
)
from algind_gym.skills.library import Skill, SkillLibrary
from algind_gym.tasks.batched import BATCHED, UNIFORM_DRAWS
from algind_gym.tasks.pool import (
    DEFAULT_SCRATCH_PER_SHAPE,
    check_scratch_per_shape,
    pool_constants,
    scratch_pool,
)
from algind_gym.tasks.spec import Example, TaskSpec, unstack

Action = tuple[str, Sequence[int | str]]


@dataclass
class Score:
    """Per-example scores of a batch.

    Attributes:
        fraction: fraction of output elements within tolerance (0 for a faulted machine).
        success: all elements within tolerance and no fault.
        faults: fault codes.
    """

    fraction: np.ndarray
    success: np.ndarray
    faults: np.ndarray

    @property
    def accuracy(self) -> float:
        """Fraction of examples solved."""
        return float(np.mean(self.success)) if self.success.size else 1.0


def _shape_of(value: np.ndarray) -> tuple[int, int]:
    v = np.asarray(value)
    if v.ndim == 0:
        return 1, 1
    if v.ndim == 1:
        return v.shape[0], 1
    return v.shape[0], v.shape[1]


def _trailing_shape(stacked: tuple[int, ...]) -> tuple[int, int]:
    """:func:`_shape_of` of one example of a stacked ``(K, ...)`` array, from its shape."""
    one = stacked[1:]
    return (1, 1) if not one else (one[0], 1) if len(one) == 1 else (one[0], one[1])


class Workspace:
    """A task at one length on K machines (see the module docstring).

    Args:
        library: the skills an action may call.
        task: the task.
        length: the instance length.
        batch: K, the number of examples (machines).
        seed: seeds the example generator.
        dtype: cell dtype (float64 by default, float32 also supported).
        capacity: lay the machines out (memory, stack, instruction budget) as for this
            length when it is larger than ``length``; every length up to it then shares one
            layout. The environments use it; results do not depend on it.
        scratch_per_shape: buffers per shape class of the scratch pool, in
            ``[0, MAX_SCRATCH_PER_SHAPE]`` (see :mod:`algind_gym.tasks.pool`).

    Raises:
        ValueError: a length or capacity that is not an integer in
            ``[0, task.max_length]`` (:meth:`TaskSpec.check_length`), a bad ``batch`` or
            ``scratch_per_shape``.

    Example:
        >>> from algind_gym.skills.builtin import builtin_library
        >>> from algind_gym.tasks import get_task
        >>> ws = Workspace(builtin_library(), get_task("VectorAdd"), length=3, batch=2, seed=0)
        >>> state = ws.reset()
        >>> _ = ws.execute(state, "zipmap", ws.bind(["&s_add", "x", "y", "out"]))
        >>> ws.score(state).success.tolist()
        [True, True]
    """

    def __init__(
        self,
        library: SkillLibrary,
        task: TaskSpec,
        length: int,
        *,
        batch: int = 1,
        seed: int = 0,
        dtype=np.float64,
        capacity: int | None = None,
        scratch_per_shape: int = DEFAULT_SCRATCH_PER_SHAPE,
    ) -> None:
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
        length = task.check_length(length)
        self.library, self.task, self.length, self.batch, self.dtype = (
            library,
            task,
            length,
            batch,
            dtype,
        )
        self.scratch_per_shape = check_scratch_per_shape(scratch_per_shape)
        self.pool: tuple[Temp, ...] = scratch_pool(task, self.scratch_per_shape)
        """The machine's scratch pool (:mod:`algind_gym.tasks.pool`)."""
        self.constants: dict[str, float] = pool_constants(task)
        """Every constant in the pointer table: ``zero``, ``one``, then the task's."""
        self.seed = seed
        rng = self._draw(seed)
        buffers = _task_buffers(
            task, self.stacked_examples, self.stacked_expected, self.pool, self.constants
        )
        self.capacity = (
            length if capacity is None else max(length, task.check_length(capacity, "capacity"))
        )
        memory = stack = None
        if self.capacity > length:
            # Lay the machines out as for the capacity length, so that every length up to
            # it shares one layout (the vector env batches them; observations keep a size).
            probe, want = task.draw(np.random.default_rng(0), self.capacity, 1)
            cells = sum(b.size for b in _task_buffers(task, probe, want, self.pool, self.constants))
            memory, stack = cells, default_stack_size(cells)
        self.image: MachineImage = build_image(
            library, buffers, memory_size=memory, stack_size=stack
        )
        self.max_steps = task.budget(self.capacity)
        self._fit: list | None = None  # refill's shape checks, built on first use
        self._fit_shapes: list | None = None
        self._uninitialised_plan = _uninitialised_plan(self.image, self._uninitialised_names())
        self.uninitialised_block = _draw_block(self._uninitialised_plan, batch, rng)
        self._uninitialised: dict[str, np.ndarray] | None = None

    # The examples, expected outputs and uninitialised values live in the instance's
    # ``_stacked_examples``, ``_stacked_expected`` and ``_uninitialised_block``; after
    # :func:`refill_group` they are rows of the group's arrays, taken on first use
    # (``_group``), so that a vector env's autoreset builds no per-workspace dicts and
    # writes one attribute besides ``seed``; taking them also drops the per-example views.
    def _settle(self) -> None:
        """Take this workspace's rows of a pending :func:`refill_group` draw, if any."""
        group = self.__dict__.get("_group")
        if group is not None:
            examples, expected, block, i = group
            self._group = self._examples = self._expected = self._uninitialised = None
            self._stacked_examples = {a: v[i] for a, v in examples.items()}
            self._stacked_expected = {a: v[i] for a, v in expected.items()}
            self._uninitialised_block = block[i]

    @property
    def stacked_examples(self) -> Example:
        """The K examples' entries, each with a leading axis of K."""
        self._settle()
        return self._stacked_examples

    @stacked_examples.setter
    def stacked_examples(self, value: Example) -> None:
        self._settle()
        self._stacked_examples = value

    @property
    def stacked_expected(self) -> Example:
        """The K examples' expected outputs, each with a leading axis of K."""
        self._settle()
        return self._stacked_expected

    @stacked_expected.setter
    def stacked_expected(self, value: Example) -> None:
        self._settle()
        self._stacked_expected = value

    @property
    def uninitialised_block(self) -> np.ndarray:
        """``(batch, width)``: the :attr:`uninitialised` values of every buffer side by side,
        in the order of :attr:`uninitialised_columns`."""
        self._settle()
        return self._uninitialised_block

    @uninitialised_block.setter
    def uninitialised_block(self, value: np.ndarray) -> None:
        self._settle()
        self._uninitialised_block = value

    @property
    def uninitialised(self) -> dict[str, np.ndarray]:
        """Per output and scratch buffer, the ``(batch, *shape)`` values it holds after
        :meth:`reset` (see :func:`uninitialised_values`); views of
        :attr:`uninitialised_block`."""
        self._settle()
        if self._uninitialised is None:
            self._uninitialised = _block_views(self._uninitialised_plan, self.uninitialised_block)
        return self._uninitialised

    @cached_property
    def uninitialised_columns(self) -> np.ndarray:
        """The machine cells that :attr:`uninitialised_block`'s columns go to."""
        cols = [
            np.arange(self.image.buffers[name][0], self.image.buffers[name][0] + b - a)
            for name, a, b, _ in self._uninitialised_plan[0]
        ]
        return np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)

    def _draw(self, seed: int, rng: np.random.Generator | None = None) -> np.random.Generator:
        """Set the examples of ``seed`` (:meth:`TaskSpec.draw`), stacked and per example;
        returns the generator, which then draws the uninitialised values. ``rng``: a
        generator in the state ``default_rng(seed)`` starts in (see :meth:`refill`)."""
        rng = np.random.default_rng(seed) if rng is None else rng
        self.stacked_examples, self.stacked_expected = self.task.draw(rng, self.length, self.batch)
        self._examples: list[Example] | None = None
        self._expected: list[Example] | None = None
        return rng

    @property
    def examples(self) -> list[Example]:
        """Per example, its entries (views of :attr:`stacked_examples`)."""
        self._settle()
        if self._examples is None:
            self._examples = unstack(self.stacked_examples, self.batch)
        return self._examples

    @property
    def expected(self) -> list[Example]:
        """Per example, its expected outputs (views of :attr:`stacked_expected`)."""
        self._settle()
        if self._expected is None:
            self._expected = unstack(self.stacked_expected, self.batch)
        return self._expected

    def _uninitialised_names(self) -> list[str]:
        outs = [a.name for a in self.task.args if a.role == "out"]
        return outs + [t.name for t in (*self.task.scratch, *self.pool)]

    # --------------------------------------------------------------- pointers
    @property
    def pointer_names(self) -> list[str]:
        return [p.name for p in self.image.pointers]

    def bind(self, names: Sequence[int | str]) -> list[int]:
        """Pointer-table indices for names (``"x"``, ``"zero"``, ``"&s_add"``); ints pass."""
        return [
            n if isinstance(n, (int, np.integer)) else self.image.pointer_index(n) for n in names
        ]

    def can_bind(self, pointer: int, skill: str, slot: int) -> bool:
        """The binding rule (:meth:`MachineImage.can_bind`): the slot's type accepts the
        entry's, and a slot the skill writes gets no read-only entry (an input, a constant)."""
        return self.image.can_bind(pointer, skill, slot)

    def binding_mask(self, skill: str) -> np.ndarray:
        """Boolean ``(n_slots, n_pointers)`` mask of the entries each slot of ``skill`` accepts."""
        return self.image.binding_mask(skill)

    @cached_property
    def pointer_roles(self) -> list[str]:
        """Per pointer-table entry: ``"input"``, ``"output"``, ``"inout"``, ``"scratch"``
        (the task's own or the pool's), ``"constant"`` or ``"skill"``."""
        roles = {
            a.name: {"in": "input", "out": "output"}.get(a.role, a.role) for a in self.task.args
        }
        roles.update({t.name: "scratch" for t in (*self.task.scratch, *self.pool)})
        roles.update({c: "constant" for c in self.constants})
        return [roles.get(p.name, "skill") for p in self.image.pointers]

    def is_writable(self, pointer: int) -> bool:
        """Whether a skill may write pointer-table entry ``pointer`` (bind it to an ``out`` or
        ``inout`` slot): outputs, inouts and scratch yes; inputs, constants and skills no."""
        if not 0 <= int(pointer) < len(self.image.pointers):
            return False
        return self.pointer_roles[int(pointer)] in ("output", "inout", "scratch")

    # ------------------------------------------------------------------ state
    def reset(self) -> MachineState:
        """Fresh machines holding the examples' inputs; outputs and scratch hold
        :attr:`uninitialised` values (different per example), constants their values."""
        state = self.image.new_state(self.batch, self.dtype)
        for name, values in self.uninitialised.items():
            self.image.write(state, name, values)
        for a in self.task.args:
            if a.role in ("in", "inout"):
                self.image.write(
                    state, a.name, np.asarray(self.stacked_examples[a.name], dtype=np.float64)
                )
        return state

    def execute(
        self,
        state: MachineState,
        skill: str,
        bindings: Sequence[int],
        backend="reference",
        max_steps: int | None = None,
        mode: int = 0,
    ) -> ExecResult:
        """Run one action on all K machines; a bad action or a fault never raises."""
        return self.image.execute(
            state,
            skill,
            bindings,
            backend,
            self.max_steps if max_steps is None else max_steps,
            mode,
        )

    def run_program(
        self, state: MachineState, steps: Sequence[Action], backend="reference"
    ) -> list[ExecResult]:
        """Execute ``(skill, bindings)`` steps in order (bindings by name or index)."""
        results = []
        for skill, names in steps:
            try:
                bindings = self.bind(names)
            except KeyError as e:
                bindings = [-1] * len(names)
                del e
            results.append(self.execute(state, skill, bindings, backend))
            if not (state.faults == Fault.NONE).any():
                break
        return results

    # ---------------------------------------------------------------- outputs
    def outputs(self, state: MachineState) -> dict[str, np.ndarray]:
        """The output and inout arguments of every machine, shape ``(K, *shape)``."""
        return {n: self.image.read(state, n) for n in self.task.outputs}

    def score(self, state: MachineState) -> Score:
        """Score every machine against the oracle (a faulted machine scores 0)."""
        outs = self.outputs(state)
        faults = state.faults.copy()
        frac = np.zeros(self.batch)
        ok = np.zeros(self.batch, dtype=bool)
        if self.task.scorer is None:  # TaskSpec.score_example over the K examples at once
            hits, total = np.zeros(self.batch, dtype=np.int64), 0
            for n in self.task.outputs:
                c = self.task.tolerance.close(outs[n], self.stacked_expected[n])
                hits += np.count_nonzero(c.reshape(self.batch, -1), axis=1)
                total += c[0].size
            frac[:] = 1.0 if total == 0 else hits / total
            ok[:] = hits == total
        else:
            for k, ex in enumerate(self.examples):
                frac[k], ok[k] = self.task.score_example(ex, {n: v[k] for n, v in outs.items()})
        live = faults == Fault.NONE
        return Score(np.where(live, frac, 0.0), ok & live, faults)

    # ---- env-fast: in-place refill for the vector env's autoreset (owned by algind_gym.envs) ----
    def refill(self, seed: int, rng: np.random.Generator | None = None) -> None:
        """Draw new examples from ``seed`` at the same length, keeping the image.

        Afterwards the workspace holds what ``Workspace(library, task, length, seed=seed,
        ...)`` would, without rebuilding the image (layout, linked code, pointer table):
        the same generator and oracle calls as the constructor, in the same order.
        :meth:`reset` then gives fresh machines for the new examples. ``rng``: a generator
        in the state ``numpy.random.default_rng(seed)`` starts in, to draw from instead of
        building that one (the vector env seeds many at once,
        :mod:`algind_gym.envs.seeding`).

        Raises:
            ValueError: the new examples' shapes differ from the image's buffers.
        """
        old = self.stacked_examples, self.stacked_expected, self._examples, self._expected
        rng = self._draw(seed, rng)
        shapes = [
            (self.stacked_expected if out else self.stacked_examples)[name].shape
            for name, out, _ in self._fit_table()
        ]
        if shapes != self._fit_shapes:  # (the shapes of the last examples that fit pass)
            for (name, _, buf), shape in zip(self._fit, shapes, strict=True):
                if _trailing_shape(shape) != (buf.rows, buf.cols):
                    self.stacked_examples, self.stacked_expected = old[:2]
                    self._examples, self._expected = old[2:]
                    raise ValueError(
                        f"task {self.task.name}: examples from seed {seed} do not fit this "
                        f"workspace's buffer {name!r}; build a new Workspace instead"
                    )
            self._fit_shapes = shapes
        self.seed = seed
        self.uninitialised_block = _draw_block(self._uninitialised_plan, self.batch, rng)
        self._uninitialised = None

    def _fit_table(self) -> list:
        """Per task argument: its name, whether the oracle gives it, its buffer (the shape
        checks of :meth:`refill` and :func:`refill_group`), built on first use."""
        if self._fit is None:
            self._fit = [
                (a.name, a.role == "out", self.image.buffers[a.name][1]) for a in self.task.args
            ]
            self._fit_shapes = None
        return self._fit

    # ---- end env-fast block ----


GroupDraw = tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]
"""What :func:`refill_group` returns: the group's examples and expected outputs (per
entry, ``(n, K, ...)``) and uninitialised values (``(n, K, width)``), stacked over its
workspaces."""


def refill_group(
    wss: Sequence[Workspace],
    seeds: Sequence[int],
    rngs: Iterable[np.random.Generator] | None = None,
    doubles: Callable[[np.ndarray, int], np.ndarray] | None = None,
) -> GroupDraw:
    """:meth:`Workspace.refill` for workspaces of one task and length, stacked.

    Afterwards workspace ``i`` holds what ``wss[i].refill(seeds[i], ...)`` leaves (its
    arrays are views of the returned group arrays). Each workspace draws from its own
    generator exactly as :meth:`Workspace.refill` does (the task's batched generator, then
    the uninitialised values); what does not draw runs once for the group: the shape checks
    and, for a built-in task (:data:`algind_gym.tasks.batched.BATCHED`, whose oracles
    compute each example from its own row; ``tests/envs/test_refill_group.py`` checks the
    bits), the oracle on all ``n * K`` examples at once. Other tasks refill workspace by
    workspace. ``rngs``: per workspace, a generator in the state ``default_rng(seed)``
    starts in, yielded when that workspace draws (it may be one generator reseeded);
    default: ``default_rng(seed)``. ``doubles``: a function like
    :func:`algind_gym.envs.seeding.uniform_doubles` (``doubles(seeds, size, ends,
    affine)``: per seed, ``default_rng(seed).random(size)`` scaled by segments as
    ``Generator.uniform`` scales them); a task whose generator only draws U(-1, 1)
    (:data:`~algind_gym.tasks.batched.UNIFORM_DRAWS`) then draws the whole group with one
    call of it instead of one ``rng.random`` call per workspace (``rngs`` is not used).

    Raises:
        ValueError: the new examples do not fit the workspaces' buffers, or the task's
            batched generator returned entries without a leading axis of K.
    """
    first = wss[0]
    task, k, length = first.task, first.batch, first.length
    gens = (np.random.default_rng(s) for s in seeds) if rngs is None else iter(rngs)
    n = len(wss)
    known = BATCHED.get(task.name)
    if known is None or task.batch_generator is None or task.batch_oracle is not known[1]:
        for ws, seed, rng in zip(wss, seeds, gens, strict=False):
            ws.refill(seed, rng)
        examples = {
            a: np.stack([ws.stacked_examples[a] for ws in wss]) for a in first.stacked_examples
        }
        expected = {a: np.stack([ws.stacked_expected[a] for ws in wss]) for a in task.outputs}
        return examples, expected, np.stack([ws.uninitialised_block for ws in wss])
    uniform = UNIFORM_DRAWS.get(task.name)
    if uniform is not None and task.batch_generator is known[0]:
        examples, block = _uniform_group(uniform(length, k), first, gens, n, seeds, doubles)
    else:
        examples, block = _draw_group(first, gens, n)
    flat = task.batch_oracle({a: v.reshape(n * k, *v.shape[2:]) for a, v in examples.items()})
    expected = {}
    for a, v in flat.items():
        v = np.asarray(v)
        if v.ndim == 0 or v.shape[0] != n * k:
            raise ValueError(
                f"task {task.name}: the batched function's expected outputs entry {a!r} has "
                f"shape {v.shape}; it needs a leading axis of {n * k} (one row per example)"
            )
        expected[a] = v.reshape(n, k, *v.shape[1:])
    fit = first._fit_table()
    shapes = [(expected if out else examples)[name].shape[1:] for name, out, _ in fit]
    if shapes != first._fit_shapes:  # (as in Workspace.refill: checked once per shapes)
        for (name, _, buf), shape in zip(fit, shapes, strict=True):
            if _trailing_shape(shape) != (buf.rows, buf.cols):
                raise ValueError(
                    f"task {task.name}: examples from seed {seeds[0]} do not fit this "
                    f"workspace's buffer {name!r}; build a new Workspace instead"
                )
        first._fit_shapes = shapes
    for i, (ws, seed) in enumerate(zip(wss, seeds, strict=True)):
        ws._group = (examples, expected, block, i)  # (its rows, taken on first use)
        ws.seed = seed
    return examples, expected, block


def _uniform_group(
    entries: list, first: Workspace, gens, n: int, seeds: Sequence[int], doubles=None
) -> tuple[dict, np.ndarray]:
    """The examples (``entries``: name and shape of each U(-1, 1) draw in order) and the
    uninitialised values of ``n`` workspaces like ``first``, one ``rng.random`` call each:
    ``rng.uniform(low, high, size)`` computes ``low + (high - low) * u`` of the same
    doubles, so scaling them gives the same bits. With ``doubles`` (see
    :func:`refill_group`), one call for all, which also scales them."""
    sizes = [math.prod(shape) for _, shape in entries]
    k, width = first.batch, first._uninitialised_plan[1]
    at, s = sum(sizes), UNINITIALISED_SCALE
    if doubles is not None:
        ends = np.array([at, at + k * width], dtype=np.int64)
        u = doubles(np.array(seeds, dtype=np.uint64), at + k * width, ends, _AFFINE)
        examples, at = {}, 0
        for (name, shape), size in zip(entries, sizes, strict=True):
            examples[name] = u[:, at : at + size].reshape(n, *shape)
            at += size
        return examples, u[:, at:].reshape(n, k, width)
    u = np.empty((n, at + k * width))
    for i, rng in zip(range(n), gens, strict=False):
        rng.random(out=u[i])
    examples, at = {}, 0
    for (name, shape), size in zip(entries, sizes, strict=True):
        examples[name] = (u[:, at : at + size] * 2.0 - 1.0).reshape(n, *shape)
        at += size
    block = (u[:, at:] * (s - -s) + -s).reshape(n, k, width)
    return examples, block


def _draw_group(first: Workspace, gens, n: int) -> tuple[dict, np.ndarray]:
    """The examples (the task's batched generator) and uninitialised values of ``n``
    workspaces like ``first``, drawn per workspace as :meth:`Workspace.refill` does."""
    task, k, length = first.task, first.batch, first.length
    drawn, blocks = [], []
    generate, plan = task.batch_generator, first._uninitialised_plan
    for _, rng in zip(range(n), gens, strict=False):
        drawn.append(generate(rng, length, k))
        blocks.append(_draw_block(plan, k, rng))
    examples = {}
    for a, v in drawn[0].items():  # (concatenated: one copy, no per-example views)
        v = np.asarray(v)
        parts = [d.get(a) for d in drawn]
        try:
            same = [p.shape for p in parts].count(v.shape) == n
        except AttributeError:  # (not arrays)
            same = [np.shape(p) for p in parts].count(v.shape) == n
        if v.ndim < 1 or v.shape[0] != k or not same:
            bad = next((np.shape(p) for p in parts if np.shape(p)[:1] != (k,)), v.shape)
            raise ValueError(
                f"task {task.name}: the batched function's examples entry {a!r} has shape "
                f"{bad}; it needs a leading axis of {k} (one row per example) and the "
                "same shape in every draw of a length"
            )
        examples[a] = np.concatenate(parts).reshape(n, k, *v.shape[1:])
    if any(d.keys() != drawn[0].keys() for d in drawn):
        raise ValueError(f"task {task.name}: the batched generator's draws differ in entries")
    return examples, np.concatenate(blocks).reshape(n, k, -1)


def shallow_copy(obj):
    """A new object of ``obj``'s class sharing its attributes: what ``copy.copy`` does for
    a class without copy or pickling hooks (a workspace), without ``copy``'s dispatch."""
    other = object.__new__(type(obj))
    other.__dict__.update(obj.__dict__)
    return other


UNINITIALISED_SCALE = 1_000.0
"""Uninitialised cells are drawn from ``U(-UNINITIALISED_SCALE, UNINITIALISED_SCALE)``."""
_AFFINE = np.array([[-1.0, 2.0], [-UNINITIALISED_SCALE, 2 * UNINITIALISED_SCALE]])
"""``(low, high - low)`` of the examples' U(-1, 1) and of the uninitialised values."""


def uninitialised_values(
    image: MachineImage,
    names: Sequence[str],
    batch: int,
    seed: int | np.random.Generator,
) -> dict[str, np.ndarray]:
    """What "uninitialised" output and scratch buffers hold at the start of an episode.

    Memory a program has not written is not zero: every listed buffer of every example gets
    values drawn from ``U(-1000, 1000)`` (:data:`UNINITIALISED_SCALE`), different per
    example and per episode, in one draw from ``seed`` (a generator, or a seed for
    ``numpy.random.default_rng``). A workspace passes the generator of its examples after
    they are drawn (one generator per episode; the examples do not change). A program that
    reads an output or a scratch buffer before writing it (e.g. uses ``out`` as a zero)
    therefore fails on most examples; zero and one come from the constant pool.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return _draw_uninitialised(_uninitialised_plan(image, names), batch, rng)


def _uninitialised_plan(image: MachineImage, names: Sequence[str]) -> tuple[list, int]:
    """Per name its columns in one block of values and its shape; the block's width."""
    plan, at = [], 0
    for name in names:
        shape = image.buffers[name][1].shape
        size = math.prod(shape)
        plan.append((name, at, at + size, shape))
        at += size
    return plan, at


def _draw_uninitialised(plan: tuple[list, int], batch: int, rng: np.random.Generator) -> dict:
    return _block_views(plan, _draw_block(plan, batch, rng))


def _draw_block(plan: tuple[list, int], batch: int, rng: np.random.Generator) -> np.ndarray:
    """The ``(batch, width)`` uninitialised values of every buffer of ``plan``, one draw."""
    return rng.uniform(-UNINITIALISED_SCALE, UNINITIALISED_SCALE, (batch, plan[1]))


def _block_views(plan: tuple[list, int], block: np.ndarray) -> dict[str, np.ndarray]:
    """Per buffer of ``plan``, its ``(batch, *shape)`` view of ``block``."""
    return {name: block[:, a:b].reshape(block.shape[0], *shape) for name, a, b, shape in plan[0]}


def _task_buffers(
    task: TaskSpec,
    examples: Example,
    expected: Example,
    pool: Sequence[Temp] = (),
    constants: dict[str, float] | None = None,
) -> list[Buffer]:
    """Memory buffers of a task instance (``examples``/``expected`` stacked as
    :meth:`TaskSpec.draw` returns them): arguments, the task's scratch, the pool's scratch,
    constants (in that order); inputs and constants are read-only."""
    shapes: dict[str, tuple[int, int]] = {}
    buffers: list[Buffer] = []
    for a in task.args:
        values = expected if a.role == "out" else examples
        if a.name not in values and a.role == "inout":
            values = expected
        if a.name not in values:
            raise ValueError(
                f"task {task.name}: argument {a.name!r} ({a.role}) is missing from the "
                "generator's example (inputs) or the oracle's result (outputs)"
            )
        rows, cols = _shape_of(values[a.name][0])
        shapes[a.name] = (rows, cols)
        buffers.append(Buffer(a.name, a.type, rows, cols, read_only=a.role == "in"))
    for t in (*task.scratch, *pool):
        rows, cols = temp_shape(t, shapes)
        buffers.append(Buffer(t.name, t.type, rows, cols))
    consts = task.constants if constants is None else constants
    for c, v in consts.items():
        buffers.append(Buffer(c, "scalar", 1, 1, value=float(v), read_only=True))
    return buffers


def compile_task_program(
    library: SkillLibrary,
    task: TaskSpec,
    steps: Sequence[tuple[str, Sequence[str]]],
    *,
    name: str | None = None,
    description: str | None = None,
    scratch_per_shape: int = DEFAULT_SCRATCH_PER_SHAPE,
    verify: bool = True,
    n_examples: int = 8,
    seed: int = 0,
    backend="transformer",
) -> Skill:
    """Turn a program for ``task`` into a library skill with the task's signature.

    Bindings are pointer-table names of the task's workspace: task arguments map to the
    skill's arguments; scratch buffers (the task's and the pool's) to stack temporaries of
    the same shape expressions -- only those the program uses, so unused pool buffers cost
    nothing; constants (``zero``, ``one``, the task's) to immediate values; ``&skill``
    entries to skill references.

    Before the skill is added, the program must solve ``n_examples`` examples at every
    training length of the task in a :class:`Workspace` (outputs and scratch start
    uninitialised); a program that fails is refused.

    Args:
        library: receives the new skill (append-only).
        task: the solved task.
        steps: ``(skill, [pointer names])`` per step, e.g. from
            ``Workspace.pointer_names`` of the indices an agent chose.
        name: skill name (default: the task name).
        description: default: the task description.
        scratch_per_shape: the pool size the program was written for.
        verify: check the program at every training length first (default True).
        n_examples, seed, backend: examples per length, their seed, and the backend the
            check runs on (default: the compiled Transformer CPU, which computes the same
            bits as the reference interpreter, many times faster).

    Raises:
        ValueError: an unknown name, a step that writes an input or a constant, or a
            program that fails at a training length (naming the length and the example).
    """
    pool = scratch_pool(task, scratch_per_shape)
    consts = pool_constants(task)
    temps = {t.name: t for t in (*task.scratch, *pool)}
    args = {a.name: a for a in task.args}
    converted, used = [], []
    for i, (skill, names) in enumerate(steps):
        slots = library.get(skill).slots if skill in library else ()
        out = []
        for j, n in enumerate(names):
            if isinstance(n, str) and not n.startswith("&"):
                if n not in args and n not in temps and n not in consts:
                    raise ValueError(
                        f"step {i} ({skill}): no pointer-table entry {n!r}; entries are the "
                        f"arguments {list(args)}, scratch {list(temps)} and constants "
                        f"{list(consts)} (plus &skill references)"
                    )
                written = j < len(slots) and slots[j].role in ("out", "inout")
                if written and (n in consts or (n in args and args[n].role == "in")):
                    what = "constant" if n in consts else "input"
                    raise ValueError(
                        f"step {i} ({skill}): slot {j} ({slots[j].name}) writes the {what} "
                        f"{n!r}; bind a scratch buffer or an output there"
                    )
                if n in temps and n not in used:
                    used.append(n)
            out.append(consts[n] if isinstance(n, str) and n in consts else n)
        converted.append((skill, out))
    if verify:
        verify_task_program(
            library,
            task,
            steps,
            scratch_per_shape=scratch_per_shape,
            n_examples=n_examples,
            seed=seed,
            backend=backend,
        )
    return library.compose(
        name or task.name,
        list(task.args),
        converted,
        temps=[temps[n] for n in used],
        description=description or task.description,
        infer_roles=False,
    )


def verify_task_program(
    library: SkillLibrary,
    task: TaskSpec,
    steps: Sequence[tuple[str, Sequence[str]]],
    *,
    lengths: Sequence[int] | None = None,
    scratch_per_shape: int = DEFAULT_SCRATCH_PER_SHAPE,
    n_examples: int = 8,
    seed: int = 0,
    backend="transformer",
) -> None:
    """Raise ``ValueError`` unless ``steps`` solve ``task`` at every length (default: the
    training lengths) on ``n_examples`` examples each, naming the first failing length and
    example and what went wrong there."""
    for n in task.train_lengths if lengths is None else lengths:
        ws = Workspace(
            library, task, n, batch=n_examples, seed=seed, scratch_per_shape=scratch_per_shape
        )
        state = ws.reset()
        results = ws.run_program(state, steps, backend)
        score = ws.score(state)
        if score.success.all():
            continue
        k = int(np.flatnonzero(~score.success)[0])
        errors = [r.error for r in results if r.error]
        if errors:
            why = errors[0]
        elif state.faults[k] != Fault.NONE:
            why = f"fault {Fault(int(state.faults[k])).name}"
        else:
            why = f"{score.fraction[k]:.0%} of the output elements right"
        raise ValueError(
            f"task {task.name}: the program fails at training length {n}, example {k} "
            f"(seed {seed}): {why}; it is not compiled into a skill"
        )
