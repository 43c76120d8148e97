#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run every test tier: lint, unit, kernel.
#   sudo scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== lint (ruff)"
.venv/bin/ruff check netlab tests benchmarks
echo "== tests (unit + kernel tiers)"
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "test.sh: pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$rc"
