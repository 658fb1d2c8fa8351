"""Training throughput: the batched vector env against gymnasium's ``SyncVectorEnv``.

Trains the same algorithm, policy, task, seed and budget twice in one run (batched
:class:`~algind_gym.envs.AlgIndVectorEnv`, then ``SyncVectorEnv``) through
:func:`agents.rl.train.train`, and prints training timesteps/s, the fraction of training
wall time spent inside the environment (``GymnasiumVecEnv.env_time_s``), and the ratio;
also timesteps per second of this process's CPU time over the whole ``train`` call (less
disturbed by other processes on a shared machine than wall time). An untimed 64-timestep
run first pays the one-off costs (imports, numba's compilation or cache load).
Torch and numba use one thread each (see :mod:`agents.rl.train`).

``--eval-episodes N`` also times the evaluation at every length of the last trained model
both ways, side by side: :func:`~agents.rl.evaluate.evaluate_lengths` (the N episodes of a
length in lockstep, one batched policy call per step) against one
:func:`~agents.rl.evaluate.rollout` per episode (what it did before), on the same
episodes, and checks that both find the same success at every length.

    python experiments/bench_rl.py [--algo maskable_ppo] [--env VectorAdd] [--policy mlp]
                                   [--timesteps 4096] [--n-envs 8] [--modes M1,M2]
                                   [--eval-episodes N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from rich.console import Console
from rich.table import Table

from agents.rl.train import train


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algo", default="maskable_ppo")
    p.add_argument("--env", default="VectorAdd")
    p.add_argument("--policy", default="mlp")
    p.add_argument("--timesteps", type=int, default=4096)
    p.add_argument("--n-envs", type=int, default=8)
    p.add_argument(
        "--modes",
        default="vector_entry_point,sync",
        help="comma-separated vectorization modes to run (default: both, for the ratio)",
    )
    p.add_argument("--eval-episodes", type=int, default=0, help="also time evaluation")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    rows = {}
    # evaluation is not part of the throughput: evaluate once, at the end, with 1 episode
    with tempfile.TemporaryDirectory() as tmp:
        hp = os.path.join(tmp, "hp.yml")
        from agents.rl.hyperparams import default_hyperparams_file

        text = default_hyperparams_file(args.algo).read_text()
        text = text.replace("eval_freq: 5000", "eval_freq: 10000000")
        text = text.replace("n_eval_episodes: 10", "n_eval_episodes: 1")
        with open(hp, "w") as f:
            f.write(text)
        # untimed warm-up: imports, numba compilation (or its cache), torch's first optimiser,
        # which the first timed mode would otherwise pay alone
        train(args.algo, args.env, policy=args.policy, timesteps=64, n_envs=2, hyperparams=hp)
        for mode in modes:
            cpu = time.process_time()
            res = train(
                args.algo,
                args.env,
                policy=args.policy,
                timesteps=args.timesteps,
                n_envs=args.n_envs,
                hyperparams=hp,
                vectorization=mode,
            )
            s = res.summary
            cpu = time.process_time() - cpu
            rows[mode] = {
                "timesteps": s["timesteps"],
                "steps_per_s": s["steps_per_s"],
                # the whole train() call (setup and final evaluation included)
                "steps_per_cpu_s": s["timesteps"] / cpu,
                "env_time_fraction": s["env_time_fraction"],
            }
    if args.eval_episodes:
        rows["evaluation"] = time_evaluation(res.model, args.eval_episodes)
    if {"vector_entry_point", "sync"} <= set(rows):
        rows["ratio_steps_per_s"] = (
            rows["vector_entry_point"]["steps_per_s"] / rows["sync"]["steps_per_s"]
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return rows
    table = Table(
        "vector env",
        "timesteps",
        "train steps/s",
        "steps per CPU-s",
        "time in env",
        title=f"{args.algo} {args.policy} on {args.env}",
    )
    for mode in modes:
        r = rows[mode]
        table.add_row(
            mode,
            str(r["timesteps"]),
            f"{r['steps_per_s']:.0f}",
            f"{r['steps_per_cpu_s']:.0f}",
            f"{100 * r['env_time_fraction']:.0f}%",
        )
    console = Console()
    console.print(table)
    if "evaluation" in rows:
        e = rows["evaluation"]
        console.print(
            f"evaluation, {e['episodes']} episodes per length on {', '.join(e['env_ids'])}: "
            f"batched {e['batched_s']:.1f} s, one rollout per episode {e['sequential_s']:.1f} s "
            f"({e['ratio']:.2f}x; same success at every length: {e['same_success']})"
        )
    if "ratio_steps_per_s" in rows:
        console.print(f"batched / sync training steps/s: {rows['ratio_steps_per_s']:.2f}x")
    return rows


def time_evaluation(model, episodes: int) -> dict:
    """Seconds for :func:`evaluate_lengths` (batched) and for one :func:`rollout` per
    episode (the same seeds and lengths), and whether their success rates agree."""
    import numpy as np

    from agents.api import resolve_task
    from agents.rl.evaluate import evaluate_lengths, rollout
    from agents.verify import verification_lengths

    meta = model.algind_meta
    cache: dict = {}
    evaluate_lengths(model, meta, n_episodes=1, seed=0, cache=cache)  # build the envs
    t0 = time.perf_counter()
    batched = evaluate_lengths(model, meta, n_episodes=episodes, seed=0, cache=cache)
    batched_s = time.perf_counter() - t0
    envs = {key: group[0] for key, group in cache.items()}
    t0 = time.perf_counter()
    sequential = {}
    for env_id in meta["env_ids"]:
        task = resolve_task(env_id)
        for j, n in enumerate(verification_lengths(task)):
            env = envs[(env_id, max(n, max(task.train_lengths)))]
            wins = [
                rollout(model, meta["algo"], env, seed=7919 * j + i, length=n)["success"]
                for i in range(episodes)
            ]
            sequential[(env_id, str(n))] = float(np.mean(wins))
    sequential_s = time.perf_counter() - t0
    same = all(
        batched["per_env"][e]["generalisation"][n] == rate for (e, n), rate in sequential.items()
    )
    return {
        "env_ids": meta["env_ids"],
        "episodes": episodes,
        "batched_s": batched_s,
        "sequential_s": sequential_s,
        "ratio": sequential_s / batched_s,
        "same_success": same,
    }


if __name__ == "__main__":
    main()
