#!/usr/bin/env bash
# Installs everything (first time only), then runs the main job: SFace on LFW 10-fold
# verification for the HR upper bound and bicubic upsampling at 8x, and prints the
# leaderboard. Data: $FHBENCH_DATA, else ../shared/data/lfw (aligned 112x96 + pairs.txt).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=$("$repo/scripts/bootstrap")
data=${FHBENCH_DATA:-$repo/../shared/data/lfw}
store=${FHBENCH_STORE:-$repo/results/fhbench.sqlite}
fhb="$venv/bin/fhbench"
"$fhb" run --model hr --protocol lfw-10fold --data-root "$data" --store "$store"
"$fhb" run --model bicubic --protocol lfw-10fold --scale 8 --data-root "$data" --store "$store"
"$fhb" leaderboard --protocol lfw-10fold --store "$store"
