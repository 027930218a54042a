#!/usr/bin/env bash
# The models behind bench/README.md's accuracy figures: System A and System B,
# three seeds each (one artifact per seed), trained with the shipped configs on
# one data set, then compared by `tmn-bench accuracy` on its held-out test split.
#
#   bash training/recipes/evaluation.sh synth|lasa|eyelink [RUN_ROOT]
#
# RUN_ROOT defaults to build/eval (git-ignored). synth is 20 minutes of synthetic
# data with 4 passes per epoch (the gradient steps of 10 minutes with the
# config's 8, and a test split of 3 minutes instead of 1.5). Each fit runs on one
# torch thread (configs/common.yaml), so two data sets can train side by side on
# a 2-core machine.
# A finished fit (its model/config.json exists) is skipped; an interrupted one
# resumes from its checkpoint.
# needs: pip install ./training (and the tmn package itself)
set -euo pipefail
cd "$(dirname "$0")/../.."
name="${1:?usage: evaluation.sh synth|lasa|eyelink [RUN_ROOT]}"
root="${2:-build/eval}/$name"
extra=()
case "$name" in
  synth) data="synth:20"; extra=(--set data.passes=4) ;;
  lasa) data="lasa" ;;
  eyelink) data="eyelink" ;;
  *) echo "evaluation.sh: unknown data set '$name' (synth, lasa or eyelink)" >&2; exit 2 ;;
esac

for system in A B; do
  config=configs/A_traditional.yaml
  [ "$system" = B ] && config=configs/B_temporal_solver.yaml
  for seed in 0 1 2; do
    run="$root/$system-seed$seed"
    if [ -f "$run/model/config.json" ]; then continue; fi  # already trained
    resume=(); [ -d "$run" ] && resume=(--resume)
    tmn-train fit --config "$config" --data "$data" --seeds "$seed" --out "$run" \
      "${extra[@]}" "${resume[@]}"
  done
done

# every held-out figure of bench/README.md's accuracy section for this data set
tmn-bench accuracy --data "$data" \
  --models "$root"/A-seed0/model "$root"/A-seed1/model "$root"/A-seed2/model \
           "$root"/B-seed0/model "$root"/B-seed1/model "$root"/B-seed2/model \
  --json "$root/accuracy.json" --report "$root/report"
