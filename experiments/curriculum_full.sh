#!/usr/bin/env bash
# The full preset as committed in experiments/results/curriculum_full/: every registered
# task (the helper tasks CarryIn, Digit10 and CountLE included) with the preset's defaults
# (MCTS with the description+dataflow prior, 25,000 actions per attempt, seed 0). Flat
# against hierarchical is measured by the quick preset's script (curriculum_quick.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
algind-gym curriculum --preset full \
    --out experiments/results/curriculum_full --force "$@"
