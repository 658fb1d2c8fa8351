"""One action space for every task: the tables observation's caps, and multi-task envs.

``observation_mode="tables"`` (:mod:`algind_gym.envs.tables`) has one shape for every
task, but the environment's ``MultiDiscrete`` actions still count *this* task's skills and
pointers. A policy that is to act in any task needs actions of a fixed shape too, so
:class:`TablesActions` (one env) and :class:`TablesVectorActions` (a vector env) expose

    ``MultiDiscrete([S + 1, P, ..., P])`` with ``A`` pointer components,

(``info["action_mask"]`` too) where ``S, P, A`` are the table caps (``skills``, ``pointers`` and ``slot_class`` shapes):
component 0 is a row of the skill table (``S`` = HALT), component ``1 + j`` the
pointer-table row bound to slot ``j``. Rows are the environment's own skill and pointer
indices, so the mapping only moves HALT and drops the components beyond the task's
arity. Their ``action_masks()`` is the per-component projection (sb3-contrib's
convention); the transformer policy (:mod:`agents.rl.policies`) uses the exact masks in
the observation instead, with slot masks conditioned on the chosen skill.

:class:`MultiTaskEnv` samples a task per episode among several tables environments; it is
vectorised with gymnasium's ``SyncVectorEnv`` (:func:`make_multitask_vec`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import SyncVectorEnv, VectorActionWrapper


def fixed_action_space(observation_space: spaces.Dict) -> spaces.MultiDiscrete:
    """``MultiDiscrete([S + 1] + [P] * A)`` from a tables observation space's caps."""
    n_skills = observation_space["skills"].shape[0]
    n_pointers = observation_space["pointers"].shape[0]
    arity = observation_space["slot_class"].shape[1]
    return spaces.MultiDiscrete(np.array([n_skills + 1] + [n_pointers] * arity, dtype=np.int64))


def check_tables_env(env: gym.Env) -> None:
    base = env.unwrapped
    if getattr(base, "observation_mode", None) != "tables":
        raise ValueError(
            "the fixed action space needs observation_mode='tables', got "
            f"{getattr(base, 'observation_mode', None)!r}"
        )
    if base.action_encoding != "multidiscrete":
        raise ValueError(
            "the fixed action space maps onto action_encoding='multidiscrete', got "
            f"{base.action_encoding!r}; pass env_kwargs action_encoding: multidiscrete"
        )


class _Mapping:
    """Fixed (capped) actions -> one environment's multidiscrete actions, and masks."""

    def __init__(self, base, space: spaces.MultiDiscrete) -> None:
        self.n_skills = len(base.actions.skills)
        self.n_pointers = base.actions.n_pointers
        self.max_arity = base.actions.max_arity
        self.halt = int(space.nvec[0]) - 1
        t = base.tables
        skill_ok = np.zeros(int(space.nvec[0]), dtype=bool)
        skill_ok[: len(t.skill_mask)] = t.skill_mask.astype(bool)
        skill_ok[self.halt] = True
        n_p, arity = int(space.nvec[1]) if len(space.nvec) > 1 else 0, len(space.nvec) - 1
        slots = np.zeros((arity, n_p), dtype=bool)
        for s in np.flatnonzero(t.skill_mask):
            for j in range(arity):
                c = t.slot_class[s, j]
                if c >= 0:
                    slots[j] |= t.class_mask[c].astype(bool)
        slots[:, 0] |= ~slots.any(axis=1)
        self.mask = np.concatenate([skill_ok, slots.ravel()])

    def __call__(self, action: np.ndarray) -> np.ndarray:
        a = np.asarray(action, dtype=np.int64)
        out = np.zeros(1 + self.max_arity, dtype=np.int64)
        s = int(a[0])
        if s == self.halt:
            out[0] = self.n_skills
            return out
        if s >= self.n_skills or (a[1 : 1 + self.max_arity] >= self.n_pointers).any():
            raise gym.error.InvalidAction(
                f"action {a.tolist()} names a padding row of the tables (this task has "
                f"{self.n_skills} skills and {self.n_pointers} pointers); mask with the "
                "observation's skill_mask / class_mask"
            )
        out[0] = s
        out[1:] = a[1 : 1 + self.max_arity]
        return out


