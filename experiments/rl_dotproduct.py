"""DotProduct with MaskablePPO and the transformer policy: a curriculum with an automatic switch.

The transformer policy reached DotProduct once through a two-stage curriculum whose stage
switch was chosen by hand (``experiments/results/rl_notes.md``, section (a)). This script
runs that curriculum with rules fixed before the run, for any number of seeds, and trains
the MLP policy on DotProduct alone for the same number of timesteps against it.

**Length-invariant actor** (``--length-invariant``, session rl9): the same rules, chunks,
evaluations and defaults as the session-rl8 run (``experiments/results/rl_notes.md``,
section (a'')); the ONLY change is the transformer's ``policy_kwargs``
``length_invariant: true`` (:mod:`agents.rl.policies`: the actor does not see the length,
the shapes, the data summaries or the potential, so the greedy program written at 64 is
the one written at the training lengths). This was written before the rl9 runs; a clean
A/B against (a''), which ran without the option (``--no-mlp`` in both).

**Equal failure returns** (``--equal-failure-returns``, session rl10): every failed
training episode returns the same as an immediate HALT, 0. Two settings in the run's
hyperparameters (both stages): ``env_kwargs`` ``fault_penalty: 0`` (an existing env
argument; the shipped YAML keeps 1.0) and ``bootstrap_truncation: false``
(:class:`agents.rl.vec_env.GymnasiumVecEnv`: an episode cut at the call limit is terminal,
its return the rewards it got, instead of SB3 adding ``gamma * V`` of the terminal
observation). With ``call_cost: 0`` (shipped), the dense reward's discounted sum over an
episode is at least minus the fraction right at reset (0 on DotProduct, whose output
starts random), so a wrong program returns at least what HALT returns, and only a
success returns more.
Why (diagnosed on the (a''') seeds before these runs, ``experiments/results/rl_notes.md``,
section (a'''')): in stage 2 of seeds 1 and 2, SB3's bootstrap of the call-limit
truncation added about -0.05 to -0.1 per cut episode (the critic's value of a state it
is never trained on), and faults cost 1.0 where successes were rarer, so an attempt's
return was below HALT's exact 0 and PPO moved probability to HALT; with either setting
alone seed 2's rerun still drifted towards HALT (P(HALT) at the first step 0.30 and 0.21
after 10,752 timesteps, against 0.99 after 13,824 with neither), with both it did not
(0.001 after 15,360).
**The only change from (a''')** (``--length-invariant --no-mlp``, same seeds 0-5, same
rules, chunks, evaluations and code path otherwise) is ``--equal-failure-returns``.
**Success criterion, fixed before the runs**: the Show's DotProduct target is met when at
least 5 of the 6 seeds reach, in the final evaluation, success >= 0.9 at the training
lengths AND accuracy 1.0 at length 64 (8x).

**Call limit terminal only** (``--call-limit-terminal``, exploratory, added after the
(a'''') runs): ``bootstrap_truncation: false`` without ``fault_penalty: 0``, to separate
the two settings (the (a'''') runs found that ``fault_penalty: 0`` makes the policies
stop avoiding faulting calls). No success criterion was registered for it.

**Stage 1**: MaskablePPO, transformer policy, on ``--stage1-tasks`` (default VectorMul,
Sum, DotProduct; a task sampled per episode), in chunks of ``--chunk`` timesteps (default
5120, ten rollouts of 8 x 64). After every chunk the greedy policy is evaluated on every
stage-1 task (``--eval-episodes`` fresh examples per length, default 10).
**Switch rule** (fixed before the session-rl8 runs): go to stage 2 after the first chunk
at which EVERY stage-1 task other than the target (VectorMul and Sum) reaches a greedy
success rate at the training lengths of at least ``--switch-at`` (default 0.9), or after
``--stage1-max`` timesteps (default 30,720, six chunks), whichever comes first. (The
earlier rule, the *mean* over those tasks >= 0.5, switched every seed as soon as Sum was
solved while VectorMul was still at 0.00, and all three seeds then ended at 0.00:
``experiments/results/rl_notes.md``, section (a'). The hand-switched run of section (a)
switched one chunk before VectorMul reached 0.88.)

**Stage 2**: MaskablePPO, transformer policy, on the target (DotProduct) alone, starting
from the stage-1 weights (``train(..., init=...)``; fresh optimiser), in chunks.
**Stop rule**: after the first chunk at which the greedy success rate at the training
lengths is at least ``--stop-at`` (default 0.9), or after ``--stage2-max`` timesteps
(default 25,600). Then a final evaluation on ``--final-episodes`` (default 20) fresh
examples per length, and the program the greedy policy writes at the longest length.

**MLP** (``--mlp``, on by default): MaskablePPO with the MLP policy (the shipped
``default`` entry: compact observation, discrete actions) on the target alone, for the
same total number of timesteps as that seed's curriculum (stage 1 + stage 2), in chunks
(checkpointed, evaluated), then the same final evaluation.

Every run writes to ``--work/seed<S>/...``: checkpoints after every chunk (and a
``state.json`` of the decisions so far, written atomically), so an interrupted run is
resumed by running the same command again (it continues from the last chunk's
checkpoint). A file ``--work/STOP`` makes every run exit after its current chunk (to restart
it later, e.g. on other code, without losing a chunk). The rows go to ``--out`` (JSON)
after every seed. All runs use the shipped
``maskable_ppo.yml`` with the callback's periodic evaluation turned off (the chunk
evaluations replace it); torch and numba at one thread (``train``'s default).

    nice -n 10 python experiments/rl_dotproduct.py --seeds 0,1,2 --work /tmp/rl_dot \\
        --out experiments/results/rl_dotproduct_seeds.json
    python experiments/rl_dotproduct.py --markdown experiments/results/rl_dotproduct_seeds.json
    python experiments/rl_dotproduct.py --progress --work /tmp/rl_dot   # runs in progress
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

from agents.rl.evaluate import (
    evaluate_lengths,
    load_model,
    make_eval_env,
    read_model_meta,
    rollout,
)
from agents.rl.hyperparams import default_hyperparams_file
from agents.rl.train import resolve_env_ids, train
from algind_gym.atomic import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"


def write_hyperparams(
    work: Path,
    eval_episodes: int,
    length_invariant: bool = False,
    equal_failure_returns: bool = False,
    call_limit_terminal: bool = False,
) -> Path:
    """The shipped MaskablePPO YAML with the callback's periodic evaluation off,
    ``eval_episodes`` greedy episodes per length in each chunk's evaluation and, with
    ``length_invariant``, that option in the transformer's ``policy_kwargs``; with
    ``equal_failure_returns``, ``fault_penalty: 0`` and ``bootstrap_truncation: false``
    (see the module docstring); with ``call_limit_terminal``, ``bootstrap_truncation:
    false`` only."""
    data = yaml.safe_load(default_hyperparams_file("maskable_ppo").read_text())
    data["default"]["eval_freq"] = 10**12
    data["default"]["n_eval_episodes"] = int(eval_episodes)
    if length_invariant:
        data["policy-transformer"].setdefault("policy_kwargs", {})["length_invariant"] = True
    if equal_failure_returns:
        data["policy-transformer"].setdefault("env_kwargs", {})["fault_penalty"] = 0.0
        data["default"].setdefault("env_kwargs", {})["fault_penalty"] = 0.0
        data["default"]["bootstrap_truncation"] = False
    if call_limit_terminal:
        data["default"]["bootstrap_truncation"] = False
    path = work / "hyperparams.yml"
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
    return path


def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def run_chunks(
    envs: list[str],
    policy: str,
    out: Path,
    state: dict,
    key: str,
    *,
    seed: int,
    chunk: int,
    max_steps: int,
    hp: Path,
    done,
    save,
    init: str | None = None,
) -> dict:
    """Train in chunks until ``done(summary)`` or ``max_steps``; ``state[key]`` records
    every chunk's summary (resumed from it and ``out/checkpoint.zip``)."""
    stage = state.setdefault(key, {"chunks": [], "wall_time_s": 0.0})
    while not stage.get("finished"):
        k = len(stage["chunks"]) + 1
        last = stage["chunks"][-1]["timesteps"] if stage["chunks"] else 0
        t0 = time.perf_counter()
        s = train(
            "maskable_ppo",
            envs,
            policy=policy,
            timesteps=min(last + chunk, max_steps),
            seed=seed,
            hyperparams=hp,
            out=out,
            resume=(out / "checkpoint.zip").exists(),
            init=init if k == 1 and not (out / "checkpoint.zip").exists() else None,
        ).summary
        stage["wall_time_s"] += time.perf_counter() - t0
        row = {
            "timesteps": s["timesteps"],
            "success_rate": s["success_rate"],
            "per_env": {e: v["success_rate"] for e, v in s["per_env"].items()},
            "first_solved_episode": s["timesteps_to_first_success"],
            "steps_per_s": s["steps_per_s"],
        }
        stage["chunks"].append(row)
        print(json.dumps({"seed": seed, "stage": key, **row}), flush=True)
        if done(s) or s["timesteps"] >= max_steps:
            stage["finished"] = True
            stage["reason"] = "rule" if done(s) else "budget"
        save()
        if stop_requested(out.parent.parent):
            raise SystemExit(f"{out.parent.parent / 'STOP'} exists: stopped after a chunk")
    return stage


