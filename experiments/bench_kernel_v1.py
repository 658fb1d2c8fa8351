"""The v1 numba kernel's cost per instruction on the calls the env and the search make,
this tree's kernel against a baseline kernel from git, side by side in one run.

Usage:
    python experiments/bench_kernel_v1.py [--baseline ddab50c] [--rounds 7]
        [--tasks DotProduct,Mean] [--envs 256] [--calls 8] [--actions 1024]
        [--threads 1,default] [--dtype float32] [--json]

Real workloads, not synthetic programs: the script records the kernel calls
(:func:`algind_gym.cpu.threads.run_machines`: the cells, step budget and write ranges going
in) that these make, then replays every recorded call through both kernels:

* ``env N``: ``AlgInd/<task>-v0`` as the vector env at ``N`` envs (K = 8 machines each, one
  CPU call per env step for all of them), stepped with random valid actions, HALT included,
  as ``experiments/bench_env.py`` does (``--calls`` calls after a few warm-up steps);
* ``env 1``: the same with one env (8 machines per call, one env step);
* ``search x64``: :class:`agents.batched.ActionEvaluator` evaluating the first
  ``--actions`` valid actions from the root 64 at a time (64 children x 8 machines per
  call), as ``experiments/bench_search.py``'s batched mode does.

Each call is replayed on a fresh copy of its input (the copy is not timed), on the serial
driver (1 thread) and through :func:`~algind_gym.cpu.threads.run_machines` with the default
thread count (the kernel's thread policy; the same policy for both kernels). The rounds
alternate baseline and new; per shape and kernel the figure is each call's fastest round,
summed over the calls (the least disturbed on a shared machine, as ``timeit`` advises),
with the median of the per-round ratios of the summed times beside it; on one thread also
the CPU time of the calling thread (``time.thread_time``: waiting for a core does not
count). Instructions are the machines' ICOUNT increments (faulting passes are not counted,
so the figure is ns per executed instruction). Every replay's output cells and write ranges
are compared bit for bit between the two kernels; a difference is reported and fails the
run.

The baseline is ``algind_gym/cpu/kernel.py`` at git revision ``--baseline`` (default: the
kernel before the per-instruction work of this script's commit), written to a temporary
directory and imported from there; it takes the same table arguments.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import algind_gym  # noqa: F401  (registers the environments)
from algind_gym.cpu import kernel as new_kernel
from algind_gym.cpu import threads as threads_module
from algind_gym.cpu.backend import make_backend

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "ddab50c"
"""The kernel before the per-instruction changes (main at the start of that work)."""


def load_baseline(rev: str):
    """``algind_gym/cpu/kernel.py`` at git revision ``rev`` as a module (numba's on-disk
    cache off for it, so it is compiled in each run)."""
    text = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:algind_gym/cpu/kernel.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.replace("cache=True", "cache=False")  # compiled fresh: no stale cache
    folder = Path(tempfile.gettempdir()) / "algind_kernel_baseline"
    folder.mkdir(exist_ok=True)
    path = folder / f"kernel_v1_{rev}.py"
    if not path.exists() or path.read_text() != text:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(f"kernel_v1_{rev}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # numba's cache finds a function's module by name
    spec.loader.exec_module(module)
    return module


class Recorder:
    """Records every kernel call made through :func:`threads.run_machines` while active."""

    def __init__(self, keep: int = 10**9, skip: int = 0) -> None:
        self.calls: list[tuple] = []
        self.keep, self.skip, self.seen = keep, skip, 0
        self._orig = threads_module.run_machines

    def __enter__(self) -> Recorder:
        def spy(cells, n_steps, tables, written, split, threads=1, min_rows=256):
            self.seen += 1
            if self.seen > self.skip and len(self.calls) < self.keep and n_steps > 0:
                self.calls.append((cells.copy(), n_steps, tables, written.copy(), split))
            return self._orig(cells, n_steps, tables, written, split, threads, min_rows)

        threads_module.run_machines = spy
        return self

    def __exit__(self, *exc) -> None:
        threads_module.run_machines = self._orig


def capture_env(task: str, n_envs: int, calls: int, dtype: str) -> list[tuple]:
    env_id = f"AlgInd/{task}-v0"
    kw = {"n_examples": 8, "backend": make_backend("transformer"), "dtype": dtype}
    try:
        mask = gym.make(env_id, **kw).unwrapped.action_masks()
    except TypeError:  # an env without a dtype option
        kw.pop("dtype")
        mask = gym.make(env_id, **kw).unwrapped.action_masks()
    valid = np.flatnonzero(mask)
    env = gym.make_vec(env_id, num_envs=n_envs, vectorization_mode="vector_entry_point", **kw)
    rng = np.random.default_rng(n_envs)
    env.reset(seed=0)
    warm = 4
    with Recorder(keep=calls, skip=warm) as rec:
        while len(rec.calls) < calls:
            env.step(rng.choice(valid, size=n_envs))
    env.close()
    return rec.calls


def capture_search(task: str, n_actions: int, batch: int = 64) -> list[tuple]:
    from agents.api import SolveContext, resolve_task
    from agents.batched import ActionEvaluator
    from algind_gym.skills import builtin_library

    spec = resolve_task(task)
    length = max(spec.train_lengths)
    ctx = SolveContext(spec, builtin_library(), 10**9, 0, n_examples=8, backend=make_backend())
    ev = ActionEvaluator(ctx, batched=True, lengths=[length])
    ev.reserve(batch)
    actions = [int(a) for a in ev.valid_actions]
    with Recorder() as rec:  # the first actions from the root, as bench_search's workload
        for lo in range(0, min(len(actions), n_actions), batch):
            ev.evaluate(ev.root_memory, actions[lo : lo + batch])
    return rec.calls


def replay(module, call: tuple, threads: int) -> tuple[float, float, np.ndarray, np.ndarray]:
    """One recorded call on ``module``'s kernel: wall seconds, CPU seconds of this thread,
    output cells, write ranges."""
    cells0, n_steps, tables, written0, split = call
    c, w = cells0.copy(), written0.copy()
    saved = threads_module.kernel
    threads_module.kernel = module  # the same policy, this module's drivers
    try:
        c0, t0 = time.thread_time(), time.perf_counter()
        if threads == 1:
            err = module.fused_run(c, n_steps, *tables, w, split)
        else:
            err = threads_module.run_machines(c, n_steps, tables, w, split, threads)
        dt, cpu = time.perf_counter() - t0, time.thread_time() - c0
    finally:
        threads_module.kernel = saved
    if err:
        raise RuntimeError(f"kernel error {err}")
    return dt, cpu, c, w


def instructions(call: tuple, out: np.ndarray) -> int:
    icount = int(call[2][5][6])  # reg_read[6]: the ICOUNT register
    return int(np.sum(out[:, icount] - call[0][:, icount]))


def bench_shape(name: str, calls: list[tuple], old, rounds: int, threads: int) -> dict:
    n_instr = 0
    for call in calls:  # compile both, count instructions, check bits once
        _, _, a, wa = replay(old, call, threads)
        _, _, b, wb = replay(new_kernel, call, threads)
        n_instr += instructions(call, b)
        same = np.array_equal(a.view(np.uint8), b.view(np.uint8)) and np.array_equal(wa, wb)
        if not same:
            raise AssertionError(f"{name}: the kernels differ on a recorded call")
    # wall[label][round][call], cpu likewise
    wall = {"baseline": [], "new": []}
    cpu = {"baseline": [], "new": []}
    for _ in range(rounds):
        for label, module in (("baseline", old), ("new", new_kernel)):
            times = [replay(module, call, threads)[:2] for call in calls]
            wall[label].append([t[0] for t in times])
            cpu[label].append([t[1] for t in times])

    def best(per: list[list[float]]) -> float:  # each call's fastest round, summed
        return sum(min(col) for col in zip(*per, strict=True))

    ratios = [sum(o) / sum(n) for o, n in zip(wall["baseline"], wall["new"], strict=True)]
    rows = calls[0][0].shape[0]
    row = {
        "shape": name,
        "threads": threads,
        "calls": len(calls),
        "machines_per_call": rows,
        "instructions": n_instr,
        "instr_per_machine_call": n_instr / (rows * len(calls)),
        "ns_per_instr_baseline": 1e9 * best(wall["baseline"]) / n_instr,
        "ns_per_instr_new": 1e9 * best(wall["new"]) / n_instr,
        "speedup_best": best(wall["baseline"]) / best(wall["new"]),
        "speedup_median": statistics.median(ratios),
        "identical": True,
    }
    if threads == 1:  # CPU time of the one thread: waiting for a core does not count
        row["cpu_ns_per_instr_baseline"] = 1e9 * best(cpu["baseline"]) / n_instr
        row["cpu_ns_per_instr_new"] = 1e9 * best(cpu["new"]) / n_instr
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", default=BASELINE, help="git revision of the old kernel")
    p.add_argument("--tasks", default="DotProduct,Mean")
    p.add_argument("--envs", type=int, default=256)
    p.add_argument("--calls", type=int, default=8, help="recorded calls per shape")
    p.add_argument("--actions", type=int, default=1024, help="search: actions evaluated")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", default="1,default", help="1, default, or both (1,default)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    old = load_baseline(args.baseline)
    default_threads = threads_module.resolve_threads()
    shapes: list[tuple[str, list]] = []
    for task in args.tasks.split(","):
        shapes.append(
            (f"{task} env {args.envs}", capture_env(task, args.envs, args.calls, args.dtype))
        )
        shapes.append((f"{task} env 1", capture_env(task, 1, 16 * args.calls, args.dtype)))
        if args.dtype == "float32":  # the search runs in the env's default dtype
            shapes.append((f"{task} search x64", capture_search(task, args.actions)))
    rows = []
    for name, calls in shapes:
        wanted = {1 if t == "1" else default_threads for t in args.threads.split(",")}
        for t in sorted(wanted):
            rows.append(bench_shape(name, calls, old, args.rounds, t))
    if args.json:
        print(json.dumps(rows))
        return
    print(
        f"v1 kernel: this tree against {args.baseline}, {args.dtype}, best of {args.rounds} "
        f"alternating rounds; load average {os.getloadavg()[0]:.2f} (shared machine)"
    )
    head = (
        f"{'shape':<24}{'thr':>4}{'calls':>6}{'rows':>6}{'instr/row':>10}"
        f"{'ns/instr old':>14}{'new':>8}{'speedup':>9}{'(median)':>9}"
        f"{'CPU ns old':>12}{'new':>8}{'speedup':>9}"
    )
    print(head)
    for r in rows:
        print(
            f"{r['shape']:<24}{r['threads']:>4}{r['calls']:>6}{r['machines_per_call']:>6}"
            f"{r['instr_per_machine_call']:>10.1f}{r['ns_per_instr_baseline']:>14.1f}"
            f"{r['ns_per_instr_new']:>8.1f}{r['speedup_best']:>8.2f}x"
            f"{r['speedup_median']:>8.2f}x"
            + (
                f"{r['cpu_ns_per_instr_baseline']:>12.1f}{r['cpu_ns_per_instr_new']:>8.1f}"
                f"{r['cpu_ns_per_instr_baseline'] / r['cpu_ns_per_instr_new']:>8.2f}x"
                if "cpu_ns_per_instr_new" in r
                else ""
            )
        )
    print("outputs and write ranges bit-identical between the kernels on every call: yes")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
