#!/usr/bin/env bash
# The committed benchmark grid in experiments/results/bench_level1/: every level-1 task,
# three agents, two seeds, 2,000 actions per cell, on the local process pool.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1
algind-gym bench --agents mcts,enumerative,random --levels 1 --seeds 0-1 --budget 2000 \
    --workers 2 --out experiments/results/bench_level1 "$@"
