"""Loading saved models, replaying them, and measuring them at every length.

A model saved by :func:`agents.rl.train.train` carries ``algind_meta``: the algorithm, the
policy, the env ids, the environment arguments and hyperparameters it was trained with,
and the algind-gym version. :func:`load_model` checks that version before it builds
anything, and :func:`make_eval_env` rebuilds the training environment from the metadata
(at any length), so a model is replayed on exactly the observation it was trained on.

**What "accuracy" means here.** An episode is a program written by the (deterministic)
policy for K fresh examples; it counts as solved when the program is right on all K
(``info["success"]``). ``success_rate`` is the fraction of solved episodes at the training
lengths, ``generalisation[L]`` the fraction at length ``L`` (every training and test length
and 8x the longest training length, :func:`agents.verify.verification_lengths`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import algind_gym
from agents.api import resolve_task
from agents.verify import verification_lengths

MASKED_ALGOS = ("maskable_ppo", "dqn")
"""Algorithms whose ``predict`` takes ``action_masks`` (the others act unmasked)."""


class ModelError(ValueError):
    """A saved model that cannot be used here; the message says what to do."""


def read_model_meta(path: str | Path) -> dict[str, Any]:
    """The ``algind_meta`` of a saved model, checked against this library version."""
    from stable_baselines3.common.save_util import load_from_zip_file

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"no model file {str(path)!r}; pass a .zip written by algind-gym train")
    try:
        data, _, _ = load_from_zip_file(path, load_data=True, device="cpu")
    except Exception as e:
        raise ModelError(f"{path}: not a saved SB3 model ({e})") from None
    meta = (data or {}).get("algind_meta")
    if not isinstance(meta, dict):
        raise ModelError(
            f"{path}: an SB3 model without algind-gym metadata; train it with "
            "algind-gym train (or agents.rl.train) so it records its environment"
        )
    version = meta.get("library_version")
    if version != algind_gym.__version__:
        raise ModelError(
            f"{path} was trained with algind-gym {version}, this is {algind_gym.__version__}; "
            f"retrain it with this version (or install algind-gym=={version} to use it)"
        )
    return meta


def load_model(path: str | Path, env=None):
    """Load a model saved by :func:`agents.rl.train.train` (version-checked)."""
    from agents.rl.train import ALGOS

    meta = read_model_meta(path)
    return ALGOS[meta["algo"]].load(str(path), env=env, device="cpu")


def make_eval_env(meta: dict[str, Any], env_id: str, length: int | None = None) -> gym.Env:
    """A single environment as the model was trained on, able to run ``length``.

    Raises:
        ModelError: at this length the observation space differs from training (an
            observation mode whose size depends on the length).
    """
    from agents.rl.tables import make_env

    kwargs = dict(meta.get("env_kwargs", {}))
    spec_max = max(resolve_task(env_id).train_lengths)
    if length is not None:
        kwargs["max_length"] = max(int(length), kwargs.get("max_length") or spec_max)
    return make_env(env_id, kwargs)


def predict(model, algo: str, obs, env, deterministic: bool = True):
    """One action (masked for the algorithms that take masks)."""
    if algo in MASKED_ALGOS:
        masks = env.get_wrapper_attr("action_masks")()
        action, _ = model.predict(obs, deterministic=deterministic, action_masks=masks)
    else:
        action, _ = model.predict(obs, deterministic=deterministic)
    return action


def rollout(
    model,
    algo: str,
    env,
    *,
    seed: int | None = None,
    length: int | None = None,
    deterministic: bool = True,
) -> dict[str, Any]:
    """One episode of the model: its program, actions, success, return and the number of
    actions the environment refused (``invalid_actions``)."""
    return rollouts(model, algo, [env], seeds=[seed], length=length, deterministic=deterministic)[0]


def rollouts(
    model,
    algo: str,
    envs: Sequence[gym.Env],
    *,
    seeds: Sequence[int | None],
    length: int | None = None,
    deterministic: bool = True,
) -> list[dict[str, Any]]:
    """One episode per environment (``envs[i]`` reset with ``seeds[i]``), run in lockstep:
    at every step one batched ``model.predict`` over the episodes still running.

    Each episode is what :func:`rollout` returns for that environment and seed: the
    environments are independent and the policy acts on each row of the batch separately
    (a batch is only faster than one call per episode).
    """
    if len(envs) != len(seeds):
        raise ValueError(f"one seed per environment: {len(envs)} envs, {len(seeds)} seeds")
    options = {"length": int(length)} if length is not None else None
    obs, infos = [], []
    for env, seed in zip(envs, seeds, strict=True):
        o, info = env.reset(seed=seed, options=options)
        check_spaces(model, env)
        obs.append(o)
        infos.append(info)
    n = len(envs)
    actions: list[list] = [[] for _ in range(n)]
    total, invalid = [0.0] * n, [0] * n
    running = list(range(n))
    while running:
        batch = _stack([obs[i] for i in running])
        kwargs = {}
        if algo in MASKED_ALGOS:
            masks = [envs[i].get_wrapper_attr("action_masks")() for i in running]
            kwargs["action_masks"] = np.stack(masks)
        acts, _ = model.predict(batch, deterministic=deterministic, **kwargs)
        still = []
        for i, action in zip(running, acts, strict=True):
            actions[i].append(np.asarray(action).tolist())
            obs[i], reward, terminated, truncated, infos[i] = envs[i].step(action)
            total[i] += float(reward)
            invalid[i] += str(infos[i].get("error") or "").startswith("invalid action")
            if not (terminated or truncated):
                still.append(i)
        running = still
    out = []
    for i, env in enumerate(envs):
        base = env.unwrapped
        out.append(
            {
                "program": base.program,
                "program_text": base.program_text(),
                "actions": actions[i],
                "success": bool(infos[i]["success"]),
                "fault": infos[i]["fault"],
                "length": int(infos[i]["length"]),
                "return": total[i],
                "invalid_actions": invalid[i],
            }
        )
    return out


def _stack(observations: list) -> Any:
    """A batch of single observations (dicts of arrays or arrays)."""
    if isinstance(observations[0], dict):
        return {k: np.stack([o[k] for o in observations]) for k in observations[0]}
    return np.stack(observations)


def check_spaces(model, env) -> None:
    """Clear error when the model's spaces differ from the environment's."""
    if model.observation_space != env.observation_space:
        raise ModelError(
            "the model's observation space differs from this environment's (another task, "
            "another observation mode, or a length-dependent observation); use the task and "
            "env arguments it was trained with, or a length-independent observation_mode "
            "('compact' or 'tables')"
        )
    if model.action_space != env.action_space:
        raise ModelError(
            f"the model's action space {model.action_space} differs from this environment's "
            f"{env.action_space}: an MLP policy is bound to the task it was trained on; "
            "train on this task, or use --policy transformer with observation_mode='tables'"
        )


def evaluate_lengths(
    model,
    meta: dict[str, Any],
    *,
    n_episodes: int = 10,
    seed: int = 0,
    lengths: Sequence[int] | None = None,
    env_ids: Sequence[str] | None = None,
    cache: dict | None = None,
) -> dict[str, Any]:
    """``success_rate`` at the training lengths and ``generalisation`` per length.

    Args:
        model, meta: a model and its ``algind_meta``.
        n_episodes: deterministic episodes per length (and per env id).
        seed: seeds the episodes' examples (fresh: offset from training seeds).
        lengths: default: :func:`agents.verify.verification_lengths` of each task.
        env_ids: default: every env id the model was trained on.
        cache: a dict kept between calls to reuse the environments.

    The ``n_episodes`` episodes of one length run in lockstep (:func:`rollouts`): the same
    episodes as one :func:`rollout` each, with one batched policy call per step.

    Returns:
        ``{"success_rate", "generalisation": {"<length>": rate}, "per_env": {...}}``.
    """
    cache = {} if cache is None else cache
    algo = meta["algo"]
    ids = list(env_ids or meta["env_ids"])
    per_env: dict[str, Any] = {}
    for env_id in ids:
        task = resolve_task(env_id)
        lens = sorted(lengths) if lengths is not None else verification_lengths(task)
        gen: dict[str, float] = {}
        for j, n in enumerate(lens):
            key = (env_id, max(n, max(task.train_lengths)))
            envs = cache.setdefault(key, [])
            while len(envs) < n_episodes:
                envs.append(make_eval_env(meta, env_id, n))
            seeds = [seed + 7919 * j + i for i in range(n_episodes)]
            runs = rollouts(model, algo, envs[:n_episodes], seeds=seeds, length=n)
            gen[str(n)] = float(np.mean([r["success"] for r in runs]))
        train = [gen[str(n)] for n in task.train_lengths if str(n) in gen]
        per_env[env_id] = {
            "success_rate": float(np.mean(train)) if train else float("nan"),
            "generalisation": gen,
        }
    success = float(np.mean([v["success_rate"] for v in per_env.values()]))
    generalisation = per_env[ids[0]]["generalisation"] if len(ids) == 1 else {}
    return {"success_rate": success, "generalisation": generalisation, "per_env": per_env}


def replay(
    path: str | Path,
    *,
    env_id: str | None = None,
    length: int | None = None,
    episodes: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """What ``algind-gym evaluate`` prints: the model's programs and its success rate."""
    meta = read_model_meta(path)
    model = load_model(path)
    env_id = env_id or meta["env_ids"][0]
    env = make_eval_env(meta, env_id, length)
    runs = [
        rollout(model, meta["algo"], env, seed=seed + i, length=length) for i in range(episodes)
    ]
    return {
        "model": str(path),
        "algo": meta["algo"],
        "policy": meta["policy"],
        "env": env_id,
        "length": length,
        "episodes": episodes,
        "success_rate": float(np.mean([r["success"] for r in runs])),
        "runs": runs,
    }
