"""Episode state of a vector env's sub-environments, one array per attribute.

:class:`~algind_gym.envs.vector.AlgIndVectorEnv` books a step of all its sub-environments
with array operations (:meth:`AlgIndVectorEnv.step`), so the per-episode scalars of every
sub-environment live in :class:`EpisodeColumns`: one array per attribute, one entry per
sub-environment. A step of all of them is booked there in two parts:
:meth:`EpisodeColumns.book_calls` (before the CPU call: histories, programs and the error
texts of HALT and invalid actions, the only per-env Python work of a step) and
:meth:`EpisodeColumns.book` (after it: the numbers of ``SkillCompositionEnv._finish`` in one
compiled loop, :func:`_book_numbers_py`, and the texts of faults from a table);
:func:`record_calls` writes the calls into the episode arrays in one compiled loop. Each
sub-environment is a :class:`ColumnEnv`, a :class:`~algind_gym.envs.SkillCompositionEnv`
whose scalar attributes (``t``, ``potential``, ``success``, ``fault``, ...) read and write
its entry of those arrays through descriptors, so its own methods (``step``, ``snapshot``,
``restore``, ``render``, pickling) behave exactly as in a single environment and always
agree with the vector env's arrays (setting ``history`` also sets its length, the
``n_calls`` column, and its own ``step`` updates it; its ``restore`` rebuilds the program
text at once, so the ``text`` column always holds every program). Its per-episode arrays
``_want`` and ``_out_fraction`` are rows of padded ``(n, ..., width)`` arrays with a width
per env (reading one gives a copy of its entries), so that the vector env scores all envs
of a length without stacking per-env arrays.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from algind_gym.envs.composition import SkillCompositionEnv
from algind_gym.machine.isa import Fault

try:  # numba is a dependency; without it the same loop runs in Python
    import numba
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None


class EpisodeColumns:
    """Per-episode scalars of ``n`` sub-environments, one array each (see the module)."""

    def __init__(self, n: int, k: int = 1) -> None:
        self.t = np.zeros(n, dtype=np.int64)
        self.instructions = np.zeros(n, dtype=np.int64)
        self.step_instructions = np.zeros(n, dtype=np.int64)
        self.potential = np.zeros(n)
        self.success = np.zeros(n, dtype=bool)
        self.finished = np.zeros(n, dtype=bool)
        self.fault = np.zeros(n, dtype=np.int64)
        self.terminated = np.zeros(n, dtype=bool)
        self.truncated = np.zeros(n, dtype=bool)
        self.scored_potential = np.zeros(n)
        self.scored_success = np.zeros(n, dtype=bool)
        self.last_error = np.full(n, None, dtype=object)
        self.text = np.full(n, "", dtype=object)
        self.history = np.empty(n, dtype=object)
        self.history[:] = [[] for _ in range(n)]
        self.n_calls = np.zeros(n, dtype=np.int64)
        """``len(history[i])`` of each env, kept in step with the lists (``info["calls"]``
        and :func:`record_calls` read it without visiting the lists)."""
        self.want = np.zeros((n, k, 0))
        """``(n, K, width)``: each env's ``_want`` (the oracle's output cells of its K
        machines, :meth:`EpisodeIndex.expected <algind_gym.envs.batch.EpisodeIndex.expected>`),
        padded; its first ``want_width[i]`` columns are env ``i``'s."""
        self.want_width = np.zeros(n, dtype=np.int64)
        self.out_fraction = np.zeros((n, 0))
        """``(n, width)``: each env's ``_out_fraction`` (per non-empty output entry), padded;
        its first ``n_outs[i]`` entries are env ``i``'s."""
        self.n_outs = np.zeros(n, dtype=np.int64)
        self.untracked = np.zeros(n, dtype=bool)
        """Sub-environments whose machine rows changed outside the vector env's step (their
        own ``step``, ``reset`` or ``restore``): their next autoreset rewrites whole rows
        (:class:`~algind_gym.envs.fresh.FreshRows`)."""

    def put(self, name: str, width: str, ids, values: np.ndarray) -> None:
        """Set the padded rows ``ids`` of array ``name`` (``want`` or ``out_fraction``) to
        ``values`` (``(len(ids), ..., w)``) and their widths (array ``width``) to ``w``,
        widening the array (zeros) when ``w`` exceeds it."""
        w = values.shape[-1]
        arr = self.widen(name, w)
        arr[ids, ..., :w] = values
        getattr(self, width)[ids] = w

    def widen(self, name: str, w: int) -> np.ndarray:
        """The padded array ``name``, first widened to at least ``w`` (zeros) if narrower."""
        arr = getattr(self, name)
        if w > arr.shape[-1]:
            wide = np.zeros((*arr.shape[:-1], w))
            wide[..., : arr.shape[-1]] = arr
            setattr(self, name, wide)
            arr = wide
        return arr

    def begin(self, ids: np.ndarray) -> None:
        """A new episode's scalars for envs ``ids``: what
        :meth:`SkillCompositionEnv._begin_episode` sets (except the potential, which the
        caller sets once the new machines are scored)."""
        for a in (self.t, self.instructions, self.step_instructions, self.fault, self.n_calls):
            a[ids] = 0
        for a in (self.success, self.finished, self.terminated, self.truncated):
            a[ids] = False
        self.last_error[ids], self.text[ids] = None, ""

    def book_calls(self, envs, run, halt, valid, skills, binds, arity, calls=None) -> None:
        """The part of :meth:`SkillCompositionEnv._finish` for the sub-environments
        ``envs[run]`` that does not depend on what the calls compute: the histories and
        programs of the envs whose call is valid, and ``last_error`` of HALT (None) and of
        invalid actions (their text). The vector env books this before its CPU call, then
        the rest with :meth:`book`. The arguments are per env of ``run`` (``halt``,
        ``valid``, ``skills``, ``binds``, ``arity``: the decoded actions). ``calls``:
        optionally, per valid action (in order), its ``(skill, bindings)`` call and its
        program line as two object arrays (the vector env looks them up per discrete
        action): then histories and programs grow with array operations."""
        c, first = self, envs[0]
        names = first.actions.skills
        c.last_error[run[halt]] = None
        invalid = np.flatnonzero(~halt & ~valid)
        for r in invalid.tolist():
            bound = binds[r, : arity[r]].tolist()
            c.last_error[run[r]] = f"invalid action: {names[skills[r]]} {bound}"
        pos = np.flatnonzero(valid)
        ex = run[pos]
        text, history = c.text, c.history
        if calls is not None:
            deque(map(list.append, history[ex], calls[0]), maxlen=0)  # (a loop in C)
            text[ex] = _extended(text[ex].tolist(), calls[1].tolist())
            c.n_calls[ex] += 1
            return
        c.n_calls[ex] += 1
        binds_l, skills_l, arity_l = binds.tolist(), skills.tolist(), arity.tolist()
        for r, i in zip(pos.tolist(), ex.tolist(), strict=True):
            call = (names[skills_l[r]], tuple(binds_l[r][: arity_l[r]]))
            history[i].append(call)
            program = text[i]
            if program is not None:
                line = first._texts.get(call) or envs[i]._call_text(*call)
                text[i] = f"{program}\n{line}" if program else line

    def book(self, envs, run, halt, valid, steps, fault, errors):
        """The rest of :meth:`SkillCompositionEnv._finish` (after :meth:`book_calls`) for
        the sub-environments ``envs[run]``, once their calls ran and were scored: the
        numbers (one compiled loop, :func:`_book_numbers_py`) and the error texts of the
        calls that faulted. ``halt`` and ``valid`` are per env of ``run``; ``steps``,
        ``fault`` per sub-environment (instructions and first fault of the call);
        ``errors``: binding errors by env. Returns ``(reward, terminated, truncated)`` per
        env of ``run``, the same values as ``_finish`` computes."""
        c, first = self, envs[0]
        reward = np.empty(run.size)
        term = np.empty(run.size, dtype=bool)
        trunc = np.empty(run.size, dtype=bool)
        args = (
            np.ascontiguousarray(run, dtype=np.int64),
            np.ascontiguousarray(halt, dtype=np.bool_),
            np.ascontiguousarray(valid, dtype=np.bool_),
            np.ascontiguousarray(steps, dtype=np.int64),
            np.ascontiguousarray(fault, dtype=np.int64),
            c.t, c.step_instructions, c.instructions, c.fault, c.potential, c.success,
            c.finished, c.terminated, c.truncated, c.scored_potential, c.scored_success,
            float(first.invalid_penalty), float(first.call_cost), float(first.fault_penalty),
            first.reward_mode == "dense", int(first.max_calls), reward, term, trunc,
        )  # fmt: skip
        (_book_numbers if _book_numbers is not None else _book_numbers_py)(*args)
        ex = run[valid]
        codes = fault[ex]
        bad = ex[codes != 0]
        if bad.size:
            texts = _FAULT_TEXTS[np.clip(codes[codes != 0], 0, _FAULT_TEXTS.size - 1)]
            if np.equal(texts, None).any():  # a code that is no Fault: Fault(code) says so
                texts = np.array([f"fault {Fault(int(f)).name}" for f in fault[bad]], object)
            c.last_error[bad] = texts
            if errors:  # the binding errors of the calls that faulted replace the text
                faulted = set(bad.tolist())
                for i, error in errors.items():
                    if i in faulted and error:
                        c.last_error[i] = error
        return reward, term, trunc

    def infos(self, envs, lengths: np.ndarray, masks: np.ndarray) -> dict[str, Any]:
        """The sub-environments' infos as gymnasium's ``_add_info`` lays them out: one array
        per key (the single env's value types) and an all-true ``_key`` mask; ``lengths``
        and ``masks`` are the envs' episode lengths and action masks (a read-only array,
        passed on as it is)."""
        n = len(envs)
        values = {
            "success": self.success.copy(),
            "fault": _FAULT_NAMES[self.fault],
            "error": self.last_error.copy(),
            "program": self.text.copy(),
            "calls": self.n_calls.astype(int),
            "instructions": self.instructions.astype(int),
            "step_instructions": self.step_instructions.astype(int),
            "length": lengths.astype(int),
            "potential": self.potential.copy(),
            "action_mask": masks,  # (read-only and constant: no copy)
        }
        out: dict[str, Any] = {}
        for key, v in values.items():
            out[key], out[f"_{key}"] = v, np.ones(n, dtype=bool)
        return out


