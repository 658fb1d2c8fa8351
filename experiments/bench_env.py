"""Environment throughput: the vector env against ``SyncVectorEnv``, side by side.

A benchmark, not a test. For each number of environments (default 1, 16, 256, 1024) it
builds gymnasium's ``SyncVectorEnv`` of single environments and the batched vector env
(``vectorization_mode="vector_entry_point"``: all sub-environments' machines in one CPU
call per step), resets both with the same seed and steps both with the same actions:
drawn uniformly from the valid actions *including HALT*, so episodes end (HALT, faults,
success, the call limit) and autoreset throughout, as a new user's random agent would see.
``--warmup`` steps (not timed) come first, then ``--steps`` timed steps. Each of
``--repeats`` rounds (default 3) resets both with seed 0 and replays the same actions, sync
then vector, alternating; the fastest round of each mode is shown (on a machine shared
with other jobs, the least disturbed one, as ``timeit`` advises; every round's figure is
in ``--json``).

It prints env steps/s of both, the ratio (and, as a cross-check that load on the machine
does not inflate, the ratio of the process's CPU time per env step), and a breakdown of
the vector env's step wall time: the CPU call (the backend's ``run``), binding (W^in and
the top-level calls), scoring (of the calls that ran and of the new episodes), observations,
resets (new examples and fresh machine rows), and other (decoding, bookkeeping, infos). The
two targets of the vector env at 256 envs are printed as their own lines: at least 10x
``SyncVectorEnv``, and at least half of the step's wall time in the CPU call (with the wall
time of the rest of the step per env step, ``non_cpu_us_per_env_step`` in ``--json``).

    python experiments/bench_env.py [--task DotProduct] [--envs 1,16,256,1024]
        [--steps 24] [--warmup 12] [--repeats 3] [--backend transformer] [--examples 8]
        [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import gymnasium as gym
import numpy as np
from rich.console import Console
from rich.table import Table

import algind_gym  # noqa: F401  (registers the environments)
from algind_gym.cpu.backend import make_backend

PARTS = ("cpu", "bind", "score", "observe", "reset")


def make(env_id: str, mode: str, num_envs: int, **kw):
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode, **kw)


def run(env, mode: str, num_envs: int, actions: list[np.ndarray], warmup: int) -> dict:
    """One round: reset with seed 0, ``warmup`` untimed steps, then the timed steps."""
    env.reset(seed=0)
    ends = 0
    for a in actions[:warmup]:
        env.step(a)
    if mode != "sync":
        env.unwrapped.timings = dict.fromkeys(env.unwrapped.timings, 0.0)
    c0, t0 = time.process_time(), time.perf_counter()
    for a in actions[warmup:]:
        _, _, term, trunc, _ = env.step(a)
        ends += int(np.sum(term | trunc))
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = num_envs * (len(actions) - warmup)
    row = {"mode": mode, "envs": num_envs, "env_steps": n, "seconds": dt, "episodes_ended": ends}
    row["env_steps_per_s"] = n / dt
    row["process_cpu_seconds"] = cpu
    if mode != "sync":
        timings = env.unwrapped.timings
        row["breakdown"] = {k: timings[k] / dt for k in PARTS}
        row["breakdown"]["other"] = 1.0 - sum(row["breakdown"].values())
        row["non_cpu_us_per_env_step"] = 1e6 * dt * (1.0 - row["breakdown"]["cpu"]) / n
    return row


ONE_THREAD = "vector, 1 thread"


def measure(
    env_id: str, n: int, acts: list[np.ndarray], args, kw, one_thread: dict | None = None
) -> tuple[dict, dict]:
    """``--repeats`` rounds of sync then vector on the same actions; the fastest round of
    each (the least disturbed on a shared machine, as ``timeit`` advises), and the median
    over rounds of the per-round ratio. ``one_thread``: the keyword arguments of a third
    mode, the vector env on one CPU thread, measured in the same rounds (its figures are
    added to the vector row as ``one_thread_*``)."""
    envs = {m: make(env_id, m, n, **kw) for m in ("sync", "vector_entry_point")}
    if one_thread is not None:
        envs[ONE_THREAD] = make(env_id, "vector_entry_point", n, **one_thread)
    rounds: dict[str, list[dict]] = {m: [] for m in envs}
    for _ in range(args.repeats):
        for m, env in envs.items():
            rounds[m].append(run(env, "sync" if m == "sync" else "vector", n, acts, args.warmup))
    for env in envs.values():
        env.close()
    best = {m: max(rs, key=lambda r: r["env_steps_per_s"]) for m, rs in rounds.items()}
    sync, vec = best["sync"], best["vector_entry_point"]
    vec["mode"] = "vector_entry_point"
    vec["speedup_vs_sync"] = vec["env_steps_per_s"] / sync["env_steps_per_s"]
    vec["cpu_time_ratio_vs_sync"] = (sync["process_cpu_seconds"] / sync["env_steps"]) / (
        vec["process_cpu_seconds"] / vec["env_steps"]
    )
    per_round = [
        v["env_steps_per_s"] / s["env_steps_per_s"]
        for s, v in zip(rounds["sync"], rounds["vector_entry_point"], strict=True)
    ]
    vec["median_speedup_vs_sync"] = float(np.median(per_round))
    vec["median_cpu_share"] = float(
        np.median([r["breakdown"]["cpu"] for r in rounds["vector_entry_point"]])
    )
    if one_thread is not None:
        one = best[ONE_THREAD]
        vec["one_thread_env_steps_per_s"] = one["env_steps_per_s"]
        vec["one_thread_speedup_vs_sync"] = one["env_steps_per_s"] / sync["env_steps_per_s"]
        vec["one_thread_cpu_share"] = one["breakdown"]["cpu"]
        vec["one_thread_median_speedup_vs_sync"] = float(
            np.median(
                [
                    v["env_steps_per_s"] / s["env_steps_per_s"]
                    for s, v in zip(rounds["sync"], rounds[ONE_THREAD], strict=True)
                ]
            )
        )
    for m in ("sync", "vector_entry_point"):
        best[m]["rounds_env_steps_per_s"] = [r["env_steps_per_s"] for r in rounds[m]]
    return sync, vec


def bench_rows(
    task: str,
    envs: list[int],
    *,
    steps: int = 24,
    warmup: int = 12,
    repeats: int = 3,
    backend: str = "transformer",
    examples: int = 8,
    threads: int | None = None,
) -> list[dict]:
    """For each number of environments, the sync row and the vector row (with its ratio to
    sync and the breakdown of its step time): what ``main`` prints, for other scripts
    (``experiments/throughput.py``). On the ``"transformer"`` backend with more than one
    CPU thread (``threads``, default: the kernel's policy, :mod:`algind_gym.cpu.threads`),
    the vector row also holds the same env on one thread, measured in the same rounds."""
    env_id = f"AlgInd/{task}-v0"
    kw = {"n_examples": examples, "backend": backend}
    one_thread = None
    t = None
    if backend == "transformer":
        be = make_backend(backend, threads=threads)
        t = be.threads
        kw["backend"] = be
        if t > 1:
            one_thread = dict(kw, backend=make_backend(backend, threads=1))
    mask = gym.make(env_id, **kw).unwrapped.action_masks()
    valid = np.flatnonzero(mask)  # HALT (last) included
    opts = argparse.Namespace(repeats=repeats, warmup=warmup)
    rows = []
    for n in envs:
        rng = np.random.default_rng(n)
        acts = [rng.choice(valid, size=n) for _ in range(warmup + steps)]
        sync, vec = measure(env_id, n, acts, opts, kw, one_thread)
        sync["threads"] = vec["threads"] = t
        rows += [sync, vec]
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="DotProduct")
    p.add_argument("--envs", default="1,16,256,1024")
    p.add_argument("--steps", type=int, default=24, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=12, help="untimed steps first")
    p.add_argument("--backend", default="transformer")
    p.add_argument("--examples", type=int, default=8, help="K, examples per environment")
    p.add_argument("--repeats", type=int, default=3, help="rounds per mode; the best is shown")
    p.add_argument(
        "--threads", type=int, default=None, help="CPU threads (default: the kernel's policy)"
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    env_id = f"AlgInd/{args.task}-v0"
    rows = bench_rows(
        args.task,
        [int(x) for x in args.envs.split(",")],
        steps=args.steps,
        warmup=args.warmup,
        repeats=args.repeats,
        backend=args.backend,
        examples=args.examples,
        threads=args.threads,
    )
    if args.json:
        print(json.dumps(rows))
        return
    con = Console(width=150)
    threads = rows[0]["threads"]
    t = Table(
        title=f"{env_id}: K={args.examples}, backend {args.backend} "
        f"({threads or 1} CPU thread(s)), random valid actions "
        f"(HALT included), {args.warmup} warm-up + {args.steps} timed steps, "
        f"best of {args.repeats} alternating rounds; load average {os.getloadavg()[0]:.1f}"
    )
    cols = (
        "envs",
        "mode",
        "env steps/s",
        "episodes ended",
        "vector/sync",
        "(median)",
        "(CPU time)",
        "1 thread",
        *PARTS,
        "other",
    )
    for c in cols:
        t.add_column(c, justify="right")
    for r in rows:
        b = r.get("breakdown", {})
        t.add_row(
            str(r["envs"]),
            "vector" if r["mode"] != "sync" else "sync",
            f"{r['env_steps_per_s']:,.0f}",
            str(r["episodes_ended"]),
            f"{r['speedup_vs_sync']:.1f}x" if "speedup_vs_sync" in r else "",
            f"{r['median_speedup_vs_sync']:.1f}x" if "median_speedup_vs_sync" in r else "",
            f"{r['cpu_time_ratio_vs_sync']:.1f}x" if "cpu_time_ratio_vs_sync" in r else "",
            f"{r['one_thread_speedup_vs_sync']:.1f}x" if "one_thread_speedup_vs_sync" in r else "",
            *(f"{100 * b[k]:.0f}%" if b else "" for k in (*PARTS, "other")),
        )
    con.print(t)
    at256 = [r for r in rows if r["envs"] == 256 and r["mode"] != "sync"]
    for r in at256:
        con.print(
            f"target 1 (256 envs): vector env = {r['speedup_vs_sync']:.1f}x SyncVectorEnv "
            f"(best round; median of {args.repeats} rounds {r['median_speedup_vs_sync']:.1f}x) "
            f"(target >= 10x)"
        )
        con.print(
            f"target 2 (256 envs): CPU call = {100 * r['breakdown']['cpu']:.1f}% of the vector "
            f"step's wall time (median {100 * r['median_cpu_share']:.1f}%) (target >= 50%); "
            f"the rest of the step: {r['non_cpu_us_per_env_step']:.1f} us per env step"
        )
        if "one_thread_speedup_vs_sync" in r:
            con.print(
                f"threads: {threads} CPU threads; the same vector env on 1 thread = "
                f"{r['one_thread_speedup_vs_sync']:.1f}x SyncVectorEnv (median "
                f"{r['one_thread_median_speedup_vs_sync']:.1f}x), CPU call "
                f"{100 * r['one_thread_cpu_share']:.1f}%: parallelism gives "
                f"{r['env_steps_per_s'] / r['one_thread_env_steps_per_s']:.2f}x"
            )
        else:
            con.print(f"threads: {threads or 1} CPU thread (no comparison with 1 thread)")


if __name__ == "__main__":
    main()
