#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run every check: lint (ruff), layers (import-linter), types (mypy), unit, kernel, and the VM tier.
#   sudo scripts/test.sh [pytest args...]
# The VM tier: tests marked @pytest.mark.requires(<feature>) that this kernel cannot run
# (ipip, netem, IPVS, ...) run inside one throwaway VM booting the distro's stock kernel
# (netlab/testing/vmtier.py); setup installs its tools only if this kernel lacks such a feature.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --vm-if-needed --vagrant
echo "== lint (ruff)"
.venv/bin/ruff check netlab tests benchmarks
echo "== layers (import-linter: the contracts in pyproject.toml)"
.venv/bin/lint-imports --no-cache
echo "== type-check (mypy)"
.venv/bin/mypy
echo "== tests (unit + kernel tiers; the VM tier for what this kernel lacks)"
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "test.sh: pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$rc"
