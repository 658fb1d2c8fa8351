"""Environment throughput: env steps/s and CPU instructions/s, measured side by side.

A benchmark, not a test. Rows:

* a single ``SkillCompositionEnv`` on each backend;
* the batched vector env (``vectorization_mode="vector_entry_point"``, all sub-environments'
  machines in one CPU call per step) against gymnasium's ``SyncVectorEnv`` of single
  environments, at 1, 16 and 256 environments, with the same seeds and actions.

Actions are drawn uniformly from each environment's valid actions (HALT excluded) with a
fixed seed, so both vectorisations execute exactly the same programs.

    python experiments/bench_env.py [--task DotProduct] [--envs 1,16,256] [--steps 6]
        [--backend transformer] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym
import numpy as np
from rich.console import Console
from rich.table import Table

import algind_gym  # noqa: F401  (registers the environments)


def _actions(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.array([rng.choice(np.flatnonzero(m[:-1])) for m in masks])


def bench_vector(env_id: str, mode: str, num_envs: int, steps: int, **kw) -> dict:
    env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode, **kw)
    env.reset(seed=0)
    first = env.envs[0] if mode == "sync" else env.unwrapped.envs[0]
    masks = np.repeat(first.unwrapped.action_masks()[None], num_envs, axis=0)
    rng = np.random.default_rng(0)
    acts = [_actions(masks, rng) for _ in range(steps)]
    env.step(acts[0])  # warm-up (backend construction, first compile of the CPU)
    t0 = time.perf_counter()
    instructions = 0
    for a in acts[1:]:
        _, _, _, _, info = env.step(a)
        instructions += int(np.sum(info["step_instructions"]))
    dt = time.perf_counter() - t0
    n = num_envs * (steps - 1)
    return {
        "kind": f"vector:{mode}",
        "backend": kw["backend"],
        "envs": num_envs,
        "env_steps": n,
        "seconds": dt,
        "env_steps_per_s": n / dt,
        "instructions_per_s": instructions / dt,
    }


def bench_single(env_id: str, steps: int, **kw) -> dict:
    return {**bench_vector(env_id, "sync", 1, steps, **kw), "kind": "single"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="DotProduct")
    p.add_argument("--envs", default="1,16,256")
    p.add_argument("--steps", type=int, default=6, help="steps per measurement (first is warm-up)")
    p.add_argument("--backend", default="transformer")
    p.add_argument("--examples", type=int, default=8, help="K, examples per environment")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    env_id = f"AlgInd/{args.task}-v0"
    kw = {"n_examples": args.examples}
    singles = ("reference", "transformer-torch", "transformer")
    rows = [bench_single(env_id, args.steps, backend=b, **kw) for b in singles]
    for n in (int(x) for x in args.envs.split(",")):
        sync = bench_vector(env_id, "sync", n, args.steps, backend=args.backend, **kw)
        vec = bench_vector(env_id, "vector_entry_point", n, args.steps, backend=args.backend, **kw)
        vec["speedup_vs_sync"] = vec["env_steps_per_s"] / sync["env_steps_per_s"]
        rows += [sync, vec]
    if args.json:
        print(json.dumps(rows))
        return
    t = Table(title=f"{env_id}: K={args.examples} examples per env, {args.steps - 1} timed steps")
    for c in ("kind", "backend", "envs", "env steps/s", "instructions/s", "vector / sync"):
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(
            r["kind"],
            r["backend"],
            str(r["envs"]),
            f"{r['env_steps_per_s']:,.1f}",
            f"{r['instructions_per_s']:,.0f}",
            f"{r['speedup_vs_sync']:.1f}x" if "speedup_vs_sync" in r else "",
        )
    Console(width=140).print(t)


if __name__ == "__main__":
    main()
