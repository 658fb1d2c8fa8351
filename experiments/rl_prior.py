"""MCTS with the learned prior against the uniform and description priors, on level-2 tasks.

For each seed:

1. Solve every level-1 task with MCTS and the uniform prior (the "programs solved so far").
2. Behaviour-clone the transformer policy on those programs
   (:func:`agents.rl.learned_prior.behaviour_clone`).
3. Solve each level-2 task with MCTS under each prior; report success and actions
   evaluated. The learned prior never saw a level-2 program.

The seed seeds MCTS (steps 1 and 3), the verification inputs and the cloning. Rows go to
``experiments/results/rl_prior.json`` after every search (a rerun skips the seeds
already in it, finished or not), the table to ``rl_prior.md``: per task and prior, the seeds solved
and the actions evaluated by each seed (``>B``: unsolved within the budget ``B``). The
cloned models go to ``--model-dir`` (not committed).

    python experiments/rl_prior.py [--budget 1000] [--tasks Sum,Max,...] [--seeds 0,1,2]
    python experiments/rl_prior.py --markdown    # the table of the JSON file only
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from agents import solve
from agents.priors import language_model_available
from agents.rl.learned_prior import LearnedPrior, behaviour_clone
from agents.rl.train import resolve_env_ids
from algind_gym.atomic import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"
TASKS = "Sum,Max,Min,Mean,DotProduct,SumOfSquares"


def run_seed(seed: int, budget: int, tasks: list[str], model_dir: Path, data: dict, save) -> None:
    """Steps 1-3 for one seed, appending to ``data`` and calling ``save()`` after each row."""
    train_tasks = [i.split("/")[1][:-3] for i in resolve_env_ids(level=1)]
    demos = []
    for t in train_tasks:
        r = solve(t, agent="mcts", prior="uniform", budget=budget, seed=seed)
        if r.success:
            demos.append((t, r.program))
    model_dir.mkdir(parents=True, exist_ok=True)
    clone = behaviour_clone(demos, model_dir / f"rl_prior_model_s{seed}.zip", seed=seed)
    data["clones"][str(seed)] = {
        "demonstrations": [t for t, _ in demos],
        **{k: v for k, v in clone.items() if k != "model"},
    }
    priors = {"uniform": "uniform", "learned": LearnedPrior(clone["model"])}
    if language_model_available():
        priors["description"] = "description"
    for task in tasks:
        for name, prior in priors.items():
            r = solve(task, agent="mcts", prior=prior, budget=budget, seed=seed)
            row = {
                "seed": seed,
                "budget": budget,
                "task": task,
                "prior": name,
                "success": r.success,
                "actions_evaluated": r.actions_evaluated,
                "wall_time_s": r.wall_time_s,
                "program": r.program_text,
            }
            data["rows"].append(row)
            print(json.dumps(row), flush=True)
            save()


def markdown(data: dict) -> str:
    """Per task and prior: seeds solved, then each seed's actions evaluated."""
    rows = data["rows"]
    seeds = sorted({r["seed"] for r in rows})
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    priors = list(dict.fromkeys(r["prior"] for r in rows))
    lines = []
    for s in seeds:
        c = data["clones"].get(str(s), {})
        demos = c.get("demonstrations", [])
        lines.append(
            f"Seed {s}: learned prior cloned on {len(demos)} level-1 programs "
            f"({', '.join(demos)}); {c.get('pairs')} pairs, training accuracy "
            f"{c.get('accuracy', float('nan')):.2f}."
        )
    lines += [
        "",
        f"Actions evaluated until a verified program, seeds {' / '.join(map(str, seeds))} "
        "(`>B`: not solved within the budget B); `solved` counts the seeds.",
        "",
        "| task | " + " | ".join(priors) + " |",
        "| --- |" + " --- |" * len(priors),
    ]
    for task in tasks:
        cells = []
        for name in priors:
            got = {r["seed"]: r for r in rows if r["task"] == task and r["prior"] == name}
            each = [
                "-"
                if s not in got
                else str(got[s]["actions_evaluated"])
                if got[s]["success"]
                else f">{got[s]['budget']}"
                for s in seeds
            ]
            solved = sum(r["success"] for r in got.values())
            cells.append(f"solved {solved}/{len(got)}: {' / '.join(each)}")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="learned prior vs uniform/description for MCTS")
    p.add_argument("--budget", type=int, default=1000)
    p.add_argument("--tasks", default=TASKS)
    p.add_argument("--seeds", default="0")
    p.add_argument("--out", default=str(RESULTS / "rl_prior.json"))
    p.add_argument("--model-dir", help="where the cloned models go (default: a temporary dir)")
    p.add_argument("--markdown", action="store_true", help="write the table of --out and exit")
    args = p.parse_args(argv)
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.is_file() else {}
    if "clones" not in data:  # a file of the one-seed layout is started afresh
        data = {"clones": {}, "rows": []}

    def save() -> None:
        atomic_write_text(out, json.dumps(data, indent=1))
        atomic_write_text(out.with_suffix(".md"), markdown(data))

    if not args.markdown:
        tasks = args.tasks.split(",")
        with tempfile.TemporaryDirectory() as tmp:
            for seed in (int(s) for s in args.seeds.split(",")):
                if str(seed) in data["clones"]:
                    continue
                run_seed(seed, args.budget, tasks, Path(args.model_dir or tmp), data, save)
    if data["rows"]:
        save()
        print(markdown(data))


if __name__ == "__main__":
    main()
