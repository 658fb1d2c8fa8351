"""Random valid actions for a batch of sub-environments, shared by the vector env tests."""

from __future__ import annotations

import numpy as np


def random_actions(env, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` actions for the sub-environments of a vector env whose first sub-environment is
    ``env``: drawn from the valid discrete actions with ``rng`` (HALT included), or sampled
    from ``env.action_space`` for the multi-discrete encoding (seed it first)."""
    if env.action_encoding == "discrete":
        return rng.choice(np.flatnonzero(env.action_masks()), size=n)
    return np.stack([env.action_space.sample() for _ in range(n)])
