#!/usr/bin/env bash
# The full preset as committed in experiments/results/curriculum_full/: every registered
# task (helper tasks included) with the preset's defaults (MCTS, description prior, 10,000
# actions per attempt, seed 0), then flat against hierarchical at 100x.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
algind-gym curriculum --preset full --flat-ratio 100 \
    --out experiments/results/curriculum_full --force "$@"
