"""Episode state of a vector env's sub-environments, one array per attribute.

:class:`~algind_gym.envs.vector.AlgIndVectorEnv` books a step of all its sub-environments
with array operations (:meth:`AlgIndVectorEnv.step`), so the per-episode scalars of every
sub-environment live in :class:`EpisodeColumns`: one array per attribute, one entry per
sub-environment, and a step of all of them is booked there
(:meth:`EpisodeColumns.book`). Each sub-environment is a :class:`ColumnEnv`, a
:class:`~algind_gym.envs.SkillCompositionEnv` whose scalar attributes (``t``,
``potential``, ``success``, ``fault``, ...) read and write its entry of those arrays
through descriptors, so its own methods (``step``, ``snapshot``, ``restore``, ``render``,
pickling) behave exactly as in a single environment and always agree with the vector
env's arrays. Its per-episode arrays ``_want`` and ``_out_fraction`` are rows of padded
``(n, ..., width)`` arrays with a width per env (reading one gives a copy of its entries),
so that the vector env scores all envs of a length without stacking per-env arrays.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from algind_gym.envs.composition import SkillCompositionEnv
from algind_gym.machine.isa import Fault


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
        arr, w = getattr(self, name), values.shape[-1]
        if w > arr.shape[-1]:
            wide = np.zeros((*arr.shape[:-1], w))
            wide[..., : arr.shape[-1]] = arr
            setattr(self, name, wide)
            arr = wide
        arr[ids, ..., :w] = values
        getattr(self, width)[ids] = w

    def begin(self, ids: np.ndarray) -> None:
        """A new episode's scalars for envs ``ids``: what
        :meth:`SkillCompositionEnv._begin_episode` sets (except the potential, which the
        caller sets once the new machines are scored)."""
        for a in (self.t, self.instructions, self.step_instructions, self.fault):
            a[ids] = 0
        for a in (self.success, self.finished, self.terminated, self.truncated):
            a[ids] = False
        self.last_error[ids], self.text[ids] = None, ""

    def book(self, envs, run, halt, valid, skills, binds, arity, steps, fault, errors, calls=None):
        """:meth:`SkillCompositionEnv._finish` for the sub-environments ``envs[run]`` at
        once, on these columns (per env in Python only: the program of the envs whose call
        ran and the error text of invalid actions and faults). The arguments are per env of
        ``run`` (``halt``, ``valid``, ``skills``, ``binds``, ``arity``: the decoded actions)
        or per sub-environment (``steps``, ``fault``: instructions and first fault of the
        call; ``errors``: binding errors by env). Returns ``(reward, terminated,
        truncated)`` per env of ``run``, the same values as ``_finish`` computes.
        ``calls``: optionally, per valid action (in order), its ``(skill, bindings)`` call and
        its program line as two object arrays (the vector env looks them up per discrete
        action): then histories and programs grow with array operations."""
        c, first = self, envs[0]
        names = first.actions.skills
        c.t[run] += 1
        c.step_instructions[run] = steps[run]
        reward = np.zeros(run.size)
        term = halt.copy()
        c.last_error[run[halt]] = None
        invalid = np.flatnonzero(~halt & ~valid)
        reward[invalid] -= first.invalid_penalty
        binds_l, skills_l, arity_l = binds.tolist(), skills.tolist(), arity.tolist()
        for r in invalid.tolist():
            bound = binds_l[r][: arity_l[r]]
            c.last_error[run[r]] = f"invalid action: {names[skills_l[r]]} {bound}"
        pos = np.flatnonzero(valid)
        ex = run[pos]
        text, history, lines = c.text, c.history, first._texts
        if calls is not None:
            deque(map(list.append, history[ex], calls[0]), maxlen=0)  # (a loop in C)
            programs = text[ex]
            live = ~np.equal(programs, None)  # (None: recomputed after a restore)
            programs, new = programs[live], calls[1][live]
            text[ex[live]] = np.where(programs == "", new, programs + "\n" + new)
        else:
            for r, i in zip(pos.tolist(), ex.tolist(), strict=True):
                call = (names[skills_l[r]], tuple(binds_l[r][: arity_l[r]]))
                history[i].append(call)
                program = text[i]
                if program is not None:
                    line = lines.get(call) or envs[i]._call_text(*call)
                    text[i] = f"{program}\n{line}" if program else line
        c.instructions[ex] += steps[ex]
        reward[pos] -= first.call_cost
        codes = fault[ex]
        bad = codes != 0
        for i, code in zip(ex[bad].tolist(), codes[bad].tolist(), strict=True):
            c.last_error[i] = errors.get(i) or f"fault {Fault(code).name}"
        c.fault[ex[bad]] = codes[bad]
        reward[pos[bad]] -= first.fault_penalty
        term[pos[bad]] = True
        good, at = ex[~bad], pos[~bad]
        potential, success = c.scored_potential[good], c.scored_success[good]
        if first.reward_mode == "dense":
            reward[at] += potential - c.potential[good]
        else:
            reward[at] += np.where(success, 1.0, 0.0)
        c.potential[good], c.success[good] = potential, success
        term[at] = success
        # as gymnasium's TimeLimit does: the call limit truncates even on the last call's success
        trunc = c.t[run] >= first.max_calls
        c.finished[run], c.terminated[run], c.truncated[run] = term | trunc, term, trunc
        return reward, term, trunc

    def infos(self, envs, lengths: np.ndarray, masks: np.ndarray) -> dict[str, Any]:
        """The sub-environments' infos as gymnasium's ``_add_info`` lays them out: one array
        per key (the single env's value types) and an all-true ``_key`` mask; ``lengths``
        and ``masks`` are the envs' episode lengths and action masks (a read-only array,
        passed on as it is)."""
        n = len(envs)
        for i in np.flatnonzero(np.equal(self.text, None)).tolist():  # after a restore
            envs[i].program_text()
        values = {
            "success": self.success.copy(),
            "fault": _FAULT_NAMES[self.fault],
            "error": self.last_error.copy(),
            "program": self.text.copy(),
            "calls": np.fromiter(map(len, self.history), dtype=int, count=n),
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
for _f in Fault:
    if _f != Fault.NONE:
        _FAULT_NAMES[_f] = _f.name


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
    history = _Column("history", _obj)
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
        return super().step(action)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self._columns.untracked[self._column] = True
        return super().reset(seed=seed, options=options)

    def restore(self, snap: dict[str, Any]) -> None:
        self._columns.untracked[self._column] = True
        super().restore(snap)
