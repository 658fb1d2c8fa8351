#!/usr/bin/env bash
# The README's main job, as committed in experiments/results/curriculum_quick/:
# the quick curriculum (its preset defaults: MCTS with the description+dataflow prior, 25,000
# actions per attempt, seed 0) and flat against hierarchical at 100x the hierarchy's
# actions for every solved task of level 3 or more.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
algind-gym curriculum --preset quick --flat-ratio 100 \
    --out experiments/results/curriculum_quick --force "$@"