def stop_requested(work: Path) -> bool:
    """Whether ``work/STOP`` exists (see the module docstring)."""
    return (work / "STOP").exists()


def final_eval(model_path: Path, seed: int, episodes: int) -> dict:
    """Success at the training lengths and at every length on fresh examples, and the
    greedy program at the longest length."""
    model, meta = load_model(model_path), read_model_meta(model_path)
    ev = evaluate_lengths(model, meta, n_episodes=episodes, seed=seed + 5_000_011)
    env_id = meta["env_ids"][-1]
    longest = max(int(n) for n in ev["per_env"][env_id]["generalisation"])
    ep = rollout(
        model, meta["algo"], make_eval_env(meta, env_id, longest), seed=seed, length=longest
    )
    per = ev["per_env"][env_id]
    return {
        "success_rate": per["success_rate"],
        "generalisation": per["generalisation"],
        "longest": longest,
        "accuracy_longest": per["generalisation"][str(longest)],
        "program_longest": ep["program_text"],
        "episodes_per_length": episodes,
    }


def run_seed(seed: int, args, work: Path, hp: Path) -> dict:
    sdir = work / f"seed{seed}"
    sdir.mkdir(parents=True, exist_ok=True)
    state_path = sdir / "state.json"
    state = _load(state_path)

    def save() -> None:
        atomic_write_text(state_path, json.dumps(state, indent=1))

    stage1_ids = resolve_env_ids(args.stage1_tasks)
    target = resolve_env_ids(args.target)[0]
    helpers = [e for e in stage1_ids if e != target]

    def switch(s: dict) -> bool:
        return all(s["per_env"][e]["success_rate"] >= args.switch_at for e in helpers)

    s1 = run_chunks(
        stage1_ids, "transformer", sdir / "stage1", state, "stage1", seed=seed,
        chunk=args.chunk, max_steps=args.stage1_max, hp=hp, done=switch, save=save,
    )  # fmt: skip
    s2 = run_chunks(
        [target], "transformer", sdir / "stage2", state, "stage2", seed=seed,
        chunk=args.chunk, max_steps=args.stage2_max, hp=hp, save=save,
        done=lambda s: s["success_rate"] >= args.stop_at,
        init=str(sdir / "stage1" / "model.zip"),
    )  # fmt: skip
    total = s1["chunks"][-1]["timesteps"] + s2["chunks"][-1]["timesteps"]
    if "final" not in state:
        state["final"] = final_eval(sdir / "stage2" / "model.zip", seed, args.final_episodes)
        save()
    row = {
        "seed": seed,
        "target": target,
        "length_invariant": bool(args.length_invariant),
        "equal_failure_returns": bool(args.equal_failure_returns),
        "call_limit_terminal": bool(args.call_limit_terminal),
        "stage1_tasks": stage1_ids,
        "switch_at_timesteps": s1["chunks"][-1]["timesteps"],
        "switch_reason": s1["reason"],
        "stage2_timesteps": s2["chunks"][-1]["timesteps"],
        "stage2_reason": s2["reason"],
        "total_timesteps": total,
        "stage1": s1,
        "stage2": s2,
        "transformer": state["final"],
        "transformer_wall_s": s1["wall_time_s"] + s2["wall_time_s"],
    }
    if args.mlp:
        mlp = run_chunks(
            [target], "mlp", sdir / "mlp", state, "mlp", seed=seed, chunk=args.chunk,
            max_steps=total, hp=hp, save=save, done=lambda s: False,
        )  # fmt: skip
        if "mlp_final" not in state:
            state["mlp_final"] = final_eval(sdir / "mlp" / "model.zip", seed, args.final_episodes)
            save()
        row["mlp"] = {
            **state["mlp_final"],
            "timesteps": mlp["chunks"][-1]["timesteps"],
            "first_solved_episode": mlp["chunks"][-1]["first_solved_episode"],
            "wall_s": mlp["wall_time_s"],
        }
    return row


