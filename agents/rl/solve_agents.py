"""Trained policies as :func:`agents.solve` agents: ``--agent ppo|a2c|dqn|maskable_ppo``.

``solve("VectorAdd", agent="maskable_ppo", model="runs/.../model.zip")`` (CLI:
``algind-gym solve VectorAdd --agent maskable_ppo --option model=FILE``) replays the
model in the solve's environment: first its greedy episode, then sampled episodes, each
action charged to the budget, until a program verifies on fresh inputs or the budget is
spent. The environment uses the model's own environment arguments (observation mode,
action encoding, K, call limit), because its network reads exactly that observation
(whose shape depends on K and the call limit); the solve's backend is kept.

SB3 is imported only when an agent searches, so registering these agents costs nothing
for users without the ``rl`` extra.
"""

from __future__ import annotations

from typing import Any

from agents.api import Agent, SolveContext, register_agent
from agents.result import Program


class RLPolicyAgent(Agent):
    """Replays a model saved by ``algind-gym train`` (see the module docstring).

    Args:
        model: path of the saved model (``model.zip``).
        sample: after the greedy episode, sample actions from the policy (True) or stop.
    """

    algo = ""

    def __init__(self, model: str | None = None, sample: bool = True) -> None:
        if not model:
            raise ValueError(
                f"agent {self.name!r} needs a trained model: --option model=PATH/model.zip "
                f"(train one with algind-gym train --algo {self.algo})"
            )
        self.model = str(model)
        self.sample = bool(sample)

    def search(self, ctx: SolveContext) -> Program | None:
        import gymnasium as gym

        from agents.rl.evaluate import (
            ModelError,
            check_spaces,
            load_model,
            predict,
            read_model_meta,
        )

        meta = read_model_meta(self.model)
        if meta["algo"] != self.algo:
            raise ModelError(
                f"{self.model} was trained with {meta['algo']}; use --agent {meta['algo']}"
            )
        model = load_model(self.model)
        kwargs: dict[str, Any] = dict(meta.get("env_kwargs", {}))
        kwargs.pop("backend", None)
        # the observation has a row per call: keep the call limit the model was trained with
        kwargs.setdefault("max_calls", gym.spec(meta["env_ids"][0]).kwargs["max_calls"])
        env = ctx.make_env(**kwargs)
        if kwargs.get("observation_mode") == "tables":  # the transformer's fixed actions
            from agents.rl.tables import TablesActions

            env = TablesActions(env)
        base = env.unwrapped
        deterministic = True
        episode = 0
        while True:
            obs, _ = env.reset(seed=int(ctx.rng.integers(2**31 - 1)))
            check_spaces(model, env)
            episode += 1
            ctx.stats["episodes"] = episode
            done = False
            while not done:
                action = predict(model, self.algo, obs, env, deterministic)
                obs, _, terminated, truncated, info = env.step(action)
                ctx.charge(actions=1, env_steps=1, instructions=info["step_instructions"])
                done = terminated or truncated
                if base.program:
                    ctx.offer(base.program, info["potential"])
                if info["success"]:
                    if all(v == 1.0 for v in ctx.verify(base.program).values()):
                        return base.program
                    break
            if not self.sample:
                return ctx.best_program
            deterministic = False


@register_agent("ppo")
class PPOAgent(RLPolicyAgent):
    """A PPO model (acts without masks)."""

    algo = "ppo"


@register_agent("a2c")
class A2CAgent(RLPolicyAgent):
    """An A2C model (acts without masks)."""

    algo = "a2c"


@register_agent("dqn")
class DQNAgent(RLPolicyAgent):
    """A masked DQN model."""

    algo = "dqn"


@register_agent("maskable_ppo")
class MaskablePPOAgent(RLPolicyAgent):
    """A MaskablePPO model."""

    algo = "maskable_ppo"