_FAULT_NAMES = np.full(max(Fault) + 1, None, dtype=object)
"""``info["fault"]`` by fault code: None for no fault, else the fault's name."""
_FAULT_TEXTS = np.full(max(Fault) + 2, None, dtype=object)
"""``last_error`` of a call that faulted, by fault code (the single env's ``f"fault
{name}"``); None for codes that are no :class:`Fault` (the last entry: every larger code)."""
for _f in Fault:
    if _f != Fault.NONE:
        _FAULT_NAMES[_f] = _f.name
        _FAULT_TEXTS[_f] = f"fault {_f.name}"


def _extended(programs: list, lines: list) -> np.ndarray:
    """Each program of ``programs`` (None: not known, kept) with its line of ``lines``
    appended (``SkillCompositionEnv._finish``'s text), as an object array."""
    out = np.empty(len(programs), dtype=object)
    out[:] = [
        p if p is None else (f"{p}\n{line}" if p else line)
        for p, line in zip(programs, lines, strict=True)
    ]
    return out


def _book_numbers_py(
    run, halt, valid, steps, fault, t, step_instructions, instructions, fault_col, potential,
    success, finished, terminated, truncated, scored_potential, scored_success,
    invalid_penalty, call_cost, fault_penalty, dense, max_calls, reward, term, trunc,
):  # fmt: skip
    """The numbers of :meth:`EpisodeColumns.book` (compiled by numba): per env ``run[r]``
    what ``SkillCompositionEnv._finish`` computes, operation for operation (the reward
    starts at 0.0 and is changed in its order), written into the columns (``t`` ..
    ``scored_success``) and into ``reward``, ``term``, ``trunc`` at ``r``."""
    for r in range(run.shape[0]):
        i = run[r]
        t[i] += 1
        step_instructions[i] = steps[i]
        rew = 0.0
        ended = halt[r]
        if valid[r]:
            instructions[i] += steps[i]
            rew -= call_cost
            code = fault[i]
            if code != 0:
                fault_col[i] = code
                rew -= fault_penalty
                ended = True
            else:
                p, ok = scored_potential[i], scored_success[i]
                if dense:
                    rew += p - potential[i]
                elif ok:
                    rew += 1.0
                potential[i], success[i] = p, ok
                ended = ok
        elif not halt[r]:
            rew -= invalid_penalty
        cut = t[i] >= max_calls
        finished[i], terminated[i], truncated[i] = ended or cut, ended, cut
        reward[r], term[r], trunc[r] = rew, ended, cut


