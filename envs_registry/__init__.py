"""Gymnasium registrations: one id ``AlgInd/<Task>-v0`` per curriculum task.

``import algind_gym`` calls :func:`register_algind_envs`, so
``gym.make("AlgInd/DotProduct-v0")`` works after it and
``gym.make("algind_gym:AlgInd/DotProduct-v0")`` works in a fresh interpreter. Every id has
the same entry points and differs only in ``kwargs`` (the Minigrid layout). A user's task
gets an id the same way through :func:`register_task_env`.

The call limit has one source of truth, the environment's ``max_calls`` argument: the env
truncates episodes itself, so the spec sets no ``max_episode_steps`` (no ``TimeLimit``
wrapper whose counter a restored snapshot would not rewind), and
``gym.make(id, max_calls=12)`` really allows 12 calls. (``gym.make(id, max_episode_steps=N)``
still adds gymnasium's ``TimeLimit`` on top, as for any environment.)

Example:
    >>> import gymnasium as gym
    >>> import algind_gym  # noqa: F401
    >>> spec = gym.spec("AlgInd/DotProduct-v0")
    >>> spec.kwargs["task"], spec.kwargs["max_calls"], spec.max_episode_steps
    ('DotProduct', 6, None)
    >>> gym.make("AlgInd/DotProduct-v0", max_calls=12, backend="reference").unwrapped.max_calls
    12
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
    """Register ``AlgInd/<Name>-v0`` for a task and return the id.

    Re-registering an id replaces it. The spec gets the entry point
    :class:`~algind_gym.envs.SkillCompositionEnv`, the vector entry point
    :class:`~algind_gym.envs.AlgIndVectorEnv`, ``reward_threshold`` 0.9 and no
    ``max_episode_steps`` (the env truncates at its own ``max_calls``, see the module
    docstring).

    Args:
        task: a :class:`~algind_gym.tasks.TaskSpec` already in the task registry, or its name.
        max_calls: default call limit T of an episode (6); ``gym.make(id, max_calls=N)``
            overrides it.
        **kwargs: further default arguments of the environment (``n_examples`` (8),
            ``backend`` ("transformer"), ``observation_mode`` ("state"), ...; see
            :class:`~algind_gym.envs.SkillCompositionEnv` for all and their defaults);
            ``gym.make`` keyword arguments override them.
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
