"""`AlgIndVectorEnv`: many composition environments, one batched CPU call per step.

Each sub-environment is a full :class:`~algind_gym.envs.SkillCompositionEnv` (same
seeding, scoring and observations), but its K machines are rows of one shared array of
``num_envs * K`` machines, and the per-step work runs as array operations over all of
them (:mod:`algind_gym.envs.batch`):

1. decode every action and check it against the mask with table lookups, and book the
   part of the step that does not depend on what the calls compute: the histories and
   programs of the valid calls and the error texts of invalid actions
   (:meth:`EpisodeColumns.book_calls <algind_gym.envs.columns.EpisodeColumns.book_calls>`;
   done first, while those Python objects are more likely in cache than after the CPU call);
2. autoreset the sub-environments whose episode ended at the previous step (below);
3. load the bindings of every valid call into its skill's slots and start all top-level
   calls (:func:`~algind_gym.envs.batch.bind_and_call`; the descriptors of machines that
   still hold the fresh pointer table of their length come from one table per length,
   :meth:`AlgIndVectorEnv._held_tables`, not from their rows), then run the whole batch in a
   single backend call (each machine has its own PC, so different skills run side by
   side; machines without a call, fresh ones included, stay halted and frozen), and read
   each call's instructions and first fault from its machines' registers in one compiled
   pass (:func:`~algind_gym.envs.batch.call_results`);
4. score the calls that ran and the new episodes at once (every length in one compiled
   pass that writes the ``scored_*``, ``out_fraction`` and ``n_outs`` columns,
   :func:`~algind_gym.envs.batch.score_envs`), book the rest of the step of every
   sub-environment at once (:meth:`EpisodeColumns.book
   <algind_gym.envs.columns.EpisodeColumns.book>`: the numbers of
   ``SkillCompositionEnv._finish`` in one compiled loop, then the texts of faults from a
   table), write the calls into the episode arrays in one compiled loop
   (:func:`~algind_gym.envs.columns.record_calls`), observe all sub-environments at once
   (:meth:`ObservationBuilder.observe_many`, numpy; in ``"state"`` mode the pointer
   tables, most of a machine's observed cells, come from one fresh table per length for
   the machines whose write ranges show that they still hold it), and build the infos as
   arrays (``info["action_mask"]`` is one read-only array shared by every step: the masks
   depend on the action table only; ``info["calls"]`` comes from the ``n_calls`` column).

The episode state of the sub-environments lives in vector-wide arrays: their scalars
(call count, potential, success, fault, error, program text, history and its length) and
the oracle's outputs and per-output scores (``want``, ``out_fraction``, padded to the
widest length) in :class:`~algind_gym.envs.columns.EpisodeColumns` (each sub-environment
is a :class:`~algind_gym.envs.columns.ColumnEnv` that reads and writes its entry, so its
own methods still work), and their per-episode arrays (calls so far, entries written,
skill counts) as views of ``(num_envs, ...)`` arrays. With discrete actions, each call's
``(skill, bindings)``, arity and program line are looked up per action index in arrays
built once, and histories and programs grow with one pass over the envs whose call is
valid; only the error texts of invalid actions (and of faults whose code is not in the
table) are built per env in Python.

All lengths up to ``max_length`` share one layout, which is what lets every environment
live in one batch.

Autoreset follows gymnasium 1.x's default, ``AutoresetMode.NEXT_STEP`` (declared in
``metadata``): the step after an episode ends resets that sub-environment and returns
its first observation with reward 0. An autoreset draws the length and example seed
exactly as :meth:`SkillCompositionEnv.reset` does, from each sub-environment's
``np_random`` (for all resetting sub-environments in one compiled call on their bit
generators, :mod:`algind_gym.envs.integers`, where it applies; else two numpy calls each).
The sub-environments of one length are refilled together
(:func:`~algind_gym.tasks.workspace.refill_group`): for a task whose examples are U(-1, 1)
draws, the ``default_rng(seed)`` doubles of all of them come from one compiled call
(:func:`~algind_gym.envs.seeding.uniform_doubles`); for other tasks, when many reset at
once, their generators are seeded together (:func:`~algind_gym.envs.seeding.pcg64_states`)
and each draws through one kept generator (:class:`~algind_gym.envs.seeding.Reseedable`),
else ``default_rng(seed)`` each. It refills a workspace kept per
length (:meth:`Workspace.refill <algind_gym.tasks.workspace.Workspace.refill>`; the
first one of a length is a shallow copy of a workspace of that length, so all
sub-environments share one image per length) and rewrites the machine rows in place
instead of building a new workspace (per length, for all its sub-environments at once;
the examples come from the task's batched generator, :meth:`TaskSpec.draw
<algind_gym.tasks.spec.TaskSpec.draw>`, as in a single environment). Of the fresh
machine's template it rewrites only what can have changed: registers and memory, the
pointer table (where the lengths' tables differ, for machines that still hold one), and the
stack cells and skill slots that the episode's calls wrote, known from the
write ranges that the backend and :func:`~algind_gym.envs.batch.bind_and_call` report
(:mod:`algind_gym.envs.fresh`). Trajectories
equal those of ``SyncVectorEnv`` over single environments with the same seeds (tested).
A sub-environment's :meth:`~SkillCompositionEnv.snapshot` stays valid until that
sub-environment autoresets.
"""

