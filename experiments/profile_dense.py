"""Where one dense instruction's time goes: the planned numpy pass of the v2 CPU, block by
block, at batch 1 on the bench layout padded to about 1024 cells.

Usage:
    python experiments/profile_dense.py [--dtype float32] [--cells 1024] [--passes 300]

Prints, for every block of the plan (read heads, write heads, the CPU token's MLPs, the
cell tokens' MLP), the CPU time per pass (the rest: the embedding, the residual adds of
the CPU token, the unembedding and the loop itself) (``time.process_time``, less moved by other load
than wall time) and its multiply-adds (the matmul sizes), then the whole pass and the
torch dense pass of the same circuit (the autograd path) for comparison. Absolute figures
depend on the machine's load; the shares are the comparable part.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from algind_gym.cpu.bench import bench_layout, bench_machines
from algind_gym.cpu_v2.circuit import compile_circuit
from algind_gym.cpu_v2.dense import DensePass
from algind_gym.cpu_v2.dense_mlp import MLPSide
from algind_gym.cpu_v2.dense_numpy import _ReadHeads, _WriteHeads


def macs(block, n: int, tokens: int) -> int:
    """Multiply-adds of one call of a planned block at batch 1 on ``n`` cells (an MLP side
    on ``tokens`` tokens)."""
    if isinstance(block, _ReadHeads):
        c = block.hi - block.lo
        return block.W_Q.size + block.n * block.d_k * n + block.n * n * c + block.W_VO.size
    if isinstance(block, _WriteHeads):
        c = block.hi - block.lo
        return block.W_K.size + block.W_VO.size + block.n * block.d_k * n + c * block.n * n
    banks = sum(b.W_2.size for b in block.banks)
    return (block.W_in.size + sum(w.size for w in block.W_out)) * tokens + banks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--cells", type=int, default=1024)
    parser.add_argument("--passes", type=int, default=300)
    args = parser.parse_args()
    dt = np.dtype(args.dtype)
    base = bench_layout()
    layout = bench_layout(max(64, args.cells - (base.n_cells - base.memory_size)))
    state = bench_machines(1, "lockstep", dt, layout=layout)
    circuit = compile_circuit(layout, dt)
    dense = DensePass(circuit, dt, "numpy")
    plan = dense.planned()
    n = layout.n_cells
    spent: dict[int, float] = {}
    names: dict[int, str] = {}
    for i, entry in enumerate(plan.plan):
        kinds = ("read heads", "write heads", "CPU MLPs", "cell MLP")
        for block, kind in zip(entry, kinds, strict=True):
            if block is not None:
                names[id(block)] = f"layer {i:2d} {kind}"
    originals = {}
    for cls in (_ReadHeads, _WriteHeads, MLPSide):
        originals[cls] = cls.__call__

        def timed(self, *a, _f=cls.__call__):
            t = time.process_time()
            out = _f(self, *a)
            spent[id(self)] = spent.get(id(self), 0.0) + time.process_time() - t
            return out

        cls.__call__ = timed
    x = state.cells.copy()
    for _ in range(20):
        x = plan(x)
    spent.clear()
    x = state.cells.copy()
    t0 = time.process_time()
    for _ in range(args.passes):
        x = plan(x)
    total = (time.process_time() - t0) / args.passes
    for cls, f in originals.items():
        cls.__call__ = f
    blocks = {id(b): b for entry in plan.plan for b in entry if b is not None}
    print(f"{n} cells, batch 1, {dt.name}: planned numpy pass {total * 1e6:.0f} us CPU")
    print(f"  {'block':24s} {'us':>7s} {'share':>6s} {'multiply-adds':>14s}")
    for key, name in names.items():
        us = spent.get(key, 0.0) / args.passes * 1e6
        tokens = n if name.endswith("cell MLP") else 1
        flops = macs(blocks[key], n, tokens) if not isinstance(blocks[key], list) else 0
        print(f"  {name:24s} {us:7.1f} {us / (total * 1e6):6.1%} {flops:14,d}")
    rest = total - sum(spent.values()) / args.passes
    print(f"  {'the rest (see docstring)':24s} {rest * 1e6:7.1f} {rest / total:6.1%}")
    tdense = DensePass(circuit, torch.float32 if dt == np.float32 else torch.float64)
    cells = torch.from_numpy(state.cells.copy())
    with torch.no_grad():
        for _ in range(5):
            tdense(cells)
        t0 = time.process_time()
        for _ in range(max(20, args.passes // 10)):
            tdense(cells)
        ttorch = (time.process_time() - t0) / max(20, args.passes // 10)
    print(f"torch dense pass (autograd path) {ttorch * 1e6:.0f} us CPU: {ttorch / total:.1f}x")


if __name__ == "__main__":
    main()