def record_calls(
    episode: dict[str, np.ndarray],
    ex: np.ndarray,
    at: np.ndarray,
    skills: np.ndarray,
    binds: np.ndarray,
    arity: np.ndarray,
    writes: np.ndarray,
) -> None:
    """Write the calls that ran in envs ``ex`` into the vector env's episode arrays
    (``episode``: ``"calls"``, ``"skill_calls"``, ``"written"``, each ``(num_envs, ...)``),
    as ``SkillCompositionEnv._finish`` does for one env: row ``at[a]`` of env ``ex[a]``'s
    calls becomes ``[skill, pointers...]`` (its first ``1 + arity`` entries), its skill's
    count grows by one, and the entries bound to slots that ``writes`` ``(n_skills,
    max_arity)`` marks become written. One compiled loop (numba), else the same loop in
    Python."""
    loop = _record_calls if _record_calls is not None else _record_calls_py
    loop(
        np.ascontiguousarray(ex, dtype=np.int64),
        np.ascontiguousarray(at, dtype=np.int64),
        np.ascontiguousarray(skills, dtype=np.int64),
        np.ascontiguousarray(binds, dtype=np.int64).reshape(ex.size, -1),
        np.ascontiguousarray(arity, dtype=np.int64),
        writes,
        episode["calls"],
        episode["skill_calls"],
        episode["written"],
    )


