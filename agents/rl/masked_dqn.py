"""`MaskedDQN`: SB3's DQN that never picks a masked action.

Plain DQN over ``Discrete(n)`` chooses among all ``n`` candidate calls, most of which the
environment refuses (a penalty, nothing happens), so it spends its episodes on invalid
actions. Here the masks (``env.action_masks()``, the same ones ``MaskablePPO`` uses) apply
to every choice:

* **exploratory**: the epsilon-greedy random action (and the warm-up actions) is uniform
  over the *valid* actions, not over the action space;
* **greedy**: ``argmax`` of the Q-values over valid actions only;
* **the TD target**: ``max_a' Q_target(s', a')`` over the actions valid in ``s'``; the
  mask of ``s'`` is ``info["action_mask"]`` of the step, stored in the replay buffer
  (:class:`MaskedDictReplayBuffer`). Q-values of invalid actions are never trained, so a
  max over them would bootstrap from arbitrary numbers.

Without masks (a plain array passed to :meth:`MaskedDQN.predict` with no ``action_masks``
and no env), it behaves as SB3's DQN.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported
from stable_baselines3 import DQN
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples


class _NextMasks:
    """Stores ``info["action_mask"]`` of each transition's next state next to the buffer."""

    def _init_masks(self, n_actions: int) -> None:
        self.next_masks = np.ones((self.buffer_size, self.n_envs, n_actions), dtype=bool)
        self.sampled_next_masks: np.ndarray | None = None

    def _store_masks(self, infos: list[dict[str, Any]]) -> None:
        pos = (self.pos - 1) % self.buffer_size  # add() has advanced pos already
        for i, info in enumerate(infos):
            mask = info.get("action_mask")
            self.next_masks[pos, i] = True if mask is None else mask

    def _sample_indices(self, batch_inds: np.ndarray) -> np.ndarray:
        env_indices = np.random.randint(0, high=self.n_envs, size=(len(batch_inds),))
        self.sampled_next_masks = self.next_masks[batch_inds, env_indices]
        return env_indices


class MaskedReplayBuffer(_NextMasks, ReplayBuffer):
    """SB3's ``ReplayBuffer`` plus the next state's action mask of every transition."""

    def __init__(self, buffer_size, observation_space, action_space, *args, **kwargs) -> None:
        super().__init__(buffer_size, observation_space, action_space, *args, **kwargs)
        self._init_masks(int(action_space.n))

    def add(self, obs, next_obs, action, reward, done, infos) -> None:
        super().add(obs, next_obs, action, reward, done, infos)
        self._store_masks(infos)

    def _get_samples(self, batch_inds: np.ndarray, env=None) -> ReplayBufferSamples:
        env_indices = self._sample_indices(batch_inds)
        data = (
            self._normalize_obs(self.observations[batch_inds, env_indices, :], env),
            self.actions[batch_inds, env_indices, :],
            self._normalize_obs(self.next_observations[batch_inds, env_indices, :], env),
            (
                self.dones[batch_inds, env_indices] * (1 - self.timeouts[batch_inds, env_indices])
            ).reshape(-1, 1),
            self._normalize_reward(self.rewards[batch_inds, env_indices].reshape(-1, 1), env),
        )
        return ReplayBufferSamples(*tuple(map(self.to_torch, data)))


class MaskedDictReplayBuffer(_NextMasks, DictReplayBuffer):
    """SB3's ``DictReplayBuffer`` plus the next state's action mask of every transition."""

    def __init__(self, buffer_size, observation_space, action_space, *args, **kwargs) -> None:
        super().__init__(buffer_size, observation_space, action_space, *args, **kwargs)
        self._init_masks(int(action_space.n))

    def add(self, obs, next_obs, action, reward, done, infos) -> None:
        super().add(obs, next_obs, action, reward, done, infos)
        self._store_masks(infos)

    def _get_samples(self, batch_inds: np.ndarray, env=None) -> ReplayBufferSamples:
        env_indices = self._sample_indices(batch_inds)
        obs = {k: o[batch_inds, env_indices, :] for k, o in self.observations.items()}
        nxt = {k: o[batch_inds, env_indices, :] for k, o in self.next_observations.items()}
        obs, nxt = self._normalize_obs(obs, env), self._normalize_obs(nxt, env)
        dones = self.dones[batch_inds, env_indices] * (1 - self.timeouts[batch_inds, env_indices])
        return ReplayBufferSamples(
            observations={k: self.to_torch(v) for k, v in obs.items()},
            actions=self.to_torch(self.actions[batch_inds, env_indices]),
            next_observations={k: self.to_torch(v) for k, v in nxt.items()},
            dones=self.to_torch(dones).reshape(-1, 1),
            rewards=self.to_torch(
                self._normalize_reward(self.rewards[batch_inds, env_indices].reshape(-1, 1), env)
            ),
        )


