"""Gymnasium registrations: one id ``AlgInd/<Task>-v0`` per curriculum task.

``import algind_gym`` calls :func:`register_algind_envs`, so
``gym.make("AlgInd/DotProduct-v0")`` works after it and
``gym.make("algind_gym:AlgInd/DotProduct-v0")`` works in a fresh interpreter. Every id has
the same entry points and differs only in ``kwargs`` (the Minigrid layout); the spec keeps
the task's level, track and length split in ``kwargs`` and ``max_episode_steps`` as the
call limit. A user's task gets an id the same way through :func:`register_task_env`.

Example:
    >>> import gymnasium as gym
    >>> import algind_gym  # noqa: F401
    >>> spec = gym.spec("AlgInd/DotProduct-v0")
    >>> spec.kwargs["task"], spec.max_episode_steps
    ('DotProduct', 6)
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

ENTRY_POINT = "algind_gym.envs.composition:SkillCompositionEnv"
VECTOR_ENTRY_POINT = "algind_gym.envs.vector:AlgIndVectorEnv"
DEFAULT_MAX_CALLS = 6
REWARD_THRESHOLD = 0.9
"""Dense rewards sum to (final potential - initial potential - call costs): a solved
episode scores about 1 - 0.01 * calls, so 0.9 means solved in a handful of calls."""


def register_task_env(task: Any, *, max_calls: int = DEFAULT_MAX_CALLS, **kwargs: Any) -> str:
    """Register ``AlgInd/<Name>-v0`` for a task (a :class:`TaskSpec` already in the task
    registry, or its name) and return the id. Re-registering an id replaces it.

    ``kwargs`` become the environment's default arguments (``n_examples``, ``backend``...).
    """
    from algind_gym.tasks import get_task

    spec = get_task(task) if isinstance(task, str) else task
    get_task(spec.name)  # must be in the task registry: the env looks it up by name
    env_id = spec.env_id
    if env_id in gym.registry:
        del gym.registry[env_id]
    gym.register(
        id=env_id,
        entry_point=ENTRY_POINT,
        vector_entry_point=VECTOR_ENTRY_POINT,
        max_episode_steps=max_calls,
        reward_threshold=REWARD_THRESHOLD,
        kwargs={"task": spec.name, "max_calls": max_calls, **kwargs},
    )
    return env_id


def register_algind_envs() -> list[str]:
    """Register every task of the task registry; returns the ids in curriculum order."""
    from algind_gym.tasks import list_tasks

    return [register_task_env(t) for t in list_tasks()]


def algind_env_ids() -> list[str]:
    """Ids of the registered AlgInd environments, in registration order."""
    return [k for k in gym.registry if k.startswith("AlgInd/")]


def task_info(env_id: str) -> dict[str, Any]:
    """Level, track and length split of a registered id (what benchmarks group by)."""
    from algind_gym.tasks import get_task

    t = get_task(gym.spec(env_id).kwargs["task"])
    return {
        "task": t.name,
        "level": t.level,
        "track": t.track,
        "train_lengths": t.train_lengths,
        "test_lengths": t.test_lengths,
    }
