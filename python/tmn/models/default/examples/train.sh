#!/usr/bin/env bash
# This model was trained by training/recipes/default.sh of the tmn repository
# (its provenance: tmn git 8101b6e9ecb0f734c454e24708d4a5eabe02897c-dirty).
# This runs that recipe in a checkout of the repository:
#
#   bash examples/train.sh TMN_CHECKOUT [RECIPE_ARGS...]
set -euo pipefail
checkout="${1:?usage: bash examples/train.sh TMN_CHECKOUT [RECIPE_ARGS...]}"
shift
exec bash "$checkout/training/recipes/default.sh" "$@"
