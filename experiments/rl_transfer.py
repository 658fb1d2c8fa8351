"""Transfer: one transformer policy trained on every level-1 task but one, on the held-out task.

1. Pre-train MaskablePPO with the transformer policy on the level-1 tasks except
   ``--held-out`` (a task sampled per episode), ``--pretrain`` timesteps.
2. Zero-shot: the pre-trained policy on the held-out task, greedy (success rate at every
   length) and sampled (fraction of solved episodes at the training lengths).
3. For each seed, fine-tune the pre-trained policy on the held-out task alone
   (``train(..., init=...)``) and train a fresh policy on it from scratch, both for
   ``--finetune`` timesteps with the same hyperparameters: timesteps to the first solved
   training episode, to greedy success >= 0.9, and the final success rates.

Writes ``experiments/results/rl_transfer.json`` (after every step, so an interrupted run
keeps what it measured) and ``rl_transfer.md``.

    python experiments/rl_transfer.py [--held-out VectorMul] [--pretrain 30000]
                                      [--finetune 4096] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import yaml

from agents.rl.evaluate import make_eval_env, rollout
from agents.rl.train import resolve_env_ids, train
from algind_gym.atomic import atomic_write_text
from algind_gym.tasks import get_task

RESULTS = Path(__file__).resolve().parent / "results"


def sampled_success(model, meta: dict, env_id: str, episodes: int, seed: int) -> float:
    """Fraction of sampled (non-greedy) episodes solved at the task's training lengths."""
    lengths = get_task(env_id.split("/")[1][:-3]).train_lengths
    env = make_eval_env(meta, env_id)
    wins = [
        rollout(
            model,
            meta["algo"],
            env,
            seed=seed + i,
            length=lengths[i % len(lengths)],
            deterministic=False,
        )["success"]
        for i in range(episodes)
    ]
    return float(np.mean(wins))


def _run(env, seed: int, timesteps: int, hp: str | None, out: Path, init=None) -> dict:
    s = train(
        "maskable_ppo",
        env,
        policy="transformer",
        timesteps=timesteps,
        seed=seed,
        hyperparams=hp,
        out=out,
        init=init,
        resume=(out / "checkpoint.zip").exists() and not (out / "model.zip").exists(),
    ).summary
    keep = (
        "success_rate",
        "generalisation",
        "per_env",
        "timesteps",
        "timesteps_to_first_success",
        "timesteps_to_greedy_success",
        "wall_time_s",
        "steps_per_s",
    )
    return {k: s[k] for k in keep}


