"""A Gymnasium vector environment seen through Stable-Baselines3's ``VecEnv`` API.

SB3 trains on its own ``VecEnv`` interface, not on ``gymnasium.vector.VectorEnv``; the two
differ in three ways that :class:`GymnasiumVecEnv` bridges:

* **Autoreset.** SB3 expects a finished sub-environment to be reset in the same step, its
  last observation moved to ``info["terminal_observation"]``. Gymnasium vector envs
  declare their mode in ``metadata["autoreset_mode"]``: with ``SAME_STEP`` the final
  observation is read from ``info["final_obs"]``; with ``NEXT_STEP`` (gymnasium's
  default, and :class:`~algind_gym.envs.AlgIndVectorEnv`'s) the finished sub-environments
  are reset at once with ``reset(options={"reset_mask": dones})`` (what gymnasium's own
  ``SyncVectorEnv`` supports), so no transition is ever lost or invented.
* **Infos.** A dict of arrays (with ``_key`` presence masks) becomes a list of dicts.
* **Masks.** ``env_method("action_masks")`` returns the per-environment masks (the vector
  env's batched ``action_masks()`` when it has one), which is what ``MaskablePPO`` and
  :class:`~agents.rl.masked_dqn.MaskedDQN` call.

**Truncation.** SB3 bootstraps an episode that ends with ``info["TimeLimit.truncated"]``
(on-policy: its last reward gets ``gamma * V(terminal observation)``; DQN's replay buffer
stores the transition as not done, so its target bootstraps). By default a gymnasium
``truncated`` is passed on that way. ``bootstrap_truncation=False`` reports every end as
terminal (``TimeLimit.truncated`` is ``False``): the return of an episode cut at the
skill-composition env's ``max_calls`` is then exactly the rewards it received. That is the
right target when the limit is part of the task and the observation shows the calls left
(the composition envs' ``globals``), as Pardo et al. (2018, "Time Limits in Reinforcement
Learning") argue for time limits the agent observes: nothing follows the limit, and ``V`` of
a terminal observation is never trained, only extrapolated
(``experiments/results/rl_notes.md``, section (a'''')). Observations, rewards, ``dones`` and
the other infos are the same either way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

from algind_gym.envs.vector import AlgIndVectorEnv


class GymnasiumVecEnv(VecEnv):
    """SB3 ``VecEnv`` over a ``gymnasium.vector.VectorEnv`` (see the module docstring).

    Args:
        venv: the vector environment (``gym.make_vec(...)``).
        bootstrap_truncation: pass gymnasium's ``truncated`` on as SB3's
            ``TimeLimit.truncated`` (the default), or report every end as terminal (see
            the module docstring).
    """

    def __init__(self, venv: gym.vector.VectorEnv, bootstrap_truncation: bool = True) -> None:
        self.venv = venv
        self.bootstrap_truncation = bool(bootstrap_truncation)
        self.autoreset_mode = AutoresetMode(
            venv.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        )
        if self.autoreset_mode is AutoresetMode.DISABLED:
            raise ValueError("autoreset_mode DISABLED is not supported; use NEXT_STEP or SAME_STEP")
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self._actions: np.ndarray | None = None
        self.env_time_s = 0.0
        """Seconds spent inside the vector env's ``step`` and ``reset`` (throughput figures)."""

    # ------------------------------------------------------------------ steps
    def reset(self):
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        options = self._options[0] if self._options and self._options[0] else None
        t0 = time.perf_counter()
        obs, info = self.venv.reset(seed=seeds, options=options)
        self.env_time_s += time.perf_counter() - t0
        self.reset_infos = _split_info(info, self.num_envs)
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        t0 = time.perf_counter()
        obs, rewards, terms, truncs, info = self.venv.step(self._actions)
        dones = np.logical_or(terms, truncs)
        infos = _split_info(info, self.num_envs)
        for i in np.flatnonzero(dones):
            infos[i]["TimeLimit.truncated"] = bool(
                self.bootstrap_truncation and truncs[i] and not terms[i]
            )
        if dones.any():
            if self.autoreset_mode is AutoresetMode.SAME_STEP:
                for i in np.flatnonzero(dones):
                    infos[i]["terminal_observation"] = info["final_obs"][i]
                    infos[i].update(info["final_info"][i] if "final_info" in info else {})
            else:
                for i in np.flatnonzero(dones):
                    infos[i]["terminal_observation"] = _index(obs, i)
                obs = self._reset_finished(obs, dones)
        self.env_time_s += time.perf_counter() - t0
        return obs, np.asarray(rewards, dtype=np.float32), dones, infos

    def _reset_finished(self, obs, dones: np.ndarray):
        """Reset the finished sub-environments now (NEXT_STEP mode); the others keep going."""
        mask = np.asarray(dones, dtype=np.bool_)
        base = self.venv.unwrapped
        if isinstance(base, (SyncVectorEnv, AsyncVectorEnv)) or getattr(
            base, "supports_reset_mask", False
        ):
            new_obs, info = self.venv.reset(options={"reset_mask": mask})
        elif isinstance(base, AlgIndVectorEnv):
            new_obs, info = _reset_algind(base, mask)
        else:
            raise TypeError(
                f"{type(self.venv).__name__} resets on the next step and does not take "
                "reset(options={'reset_mask': ...}); create it with autoreset_mode=SAME_STEP"
            )
        for i, ri in enumerate(_split_info(info, self.num_envs)):
            if mask[i]:
                self.reset_infos[i] = ri
        return new_obs

    # ------------------------------------------------------------- attributes
    def _envs(self) -> Sequence[gym.Env]:
        envs = getattr(self.venv.unwrapped, "envs", None)
        if envs is None:
            raise AttributeError(f"{type(self.venv).__name__} does not expose its sub-environments")
        return envs

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        envs = self._envs()
        return [envs[i].get_wrapper_attr(attr_name) for i in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        envs = self._envs()
        for i in self._get_indices(indices):
            envs[i].set_wrapper_attr(attr_name, value)

    def env_method(
        self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs
    ) -> list[Any]:
        idx = list(self._get_indices(indices))
        if method_name == "action_masks" and hasattr(self.venv, "action_masks"):
            masks = self.venv.action_masks()
            return [masks[i] for i in idx]
        envs = self._envs()
        return [getattr(envs[i].unwrapped, method_name)(*method_args, **method_kwargs) for i in idx]

    def has_attr(self, attr_name: str) -> bool:
        if attr_name == "action_masks" and hasattr(self.venv, "action_masks"):
            return True
        try:
            for e in self._envs():
                e.get_wrapper_attr(attr_name)
        except AttributeError:
            return False
        return True

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None):
        envs = getattr(self.venv.unwrapped, "envs", None)
        if envs is None:
            return [False] * len(list(self._get_indices(indices)))
        out = []
        for i in self._get_indices(indices):
            env, found = envs[i], False
            while isinstance(env, gym.Wrapper):
                found = found or isinstance(env, wrapper_class)
                env = env.env
            out.append(found)
        return out