def markdown(rows: list[dict]) -> str:
    """One line per seed and policy."""
    out = [
        "| seed | policy | stage 1 (switch) | stage 2 (stop) | total timesteps "
        "| success (train lengths) | accuracy at longest | wall s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in sorted(rows, key=lambda r: r["seed"]):
        t = r["transformer"]
        opts = [
            o
            for o, key in (
                ("length-invariant", "length_invariant"),
                ("equal failures", "equal_failure_returns"),
                ("call limit terminal", "call_limit_terminal"),
            )
            if r.get(key)
        ]
        name = f"transformer ({', '.join(opts)})" if opts else "transformer"
        out.append(
            f"| {r['seed']} | {name} | {r['switch_at_timesteps']} ({r['switch_reason']}) "
            f"| {r['stage2_timesteps']} ({r['stage2_reason']}) | {r['total_timesteps']} "
            f"| {t['success_rate']:.2f} | {t['accuracy_longest']:.2f} (L={t['longest']}) "
            f"| {r['transformer_wall_s']:.0f} |"
        )
        if "mlp" in r:
            m = r["mlp"]
            out.append(
                f"| {r['seed']} | mlp | - | - | {m['timesteps']} | {m['success_rate']:.2f} "
                f"| {m['accuracy_longest']:.2f} (L={m['longest']}) | {m['wall_s']:.0f} |"
            )
    return "\n".join(out) + "\n"


def progress(work: Path) -> str:
    """Every chunk evaluation recorded so far under ``work`` (finished or not), one line
    per chunk: greedy success rate at the training lengths per task, and the timestep of
    the first solved (sampled) training episode within that chunk."""
    out = [
        "| seed | stage | timesteps | greedy success per task | first solved episode in the chunk |"
    ]
    out.append("| --- | --- | --- | --- | --- |")
    for path in sorted(work.glob("seed*/state.json")):
        state = json.loads(path.read_text())
        for key in ("stage1", "stage2", "mlp"):
            for c in state.get(key, {}).get("chunks", []):
                rates = ", ".join(
                    f"{e.split('/')[1][:-3]} {v:.2f}" for e, v in c["per_env"].items()
                )
                first = c["first_solved_episode"]
                out.append(
                    f"| {path.parent.name[4:]} | {key} | {c['timesteps']} | {rates} "
                    f"| {'-' if first is None else first} |"
                )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="DotProduct curriculum with an automatic switch")
    p.add_argument("--seeds", default="0")
    p.add_argument("--target", default="DotProduct")
    p.add_argument("--stage1-tasks", default="VectorMul,Sum,DotProduct")
    p.add_argument("--chunk", type=int, default=5120)
    p.add_argument("--switch-at", type=float, default=0.9)
    p.add_argument("--stage1-max", type=int, default=30_720)
    p.add_argument("--stop-at", type=float, default=0.9)
    p.add_argument("--stage2-max", type=int, default=25_600)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--final-episodes", type=int, default=20)
    p.add_argument("--mlp", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument(
        "--length-invariant",
        action="store_true",
        help="the transformer's policy_kwargs length_invariant: true (agents/rl/policies.py)",
    )
    p.add_argument(
        "--equal-failure-returns",
        action="store_true",
        help="fault_penalty 0 and bootstrap_truncation false: every failed episode returns 0",
    )
    p.add_argument(
        "--call-limit-terminal",
        action="store_true",
        help="bootstrap_truncation false only (fault_penalty as shipped)",
    )
    p.add_argument("--work", default="rl_dotproduct_work")
    p.add_argument("--out", default=str(RESULTS / "rl_dotproduct_seeds.json"))
    p.add_argument("--markdown", nargs="+", metavar="JSON")
    p.add_argument("--progress", action="store_true", help="print --work's chunk evaluations")
    args = p.parse_args(argv)
    if args.progress:
        sys.stdout.write(progress(Path(args.work)))
        return
    if args.markdown:
        rows = [r for f in args.markdown for r in json.loads(Path(f).read_text())]
        sys.stdout.write(markdown(rows))
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    hp = write_hyperparams(
        work,
        args.eval_episodes,
        args.length_invariant,
        args.equal_failure_returns,
        args.call_limit_terminal,
    )
    out = Path(args.out)
    for seed in (int(s) for s in args.seeds.split(",")):
        row = run_seed(seed, args, work, hp)
        rows = json.loads(out.read_text()) if out.is_file() else []
        rows = [r for r in rows if r["seed"] != seed] + [row]
        atomic_write_text(out, json.dumps(rows, indent=1))
        print(markdown([row]), flush=True)


if __name__ == "__main__":
    main()
