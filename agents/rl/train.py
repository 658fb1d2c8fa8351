"""`train`: one SB3 / sb3-contrib training run on one task, a list of tasks or a level.

The run reads top to bottom: hyperparameters (the Zoo-layout YAML of
:mod:`agents.rl.hyperparams`, then the caller's overrides), the vector environment
(``gym.make_vec``, seen by SB3 through :class:`~agents.rl.vec_env.GymnasiumVecEnv`), the
model, the callbacks (evaluation at every length, atomic checkpoints), ``learn``, and the
final model saved with its metadata (:mod:`agents.rl.evaluate` reads it back).

**Threads.** Torch and numba each default to one thread per core; on a small machine
the policy's torch ops and the CPU kernel then fight over the cores and training ran
10x slower. ``train`` sets ``torch.set_num_threads(threads)`` and
``numba.set_num_threads(threads)`` (default 1: at the batch sizes used here one thread is
fastest) for the run, and restores both counts when it returns or raises, so a caller's
later work (tests, a search after training) runs with the threads it had.

**Resuming.** Checkpoints go to ``<out>/checkpoint.zip`` (written to a temporary file and
renamed, so an interrupted write leaves the previous one intact); Ctrl-C saves one more
and re-raises. ``train(..., resume=True)`` loads it and trains the remaining timesteps.
DQN resumes with an empty replay buffer (the buffer is not checkpointed).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.vec_env import VecMonitor

import algind_gym
from agents.api import resolve_task
from agents.rl.evaluate import evaluate_lengths
from agents.rl.hyperparams import load_hyperparams
from agents.rl.masked_dqn import MaskedDQN
from agents.rl.vec_env import GymnasiumVecEnv
from algind_gym.atomic import atomic_write_bytes, atomic_write_text

ALGOS: dict[str, type] = {"ppo": PPO, "a2c": A2C, "dqn": MaskedDQN, "maskable_ppo": MaskablePPO}
"""Algorithm names accepted by ``--algo``."""
POLICIES = ("mlp", "transformer")
VECTORIZATION = ("vector_entry_point", "sync")


def set_threads(threads: int, numba_threads: int | None = None) -> tuple[int, int]:
    """Set torch's and numba's thread counts (see the module docstring); returns the
    previous ``(torch, numba)`` counts, for restoring them.

    Args:
        threads: torch's count, and numba's unless ``numba_threads`` is given.
        numba_threads: numba's count (capped at ``numba.config.NUMBA_NUM_THREADS``).
    """
    import numba

    before = (torch.get_num_threads(), numba.get_num_threads())
    torch.set_num_threads(int(threads))
    n = int(threads if numba_threads is None else numba_threads)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    return before


@contextmanager
def thread_counts(threads: int) -> Iterator[None]:
    """Run the block with torch and numba at ``threads`` threads, then restore both."""
    before = set_threads(threads)
    try:
        yield
    finally:
        set_threads(*before)


def resolve_env_ids(env: str | Sequence[str] | None = None, level: int | None = None) -> list[str]:
    """Env ids from ids/task names (a list or one comma-separated string) or a level."""
    from algind_gym.tasks import list_tasks

    if level is not None:
        if env:
            raise ValueError("give --env or --level, not both")
        ids = [t.env_id for t in list_tasks() if t.level == int(level)]
        if not ids:
            levels = sorted({t.level for t in list_tasks()})
            raise ValueError(f"no task at level {level}; levels are {levels}")
        return ids
    if not env:
        raise ValueError("give an env id (--env AlgInd/VectorAdd-v0) or a level (--level 1)")
    names = env.split(",") if isinstance(env, str) else list(env)
    return [resolve_task(n.strip()).env_id for n in names if n.strip()]


def make_train_env(
    env_ids: list[str],
    n_envs: int,
    env_kwargs: dict[str, Any],
    vectorization: str = "vector_entry_point",
    bootstrap_truncation: bool = True,
) -> GymnasiumVecEnv:
    """The training vector env as SB3 sees it (one task: ``gym.make_vec``; several tasks:
    a :class:`~agents.rl.tables.MultiTaskEnv` per sub-environment, run synchronously);
    ``bootstrap_truncation``: see :class:`~agents.rl.vec_env.GymnasiumVecEnv`."""
    if vectorization not in VECTORIZATION:
        raise ValueError(f"vectorization must be one of {VECTORIZATION}, got {vectorization!r}")
    if len(env_ids) == 1:
        from agents.rl.tables import wrap_vector

        venv = gym.make_vec(
            env_ids[0], num_envs=n_envs, vectorization_mode=vectorization, **env_kwargs
        )
        venv = wrap_vector(venv, env_kwargs)
    else:
        from agents.rl.tables import make_multitask_vec

        venv = make_multitask_vec(env_ids, n_envs, env_kwargs)
    return GymnasiumVecEnv(venv, bootstrap_truncation)


def check_choices(algo: str, policy: str, env_ids: list[str], env_kwargs: dict[str, Any]) -> None:
    """Clear errors for combinations that cannot work (before anything is built)."""
    if algo not in ALGOS:
        raise ValueError(f"unknown algorithm {algo!r}; choose one of {sorted(ALGOS)}")
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {POLICIES}")
    encoding = env_kwargs.get("action_encoding", "discrete")
    mode = env_kwargs.get("observation_mode", "state")
    if algo == "dqn" and encoding != "discrete":
        raise ValueError(
            f"DQN needs action_encoding='discrete', got {encoding!r}; set env_kwargs "
            "action_encoding: discrete, or use --algo maskable_ppo / ppo for multidiscrete"
        )
    if policy == "transformer":
        if algo not in ("ppo", "maskable_ppo"):
            raise ValueError(
                f"the transformer policy is an actor-critic policy for ppo and maskable_ppo, "
                f"not {algo}; use --policy mlp with {algo}"
            )
        if mode != "tables":
            raise ValueError(
                f"the transformer policy reads the task-agnostic tables observation, got "
                f"observation_mode={mode!r}; set env_kwargs observation_mode: tables "
                "(or use --policy mlp)"
            )
        if encoding != "multidiscrete":
            raise ValueError(
                "the transformer policy picks a skill and a pointer per slot: set env_kwargs "
                f"action_encoding: multidiscrete (got {encoding!r})"
            )
    if len(env_ids) > 1 and policy != "transformer":
        raise ValueError(
            "several tasks need a policy whose size does not depend on the task: "
            "--policy transformer (with observation_mode: tables)"
        )


def save_model(model, path: str | Path) -> Path:
    """``model.save`` through a temporary file in the same folder and a rename."""
    buf = io.BytesIO()
    model.save(buf)
    return atomic_write_bytes(path, buf.getvalue())


class TrainingCallback(BaseCallback):
    """Evaluation at every length, checkpoints, and first-success bookkeeping.

    Every ``eval_freq`` timesteps it runs :func:`~agents.rl.evaluate.evaluate_lengths`
    (deterministic policy, fresh examples), logs ``eval/success_rate`` and
    ``eval/accuracy_<length>`` to TensorBoard, appends to ``<out>/evaluations.json`` and
    writes ``<out>/checkpoint.zip``.
    """

    def __init__(
        self,
        meta: dict[str, Any],
        out: Path | None,
        eval_freq: int,
        n_eval_episodes: int,
        seed: int,
        success_threshold: float = 0.9,
    ) -> None:
        super().__init__()
        self.meta, self.out = meta, out
        self.eval_freq, self.n_eval_episodes = int(eval_freq), int(n_eval_episodes)
        self.seed, self.success_threshold = seed, success_threshold
        self.history: list[dict[str, Any]] = []
        self.first_success: int | None = None
        self.first_greedy_success: int | None = None
        self._last_eval = 0
        self._envs: dict = {}

    def _on_step(self) -> bool:
        if self.first_success is None:
            for done, info in zip(self.locals["dones"], self.locals["infos"], strict=True):
                if done and info.get("success"):
                    self.first_success = int(self.num_timesteps)
                    self.logger.record("train/first_success_timesteps", self.first_success)
                    break
        if self.num_timesteps - self._last_eval >= self.eval_freq:
            self._last_eval = self.num_timesteps
            self.evaluate()
            self.checkpoint()
        return True

    def evaluate(self) -> dict[str, Any]:
        res = evaluate_lengths(
            self.model,
            self.meta,
            n_episodes=self.n_eval_episodes,
            seed=self.seed + 1_000_003,
            cache=self._envs,
        )
        res["timesteps"] = int(self.num_timesteps)
        self.history.append(res)
        self.logger.record("eval/success_rate", res["success_rate"])
        for length, acc in res["generalisation"].items():
            self.logger.record(f"eval/accuracy_{length}", acc)
        if self.first_greedy_success is None and res["success_rate"] >= self.success_threshold:
            self.first_greedy_success = int(self.num_timesteps)
        if self.out is not None:
            atomic_write_text(self.out / "evaluations.json", json.dumps(self.history, indent=1))
        return res

    def checkpoint(self) -> None:
        if self.out is not None:
            save_model(self.model, self.out / "checkpoint.zip")


@dataclass
class TrainResult:
    """What :func:`train` returns: the run's JSON ``summary`` and the trained ``model``."""

    summary: dict[str, Any]
    model: Any