def markdown(res: dict) -> str:
    held = res["held_out"]
    pre = res.get("pretrain")
    lines = [
        f"Held-out task: {held}. Pre-trained on {len(res['pretrain_tasks'])} level-1 tasks "
        f"({', '.join(res['pretrain_tasks'])}) for {res['args']['pretrain']} timesteps "
        "(MaskablePPO, transformer policy, seed 0); fine-tuning and from-scratch runs "
        f"{res['args']['finetune']} timesteps each.",
        "",
    ]
    if pre:
        rates = [v["success_rate"] for v in pre["per_env"].values()]
        lines.append(
            f"Pre-training: mean greedy success {statistics.mean(rates):.2f} over its tasks "
            f"({sum(r >= 0.9 for r in rates)} of {len(rates)} at >= 0.9), "
            f"{pre['wall_time_s']:.0f} s."
        )
    if "zero_shot" in res:
        z = res["zero_shot"]
        lines.append(
            f"Zero-shot on {held}: greedy success {z['success_rate']:.2f} at the training "
            f"lengths, {z['accuracy_8x']:.2f} at 8x; sampled episodes solved "
            f"{z['sampled_success']:.2f}."
        )
    lines += [
        "",
        "| start | seed | first solved episode (timestep) | greedy success >= 0.9 at "
        "| success (train lengths) | accuracy 8x | wall s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in res.get("runs", []):
        g = r["generalisation"]
        longest = max(g, key=int)
        lines.append(
            f"| {r['start']} | {r['seed']} | {r['timesteps_to_first_success'] or '-'} | "
            f"{r['timesteps_to_greedy_success'] or '-'} | {r['success_rate']:.2f} | "
            f"{g[longest]:.2f} | {r['wall_time_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def with_eval_settings(source: str | None, dest: Path, eval_freq: int, args) -> str:
    """A copy of the hyperparameter file whose ``default`` entry has this run's evaluation
    settings."""
    from agents.rl.hyperparams import default_hyperparams_file, read_hyperparams_file

    data = read_hyperparams_file(source or default_hyperparams_file("maskable_ppo"))
    data.setdefault("default", {})
    data["default"].update(eval_freq=eval_freq, n_eval_episodes=args.eval_episodes)
    atomic_write_text(dest, yaml.safe_dump(data, sort_keys=False))
    return str(dest)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="transfer to a held-out level-1 task")
    p.add_argument("--held-out", default="VectorMul")
    p.add_argument("--pretrain", type=int, default=30_000)
    p.add_argument("--finetune", type=int, default=4096)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--hyperparams", help="Zoo-layout YAML (default: the shipped maskable_ppo.yml)")
    p.add_argument("--eval-freq", type=int, default=512, help="greedy evaluations (timesteps)")
    p.add_argument("--eval-episodes", type=int, default=3, help="episodes per length")
    p.add_argument("--work", default="runs/transfer", help="folder for the runs' models")
    p.add_argument("--out", default=str(RESULTS / "rl_transfer"))
    args = p.parse_args(argv)
    held = resolve_env_ids(args.held_out)[0]
    tasks = [i for i in resolve_env_ids(level=1) if i != held]
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    hp = with_eval_settings(args.hyperparams, work / "hyperparams.yml", args.eval_freq, args)
    # pre-training: one evaluation, at the end (13 tasks at every length is costly)
    hp_pre = with_eval_settings(args.hyperparams, work / "hyperparams_pre.yml", 10**9, args)
    res_path = out.with_suffix(".json")
    res = json.loads(res_path.read_text()) if res_path.is_file() else {}
    res.update({"held_out": held, "pretrain_tasks": tasks, "args": vars(args)})

    def save() -> None:
        atomic_write_text(res_path, json.dumps(res, indent=1))
        atomic_write_text(out.with_suffix(".md"), markdown(res))

    pre_dir = work / "pretrain"
    if "pretrain" not in res:
        res["pretrain"] = _run(tasks, 0, args.pretrain, hp_pre, pre_dir)
        save()
    pre_model = pre_dir / "model.zip"
    if "zero_shot" not in res:
        from agents.rl.evaluate import evaluate_lengths, load_model

        model = load_model(pre_model)
        meta = model.algind_meta
        ev = evaluate_lengths(model, meta, n_episodes=10, seed=7, env_ids=[held])
        g = ev["per_env"][held]["generalisation"]
        res["zero_shot"] = {
            "success_rate": ev["per_env"][held]["success_rate"],
            "accuracy_8x": g[max(g, key=int)],
            "generalisation": g,
            "sampled_success": sampled_success(model, meta, held, 60, seed=11),
        }
        save()
    res.setdefault("runs", [])
    done = {(r["start"], r["seed"]) for r in res["runs"]}
    for seed in (int(s) for s in args.seeds.split(",")):
        for start, init in (("fine-tuned", pre_model), ("scratch", None)):
            if (start, seed) in done:
                continue
            r = _run(held, seed, args.finetune, hp, work / f"{start}-s{seed}", init)
            res["runs"].append({"start": start, "seed": seed, **r})
            save()
            print(json.dumps(res["runs"][-1]), flush=True)
    print(markdown(res))


if __name__ == "__main__":
    main()
