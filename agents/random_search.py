"""`RandomSearch`: programs sampled uniformly over the valid actions, the floor every agent
must beat.

Each episode samples up to ``max_calls`` actions uniformly among the env's valid
(skill, bindings) candidates (HALT excluded) and stops early when the K training examples
are solved or a call faults. A program that solves the training examples is verified on
fresh inputs at every length; the search goes on until one verifies or the budget is spent.
"""

from __future__ import annotations

import numpy as np

from agents.api import Agent, SolveContext, register_agent
from agents.result import Program


@register_agent("random")
class RandomSearch(Agent):
    """Uniform random programs (see the module docstring).

    Args:
        max_calls: longest program sampled (default: the solve's ``max_calls``).
    """

    def __init__(self, max_calls: int | None = None) -> None:
        if max_calls is not None and max_calls < 1:
            raise ValueError(f"max_calls must be >= 1, got {max_calls}")
        self.max_calls = max_calls

    def search(self, ctx: SolveContext) -> Program | None:
        env = ctx.make_env()
        horizon = self.max_calls or ctx.max_calls
        episode = 0
        while True:
            env.reset(seed=int(ctx.rng.integers(2**31 - 1)))
            episode += 1
            ctx.stats["episodes"] = episode
            for _ in range(horizon):
                mask = env.action_masks().copy()
                mask[env.actions.halt_index] = False
                valid = np.flatnonzero(mask)
                if valid.size == 0:
                    break
                action = int(ctx.rng.choice(valid))
                _, _, terminated, _, info = env.step(action)
                ctx.charge(actions=1, env_steps=1, instructions=info["step_instructions"])
                if info["fault"] is not None:
                    break
                ctx.offer(env.program, info["potential"])
                if info["success"]:
                    if all(v == 1.0 for v in ctx.verify(env.program).values()):
                        return env.program
                    break
                if terminated:
                    break