class TablesActions(gym.ActionWrapper):
    """One tables environment with the fixed action space (see the module docstring)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        check_tables_env(env)
        self.action_space = fixed_action_space(env.observation_space)
        self._map = _Mapping(env.unwrapped, self.action_space)

    def action(self, action):
        return self._map(action)

    def action_masks(self) -> np.ndarray:
        """Per-component projection of the valid actions, fixed size."""
        return self._map.mask.copy()

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return obs, {**info, "action_mask": self.action_masks()}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(self.action(action))
        return obs, reward, terminated, truncated, {**info, "action_mask": self.action_masks()}


class TablesVectorActions(VectorActionWrapper):
    """A vector env of one task (e.g. :class:`~algind_gym.envs.AlgIndVectorEnv`) with the
    fixed action space."""

    def __init__(self, env: gym.vector.VectorEnv) -> None:
        super().__init__(env)
        first = env.unwrapped.envs[0]
        check_tables_env(first)
        self.single_action_space = fixed_action_space(env.single_observation_space)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, env.num_envs)
        self._map = _Mapping(first.unwrapped, self.single_action_space)

    def actions(self, actions):
        return np.stack([self._map(a) for a in np.asarray(actions)])

    def _fix_info(self, info: dict) -> dict:
        info = dict(info)
        info["action_mask"] = self.action_masks()
        info["_action_mask"] = np.ones(self.num_envs, dtype=bool)
        return info

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return obs, self._fix_info(info)

    def step(self, actions):
        obs, rewards, terms, truncs, info = self.env.step(self.actions(actions))
        return obs, rewards, terms, truncs, self._fix_info(info)

    def action_masks(self) -> np.ndarray:
        return np.repeat(self._map.mask[None], self.num_envs, axis=0)


class MultiTaskEnv(gym.Env):
    """Several tasks behind one tables env: each ``reset`` samples a task uniformly.

    Args:
        env_ids: the tasks' env ids.
        **env_kwargs: arguments of every task's env (``observation_mode="tables"`` and
            ``action_encoding="multidiscrete"`` are required).

    The current task's env id is ``info["env_id"]``; ``program``, ``program_text`` and
    ``action_masks`` are the current task env's.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's convention)

    def __init__(self, env_ids: Sequence[str], **env_kwargs: Any) -> None:
        self.env_ids = list(env_ids)
        self.envs = [TablesActions(gym.make(i, **env_kwargs).unwrapped) for i in self.env_ids]
        first = self.envs[0]
        self.observation_space = first.observation_space
        self.action_space = first.action_space
        for i, e in zip(self.env_ids, self.envs, strict=True):
            if e.observation_space != self.observation_space or e.action_space != self.action_space:
                raise ValueError(f"{i}: its tables have other caps than {self.env_ids[0]}'s")
        self.current = 0

    @property
    def env(self) -> TablesActions:
        return self.envs[self.current]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.current = int(self.np_random.integers(len(self.envs)))
        obs, info = self.env.reset(seed=int(self.np_random.integers(2**31 - 1)), options=options)
        return obs, {**info, "env_id": self.env_ids[self.current]}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, "env_id": self.env_ids[self.current]}

    def action_masks(self) -> np.ndarray:
        return self.env.action_masks()

    @property
    def program(self):
        return self.env.unwrapped.program

    def program_text(self) -> str:
        return self.env.unwrapped.program_text()


def make_multitask_vec(
    env_ids: Sequence[str], n_envs: int, env_kwargs: dict[str, Any]
) -> SyncVectorEnv:
    """``n_envs`` :class:`MultiTaskEnv` in gymnasium's ``SyncVectorEnv``."""
    kwargs = {"observation_mode": "tables", "action_encoding": "multidiscrete", **env_kwargs}
    return SyncVectorEnv([lambda: MultiTaskEnv(env_ids, **kwargs) for _ in range(n_envs)])


def make_env(env_id: str, env_kwargs: dict[str, Any]) -> gym.Env:
    """A single env for ``env_id``; with the fixed action space in tables mode."""
    env = gym.make(env_id, **env_kwargs).unwrapped
    if env_kwargs.get("observation_mode") == "tables":
        return TablesActions(env)
    return env


def wrap_vector(venv: gym.vector.VectorEnv, env_kwargs: dict[str, Any]) -> gym.vector.VectorEnv:
    """A one-task vector env, with the fixed action space in tables mode."""
    if env_kwargs.get("observation_mode") == "tables":
        return TablesVectorActions(venv)
    return venv
