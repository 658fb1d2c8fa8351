"""RL baselines table: algorithm x policy x task, measured with :func:`agents.rl.train.train`.

Each row trains one configuration for one seed and reports, for its target task (the last
of its env list): the greedy policy's success rate at the training lengths, its success
rate at 8x the longest training length, the training timestep of the first solved
episode, the first evaluation at which the greedy success rate reached 0.9, and the wall
time. Rows are appended to a JSON file as they come (so an interrupted run keeps its
rows, and a rerun skips the rows already there); ``--markdown`` merges any number of
such files into one table (mean over seeds, and each seed's value).

Presets (``--tasks`` and ``--algos`` narrow them):

* ``grid`` -- MaskablePPO and PPO without masks (MLP policy) on every level-1 task, Sum,
  DotProduct and MatVec.
* ``transformer`` -- MaskablePPO with the transformer policy on the same tasks.
* ``ppo-transformer`` -- PPO without masks with the transformer policy on the same tasks
  (against ``transformer``: the masks' effect for the task-agnostic policy).
* ``dqn-a2c`` -- masked DQN and A2C (MLP) on the same tasks.
* ``dotproduct`` -- MaskablePPO on DotProduct: the MLP policy and the transformer.

    python experiments/rl_table.py --preset grid --seeds 0 --timesteps 3000 \\
        --out experiments/results/rl_grid_s0.json
    python experiments/rl_table.py --markdown experiments/results/rl_grid_s*.json \\
        > experiments/results/rl_grid.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from agents.rl.train import resolve_env_ids, train
from algind_gym.atomic import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"
TABLE_TASKS = [i.split("/")[1][:-3] for i in resolve_env_ids(level=1)] + [
    "Sum",
    "DotProduct",
    "MatVec",
]
"""Every level-1 task, then Sum, DotProduct and MatVec (the issue's table)."""
PRESETS: dict[str, list[tuple[str, str, str]]] = {
    "grid": [(a, "mlp", t) for t in TABLE_TASKS for a in ("maskable_ppo", "ppo")],
    "transformer": [("maskable_ppo", "transformer", t) for t in TABLE_TASKS],
    "ppo-transformer": [("ppo", "transformer", t) for t in TABLE_TASKS],
    "dqn-a2c": [(a, "mlp", t) for t in TABLE_TASKS for a in ("dqn", "a2c")],
    "dotproduct": [
        ("maskable_ppo", "mlp", "DotProduct"),
        ("maskable_ppo", "transformer", "DotProduct"),
    ],
}


def run_row(
    algo: str, policy: str, envs: str, seed: int, timesteps: int, hyperparams: str | None
) -> dict:
    ids = resolve_env_ids(envs)
    s = train(
        algo, ids, policy=policy, timesteps=timesteps, seed=seed, hyperparams=hyperparams
    ).summary
    target = s["per_env"][ids[-1]]
    longest = max(int(n) for n in target["generalisation"])
    return {
        "algo": algo,
        "policy": policy,
        "envs": envs,
        "seed": seed,
        "budget": timesteps,
        "timesteps": s["timesteps"],
        "success_rate": target["success_rate"],
        "accuracy_8x": target["generalisation"][str(longest)],
        "timesteps_to_first_success": s["timesteps_to_first_success"],
        "timesteps_to_greedy_success": s["timesteps_to_greedy_success"],
        "wall_time_s": s["wall_time_s"],
        "steps_per_s": s["steps_per_s"],
    }


def _cell(values: list, digits: int = 2) -> str:
    """Mean over seeds, then each seed's value (``-``: never reached)."""

    def one(v):
        return "-" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)

    present = [v for v in values if v is not None]
    if len(values) == 1:
        return one(values[0])
    mean = f"{statistics.mean(present):.{digits}f}" if len(present) == len(values) else "-"
    if not isinstance(values[0], float) and present and len(present) == len(values):
        mean = f"{statistics.mean(present):.0f}"
    return f"{mean} ({' / '.join(one(v) for v in values)})"


def markdown(rows: list[dict]) -> str:
    """One line per (algo, policy, envs, budget): mean over seeds (each seed's value); a row
    measured twice (same configuration and seed, e.g. by two processes) counts once. Lines
    follow the task order of ``TABLE_TASKS``, then transformer before MLP, then algorithm."""
    unique = {(r["algo"], r["policy"], r["envs"], r["seed"], r["budget"]): r for r in rows}
    groups: dict[tuple, list[dict]] = {}
    for r in sorted(unique.values(), key=lambda r: r["seed"]):
        groups.setdefault((r["envs"], r["algo"], r["policy"], r["budget"]), []).append(r)
    out = [
        "| task (trained on) | algo | policy | timestep budget | seeds | success (train lengths) "
        "| accuracy 8x | first solved episode (timestep) | greedy success >= 0.9 at | wall s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    order = {t: i for i, t in enumerate(TABLE_TASKS)}
    algos = ("maskable_ppo", "ppo", "a2c", "dqn")

    def key(g):
        envs, algo, policy, ts = g
        task = envs.split(",")[-1]
        rank = algos.index(algo) if algo in algos else len(algos)
        return (order.get(task, len(order)), envs, ts, policy != "transformer", rank, algo)

    for (envs, algo, policy, ts), rs in sorted(groups.items(), key=lambda kv: key(kv[0])):
        out.append(
            f"| {envs} | {algo} | {policy} | {ts} | {len(rs)} | "
            f"{_cell([r['success_rate'] for r in rs])} | "
            f"{_cell([r['accuracy_8x'] for r in rs])} | "
            f"{_cell([r['timesteps_to_first_success'] for r in rs])} | "
            f"{_cell([r['timesteps_to_greedy_success'] for r in rs])} | "
            f"{statistics.mean(r['wall_time_s'] for r in rs):.0f} |"
        )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="RL baselines table")
    p.add_argument("--preset", choices=sorted(PRESETS), default="grid")
    p.add_argument("--tasks", help="only these tasks of the preset (comma-separated)")
    p.add_argument("--algos", help="only these algorithms of the preset (comma-separated)")
    p.add_argument("--seeds", default="0")
    p.add_argument("--timesteps", type=int, default=3000)
    p.add_argument("--hyperparams", help="a Zoo-layout YAML instead of the shipped one")
    p.add_argument("--out", default=str(RESULTS / "rl_table.json"))
    p.add_argument(
        "--markdown", nargs="+", metavar="JSON", help="print the table of these files and exit"
    )
    args = p.parse_args(argv)
    if args.markdown:
        rows = [r for f in args.markdown for r in json.loads(Path(f).read_text())]
        sys.stdout.write(markdown(rows))
        return
    path = Path(args.out)
    rows = json.loads(path.read_text()) if path.is_file() else []
    done = {(r["algo"], r["policy"], r["envs"], r["seed"], r["budget"]) for r in rows}
    tasks = set(args.tasks.split(",")) if args.tasks else None
    algos = set(args.algos.split(",")) if args.algos else None
    for algo, policy, envs in PRESETS[args.preset]:
        if (tasks and envs.split(",")[-1] not in tasks) or (algos and algo not in algos):
            continue
        for seed in (int(s) for s in args.seeds.split(",")):
            if (algo, policy, envs, seed, args.timesteps) in done:
                continue
            row = run_row(algo, policy, envs, seed, args.timesteps, args.hyperparams)
            rows.append(row)
            print(json.dumps(row), flush=True)
            atomic_write_text(path, json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
