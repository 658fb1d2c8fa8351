"""Reference-interpreter throughput: instructions per second at batch 1 and 1024.

A benchmark, not a test: it prints figures. The workload is a loop over a vector that
mixes the common instruction families (indirect loads, ALU, comparisons, jumps, a call
with a stack frame), so the figure is an average over a realistic opcode mix.

    python experiments/bench_interpreter.py [--batches 1,1024] [--length 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from algind_gym.machine.interpreter import run
from algind_gym.machine.program import build_machine

WORKLOAD = """
; out = sum_i f(xs[i]) with f(v) = max(v * v, v) computed in a called subroutine
.data n 0
.data px 0
.zero out 1
    movi r0, 0
    movi r1, 0
loop:
    lt   r2, r1, n
    jz   r2, done
    add  r3, px, r1
    load r4, r3, 0
    push r4
    call f
    pop  r4
    add  r0, r0, r5
    addi r1, r1, 1
    jmp  loop
done:
    mov  out, r0
    halt
f:
    enter 1
    ldf  r6, -3
    mul  r7, r6, r6
    max  r5, r7, r6
    leave
    ret
"""


def measure(batch: int, length: int, repeats: int, dtype=np.float32) -> dict:
    best = float("inf")
    for _ in range(repeats):
        state, program = build_machine(
            WORKLOAD, batch=batch, dtype=dtype, layout_kwargs={"memory_size": 8 + length}
        )
        xs = state.layout.block("memory").start + 8
        rng = np.random.default_rng(0)
        state.cells[:, xs : xs + length] = rng.normal(size=(batch, length))
        state.write(program.data["n"][0], [length])
        state.write(program.data["px"][0], [xs])
        t0 = time.perf_counter()
        run(state, max_steps=100 * length + 100)
        best = min(best, time.perf_counter() - t0)
        assert not state.faults.any(), "workload faulted"
    instructions = float(state.register("icount").sum())
    return {
        "backend": "reference",
        "batch": batch,
        "dtype": np.dtype(dtype).name,
        "instructions": int(instructions),
        "seconds": best,
        "instructions_per_s": instructions / best,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,1024")
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = [measure(int(b), args.length, args.repeats) for b in args.batches.split(",")]
    table = Table(title="reference interpreter throughput (best of repeats)")
    for col in ("batch", "instructions", "seconds", "instructions/s"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["batch"]),
            f"{r['instructions']:,}",
            f"{r['seconds']:.3f}",
            f"{r['instructions_per_s']:,.0f}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
