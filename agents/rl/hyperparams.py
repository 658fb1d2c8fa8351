"""Hyperparameters in the RL Baselines3 Zoo layout: one YAML file per algorithm.

``experiments/hyperparams/<algo>.yml`` holds a ``default`` entry and optional entries keyed
by env id (``AlgInd/DotProduct-v0``) or by ``level-<n>`` for multi-task runs, and a
``policy-transformer`` entry applied when the transformer policy is chosen. The entry for
a run is ``default`` updated in this order by ``policy-transformer``, ``level-<n>`` and the
env ids' entries. Keys of an entry:

* the algorithm's own keyword arguments (``learning_rate``, ``n_steps``, ...), checked
  against its constructor, so a misspelt key is an error that lists the accepted ones;
* ``n_timesteps`` and ``n_envs`` (the Zoo's names; the CLI's ``--timesteps`` and
  ``--n-envs`` override them);
* ``policy``: ``mlp`` or ``transformer`` (``--policy`` overrides it);
* ``policy_kwargs``: a mapping passed to the policy (unlike the Zoo, not a Python string:
  nothing from a YAML file is evaluated);
* ``env_kwargs``: a mapping passed to ``gym.make_vec`` for every environment;
* ``eval_freq``, ``n_eval_episodes``: the evaluation callback (in timesteps / episodes);
* ``bootstrap_truncation`` (default ``true``): ``false`` makes SB3 treat an episode cut at
  the env's call limit as terminal instead of bootstrapping it
  (:class:`~agents.rl.vec_env.GymnasiumVecEnv`).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import yaml

HYPERPARAMS_DIR = Path(__file__).resolve().parents[2] / "experiments" / "hyperparams"
"""Where the shipped ``<algo>.yml`` files live."""

RUN_KEYS = (
    "n_timesteps",
    "n_envs",
    "policy",
    "policy_kwargs",
    "env_kwargs",
    "bootstrap_truncation",
)
EVAL_KEYS = ("eval_freq", "n_eval_episodes")


class HyperparamsError(ValueError):
    """A hyperparameter file that cannot be used; the message names the file and the fix."""


def default_hyperparams_file(algo: str) -> Path:
    """The shipped file of ``algo`` (``experiments/hyperparams/<algo>.yml``)."""
    return HYPERPARAMS_DIR / f"{algo}.yml"


def read_hyperparams_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """Parse a Zoo-layout YAML file: a mapping from entry names to mappings."""
    path = Path(path)
    if not path.is_file():
        raise HyperparamsError(f"no hyperparameter file {str(path)!r}; pass an existing YAML file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        where = ""
        mark = getattr(e, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise HyperparamsError(
            f"{path}: not valid YAML{where}: {problem}; fix the syntax (the layout is "
            "'default:' and '<env id>:' entries, each a mapping of key: value)"
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise HyperparamsError(
            f"{path}: expected a mapping of entries ('default:', '<env id>:'), "
            f"got a {type(data).__name__}"
        )
    for name, entry in data.items():
        if entry is None:
            data[name] = {}
        elif not isinstance(entry, dict):
            raise HyperparamsError(
                f"{path}: entry {name!r} must be a mapping of key: value, "
                f"got a {type(entry).__name__} ({entry!r})"
            )
    return data


def load_hyperparams(
    algo_class: type, entries: list[str], path: str | Path | None = None, *, algo: str = ""
) -> dict[str, Any]:
    """The merged, checked entry for a run.

    Args:
        algo_class: the SB3 algorithm class (its constructor defines the accepted keys).
        entries: entry names from least to most specific, e.g.
            ``["default", "AlgInd/DotProduct-v0"]``; missing ones are skipped.
        path: the YAML file (default: the shipped ``<algo>.yml``).
        algo: the algorithm's name (for the default path and messages).

    Returns:
        The merged mapping (``policy_kwargs`` and ``env_kwargs`` merged key by key).

    Raises:
        HyperparamsError: bad YAML, a non-mapping entry, an unknown key, a bad value type.
    """
    path = Path(path) if path is not None else default_hyperparams_file(algo)
    data = read_hyperparams_file(path)
    merged: dict[str, Any] = {}
    for name in entries:
        entry = data.get(name)
        if entry is None:
            continue
        for key, value in entry.items():
            if key in ("policy_kwargs", "env_kwargs"):
                if not isinstance(value, dict):
                    raise HyperparamsError(
                        f"{path}: {name}.{key} must be a mapping (key: value lines), got "
                        f"{value!r}; YAML strings are not evaluated"
                    )
                merged[key] = {**merged.get(key, {}), **value}
            else:
                merged[key] = value
    check_keys(algo_class, merged, str(path))
    return merged


RESERVED = ("self", "policy", "env", "seed", "device", "verbose", "tensorboard_log")
"""Constructor arguments that the run sets itself (``--seed``, ``--out``...)."""


def constructor_keys(algo_class: type) -> set[str]:
    """Keyword arguments of the algorithm's constructor (through ``*args, **kwargs``
    subclasses to the first class that names them), minus :data:`RESERVED` and private ones."""
    for cls in algo_class.__mro__:
        if "__init__" not in vars(cls):
            continue
        params = inspect.signature(cls.__init__).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            continue
        return {p for p in params if p not in RESERVED and not p.startswith("_")}
    return set()


def check_keys(algo_class: type, params: dict[str, Any], source: str) -> None:
    """Reject keys the algorithm's constructor does not take (and bad run-key types)."""
    accepted = constructor_keys(algo_class)
    unknown = sorted(k for k in params if k not in accepted and k not in RUN_KEYS + EVAL_KEYS)
    if unknown:
        raise HyperparamsError(
            f"{source}: unknown hyperparameter(s) {unknown} for {algo_class.__name__}; "
            f"accepted: {sorted(accepted | set(RUN_KEYS + EVAL_KEYS))}"
        )
    for key in ("n_timesteps", "n_envs", "eval_freq", "n_eval_episodes"):
        value = params.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1
        ):
            raise HyperparamsError(f"{source}: {key} must be a positive number, got {value!r}")
    flag = params.get("bootstrap_truncation")
    if flag is not None and not isinstance(flag, bool):
        raise HyperparamsError(
            f"{source}: bootstrap_truncation must be true or false, got {flag!r}"
        )
    policy = params.get("policy")
    if policy is not None and policy not in ("mlp", "transformer"):
        raise HyperparamsError(f"{source}: policy must be 'mlp' or 'transformer', got {policy!r}")