from __future__ import annotations

from time import perf_counter as clock
from typing import Any, ClassVar

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from algind_gym.cpu.backend import run_recording_writes
from algind_gym.envs import batch, seeding
from algind_gym.envs.batch import (
    CallTable,
    EpisodeIndex,
    ScoreTable,
    bind_and_call,
    call_results,
    groups,
    score_envs,
    score_group,
)
from algind_gym.envs.columns import ColumnEnv, EpisodeColumns, record_calls
from algind_gym.envs.composition import MAX_LENGTH_LIMIT, SkillCompositionEnv, _check_int
from algind_gym.envs.fresh import FreshRows
from algind_gym.envs.integers import GeneratorTable, reset_draws
from algind_gym.envs.observation import _f32
from algind_gym.envs.seeding import LazyStates, Reseedable, uniform_doubles
from algind_gym.machine.state import MachineState
from algind_gym.skills.builtin import builtin_library
from algind_gym.skills.image import resolve_backend
from algind_gym.tasks.spec import TaskSpec
from algind_gym.tasks.workspace import refill_group, shallow_copy

_DRAW_LENGTH = SkillCompositionEnv._draw_length

BATCH_SEEDING = 16
"""Autoresets of at least this many sub-environments at once seed their example generators
together (:func:`~algind_gym.envs.seeding.pcg64_states`) where a task draws through
generators; fewer build ``default_rng(seed)`` each. (U(-1, 1) tasks draw with
:func:`~algind_gym.envs.seeding.uniform_doubles` at any number.)"""


