"""The opcode mix of the v1 numba kernel's calls on an env workload, and the kernel paths
each opcode takes.

Usage:
    python experiments/profile_kernel_opcodes.py [--task DotProduct] [--envs 256]
        [--calls 8] [--dtype float64]

Records the vector env's kernel calls as ``experiments/bench_kernel_v1.py`` does
(``AlgInd/<task>-v0`` at ``--envs`` envs, K = 8 machines each, random valid actions), then
replays each recorded call one forward pass at a time (``n_steps = 1`` on the serial driver,
which gives the same cells as one call with the whole budget: a pass reads only the cells),
and before each pass counts the opcode at PC of every running machine (not halted, not
faulted). Per opcode it prints the share of passes and the kernel paths that opcode's
control row takes (:mod:`algind_gym.cpu.kernel`): PLAIN (jump "never", SP and FP kept:
no last-select candidates built), ALU_ALONE (only the value's ALU unit computed), the
write's conditions live, the count and stack
conditions live, and whether it writes memory. Counts, not times: the cost per instruction
is ``bench_kernel_v1.py``'s.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import sys
from pathlib import Path

import numpy as np

from algind_gym.cpu import kernel
from algind_gym.machine.isa import BY_CODE

HERE = Path(__file__).resolve().parent
PATHS = {
    "plain": "plain",
    "alu_alone": "alu-alone",
    "write_conds": "write-conds",
    "stack_conds": "stack-conds",
    "writes": "writes",
}


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_kernel_v1", HERE / "bench_kernel_v1.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def row_paths(control: np.ndarray, n_selects: int, op: int) -> dict[str, bool]:
    """The kernel paths of control row ``op`` (see the kernel's module docs)."""
    live = 0
    halt_col, write_col = control.shape[1] - 2, control.shape[1] - 1
    for j in range(halt_col - n_selects):
        if control[op, n_selects + j] != 0:
            live |= 1 << j
    plain = (control[op, 7], control[op, 8], control[op, 9]) == (
        kernel.C_NEVER,
        kernel.C_SP,
        kernel.C_FP,
    )
    alu_alone = control[op, 6] < kernel.C_ALU and min(control[op, 7:10]) >= kernel.C_ALU
    return {
        "plain": bool(plain),
        "alu_alone": bool(alu_alone),
        "write_conds": bool(live & kernel.WRITE_CONDITIONS),
        "stack_conds": bool(live & kernel.STACK_CONDITIONS),
        "writes": bool(control[op, write_col] != 0),
    }


def count_opcodes(calls: list[tuple]) -> tuple[collections.Counter, int, int]:
    """Opcode counts over every running machine's passes of the recorded calls; also the
    number of machine-calls and of running machine-passes."""
    counts: collections.Counter = collections.Counter()
    machine_calls = 0
    for cells0, n_steps, tables, written0, split in calls:
        reg_read = tables[5]
        a_pc, a_halt, a_fault = int(reg_read[0]), int(reg_read[4]), int(reg_read[5])
        c, w = cells0.copy(), written0.copy()
        rows = np.arange(c.shape[0])
        machine_calls += c.shape[0]
        for _ in range(n_steps):
            running = (c[:, a_halt] == 0) & (c[:, a_fault] == 0)
            if not running.any():
                break
            pc = np.clip(c[running, a_pc], 0, c.shape[1] - 1).astype(np.int64)
            ops = c[rows[running], pc]
            counts.update(int(o) if o == int(o) else -1 for o in ops.tolist())
            if kernel.fused_run(c, 1, *tables, w, split):
                raise RuntimeError("kernel error")
    return counts, machine_calls, sum(counts.values())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="DotProduct")
    p.add_argument("--envs", type=int, default=256)
    p.add_argument("--calls", type=int, default=8)
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    args = p.parse_args()
    calls = _bench_module().capture_env(args.task, args.envs, args.calls, args.dtype)
    counts, machine_calls, passes = count_opcodes(calls)
    control, n_selects = calls[0][2][0], int(calls[0][2][1])
    print(
        f"{args.task}, {args.envs} envs x K=8, {args.dtype}: {len(calls)} calls, "
        f"{passes} running machine-passes ({passes / machine_calls:.1f} per machine-call)"
    )
    print(f"{'opcode':<10}{'code':>5}{'share':>8}  " + "  ".join(PATHS.values()))
    path_share: collections.Counter = collections.Counter()
    for code, n in counts.most_common():
        row = code if 0 <= code < control.shape[0] else 0
        paths = row_paths(control, n_selects, row)
        name = BY_CODE[code].name if code in BY_CODE else "invalid"
        for key, on in paths.items():
            path_share[key] += n * on
        flags = "  ".join(
            f"{'yes' if on else 'no':<{len(PATHS[key])}}" for key, on in paths.items()
        )
        print(f"{name:<10}{code:>5}{100 * n / passes:>7.1f}%  {flags}".rstrip())
    print(
        "share of passes: "
        + ", ".join(f"{k} {100 * v / passes:.1f}%" for k, v in path_share.items())
    )


if __name__ == "__main__":
    main()
