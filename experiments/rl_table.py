"""RL baselines table: algorithm x policy x task, measured with :func:`agents.rl.train.train`.

Each row trains one configuration for each seed and reports, for its target task (the
last of its env list): the greedy policy's success rate at the training lengths, its
success rate at 8x the longest training length, the training timestep of the first
solved episode, the first evaluation at which the greedy success rate reached 0.9, and
the wall time. Results are appended to ``experiments/results/rl_table.json`` as they come
(so an interrupted run keeps its rows) and the Markdown table is rewritten from it.

Presets:

* ``dotproduct`` -- MaskablePPO on DotProduct: the MLP policy, the transformer policy, and
  the transformer trained on VectorMul, Sum and DotProduct at once (one network, a task
  sampled per episode).
* ``masks`` -- MaskablePPO against PPO without masks (MLP) on VectorAdd and Copy.
* ``level1`` -- MaskablePPO (MLP) on every level-1 task.

    python experiments/rl_table.py --preset dotproduct [--seeds 0,1,2] [--timesteps N]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from agents.rl.train import resolve_env_ids, train
from algind_gym.atomic import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"
PRESETS: dict[str, list[tuple[str, str, str]]] = {
    "dotproduct": [
        ("maskable_ppo", "mlp", "DotProduct"),
        ("maskable_ppo", "transformer", "DotProduct"),
        ("maskable_ppo", "transformer", "VectorMul,Sum,DotProduct"),
    ],
    "masks": [
        ("maskable_ppo", "mlp", "VectorAdd"),
        ("ppo", "mlp", "VectorAdd"),
        ("maskable_ppo", "mlp", "Copy"),
        ("ppo", "mlp", "Copy"),
    ],
    "level1": [("maskable_ppo", "mlp", i.split("/")[1][:-3]) for i in resolve_env_ids(level=1)],
}


def run_row(algo: str, policy: str, envs: str, seed: int, timesteps: int) -> dict:
    ids = resolve_env_ids(envs)
    s = train(algo, ids, policy=policy, timesteps=timesteps, seed=seed).summary
    target = s["per_env"][ids[-1]]
    longest = max(int(n) for n in target["generalisation"])
    return {
        "algo": algo,
        "policy": policy,
        "envs": envs,
        "seed": seed,
        "timesteps": s["timesteps"],
        "success_rate": target["success_rate"],
        "accuracy_8x": target["generalisation"][str(longest)],
        "timesteps_to_first_success": s["timesteps_to_first_success"],
        "timesteps_to_greedy_success": s["timesteps_to_greedy_success"],
        "wall_time_s": s["wall_time_s"],
        "steps_per_s": s["steps_per_s"],
    }


def markdown(rows: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["algo"], r["policy"], r["envs"], r["timesteps"]), []).append(r)
    out = [
        "| algo | policy | trained on (target last) | timesteps | seeds | success (train lengths) "
        "| accuracy 8x | first solved episode | greedy success >= 0.9 at | wall s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (algo, policy, envs, ts), rs in groups.items():

        def fmt(key, rs=rs):
            vals = [r[key] for r in rs]
            return " / ".join(
                "-" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v) for v in vals
            )

        out.append(
            f"| {algo} | {policy} | {envs} | {ts} | {len(rs)} | {fmt('success_rate')} | "
            f"{fmt('accuracy_8x')} | {fmt('timesteps_to_first_success')} | "
            f"{fmt('timesteps_to_greedy_success')} | "
            f"{statistics.mean(r['wall_time_s'] for r in rs):.0f} |"
        )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="RL baselines table")
    p.add_argument("--preset", choices=sorted(PRESETS), default="dotproduct")
    p.add_argument("--seeds", default="0")
    p.add_argument("--timesteps", type=int, default=30_000)
    p.add_argument("--out", default=str(RESULTS / "rl_table"))
    args = p.parse_args(argv)
    out = Path(args.out)
    path = out.with_suffix(".json")
    rows = json.loads(path.read_text()) if path.is_file() else []
    for algo, policy, envs in PRESETS[args.preset]:
        for seed in (int(s) for s in args.seeds.split(",")):
            row = run_row(algo, policy, envs, seed, args.timesteps)
            rows.append(row)
            print(json.dumps(row), flush=True)
            atomic_write_text(path, json.dumps(rows, indent=1))
            atomic_write_text(out.with_suffix(".md"), markdown(rows))


if __name__ == "__main__":
    main()