def train(
    algo: str,
    env: str | Sequence[str] | None = None,
    *,
    level: int | None = None,
    policy: str | None = None,
    timesteps: int | None = None,
    n_envs: int | None = None,
    seed: int = 0,
    hyperparams: str | Path | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    init: str | Path | None = None,
    threads: int = 1,
    vectorization: str = "vector_entry_point",
    progress_bar: bool = False,
    verbose: int = 0,
) -> TrainResult:
    """Train ``algo`` on a task (or tasks) and return the run's summary.

    Args:
        algo: ``ppo``, ``a2c``, ``dqn`` (:class:`~agents.rl.masked_dqn.MaskedDQN`) or
            ``maskable_ppo``.
        env: an env id or task name, a list of them, or a comma-separated string.
        level: every task of this curriculum level (instead of ``env``).
        policy: ``mlp`` (SB3's ``MultiInputPolicy``) or ``transformer``
            (:mod:`agents.rl.policies`); default: the YAML's, else ``mlp``.
        timesteps, n_envs: override the YAML's ``n_timesteps`` / ``n_envs``.
        seed: seeds the model and the environments.
        hyperparams: a Zoo-layout YAML file (default ``experiments/hyperparams/<algo>.yml``).
        out: folder for TensorBoard logs, ``evaluations.json``, ``checkpoint.zip`` and
            ``model.zip``; None writes nothing.
        resume: continue from ``<out>/checkpoint.zip``.
        init: start from the weights of this saved model (fine-tuning; a curriculum's
            next stage) instead of random ones: a transformer-policy model may come from
            other tasks, an MLP model only from the same task (same spaces). The
            hyperparameters are this run's; the optimiser state starts afresh.
        threads: torch and numba threads during the run (see the module docstring;
            restored when ``train`` returns or raises).
        vectorization: ``vector_entry_point`` (the batched
            :class:`~algind_gym.envs.AlgIndVectorEnv`) or ``sync`` (gymnasium's
            ``SyncVectorEnv``).
        progress_bar: SB3's rich progress bar.

    Returns:
        A :class:`TrainResult`: the trained ``model`` and the ``summary``
        ``{"success_rate", "timesteps", "wall_time_s", "timesteps_to_first_success",
        "generalisation", ...}``: the final model's evaluation (see
        :mod:`agents.rl.evaluate` for what the rates mean), the training timestep of the
        first solved training episode, the first evaluation at which the greedy policy
        reached success rate 0.9 (``timesteps_to_greedy_success``), and throughput
        figures over ``learn`` (evaluations included): ``steps_per_s``,
        ``steps_per_cpu_s`` (per second of this process's CPU time, which other processes
        on a shared machine disturb less than wall time) and ``env_time_fraction``, the
        share of wall time spent inside the vector env.
    """
    with thread_counts(threads):
        return _train(
            algo, env, level=level, policy=policy, timesteps=timesteps, n_envs=n_envs,
            seed=seed, hyperparams=hyperparams, out=out, resume=resume, init=init,
            vectorization=vectorization, progress_bar=progress_bar, verbose=verbose,
        )  # fmt: skip


