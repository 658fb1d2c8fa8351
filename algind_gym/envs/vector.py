"""`AlgIndVectorEnv`: many composition environments, one batched CPU call per step.

Each sub-environment is a full :class:`~algind_gym.envs.SkillCompositionEnv` (same
seeding, scoring and observations), but its K machines are rows of one shared array of
``num_envs * K`` machines. A step decodes every sub-environment's action, then runs all
the chosen skills in a single backend call (each machine has its own PC, so different
skills run side by side; machines without a call this step stay halted and frozen), then
scores each sub-environment. All lengths up to ``max_length`` share one layout, which is
what lets every environment live in one batch.

Autoreset follows gymnasium 1.x's default, ``AutoresetMode.NEXT_STEP`` (declared in
``metadata``): the step after an episode ends resets that sub-environment and returns
its first observation with reward 0. Trajectories equal those of
``SyncVectorEnv`` over single environments with the same seeds.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any, ClassVar

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate

from algind_gym.envs.composition import SkillCompositionEnv
from algind_gym.machine.state import MachineState
from algind_gym.skills.builtin import builtin_library
from algind_gym.tasks.spec import TaskSpec


class AlgIndVectorEnv(VectorEnv):
    """``num_envs`` :class:`SkillCompositionEnv` run as one batch (see the module docstring).

    Args:
        num_envs: number of sub-environments.
        task: the task (all sub-environments share it).
        max_episode_steps: alias of ``max_calls`` (what ``gym.make_vec`` passes from the spec).
        **kwargs: the single environment's arguments.
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
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if max_episode_steps is not None:
            kwargs.setdefault("max_calls", max_episode_steps)
        kwargs.setdefault("library", builtin_library())
        self.envs = [SkillCompositionEnv(task, **kwargs) for _ in range(num_envs)]
        first = self.envs[0]
        self.num_envs = num_envs
        self.render_mode = first.render_mode
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.k = first.n_examples
        self._cells: np.ndarray | None = None
        self._autoreset = np.zeros(num_envs, dtype=bool)
        self._obs = create_empty_array(self.single_observation_space, n=num_envs, fn=np.zeros)

    # ------------------------------------------------------------- batching
    def _rows(self, i: int) -> slice:
        return slice(i * self.k, (i + 1) * self.k)

    def _adopt(self, i: int) -> None:
        """Move env ``i``'s freshly reset machines into the shared array (a view from now on)."""
        env = self.envs[i]
        layout = env.state.layout
        if self._cells is None or self._cells.shape[1] != layout.n_cells:
            self._cells = np.zeros((self.num_envs * self.k, layout.n_cells), dtype=env.state.dtype)
            self._layout = layout
        self._cells[self._rows(i)] = env.state.cells
        env.state = MachineState(layout, self._cells[self._rows(i)])

    @property
    def machines(self) -> MachineState:
        """All ``num_envs * K`` machines as one state (rows ``i*K .. (i+1)*K`` are env ``i``)."""
        return MachineState(self._layout, self._cells)

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
        if length is not None and int(length) > self.envs[0].max_length:
            raise ValueError(
                f"length {length} is beyond this vector env's shared layout; create it with "
                f"max_length >= {length} (every sub-environment's machines share one layout)"
            )
        infos: dict[str, Any] = {}
        obs = []
        for i, env in enumerate(self.envs):
            o, info = env.reset(seed=seeds[i], options=options)
            self._adopt(i)
            obs.append(o)
            infos = self._add_info(infos, info, i)
        self._autoreset[:] = False
        self._obs = concatenate(self.single_observation_space, obs, self._obs)
        return deepcopy(self._obs), infos

    def step(self, actions):
        obs, plans = [None] * self.num_envs, [None] * self.num_envs
        rewards = np.zeros(self.num_envs)
        terms = np.zeros(self.num_envs, dtype=bool)
        truncs = np.zeros(self.num_envs, dtype=bool)
        infos: dict[str, Any] = {}
        env_infos: list[dict | None] = [None] * self.num_envs
        for i, action in enumerate(iterate(self.action_space, actions)):
            if self._autoreset[i]:
                obs[i], env_infos[i] = self.envs[i].reset()
                self._adopt(i)
            else:
                plans[i] = self.envs[i]._plan(action)
        active = [i for i, p in enumerate(plans) if p is not None]
        results = {}
        if active:
            # every sub-environment shares the layout (and so the skill addresses and the
            # budget), so any one image can bind and call all of them
            image = self.envs[active[0]].ws.image
            budget = max(self.envs[i].ws.max_steps for i in active)
            calls = [(self._rows(i), *plans[i]) for i in active]
            out = image.execute_rows(self.machines, calls, self.envs[0].backend, budget)
            results = dict(zip(active, out, strict=True))
        for i, env in enumerate(self.envs):
            if self._autoreset[i]:
                continue
            obs[i], rewards[i], terms[i], truncs[i], env_infos[i] = env._finish(
                plans[i], results.get(i)
            )
        for i in range(self.num_envs):
            infos = self._add_info(infos, env_infos[i], i)
        self._autoreset = terms | truncs
        self._obs = concatenate(self.single_observation_space, obs, self._obs)
        return deepcopy(self._obs), rewards, terms, truncs, infos

    def action_masks(self) -> np.ndarray:
        """Per-environment masks stacked, shape ``(num_envs, mask size)``."""
        return np.stack([env.action_masks() for env in self.envs])

    def render(self):
        return tuple(env.render() for env in self.envs)

    def close_extras(self, **kwargs: Any) -> None:
        self.envs.clear()
