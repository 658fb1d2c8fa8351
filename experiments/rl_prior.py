"""MCTS with the learned prior against the uniform and description priors, on level-2 tasks.

1. Solve every level-1 task with MCTS and the uniform prior (the "programs solved so far").
2. Behaviour-clone the transformer policy on those programs
   (:func:`agents.rl.learned_prior.behaviour_clone`).
3. Solve each level-2 task with MCTS under each prior; report success and actions
   evaluated. The learned prior never saw a level-2 program.

Writes ``experiments/results/rl_prior.md`` and ``.json``.

    python experiments/rl_prior.py [--budget 1000] [--tasks Sum,Max,...] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from agents import solve
from agents.priors import language_model_available
from agents.rl.learned_prior import LearnedPrior, behaviour_clone
from agents.rl.train import resolve_env_ids
from algind_gym.atomic import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="learned prior vs uniform/description for MCTS")
    p.add_argument("--budget", type=int, default=1000)
    p.add_argument("--tasks", default="Sum,Max,Min,Mean,DotProduct,SumOfSquares")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    train_tasks = [i.split("/")[1][:-3] for i in resolve_env_ids(level=1)]
    demos = []
    for t in train_tasks:
        r = solve(t, agent="mcts", prior="uniform", budget=args.budget, seed=args.seed)
        if r.success:
            demos.append((t, r.program))
    RESULTS.mkdir(parents=True, exist_ok=True)
    clone = behaviour_clone(demos, RESULTS / "rl_prior_model.zip", seed=args.seed)
    priors = {"uniform": "uniform", "learned": LearnedPrior(clone["model"])}
    if language_model_available():
        priors["description"] = "description"
    rows = []
    for task in args.tasks.split(","):
        for name, prior in priors.items():
            r = solve(task, agent="mcts", prior=prior, budget=args.budget, seed=args.seed)
            row = {
                "task": task,
                "prior": name,
                "success": r.success,
                "actions_evaluated": r.actions_evaluated,
                "wall_time_s": r.wall_time_s,
                "program": r.program_text,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {"demonstrations": [t for t, _ in demos], "clone": clone, "rows": rows}
    atomic_write_text(RESULTS / "rl_prior.json", json.dumps(result, indent=1))
    lines = [
        f"Learned prior cloned on {len(demos)} level-1 programs ({', '.join(t for t, _ in demos)}); "
        f"MCTS budget {args.budget} actions, seed {args.seed}.",
        "",
        "| task | " + " | ".join(priors) + " |",
        "| --- |" + " --- |" * len(priors),
    ]
    for task in args.tasks.split(","):
        cells = []
        for name in priors:
            r = next(x for x in rows if x["task"] == task and x["prior"] == name)
            cells.append(
                f"{r['actions_evaluated']}" if r["success"] else f"> {args.budget} (unsolved)"
            )
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    atomic_write_text(RESULTS / "rl_prior.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
