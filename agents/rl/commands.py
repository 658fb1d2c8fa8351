"""``algind-gym train`` and ``algind-gym evaluate``: the command-line face of
:func:`agents.rl.train.train` and :func:`agents.rl.evaluate.replay`.

Both print rich text, or one JSON object with ``--json``. ``train`` exits 0 when the final
model's success rate at the training lengths is at least 0.9, 1 otherwise, 130 on Ctrl-C
(after saving a checkpoint that ``--resume`` continues from).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

ALGO_NAMES = ("ppo", "a2c", "dqn", "maskable_ppo")


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``train`` on the CLI's subparsers."""
    help_text = "train an SB3 / sb3-contrib agent on a task, a list of tasks or a level"
    p = sub.add_parser("train", help=help_text, description=help_text)
    p.add_argument("--algo", required=True, choices=ALGO_NAMES)
    p.add_argument("--env", help="env id or task name; several: comma-separated")
    p.add_argument("--level", type=int, help="every task of this curriculum level")
    p.add_argument("--policy", choices=("mlp", "transformer"), help="default: the YAML's, else mlp")
    p.add_argument("--timesteps", type=int, help="default: the YAML's n_timesteps")
    p.add_argument("--n-envs", type=int, help="parallel environments (default: the YAML's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--hyperparams", help="Zoo-layout YAML (default experiments/hyperparams/ALGO.yml)"
    )
    p.add_argument("--out", help="run folder (default runs/ALGO-TASK-sSEED)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.zip")
    p.add_argument(
        "--init", metavar="MODEL", help="start from this saved model's weights (fine-tuning)"
    )
    p.add_argument("--threads", type=int, default=1, help="torch and numba threads (default 1)")
    p.add_argument(
        "--vectorization",
        choices=("vector_entry_point", "sync"),
        default="vector_entry_point",
        help="batched AlgIndVectorEnv (default) or gymnasium's SyncVectorEnv",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=train_command)


def add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``evaluate`` on the CLI's subparsers."""
    help_text = "replay a trained model and print the programs it writes"
    p = sub.add_parser("evaluate", help=help_text, description=help_text)
    p.add_argument("model", help="a model.zip written by algind-gym train")
    p.add_argument("--env", help="env id or task name (default: the model's first)")
    p.add_argument("--length", type=int, help="instance length (default: a training length)")
    p.add_argument("--episodes", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=evaluate_command)


def add_rl_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``train`` and ``evaluate``, and ``--prior learned`` on ``solve`` (when the
    ``solve`` command is registered before)."""
    add_train_parser(sub)
    add_evaluate_parser(sub)
    solve_parser = sub.choices.get("solve")
    if solve_parser is not None:
        add_learned_prior_option(solve_parser)


def add_learned_prior_option(p: argparse.ArgumentParser) -> None:
    """``solve --prior learned --prior-model FILE`` (also ``learned+dataflow`` etc.): the
    transformer policy as MCTS's prior (:class:`~agents.rl.learned_prior.LearnedPrior`)."""
    p.add_argument(
        "--prior-model",
        metavar="FILE",
        help="with --prior learned: a transformer-policy model.zip (algind-gym train "
        "--policy transformer, or behaviour cloning)",
    )
    solve_func = p.get_default("func")

    def solve_with_learned_prior(args: argparse.Namespace) -> int:
        prior = getattr(args, "prior", None) or ""
        names = prior.split("+")
        if "learned" not in names:
            if args.prior_model:
                raise ValueError("--prior-model is read only with --prior learned")
            return solve_func(args)
        if not args.prior_model:
            raise ValueError(
                "--prior learned needs --prior-model FILE (a model.zip trained with "
                "algind-gym train --policy transformer)"
            )
        from agents.priors import ProductPrior, make_prior
        from agents.rl.learned_prior import LearnedPrior

        parts = [LearnedPrior(args.prior_model) if n == "learned" else make_prior(n) for n in names]
        args.prior = None
        chosen = parts[0] if len(parts) == 1 else ProductPrior(*parts)
        return solve_func(args, extra_options={"prior": chosen})

    p.set_defaults(func=solve_with_learned_prior)


def train_command(args: argparse.Namespace) -> int:
    from agents.rl.train import resolve_env_ids, train

    ids = resolve_env_ids(args.env, args.level)
    name = f"level{args.level}" if args.level is not None else ids[0].split("/")[-1][:-3]
    if len(ids) > 1 and args.level is None:
        name = f"{len(ids)}tasks"
    out = args.out or f"runs/{args.algo}-{name}-s{args.seed}"
    if args.n_envs is not None and args.n_envs < 1:
        raise ValueError(f"--n-envs must be >= 1, got {args.n_envs}")
    if args.timesteps is not None and args.timesteps < 1:
        raise ValueError(f"--timesteps must be >= 1, got {args.timesteps}")
    try:
        result = train(
            args.algo,
            args.env,
            level=args.level,
            policy=args.policy,
            timesteps=args.timesteps,
            n_envs=args.n_envs,
            seed=args.seed,
            hyperparams=args.hyperparams,
            out=out,
            resume=args.resume,
            init=args.init,
            threads=args.threads,
            vectorization=args.vectorization,
            progress_bar=not args.json,
        )
    except KeyboardInterrupt:
        print(
            f"algind-gym: interrupted; checkpoint saved in {out}/checkpoint.zip, continue "
            "with the same command and --resume",
            file=sys.stderr,
        )
        return 130
    summary = result.summary
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_summary(summary, Console())
    return 0 if summary["success_rate"] >= 0.9 else 1


def print_summary(summary: dict[str, Any], console: Console) -> None:
    console.print(
        f"{summary['algo']} ({summary['policy']}) on {', '.join(summary['env_ids'])}: "
        f"success rate {summary['success_rate']:.2f} after {summary['timesteps']} timesteps "
        f"({summary['wall_time_s']:.0f} s, {summary['steps_per_s']:.0f} steps/s, "
        f"{100 * summary['env_time_fraction']:.0f}% in the env); first solved episode at "
        f"{summary['timesteps_to_first_success']}"
    )
    table = Table("env", "length", "success rate", title="greedy policy on fresh examples")
    for env_id, res in summary["per_env"].items():
        for length, acc in res["generalisation"].items():
            table.add_row(env_id, length, f"{acc:.2f}")
    console.print(table)
    if summary.get("model"):
        console.print(f"model saved to {summary['model']}")


def evaluate_command(args: argparse.Namespace) -> int:
    from agents.api import resolve_task
    from agents.rl.evaluate import replay

    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    if args.length is not None and args.length < 0:
        raise ValueError(f"--length must be >= 0, got {args.length}")
    env_id = resolve_task(args.env).env_id if args.env else None
    res = replay(
        args.model, env_id=env_id, length=args.length, episodes=args.episodes, seed=args.seed
    )
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    console = Console()
    for i, run in enumerate(res["runs"]):
        status = "[green]solved[/]" if run["success"] else "[red]not solved[/]"
        console.print(f"episode {i} (length {run['length']}): {status}, return {run['return']:.3f}")
        for line in run["program_text"].splitlines() or ["(empty program)"]:
            console.print(f"  {line}", highlight=False)
    console.print(f"success rate {res['success_rate']:.2f} over {res['episodes']} episode(s)")
    return 0