def _train(
    algo: str,
    env: str | Sequence[str] | None,
    *,
    level: int | None,
    policy: str | None,
    timesteps: int | None,
    n_envs: int | None,
    seed: int,
    hyperparams: str | Path | None,
    out: str | Path | None,
    resume: bool,
    init: str | Path | None,
    vectorization: str,
    progress_bar: bool,
    verbose: int,
) -> TrainResult:
    """:func:`train`'s body, run with the thread counts set."""
    start = time.perf_counter()
    env_ids = resolve_env_ids(env, level)
    algo_class = ALGOS.get(algo)
    if algo_class is None:
        raise ValueError(f"unknown algorithm {algo!r}; choose one of {sorted(ALGOS)}")
    entries = ["default"]
    if policy == "transformer":
        entries.append("policy-transformer")
    entries += [*([f"level-{level}"] if level is not None else []), *env_ids]
    params = load_hyperparams(algo_class, entries, hyperparams, algo=algo)
    policy = policy or params.pop("policy", "mlp")
    params.pop("policy", None)
    env_kwargs = params.pop("env_kwargs", {})
    policy_kwargs = params.pop("policy_kwargs", {})
    total = int(timesteps or params.pop("n_timesteps", 20_000))
    params.pop("n_timesteps", None)
    n_envs = int(n_envs or params.pop("n_envs", 8))
    params.pop("n_envs", None)
    eval_freq = int(params.pop("eval_freq", 5_000))
    n_eval_episodes = int(params.pop("n_eval_episodes", 10))
    bootstrap_truncation = bool(params.pop("bootstrap_truncation", True))
    check_choices(algo, policy, env_ids, env_kwargs)

    out_dir = Path(out) if out is not None else None
    ckpt = out_dir / "checkpoint.zip" if out_dir else None
    if ckpt is not None and ckpt.exists() and not resume:
        raise ValueError(
            f"{out_dir} holds a checkpoint of an earlier run; pass --resume to continue it "
            "or choose another --out"
        )
    if resume and (ckpt is None or not ckpt.exists()):
        raise ValueError(f"nothing to resume: no {ckpt or '<out>/checkpoint.zip'}")

    vec = make_train_env(env_ids, n_envs, env_kwargs, vectorization, bootstrap_truncation)
    venv = VecMonitor(vec)
    meta = {
        "algo": algo,
        "policy": policy,
        "env_ids": env_ids,
        "env_kwargs": env_kwargs,
        "hyperparams": {
            **params,
            "policy_kwargs": policy_kwargs,
            "n_envs": n_envs,
            "bootstrap_truncation": bootstrap_truncation,
        },
        "library_version": algind_gym.__version__,
        "seed": seed,
    }
    if resume:
        from agents.rl.evaluate import read_model_meta

        read_model_meta(ckpt)
        model = algo_class.load(str(ckpt), env=venv, device="cpu")
    else:
        policy_arg, policy_kwargs = policy_spec(policy, algo, policy_kwargs)
        model = algo_class(
            policy_arg,
            venv,
            seed=seed,
            device="cpu",
            verbose=verbose,
            policy_kwargs=policy_kwargs or None,
            tensorboard_log=str(out_dir / "tb") if out_dir else None,
            **params,
        )
        if init is not None:
            load_init_weights(model, init, meta)
            meta["init"] = str(init)
    model.algind_meta = meta
    callback = TrainingCallback(meta, out_dir, eval_freq, n_eval_episodes, seed)
    remaining = max(total - model.num_timesteps, 0)
    learn_start, start_steps = time.perf_counter(), model.num_timesteps
    learn_cpu = time.process_time()
    try:
        model.learn(
            remaining,
            callback=CallbackList([callback]),
            progress_bar=progress_bar,
            reset_num_timesteps=not resume,
            tb_log_name=algo,
        )
    except KeyboardInterrupt:
        callback.checkpoint()
        raise
    learn_s = time.perf_counter() - learn_start
    learn_cpu = time.process_time() - learn_cpu
    final = evaluate_lengths(
        model, meta, n_episodes=n_eval_episodes, seed=seed + 2_000_003, cache=callback._envs
    )
    if callback.first_greedy_success is None and final["success_rate"] >= 0.9:
        callback.first_greedy_success = int(model.num_timesteps)
    model_path = None
    if out_dir is not None:
        model_path = str(save_model(model, out_dir / "model.zip"))
        callback.checkpoint()
    wall = time.perf_counter() - start
    summary = {
        "success_rate": final["success_rate"],
        "timesteps": int(model.num_timesteps),
        "wall_time_s": wall,
        "timesteps_to_first_success": callback.first_success,
        "timesteps_to_greedy_success": callback.first_greedy_success,
        "generalisation": final["generalisation"],
        "per_env": final["per_env"],
        "algo": algo,
        "policy": policy,
        "env_ids": env_ids,
        "seed": seed,
        "steps_per_s": (model.num_timesteps - start_steps) / learn_s if learn_s > 0 else None,
        "env_time_fraction": vec.env_time_s / learn_s if learn_s > 0 else None,
        "steps_per_cpu_s": (
            (model.num_timesteps - start_steps) / learn_cpu if learn_cpu > 0 else None
        ),
        "model": model_path,
    }
    venv.close()
    return TrainResult(summary, model)


