#!/usr/bin/env bash
# The active-selection experiment (issue 10, docs/active-selection.md): System B
# trained with uniform sampling and with active selection, seeds 0, 1 and 2, the
# shipped B config otherwise unchanged, so both make the same number of gradient
# steps; then `tmn-bench accuracy` compares active (--models) with uniform
# (--baseline) seed by seed on the held-out test split: P99 and MSE at 500 ms
# through the engine, block tests, bootstrap intervals, and the selection's
# share of training time.
#
#   bash training/recipes/active_selection.sh synth|lasa|eyelink|synth:MINUTES [RUN_ROOT] [FIT ARGS...]
#
# synth is 20 minutes of synthetic data with 4 passes per epoch, as in
# evaluation.sh (whose B runs are the uniform ones: link them as
# RUN_ROOT/<name>/uniform-seed<i> to skip training them again); eyelink is the
# confirmation run. RUN_ROOT
# defaults to build/active (git-ignored). FIT ARGS go to every `tmn-train fit`
# (a smoke run: `synth:2 build/active-smoke --set epochs=2`). A finished fit (its
# model/config.json exists) is skipped; an interrupted one resumes.
# needs: pip install ./training ./bench (and the tmn package itself)
set -euo pipefail
cd "$(dirname "$0")/../.."
name="${1:?usage: active_selection.sh synth|lasa|eyelink|synth:MINUTES [RUN_ROOT] [FIT ARGS...]}"
root_base="${2:-build/active}"
shift $(( $# >= 2 ? 2 : 1 ))
extra=()
case "$name" in
  synth) data="synth:20"; extra=(--set data.passes=4) ;;
  synth:*) data="$name" ;;
  lasa) data="lasa" ;;
  eyelink) data="eyelink" ;;
  *) echo "active_selection.sh: unknown data set '$name' (synth, lasa, eyelink or synth:MINUTES)" >&2
     exit 2 ;;
esac
root="$root_base/${name//:/-}"

start=$(date +%s)
for mode in uniform active; do
  enabled=false; [ "$mode" = active ] && enabled=true
  for seed in 0 1 2; do
    run="$root/$mode-seed$seed"
    if [ -f "$run/model/config.json" ]; then continue; fi  # already trained
    resume=(); [ -d "$run" ] && resume=(--resume)
    tmn-train fit --config configs/B_temporal_solver.yaml --data "$data" --seeds "$seed" \
      --out "$run" --set "active_selection.enabled=$enabled" "${extra[@]}" "${resume[@]}" "$@"
  done
done
echo "active_selection.sh: trained in $(( $(date +%s) - start )) s"

# active (--models) against uniform (--baseline), seed i against seed i
tmn-bench accuracy --data "$data" \
  --models "$root"/active-seed0/model "$root"/active-seed1/model "$root"/active-seed2/model \
  --baseline "$root"/uniform-seed0/model "$root"/uniform-seed1/model "$root"/uniform-seed2/model \
  --json "$root/accuracy.json" --report "$root/report"
echo "active_selection.sh: done in $(( $(date +%s) - start )) s"
