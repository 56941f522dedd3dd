#!/usr/bin/env bash
# Installs everything (first time only) and runs the test suite. `.ci/run` runs this.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=$("$repo/scripts/bootstrap")
cd "$repo"
# Best effort (never fails): Chromium for the report test that renders the HTML report headless.
bash "$repo/scripts/ensure-chromium" || true
set +e
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
[ "$rc" -eq 5 ] && { echo "no tests were collected" >&2; exit 1; }
exit "$rc"
