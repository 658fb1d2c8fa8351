"""Evaluating candidate actions for tree search: one at a time or many in one CPU call.

A search node is a point of an episode: which data the examples' machines hold after the
calls so far. Searching is evaluating many candidate actions from the same node, so
:class:`ActionEvaluator` runs a list of ``(skill, bindings)`` actions from one node and
reports, per action, the data left behind, the dense score (fraction of output elements
right), success, faults and instructions executed.

Two execution modes compute the same bits:

* one at a time (``batched=False``): each action runs alone on the node's machines through
  :meth:`~algind_gym.skills.image.MachineImage.execute` and is scored with
  :meth:`~algind_gym.tasks.workspace.Workspace.score`, exactly what an environment step does;
* batched (``batched=True``): every action gets its own copy of the node's machines, rows
  of one array kept between expansions (:class:`~agents.batch_buffer.BatchBuffer`); one
  compiled loop makes them ready from what the previous runs wrote and sets up each
  action's top-level call (the action table's call plans are arrays indexed by action),
  and one backend ``run`` executes them all (the way
  :class:`~algind_gym.envs.vector.AlgIndVectorEnv` batches sub-environments; a list of
  more than ``max_batch`` actions, by default 2,048 machines' worth, runs in consecutive
  calls of that many); a second compiled loop reads back every machine's memory block,
  instructions, fault and score (:mod:`agents.batch_loops`), column by column, so that a
  child's state key is one copy of its contiguous block; values are array operations over
  the children's memory blocks, so the Python work per child is building its
  :class:`Outcome`. The call runs on
  the backend's threads (the kernel's policy); with ``adaptive_threads=True`` it runs on
  those threads or on one, whichever has run faster lately (:mod:`agents.thread_choice`:
  on a busy machine a call on several threads waits for the one the OS leaves waiting; the
  same bits either way). That choice is off by default: on the idle 2-core machine, in one
  of two runs of ``experiments/bench_search.py`` it sent about two thirds of the evaluation
  calls to one thread and ran at 0.7x the fixed 2 threads (in the other it matched them).

What a node keeps: only the *memory* block of its machines (inputs, outputs, scratch,
constants). The rest of a machine between two calls (registers, the empty stack, the
slots of skill blocks, the code) carries nothing a later call reads: a top-level call sets
the registers it needs and binds the slots it reads. So a node's machines are rebuilt from
the root machines with the node's memory written in, which keeps a node a few hundred
bytes instead of whole machines, and makes :func:`state_key` (the observational
equivalence of two partial programs) the bytes of that memory.

Search examples: K examples (the solve's ``n_examples``) at each of the search lengths,
all rows of one batch -- a program must be right on all of them to count as a candidate
worth verifying. The default is the longest training length only: short examples give
wrong programs partial credit (at length 1 a product, a sum and a mean agree), which
misleads a search guided by the dense reward; a program right there but wrong elsewhere is
caught by verification at every length. The workspaces are laid out for the longest
training length, as the environments are, so any lengths asked for share one layout and
run in one CPU call.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agents.api import SolveContext
from agents.batch_buffer import BatchBuffer, Targets
from agents.batch_loops import scalar_values
from algind_gym.cpu.backend import run_recording_writes
from algind_gym.machine.isa import Fault
from algind_gym.machine.state import MachineState
from algind_gym.skills.image import resolve_backend
from algind_gym.tasks import Workspace
from algind_gym.tasks.spec import Tolerance


def state_key(memory: np.ndarray) -> bytes:
    """The observational-equivalence key of a node: the bytes of its machines' memory.

    Two partial programs that leave the same inputs, outputs, scratch and constants on
    every search example are one node. The one place a key is computed, so that it can
    follow the environments' own state key when they offer one. The bytes are laid out
    column by column (``memory`` ``(rows, memory size)`` in Fortran order: a memory cell's
    values on every row together), so the contents of a buffer, a run of memory columns,
    are one slice of the key (:func:`key_slice`).
    """
    return np.asarray(memory).tobytes(order="F")


def key_slice(columns: slice, rows: int, itemsize: int) -> slice:
    """The bytes of :func:`state_key` that hold memory columns ``columns`` of ``rows`` rows
    of ``itemsize``-byte cells."""
    step = rows * itemsize
    return slice(columns.start * step, columns.stop * step)


@dataclass(slots=True)
class Outcome:
    """What one action did from a node.

    Attributes:
        action: the discrete action index (``env.actions``).
        memory: ``(rows, memory size)`` memory after the action, column by column
            (Fortran order, as every node's memory is: the order of its :func:`state_key`);
            None when it faulted.
        key: :func:`state_key` of ``memory`` (None when it faulted).
        potential: mean over all search examples of the fraction of output elements right.
        success: every output of every search example right, no fault.
        fault: some machine faulted (the attempt is dead, as a fault ends an episode).
        instructions: CPU instructions executed by all the machines.
    """

    action: int
    memory: np.ndarray | None
    key: bytes | None
    potential: float
    success: bool
    fault: bool
    instructions: int
    value: float = 0.0
    """The search's value of the data left (:class:`ScalarValue`; the potential when the
    task's output is not one scalar)."""


class TimedBackend:
    """A backend wrapper that adds up the wall time spent inside ``run`` (the CPU call)."""

    def __init__(self, backend) -> None:
        self.inner = resolve_backend(backend)
        self.name = getattr(self.inner, "name", str(backend))
        self.seconds = 0.0
        self.last_seconds = 0.0
        self.calls = 0

    def run(
        self,
        state: MachineState,
        max_steps: int = 10_000,
        written: np.ndarray | None = None,
        inner=None,
    ) -> MachineState:
        """The inner backend's ``run`` (or ``inner``'s, a backend computing the same bits:
        :mod:`agents.thread_choice`); ``written``: write ranges to widen
        (:func:`~algind_gym.cpu.backend.run_recording_writes`)."""
        backend = self.inner if inner is None else inner
        start = time.perf_counter()
        try:
            if written is None:
                return backend.run(state, max_steps)
            return run_recording_writes(backend, state, max_steps, written)
        finally:
            self.last_seconds = time.perf_counter() - start
            self.seconds += self.last_seconds
            self.calls += 1


MAX_BATCH_MACHINES = 2048
"""The most machines (children x search examples) of one batched CPU call by default
(:attr:`ActionEvaluator.max_batch`). On the shared 2-core machine at load 7-12, the
2-thread evaluation of DotProduct's and Mean's first 1,024 actions
(``experiments/bench_search.py``, median of 5 repeats, both sizes in the same run) ran
3.8x / 4.4x one at a time in calls of 256 children x 8 machines against 1.7x / 1.6x in
calls of 64 (in another run, DotProduct: 1.8x at 64, 3.0x at 128, 4.6x at 256): a call
on several threads waits for its slowest thread, and fewer, larger calls wait fewer
times. On one thread, larger calls cost more CPU time per action on that loaded machine
(DotProduct: 40-54 against 36-41 us, the caches shared with other jobs); not yet
measured idle, hence ``bench_search.py`` also times calls of 64 in the same run. Up to
2,048 machines the compiled loops around the call stay serial
(:data:`~agents.batch_loops.LOOP_PARALLEL_MIN_MACHINES`); the buffer of 2,048 machines of
about 6,200 float64 cells is about 100 MB (in huge pages where the OS gives them)."""


def default_search_lengths(train_lengths: Sequence[int]) -> tuple[int, ...]:
    """The search examples' lengths by default: the longest training length."""
    return (max(train_lengths),)


class ActionEvaluator:
    """Runs candidate actions from search nodes on the search examples (module docstring).

    Args:
        ctx: the solve's context (task, library, K, backend, seed).
        batched: run a list of actions in one CPU call (True) or one at a time (False).
        lengths: lengths of the search examples, each at most the longest training length
            (default :func:`default_search_lengths`).
        adaptive_threads: in batched mode, run each CPU call on the backend's threads or
            on one, whichever has run faster lately (:mod:`agents.thread_choice`; the same
            bits either way; for a machine whose cores other jobs keep busy); False (the
            default): always the backend's threads.
        max_batch: in batched mode, the most actions per CPU call: :meth:`evaluate` runs a
            longer list in consecutive calls of at most this many (default: as many as
            :data:`MAX_BATCH_MACHINES` machines hold, 256 children of 8 examples).

    Attributes:
        env: an environment of the task (its action table decodes action indices; priors
            read it).
        root_memory: memory of the root node (nothing called yet).
        valid_actions: indices of every valid action (HALT excluded), in table order.
    """

    def __init__(
        self,
        ctx: SolveContext,
        *,
        batched: bool = True,
        lengths: Sequence[int] | None = None,
        adaptive_threads: bool = False,
        max_batch: int | None = None,
    ) -> None:
        self.ctx, self.batched = ctx, bool(batched)
        self.adaptive_threads = bool(adaptive_threads)
        if max_batch is not None and (isinstance(max_batch, bool) or int(max_batch) < 1):
            raise ValueError(f"max_batch must be an int >= 1 or None, got {max_batch!r}")
        self.env = ctx.make_env()
        self.env.reset(seed=int(ctx.rng.integers(2**31 - 1)))
        task = ctx.task
        self.lengths = tuple(lengths) if lengths else default_search_lengths(task.train_lengths)
        bad = [n for n in self.lengths if n < 0 or n > self.env.max_length]
        if bad:
            raise ValueError(
                f"search lengths {bad} are outside 0..{self.env.max_length} (the task's "
                "longest training length)"
            )
        self.workspaces = [
            Workspace(
                ctx.library,
                task,
                int(n),
                batch=ctx.n_examples,
                seed=int(ctx.rng.integers(2**31 - 1)),
                dtype=self.env.dtype,
                capacity=self.env.max_length,
            )
            for n in self.lengths
        ]
        self.image = self.workspaces[0].image
        self.layout = self.image.layout
        self.max_steps = max(ws.max_steps for ws in self.workspaces)
        self.k = ctx.n_examples
        self.rows = self.k * len(self.workspaces)
        self.max_batch = (
            int(max_batch) if max_batch is not None else max(MAX_BATCH_MACHINES // self.rows, 1)
        )
        """The most actions one batched CPU call runs (:meth:`evaluate` splits longer lists)."""
        self.root_cells = np.concatenate([ws.reset().cells for ws in self.workspaces])
        mem = self.layout.block("memory")
        self.mem = slice(mem.start, mem.start + mem.size)
        self.root_memory = self.root_cells[:, self.mem].copy(order="F")
        table = self.env.actions
        self.table = table
        mask = table.discrete_mask()
        mask[table.halt_index] = False
        self.valid_actions = np.flatnonzero(mask)
        self.backend = TimedBackend(ctx.backend)
        self._targets = output_targets(self.workspaces)
        self.value = ScalarValue.for_workspaces(self.workspaces)
        self.wall_seconds = 0.0
        self.library = ctx.library
        self.chunk_hint = 1
        self._batch: BatchBuffer | None = None
        self._pointer_names = tuple(self.workspaces[0].pointer_names)
        self._steps: dict[int, tuple[str, tuple[str, ...]]] = {}
        """Cache: action -> ``(skill key, pointer names)`` (:meth:`step_names`)."""

    @property
    def pointer_names(self) -> list[str]:
        return list(self._pointer_names)

    def reserve(self, chunk: int) -> None:
        """Expect up to ``chunk`` actions per :meth:`evaluate` call: in batched mode, build
        the machines of that many children now (before a search starts timing)."""
        self.chunk_hint = min(max(int(chunk), 1), self.max_batch)
        if self.batched and (self._batch is None or self._batch.capacity < self.chunk_hint):
            self._batch = BatchBuffer(self, self.chunk_hint, self.adaptive_threads)

    @property
    def thread_choice(self):
        """The batched CPU calls' :class:`~agents.thread_choice.ThreadChoice` (None: one
        at a time, no buffer yet, or no choice of threads)."""
        return None if self._batch is None else self._batch.choice

    @property
    def cpu_seconds(self) -> float:
        """Wall time spent inside the backend's ``run`` (the CPU call)."""
        return self.backend.seconds

    def root(self) -> Outcome:
        """The root node as an :class:`Outcome` (no action; its score before any call)."""
        state = MachineState(self.layout, self.root_cells.copy())
        potential, success = self._score_one(state)
        value = self._value(self.root_memory[None], np.array([potential]))[0]
        return Outcome(
            -1,
            self.root_memory.copy(order="F"),
            state_key(self.root_memory),
            potential,
            success,
            False,
            0,
            value,
        )

    def _value(
        self, memory: np.ndarray, potential: np.ndarray, faulted: np.ndarray | None = None
    ) -> np.ndarray:
        """The value of nodes with ``memory`` ``(nodes, rows, memory size)``, potentials
        ``(nodes,)`` and faulted machines ``(nodes, rows)`` (default: none)."""
        if self.value is None:
            return potential
        if faulted is None:
            faulted = np.zeros(memory.shape[:2], dtype=bool)
        return self.value(memory, faulted, potential)

    def decode(self, action: int) -> tuple[str, tuple[int, ...]]:
        """``(skill key, bindings)`` of a discrete action."""
        return self.table.decode_discrete(int(action))

    def step_names(self, action: int) -> tuple[str, list[str]]:
        """``(skill key, [pointer names])``: an action as a program step (a new list)."""
        hit = self._steps.get(action)
        if hit is None:
            skill, binds = self.decode(action)
            names = self._pointer_names
            hit = self._steps[action] = (skill, tuple([names[p] for p in binds]))
        return hit[0], list(hit[1])

    # ----------------------------------------------------------- evaluation
    def evaluate(self, memory: np.ndarray, actions: Sequence[int]) -> list[Outcome]:
        """Run every action of ``actions`` from the node with ``memory``; one
        :class:`Outcome` each, in order. Batched mode makes one CPU call for all of them,
        or, for more than :attr:`max_batch` actions, one per run of that many."""
        start = time.perf_counter()
        try:
            if not len(actions):
                return []
            if self.batched:
                actions = np.asarray(actions, dtype=np.int64)
                top = self.max_batch
                if len(actions) <= top:
                    return self._evaluate_batched(memory, actions)
                out: list[Outcome] = []
                for lo in range(0, len(actions), top):
                    out += self._evaluate_batched(memory, actions[lo : lo + top])
                return out
            return [self._evaluate_one(memory, int(a)) for a in actions]
        finally:
            self.wall_seconds += time.perf_counter() - start

    def _node_cells(self, memory: np.ndarray, copies: int) -> np.ndarray:
        cells = np.tile(self.root_cells, (copies, 1)) if copies > 1 else self.root_cells.copy()
        cells[:, self.mem] = np.tile(memory, (copies, 1)) if copies > 1 else memory
        return cells

    def _evaluate_one(self, memory: np.ndarray, action: int) -> Outcome:
        state = MachineState(self.layout, self._node_cells(memory, 1))
        skill, binds = self.decode(action)
        res = self.image.execute(state, skill, binds, self.backend, self.max_steps)
        instructions = int(res.steps.sum())
        if (res.faults != Fault.NONE).any():
            return Outcome(action, None, None, 0.0, False, True, instructions)
        potential, success = self._score_one(state)
        after = state.cells[:, self.mem].copy(order="F")
        value = float(self._value(after[None], np.array([potential]))[0])
        return Outcome(
            action, after, state_key(after), potential, success, False, instructions, value
        )

    def _score_one(self, state: MachineState) -> tuple[float, bool]:
        """The environments' score (``Workspace.score``), over every search example."""
        frac, ok = self._score_one_rows(state)
        return float(frac.mean()), bool(ok.all())

    def _score_one_rows(self, state: MachineState) -> tuple[np.ndarray, np.ndarray]:
        """``Workspace.score``'s fraction and success of every search example."""
        fracs, oks = [], []
        for g, ws in enumerate(self.workspaces):
            rows = slice(g * self.k, (g + 1) * self.k)
            s = ws.score(MachineState(self.layout, state.cells[rows]))
            fracs.append(s.fraction)
            oks.append(s.success)
        return np.concatenate(fracs), np.concatenate(oks)

    def _evaluate_batched(self, memory: np.ndarray, actions: np.ndarray) -> list[Outcome]:
        n, r = len(actions), self.rows
        if self._batch is None or self._batch.capacity < n:
            self._batch = BatchBuffer(self, max(n, self.chunk_hint), self.adaptive_threads)
        targets = self._targets or Targets.none(r)
        after, faults, steps, frac, ok = self._batch.run(memory, actions, targets)
        # every per-child number is one array operation over the children; ``after`` is
        # (children, memory size, rows): a child's memory is the transposed view of its
        # block, and its state key the bytes of its (C-contiguous) block
        keys = [block.tobytes() for block in after]
        after = after.transpose(0, 2, 1)
        faults = faults.reshape(n, r)
        frac, ok = frac.reshape(n, r), ok.reshape(n, r)
        if self._targets is None:  # a task with its own scorer: child by child, rebuilt machines
            frac, ok = np.zeros((n, r)), np.zeros((n, r), dtype=bool)
            for c in range(n):
                cells = self._node_cells(after[c], 1)
                cells[:, self.layout.register("fault")] = faults[c]
                fr, sc = self._score_one_rows(MachineState(self.layout, cells))
                frac[c], ok[c] = fr, sc
        potential = np.add.reduce(frac, axis=1) / r  # frac.mean(axis=1), without its wrapper
        faulted = faults.any(axis=1)
        instructions = steps.reshape(n, r).sum(axis=1).tolist()
        values = self._value(after, potential, faults)
        # the Outcomes are built by ``map`` over columns (no Python loop body per child),
        # then the faulted children, usually few, are replaced by fault outcomes
        acts = actions.tolist()
        out = list(
            map(
                Outcome,
                acts,
                list(after),
                keys,
                potential.tolist(),
                ok.all(axis=1).tolist(),
                [False] * n,
                instructions,
                values.tolist(),
            )
        )
        for c in np.flatnonzero(faulted).tolist():
            out[c] = Outcome(acts[c], None, None, 0.0, False, True, instructions[c])
        return out


def output_targets(workspaces: list[Workspace]) -> Targets | None:
    """What the batched path scores children against, per search example: the memory
    columns of the task's output cells and the oracle's expected values (computed once per
    workspace), under the task's tolerance. :func:`~agents.batch_buffer.collect` then gives
    ``Workspace.score``'s numbers: the fraction of output elements right per example, as
    :meth:`TaskSpec.score_example` counts them. None for a task with its own scorer or a
    tolerance that is not :class:`~algind_gym.tasks.spec.Tolerance`'s ``close`` (those are
    scored child by child through ``Workspace.score``).
    """
    task = workspaces[0].task
    if task.scorer is not None or type(task.tolerance).close is not Tolerance.close:
        return None
    mem = workspaces[0].image.layout.block("memory")
    columns, want = [], []
    for ws in workspaces:
        cols, vals = [], []
        for name in task.outputs:
            addr, buf = ws.image.buffers[name]
            if not mem.start <= addr <= addr + buf.size <= mem.start + mem.size:
                raise AssertionError(f"output {name!r} must lie in the memory block")
            w = np.stack([np.asarray(e[name], dtype=np.float64).reshape(-1) for e in ws.expected])
            if w.shape[1] != buf.size:
                raise ValueError(
                    f"task {task.name}: the oracle's {name!r} has {w.shape[1]} elements, "
                    f"its buffer {buf.size}"
                )
            cols.append(np.arange(buf.size) + (addr - mem.start))
            vals.append(w)
        for k in range(ws.batch):
            columns.append(np.concatenate(cols) if cols else np.zeros(0, np.int64))
            want.append(np.concatenate([v[k] for v in vals]) if vals else np.zeros(0))
    return Targets(columns, want, task.tolerance)


AFFINE_VALUE = 0.5
""":class:`ScalarValue` of an output that is an exact affine function of the target."""


class ScalarValue:
    """The search's value of a node when the task's output is one scalar.

    The dense reward (fraction of outputs right) of a scalar output is right-or-wrong per
    example, which gives a search two wrong signals: credit for a constant that happens to
    equal the target on some examples (a count of 0 or 1), and no credit for a quantity one
    scalar operation away from the target (a sum for a mean). So the value is

    * the potential corrected for chance: ``max(0, (p - b) / (1 - b))``, ``b`` the share of
      search examples whose target is the most common target value (what the best
      constant output scores);
    * at least :data:`AFFINE_VALUE` when the output, not constant over the examples, is an
      exact affine function of the target over them (``target = a * out + c`` to within
      1e-9 relative residual; at least three distinct targets): one or two scalar
      operations from it (a heuristic: such a relation may not be computable).

    A node that solves every example has value 1. The number is identical in the batched
    and one-at-a-time evaluators (the same compiled loop,
    :func:`~agents.batch_loops.scalar_values`, on the same memory).

    Args:
        address: the output's column in the memory block.
        want: the target of every search example.
    """

    def __init__(self, address: int, want: np.ndarray) -> None:
        self.address, self.want = address, want
        _, counts = np.unique(want, return_counts=True)
        self.chance = float(counts.max() / want.size)
        self.varies = np.unique(want).size >= 3
        self._centred = want - want.mean()
        self._scale = max(float(np.abs(want).max()), 1.0)

    @classmethod
    def for_workspaces(cls, workspaces: list[Workspace]) -> ScalarValue | None:
        """The value of a task with one scalar output (None for any other task)."""
        task = workspaces[0].task
        if task.scorer is not None or len(task.outputs) != 1:
            return None
        name = task.outputs[0]
        want = []
        for ws in workspaces:
            addr, buf = ws.image.buffers[name]
            if buf.size != 1 or addr != workspaces[0].image.buffers[name][0]:
                return None
            want += [
                float(np.asarray(e[name], dtype=np.float64).reshape(-1)[0]) for e in ws.expected
            ]
        mem = workspaces[0].image.layout.block("memory")
        if not mem.start <= addr < mem.start + mem.size:
            return None
        return cls(addr - mem.start, np.array(want))

    def __call__(
        self, memory: np.ndarray, faulted: np.ndarray, potential: np.ndarray
    ) -> np.ndarray:
        """Values of nodes with memory ``(nodes, rows, memory size)``, faulted machines
        ``(nodes, rows)`` and potentials ``(nodes,)``."""
        p = np.asarray(potential, dtype=np.float64)
        value = np.empty(len(p))
        # (nodes, memory size, rows): C-contiguous for nodes' memory (Fortran-ordered)
        scalar_values(
            memory.transpose(0, 2, 1), faulted, p, self.address, self.chance, self.varies,
            self._centred, self._scale, AFFINE_VALUE, value,
        )  # fmt: skip
        return value