class MaskedDQN(DQN):
    """DQN whose exploratory, greedy and target choices respect action masks (see the
    module docstring). Same constructor as SB3's ``DQN``; ``Discrete`` actions only."""

    def __init__(self, policy, env, *args: Any, **kwargs: Any) -> None:
        if env is not None and not isinstance(env.action_space, spaces.Discrete):
            raise ValueError(
                f"DQN needs a Discrete action space, got {env.action_space}; use "
                "env_kwargs action_encoding='discrete' (or --algo maskable_ppo for multidiscrete)"
            )
        if kwargs.get("n_steps", 1) != 1:
            raise ValueError(
                "MaskedDQN stores next-state masks in a one-step replay buffer; "
                f"n_steps must be 1, got {kwargs['n_steps']}"
            )
        if kwargs.get("replay_buffer_class") is None:
            obs_space = env.observation_space if env is not None else None
            kwargs["replay_buffer_class"] = (
                MaskedDictReplayBuffer if isinstance(obs_space, spaces.Dict) else MaskedReplayBuffer
            )
        super().__init__(policy, env, *args, **kwargs)

    # --------------------------------------------------------------- choices
    def _env_masks(self) -> np.ndarray | None:
        if self.env is not None and is_masking_supported(self.env):
            return get_action_masks(self.env)
        return None

    def _sample_action(self, learning_starts: int, action_noise=None, n_envs: int = 1):
        masks = self._env_masks()
        if self.num_timesteps < learning_starts:
            action = _uniform_valid(masks, n_envs, self.action_space)
        else:
            action, _ = self.predict(self._last_obs, deterministic=False, action_masks=masks)
        return action, action

    def predict(
        self,
        observation,
        state=None,
        episode_start=None,
        deterministic: bool = False,
        action_masks: np.ndarray | None = None,
    ):
        """Epsilon-greedy over valid actions (greedy when ``deterministic``).

        Args:
            action_masks: boolean ``(n_envs, n_actions)`` (or ``(n_actions,)``); None: no mask.
        """
        vectorized = self.policy.is_vectorized_observation(observation)
        obs_tensor, _ = self.policy.obs_to_tensor(observation)
        n = (
            next(iter(obs_tensor.values())).shape[0]
            if isinstance(obs_tensor, dict)
            else len(obs_tensor)
        )
        masks = None
        if action_masks is not None:
            masks = np.asarray(action_masks, dtype=bool).reshape(n, -1)
        if not deterministic and np.random.rand() < self.exploration_rate:
            action = _uniform_valid(masks, n, self.action_space)
        else:
            with th.no_grad():
                q = self.q_net(obs_tensor)
                if masks is not None:
                    q = q.masked_fill(~th.as_tensor(masks, device=q.device), -th.inf)
                action = q.argmax(dim=1).cpu().numpy()
        if not vectorized:
            action = action[0]
        return action, state

    # -------------------------------------------------------------- training
    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        """SB3's DQN update with the TD target's max taken over the next state's valid actions."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        losses = []
        for _ in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            next_masks = getattr(self.replay_buffer, "sampled_next_masks", None)
            with th.no_grad():
                next_q = self.q_net_target(data.next_observations)
                if next_masks is not None:
                    valid = th.as_tensor(next_masks, device=next_q.device)
                    next_q = next_q.masked_fill(~valid, -th.inf)
                next_q = next_q.max(dim=1).values
                # a state without any valid action (cannot happen: HALT is always valid)
                next_q = th.nan_to_num(next_q, neginf=0.0).reshape(-1, 1)
                target = data.rewards + (1 - data.dones) * self.gamma * next_q
            current = th.gather(self.q_net(data.observations), dim=1, index=data.actions.long())
            loss = F.smooth_l1_loss(current, target)
            losses.append(loss.item())
            self.policy.optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/loss", np.mean(losses))


def _uniform_valid(masks: np.ndarray | None, n: int, action_space: spaces.Discrete) -> np.ndarray:
    """One action per env, uniform over its valid actions (over all actions without masks)."""
    if masks is None:
        return np.array([action_space.sample() for _ in range(n)])
    return np.array([np.random.choice(np.flatnonzero(m)) for m in masks])
