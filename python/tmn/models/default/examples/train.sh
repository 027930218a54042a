#!/usr/bin/env bash
# This model was trained by training/recipes/default.sh of the tmn repository
# (its provenance: tmn git f54a08268b9bd1660602d9603e92a309fcfdc1ee).
# This runs that recipe in a checkout of the repository:
#
#   bash examples/train.sh TMN_CHECKOUT [RECIPE_ARGS...]
set -euo pipefail
checkout="${1:?usage: bash examples/train.sh TMN_CHECKOUT [RECIPE_ARGS...]}"
shift
exec bash "$checkout/training/recipes/default.sh" "$@"
