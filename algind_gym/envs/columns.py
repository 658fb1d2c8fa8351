"""Episode state of a vector env's sub-environments, one array per attribute.

:class:`~algind_gym.envs.vector.AlgIndVectorEnv` books a step of all its sub-environments
with array operations (:meth:`AlgIndVectorEnv.step`), so the per-episode scalars of every
sub-environment live in :class:`EpisodeColumns`: one array per attribute, one entry per
sub-environment. Each sub-environment is a :class:`ColumnEnv`, a
:class:`~algind_gym.envs.SkillCompositionEnv` whose scalar attributes (``t``,
``potential``, ``success``, ``fault``, ...) read and write its entry of those arrays
through descriptors, so its own methods (``step``, ``snapshot``, ``restore``, ``render``,
pickling) behave exactly as in a single environment and always agree with the vector
env's arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from algind_gym.envs.composition import SkillCompositionEnv
from algind_gym.machine.isa import Fault


class EpisodeColumns:
    """Per-episode scalars of ``n`` sub-environments, one array each (see the module)."""

    def __init__(self, n: int) -> None:
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

    def begin(self, ids: np.ndarray) -> None:
        """A new episode's scalars for envs ``ids``: what
        :meth:`SkillCompositionEnv._begin_episode` sets (except the potential, which the
        caller sets once the new machines are scored)."""
        for a in (self.t, self.instructions, self.step_instructions, self.fault):
            a[ids] = 0
        for a in (self.success, self.finished, self.terminated, self.truncated):
            a[ids] = False
        self.last_error[ids], self.text[ids] = None, ""


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

    def __reduce_ex__(self, protocol):
        return _restore_env, (self.__getstate__(),)