def load_init_weights(model, init: str | Path, meta: dict[str, Any]) -> None:
    """Copy the policy weights of the saved model ``init`` into ``model`` (see ``train``)."""
    from agents.rl.evaluate import ModelError, load_model, read_model_meta

    old_meta = read_model_meta(init)
    if old_meta["policy"] != meta["policy"]:
        raise ModelError(
            f"{init} has a {old_meta['policy']} policy and this run a {meta['policy']} one; "
            f"pass --policy {old_meta['policy']} or another --init model"
        )
    old = load_model(init)
    if old.observation_space != model.observation_space or old.action_space != model.action_space:
        raise ModelError(
            f"{init} was trained on other spaces ({', '.join(old_meta['env_ids'])}): an MLP "
            "policy is bound to its task; fine-tune across tasks with --policy transformer"
        )
    try:
        model.policy.load_state_dict(old.policy.state_dict())
    except RuntimeError as e:
        raise ModelError(
            f"{init}: its policy has other sizes than this run's policy_kwargs ({e}); use "
            f"the policy_kwargs it was trained with: {old_meta['hyperparams'].get('policy_kwargs')}"
        ) from None


def policy_spec(policy: str, algo: str, policy_kwargs: dict[str, Any]) -> tuple[Any, dict]:
    """The SB3 policy argument and its keyword arguments."""
    if policy == "mlp":
        return "MultiInputPolicy", policy_kwargs
    from agents.rl.policies import transformer_policy_class

    return transformer_policy_class(algo), policy_kwargs