def _index(obs, i: int):
    if isinstance(obs, dict):
        return {k: np.array(v[i]) for k, v in obs.items()}
    return np.array(obs[i])


def _split_info(info: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Gymnasium's dict of arrays (``_key`` = which envs have ``key``) -> one dict per env."""
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for key, value in info.items():
        if key.startswith("_") or key in ("final_obs", "final_info"):
            continue
        present = info.get(f"_{key}")
        if isinstance(value, dict):
            parts = _split_info(value, n)
            for i in range(n):
                if present is None or present[i]:
                    out[i][key] = parts[i]
            continue
        for i in range(n):
            if present is None or present[i]:
                out[i][key] = value[i]
    return out


def _reset_algind(venv: AlgIndVectorEnv, mask: np.ndarray):
    """Reset the masked sub-environments of an :class:`AlgIndVectorEnv` now.

    It resets on the next step and has no ``reset_mask`` option, so this does what its own
    next-step reset does (reset the sub-environment, move its machines into the shared
    batch) and clears its pending-reset flag.
    """
    ids = np.flatnonzero(mask)
    if hasattr(venv, "_autoreset_envs"):  # the batched vector env with in-place resets
        venv._autoreset_envs(ids)
        venv._autoreset[ids] = False
        return venv._observe(), venv._infos()
    obs = {k: np.array(v) for k, v in venv._obs.items()}
    infos: dict[str, Any] = {}
    for i in ids:
        o, info = venv.envs[i].reset()
        venv._adopt(i)
        venv._autoreset[i] = False
        for k in obs:
            obs[k][i] = o[k]
        infos = venv._add_info(infos, info, i)
    venv._obs = obs
    return {k: np.array(v) for k, v in obs.items()}, infos
