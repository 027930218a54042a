#!/usr/bin/env bash
# The built-in default model (python/tmn/models/default/): System B trained by
# tmn-train on 20 minutes of synthetic 2 kHz motion with 4 passes per epoch
# (seed 0), the shipped B config otherwise unchanged: the same command as
# training/recipes/evaluation.sh synth's B seed 0, whose test-split figures are
# in bench/README.md (the shipped artifact is that fit). About 6 minutes on a
# 2-core machine, one torch thread (threads: 1 in configs/common.yaml).
#
#   bash training/recipes/default.sh [RUN_DIR]
#
# needs: pip install ./training ./bench (and the tmn package itself)
set -euo pipefail
cd "$(dirname "$0")/../.."
run="${1:-build/train/default-B}"  # build/ is git-ignored

tmn-train fit --config configs/B_temporal_solver.yaml --data synth:20 --seeds 0 --out "$run" \
  --set data.passes=4
rm -rf python/tmn/models/default
tmn-train export "$run/final.pt" --out python/tmn/models/default
# the Hub model card (docs/hub.md), from the reference figures (it is their B0)
tmn-hub folder python/tmn/models/default --out python/tmn/models/default \
  --accuracy bench/reference/accuracy-synth/accuracy.json \
  --recipe training/recipes/default.sh --refer-to-recipe \
  --latency bench/reference/latency/latency.json --no-plots
du -b python/tmn/models/default