def _record_calls_py(ex, at, skills, binds, arity, writes, calls, skill_calls, written):
    """:func:`record_calls`'s loop (compiled by numba)."""
    for a in range(ex.shape[0]):
        i, s, row = ex[a], skills[a], at[a]
        calls[i, row, 0] = s
        skill_calls[i, s] += 1
        for j in range(arity[a]):
            calls[i, row, 1 + j] = binds[a, j]
            if writes[s, j]:
                written[i, binds[a, j]] = True


_record_calls = (
    numba.njit(cache=True, nogil=True, boundscheck=False)(_record_calls_py) if numba else None
)

_book_numbers = (
    numba.njit(cache=True, nogil=True, boundscheck=False)(_book_numbers_py) if numba else None
)


class _Column:
    """An attribute stored at the env's entry of an :class:`EpisodeColumns` array."""

    def __init__(self, array: str, cast: Any) -> None:
        self.array, self.cast = array, cast

    def __get__(self, env, owner=None):
        if env is None:
            return self
        return self.cast(getattr(env._columns, self.array)[env._column])

    def __set__(self, env, value) -> None:
        getattr(env._columns, self.array)[env._column] = value


def _obj(v):
    return v


class _Padded:
    """An array attribute stored in the env's row of a padded :class:`EpisodeColumns`
    array (``_want``, ``_out_fraction``); reading gives a copy of its ``width`` entries."""

    def __init__(self, array: str, width: str) -> None:
        self.array, self.width = array, width

    def __get__(self, env, owner=None):
        if env is None:
            return self
        c, i = env._columns, env._column
        return getattr(c, self.array)[i, ..., : getattr(c, self.width)[i]].copy()

    def __set__(self, env, value) -> None:
        value = np.asarray(value, dtype=np.float64)
        env._columns.put(self.array, self.width, [env._column], value[None])


class _Pair:
    """A 2-tuple attribute stored in two arrays (``_ended``, ``_scored``)."""

    def __init__(self, first: str, second: str, cast: Any) -> None:
        self.first, self.second, self.cast = first, second, cast

    def __get__(self, env, owner=None):
        if env is None:
            return self
        c, i = env._columns, env._column
        return self.cast(getattr(c, self.first)[i]), bool(getattr(c, self.second)[i])

    def __set__(self, env, value) -> None:
        c, i = env._columns, env._column
        getattr(c, self.first)[i], getattr(c, self.second)[i] = value


class _History(_Column):
    """``history``, stored in the ``history`` column; setting it also sets ``n_calls``."""

    def __init__(self) -> None:
        super().__init__("history", _obj)

    def __set__(self, env, value) -> None:
        env._columns.history[env._column] = value
        env._columns.n_calls[env._column] = len(value)


def _restore_env(state: dict[str, Any]) -> SkillCompositionEnv:
    env = SkillCompositionEnv.__new__(SkillCompositionEnv)
    env.__setstate__(state)
    return env


class ColumnEnv(SkillCompositionEnv):
    """A :class:`SkillCompositionEnv` whose episode scalars are entries of a vector env's
    :class:`EpisodeColumns` (set ``_columns`` and ``_column``, its index, first).
    Pickles (and copies) as a plain :class:`SkillCompositionEnv` with the same episode."""

    t = _Column("t", int)
    instructions = _Column("instructions", int)
    step_instructions = _Column("step_instructions", int)
    potential = _Column("potential", float)
    success = _Column("success", bool)
    finished = _Column("finished", bool)
    fault = _Column("fault", Fault)
    last_error = _Column("last_error", _obj)
    _text = _Column("text", _obj)
    history = _History()
    _ended = _Pair("terminated", "truncated", bool)
    _scored = _Pair("scored_potential", "scored_success", float)
    _want = _Padded("want", "want_width")
    _out_fraction = _Padded("out_fraction", "n_outs")

    def __reduce_ex__(self, protocol):
        return _restore_env, (self.__getstate__(),)

    # Called directly (not through the vector env), these change the machine rows in ways
    # the vector env's write ranges do not see: the next autoreset restores whole rows.
    def step(self, action):
        self._columns.untracked[self._column] = True
        out = super().step(action)
        self._columns.n_calls[self._column] = len(self.history)  # (``_finish`` appends)
        return out

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self._columns.untracked[self._column] = True
        return super().reset(seed=seed, options=options)

    def restore(self, snap: dict[str, Any]) -> None:
        self._columns.untracked[self._column] = True
        super().restore(snap)
        self.program_text()  # (the vector env's infos read the ``text`` column as it is)
