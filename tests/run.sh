#!/usr/bin/env bash
# Runs every test: installs missing dependencies, builds (Release), then runs
# the unit, service and e2e tiers through ctest. Exits non-zero on any failure.
#   tests/run.sh            all tests
#   tests/run.sh -L unit    only one tier (any ctest arguments pass through)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"

"$ROOT/deploy/install_deps.sh"
BUILD_DIR="$BUILD_DIR" "$ROOT/deploy/build.sh"

cd "$BUILD_DIR"
ctest --output-on-failure --timeout 600 -j "${CTEST_JOBS:-2}" "$@"
