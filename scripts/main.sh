#!/usr/bin/env bash
# Installs everything (first time only), then runs the main job: SFace on LFW 10-fold
# verification and on LFW BLUFR, for the HR upper bound and bicubic upsampling at 8x, and
# prints the leaderboards. Data: $FHBENCH_DATA, else ../shared/data/lfw (aligned 112x96,
# pairs.txt, blufr_lfw_config.mat). About 8 minutes on 2 CPU cores; re-runs come from the cache.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=$("$repo/scripts/bootstrap")
data=${FHBENCH_DATA:-$repo/../shared/data/lfw}
store=${FHBENCH_STORE:-$repo/results/fhbench.sqlite}
fhb="$venv/bin/fhbench"
for protocol in lfw-10fold lfw-blufr; do
    "$fhb" run --model hr --protocol "$protocol" --data-root "$data" --store "$store"
    "$fhb" run --model bicubic --protocol "$protocol" --scale 8 --data-root "$data" --store "$store"
done
"$fhb" leaderboard --protocol lfw-10fold --store "$store"
"$fhb" leaderboard --protocol lfw-blufr --store "$store"