class AlgIndVectorEnv(VectorEnv):
    """``num_envs`` :class:`SkillCompositionEnv` run as one batch (see the module docstring).

    Args:
        num_envs: number of sub-environments.
        task: the task (all sub-environments share it).
        max_episode_steps: alias of ``max_calls`` (what ``gym.make_vec`` passes from a spec
            that sets it).
        **kwargs: the single environment's arguments.

    Attributes:
        timings: cumulative wall seconds of :meth:`step` by part: ``cpu`` (the backend's
            ``run``), ``bind`` (W^in and the top-level calls), ``score``, ``observe``,
            ``reset`` (autoresets) and ``book`` (decoding, bookkeeping, infos); what
            ``experiments/bench_env.py`` reports.
    """

    metadata: ClassVar[dict[str, Any]] = {
        "autoreset_mode": AutoresetMode.NEXT_STEP,
        "render_modes": ["ansi", "rgb_array"],
    }

    def __init__(
        self,
        num_envs: int = 1,
        task: str | TaskSpec = "VectorAdd",
        *,
        max_episode_steps: int | None = None,
        **kwargs: Any,
    ) -> None:
        num_envs = _check_int("num_envs", num_envs, 1, 1_000_000)
        if max_episode_steps is not None:
            kwargs.setdefault("max_calls", max_episode_steps)
        kwargs.setdefault("library", builtin_library())
        first = SkillCompositionEnv(task, **kwargs)
        first.__class__ = ColumnEnv  # its episode scalars live in self._columns
        # the other sub-environments share the first one's static parts (action table,
        # observation builder, spaces, episode indexes); episode state is set at reset
        self.envs = [first] + [_shallow_copy(first) for _ in range(num_envs - 1)]
        self._columns = EpisodeColumns(num_envs, first.n_examples)
        for i, env in enumerate(self.envs):
            env._columns, env._column = self._columns, i
        self.num_envs = num_envs
        self.render_mode = first.render_mode
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.k = first.n_examples
        self._rows = np.arange(num_envs * self.k).reshape(num_envs, self.k)
        self._cells: np.ndarray | None = None
        self._workspaces: list[dict[int, Any]] = [{} for _ in range(num_envs)]
        self._prototypes: dict[int, Any] = {}
        self._autoreset = np.zeros(num_envs, dtype=bool)
        table = first.actions
        self._calltable = CallTable.of(first._probe_image, table.skills, table.max_arity)
        a = max(table.max_arity, 1)
        n = len(table.candidates)
        self._cand_skill = np.full(n + 1, -1, dtype=np.int64)
        self._cand_binds = np.zeros((n + 1, a), dtype=np.int64)
        for i, (s, binds) in enumerate(table.candidates):
            self._cand_skill[i] = s
            self._cand_binds[i, : len(binds)] = binds
        self._cand_valid = np.append(table.valid, False)  # HALT runs nothing
        self._cand_arity = np.append(self._calltable.arity[self._cand_skill[:n]], 0)
        self._cand_calls: tuple[np.ndarray, np.ndarray] | None = None  # built on first use
        self._accepts = np.ones((len(table.skills), a, table.n_pointers), dtype=bool)
        for s, acc in enumerate(table.slot_accepts):
            self._accepts[s, : acc.shape[0]] = acc
        # the masks never change (they depend on the action table only): ``info["action_mask"]``
        # is this read-only array, shared between steps (no copy of num_envs masks per step)
        self._masks = np.repeat(first.action_masks()[None], num_envs, axis=0)
        self._masks.flags.writeable = False
        # per-episode arrays of all sub-environments (each env's are views of its rows)
        self._episode = {
            "calls": np.full((num_envs, first.max_calls, 1 + a), -1.0, np.float32),
            "written": np.zeros((num_envs, table.n_pointers), dtype=bool),
            "skill_calls": np.zeros((num_envs, len(table.skills)), dtype=np.float32),
        }
        self._lengths = np.zeros(num_envs, dtype=np.int64)
        self._writes = np.zeros((len(table.skills), a), dtype=bool)
        for s, js in enumerate(first._writes):
            self._writes[s, list(js)] = True
        lay = first._probe_image.layout
        # every workspace is laid out for max_length (longer lengths are refused), so every
        # episode has the instruction budget of that capacity
        self._budget = first.task.budget(first.max_length)
        self._fault_reg = lay.register("fault")
        self._fresh: FreshRows | None = None  # built with the shared array (first reset)
        self._score_table = ScoreTable()
        self._ptr_table: np.ndarray | None = None  # per length: a fresh pointer table, observed
        self._ptr_raw: np.ndarray | None = None  # the same, in the cells' dtype
        self._ptr_known = np.zeros(0, dtype=bool)
        self._rng = Reseedable()
        self._generators = GeneratorTable(num_envs)  # (their np_random's ctypes addresses)
        self.timings = dict.fromkeys(("cpu", "bind", "score", "observe", "reset", "book"), 0.0)

    # ------------------------------------------------------------- batching
    def _adopt(self, i: int) -> None:
        """Move env ``i``'s fresh machines into the shared array (a view from now on)."""
        env = self.envs[i]
        layout = env.state.layout
        if self._cells is None or self._cells.shape[1] != layout.n_cells:
            self._cells = np.zeros((self.num_envs * self.k, layout.n_cells), dtype=env.state.dtype)
            self._layout = layout
            self._fresh = FreshRows(layout, self.num_envs, self.k, self._columns.untracked)
        self._cells[self._rows[i]] = env.state.cells
        self._fresh.fresh_envs(np.array([i]))
        env.state = MachineState(layout, self._cells[i * self.k : (i + 1) * self.k])
        self._workspaces[i][env.ws.length] = env.ws
        self._lengths[i] = env.ws.length
        for key, arr in self._episode.items():
            arr[i] = getattr(env, f"_{key}")
            setattr(env, f"_{key}", arr[i])

    @property
    def machines(self) -> MachineState:
        """All ``num_envs * K`` machines as one state (rows ``i*K .. (i+1)*K`` are env ``i``)."""
        return self._machines

    def _autoreset_envs(self, ids: np.ndarray, score: bool = True) -> None:
        """:meth:`SkillCompositionEnv.reset` (no seed, no options) for envs ``ids``, in place:
        the two draws of every env's RNG (one compiled call where it applies, see the module
        docstring), per length the examples of its envs (:func:`refill_group`), then the
        machine rows of all lengths at once (:meth:`FreshRows.reset_many`).
        ``score=False`` leaves the scoring of the new episodes (``_scored`` and
        ``potential``) to the caller, which :meth:`step` does together with the calls that
        ran."""
        ids_l = ids.tolist()
        envs, first = self.envs, self.envs[0]
        # SkillCompositionEnv.reset's draws: the length, then the seed, from each env's
        # np_random; all in one compiled call where it applies (algind_gym.envs.integers)
        drawn = None
        if type(first)._draw_length is _DRAW_LENGTH and "_draw_length" not in first.__dict__:
            gens = [envs[i].np_random for i in ids_l]
            drawn = reset_draws(gens, len(first.lengths), self._generators, ids)
        if drawn is not None:
            lengths = np.asarray(first.lengths, dtype=np.int64)[drawn[0]].tolist()
            seeds = drawn[1]
        else:
            lengths, seeds = [], []
            for i in ids_l:
                env = envs[i]
                lengths.append(env._draw_length())
                seeds.append(int(env.np_random.integers(2**63 - 1)))
        doubles = uniform_doubles if seeding.COMPILED and seeding.exact() else None
        states = LazyStates(seeds) if len(seeds) >= BATCH_SEEDING else None
        by_length: dict[int, list[int]] = {}
        for at, length in enumerate(lengths):
            group = by_length.get(length)
            if group is None:
                group = by_length[length] = []
            group.append(at)
        self._lengths[ids] = lengths
        ep = self._episode
        ep["calls"][ids], ep["written"][ids], ep["skill_calls"][ids] = -1.0, False, 0.0
        self._columns.begin(ids)
        seeded, history, indexes = self._rng.seeded, self._columns.history, first._indexes
        parts = []
        for length, ats in by_length.items():
            group = [ids_l[a] for a in ats]
            wss = []
            index = indexes.get(length)  # (the envs share one dict of them)
            for i, a in zip(group, ats, strict=True):
                env = envs[i]
                ws = self._workspaces[i].get(length)
                if ws is None:  # first episode of this length here: share the image of another
                    proto = self._prototypes.get(length)
                    if proto is None:
                        proto = self._prototypes[length] = env._workspace(length, seeds[a])
                    ws = self._workspaces[i][length] = shallow_copy(proto)
                if index is None:  # (from the layout alone: the same before the refill)
                    index = indexes[length] = EpisodeIndex.of(ws)
                # what _begin_episode sets per env, in this one pass over the envs
                env.ws, env._ws_recipe, env._index, env._template = (
                    ws,
                    (length, seeds[a]),
                    index,
                    None,
                )
                history[i] = []
                wss.append(ws)
            group_seeds = [seeds[a] for a in ats]
            rngs = None if states is None else (seeded(states[a]) for a in ats)
            drawn = refill_group(wss, group_seeds, rngs, doubles)
            group = np.array(group, dtype=np.int64)
            parts.append((group, wss, drawn))
            self._begin_episodes(group, drawn[1])
        self._fresh.reset_many(self._cells, parts)
        if not score:
            return
        self._score(ids)
        self._columns.potential[ids] = self._columns.scored_potential[ids]

    def _begin_episodes(self, group: np.ndarray, expected: dict) -> None:
        """What :meth:`SkillCompositionEnv._begin_episode` sets besides what
        :meth:`_autoreset_envs` sets (the scalars, arrays and per-env attributes), for the
        envs ``group`` of one episode length (oracle outputs ``expected`` stacked over them,
        :func:`~algind_gym.tasks.workspace.refill_group`): their oracle outputs go into the
        ``want`` column in one copy."""
        n, k = group.size, self.k
        parts = [expected[name].reshape(n, k, -1) for name in self.envs[0].task.outputs]
        want = np.concatenate(parts, axis=2) if len(parts) != 1 else parts[0]
        self._columns.put("want", "want_width", group, want.astype(np.float64, copy=False))

    def _score(self, ids: np.ndarray) -> None:
        """Score envs ``ids`` into the ``scored_*`` and ``out_fraction`` columns: all
        lengths in one compiled pass (:func:`score_envs`) for a task without a custom
        scorer, else :func:`score_group` per episode length."""
        c, envs = self._columns, self.envs
        first = envs[0]
        if batch.COMPILED and first.task.scorer is None and self._cells.flags.c_contiguous:
            classes = self._score_table.classes(self._lengths[ids], first._indexes)
            c.widen("out_fraction", self._score_table.starts.shape[1])
            score_envs(
                self._cells,
                ids,
                self.k,
                classes,
                self._score_table,
                c.want,
                first.task.tolerance,
                first._fault_col,
                (c.scored_potential, c.scored_success, c.out_fraction, c.n_outs),
            )
            return
        for pos in groups(None, self._lengths[ids]).values():
            g = ids[pos]
            members = [envs[i] for i in g.tolist()]
            want = None
            if members[0].task.scorer is None:
                w = members[0]._index.out_cols.size
                want = c.want[g, :, :w].reshape(-1, w)
            c.scored_potential[g], c.scored_success[g], out_frac = score_group(
                members, self._cells, self._rows[g], want
            )
            c.put("out_fraction", "n_outs", g, out_frac)

    # ------------------------------------------------------------------ API
    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        super().reset(seed=None)
        if seed is None:
            seeds = [None] * self.num_envs
        elif isinstance(seed, int):
            seeds = [seed + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"got {len(seeds)} seeds for {self.num_envs} environments")
        length = (options or {}).get("length")
        first = self.envs[0]
        if length is not None:
            top = max(MAX_LENGTH_LIMIT, first.max_length, *first.task.test_lengths)
            if _check_int("reset(options={'length': ...})", length, 0, top) > first.max_length:
                raise ValueError(
                    f"length {length} is beyond this vector env's shared layout; create it with "
                    f"max_length >= {length} (every sub-environment's machines share one layout)"
                )
        for i, env in enumerate(self.envs):
            env.reset(seed=seeds[i], options=options)
            self._adopt(i)
        self._machines = MachineState(self._layout, self._cells)  # every row is filled now
        self._autoreset[:] = False
        return self._observe(), self._infos()

    def step(self, actions):
        t0 = clock()
        acts = np.asarray(actions)
        n, envs = self.num_envs, self.envs
        resets = np.flatnonzero(self._autoreset)
        run = np.flatnonzero(~self._autoreset)
        table = envs[0].actions
        calls = None
        if envs[0].action_encoding == "discrete":
            idx = acts.reshape(n)[run].astype(np.int64)
            halt = idx == table.halt_index
            skills, binds = self._cand_skill[idx], self._cand_binds[idx]
            valid = self._cand_valid[idx]
            calls = self._candidate_calls(idx[valid])
            arity = self._cand_arity[idx]
        else:
            a = acts.reshape(n, -1)[run].astype(np.int64)
            skills, binds = a[:, 0], a[:, 1 : 1 + self._cand_binds.shape[1]]
            halt = skills == len(table.skills)
            s = np.where(halt, 0, skills)
            j = np.arange(binds.shape[1])
            slot_ok = self._accepts[s[:, None], j[None, :], binds]
            used = j[None, :] < self._calltable.arity[s][:, None]
            valid = ~halt & (slot_ok | ~used).all(axis=1)
            arity = np.where(halt, 0, self._calltable.arity[s])
        ex = run[valid]
        steps = np.zeros(n, dtype=np.int64)
        fault = np.zeros(n, dtype=np.int64)
        errors: dict[int, str] = {}
        if run.size:  # (the programs and histories, while their objects are likely in cache)
            self._columns.book_calls(envs, run, halt, valid, skills, binds, arity, calls)
        t1 = clock()
        self.timings["book"] += t1 - t0
        cells = self._cells
        if resets.size:  # their rows are halted fresh machines: the CPU call leaves them be
            self._autoreset_envs(resets, score=False)
        t2 = clock()
        self.timings["reset"] += t2 - t1
        if ex.size:
            rows = self._rows[ex]
            flat, icount = rows.ravel(), self._layout.register("icount")
            before = cells[flat, icount]
            written = self._fresh.written
            stale = self._held_tables()
            held = None if stale is None else (self._ptr_raw, self._lengths[ex], stale[ex])
            full = bind_and_call(
                cells,
                self._layout,
                self._calltable,
                rows,
                skills[valid],
                binds[valid],
                written,
                held,
            )
            errors = {int(i): "the stack is full" for i in ex[full]}
            t3 = clock()
            backend = resolve_backend(envs[0].backend)
            run_recording_writes(backend, self._machines, self._budget, written)
            t4 = clock()
            self.timings["bind"] += t3 - t2
            self.timings["cpu"] += t4 - t3
            t2 = t4
            steps[ex], fault[ex] = call_results(cells, rows, before, icount, self._fault_reg)
        scored = np.concatenate([ex, resets])  # the calls that ran and the new episodes
        if scored.size:
            self._score(scored)
        c = self._columns
        c.potential[resets] = c.scored_potential[resets]
        t1 = clock()
        self.timings["score"] += t1 - t2
        rewards = np.zeros(n)
        terms = np.zeros(n, dtype=bool)
        truncs = np.zeros(n, dtype=bool)
        if run.size:
            rewards[run], terms[run], truncs[run] = self._columns.book(
                envs, run, halt, valid, steps, fault, errors
            )
        if ex.size:
            self._record(ex, skills[valid], binds[valid], arity[valid])
        t3 = clock()
        self.timings["book"] += t3 - t1
        obs = self._observe()
        t4 = clock()
        self.timings["observe"] += t4 - t3
        self._autoreset = terms | truncs
        infos = self._infos()
        self.timings["book"] += clock() - t4
        return obs, rewards, terms, truncs, infos

    def _candidate_calls(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per discrete action of ``idx``, its call ``(skill, bindings)`` and its program line
        (:meth:`SkillCompositionEnv._call_text`), looked up in two object arrays built once."""
        if self._cand_calls is None:
            first = self.envs[0]
            table = first.actions
            n = len(table.candidates)
            calls, lines = np.empty(n, dtype=object), np.empty(n, dtype=object)
            for i, (s, binds) in enumerate(table.candidates):
                call = (table.skills[s], tuple(int(b) for b in binds))
                calls[i], lines[i] = call, first._call_text(*call)
            self._cand_calls = (calls, lines)
        calls, lines = self._cand_calls
        return calls[idx], lines[idx]

    def _record(self, ex: np.ndarray, skills: np.ndarray, binds: np.ndarray, arity) -> None:
        """Write the calls that ran in envs ``ex`` (after their ``_finish``) into the episode
        arrays, as :meth:`SkillCompositionEnv._finish` does for one env: the call's row of
        ``_calls`` (``[skill, pointers...]``, at the index of the call in the env's history),
        its skill's count, the entries it wrote (:func:`record_calls`)."""
        at = self._columns.n_calls[ex] - 1
        record_calls(self._episode, ex, at, skills, binds, arity, self._writes)

    def _observe(self) -> dict[str, np.ndarray]:
        c = self._columns
        stacked = {**self._episode, "out_fraction": c.out_fraction}
        stacked["t"], stacked["potential"] = c.t, c.potential
        builder = self.envs[0]._obs
        return builder.observe_many(
            self.envs, self._cells, self._lengths, stacked, self._pointer_tables(builder)
        )

    def _pointer_tables(self, builder) -> tuple[np.ndarray, np.ndarray] | None:
        """For a ``"state"`` observation (:meth:`ObservationBuilder.observe_many`'s
        ``pointer_tables``): per env the pointer table of a fresh machine of its length
        (float32, as observed) and the machines that may hold another one
        (:meth:`_held_tables`). None in other modes."""
        if builder.mode != "state":
            return None
        stale = self._held_tables()
        if stale is None:
            return None
        return self._ptr_table[self._lengths], stale

    def _held_tables(self) -> np.ndarray | None:
        """``(num_envs, K)`` bool: the machines that may not hold the pointer table of a
        fresh machine of their env's length (those whose write ranges reach the table
        since their row was fresh, and every machine of an env whose rows changed outside
        the tracked writes), after making sure that the per-length tables
        (:attr:`_ptr_table`, :attr:`_ptr_raw`) hold every length the envs have now. None
        when the fresh rows are copies of ``Workspace.reset`` (:class:`FreshRows`)."""
        fresh = self._fresh
        if not fresh._fast:
            return None
        lengths = self._lengths
        table = self._ptr_table
        top = int(lengths.max())
        if table is None or top >= table.shape[0] or not self._ptr_known[lengths].all():
            self._grow_pointer_tables(top)
        stale = (fresh.written[:, 1] >= fresh.pointers_start).reshape(self.num_envs, self.k)
        stale |= fresh.untracked[:, None]
        return stale

    def _grow_pointer_tables(self, top: int) -> None:
        """Add the fresh pointer table of every length the envs have now to the per-length
        tables: ``_ptr_table`` (float32, as observed) and ``_ptr_raw`` (in the cells'
        dtype, as :func:`~algind_gym.envs.batch.bind_and_call` loads it)."""
        p = self.envs[0]._obs._pointer_block
        old, old_raw = self._ptr_table, self._ptr_raw
        width = p.stop - p.start
        if old is None or top >= old.shape[0]:
            table = np.zeros((top + 1, width), dtype=np.float32)
            raw = np.zeros((top + 1, width), dtype=self._cells.dtype)
            known = np.zeros(top + 1, dtype=bool)
            if old is not None:
                table[: old.shape[0]], known[: old.shape[0]] = old, self._ptr_known
                raw[: old.shape[0]] = old_raw
            self._ptr_table, self._ptr_raw, self._ptr_known = table, raw, known
        for i in range(self.num_envs):
            length = int(self._lengths[i])
            if not self._ptr_known[length]:
                ws = self.envs[i].ws
                row = ws.image.new_state(1, self._cells.dtype).cells[0, p]
                self._ptr_table[length], self._ptr_raw[length] = _f32(row), row
                self._ptr_known[length] = True

    def _infos(self) -> dict[str, Any]:
        return self._columns.infos(self.envs, self._lengths, self._masks)

    def action_masks(self) -> np.ndarray:
        """Per-environment masks stacked, shape ``(num_envs, mask size)``."""
        return self._masks.copy()

    def render(self):
        return tuple(env.render() for env in self.envs)

    def close_extras(self, **kwargs: Any) -> None:
        self.envs.clear()


def _shallow_copy(env: SkillCompositionEnv) -> SkillCompositionEnv:
    """A new env that shares ``env``'s attributes (``copy.copy`` would go through the
    env's pickling methods and rebuild everything). Called before any reset, so only the
    static parts (and the caches keyed by length) are shared."""
    return shallow_copy(env)
