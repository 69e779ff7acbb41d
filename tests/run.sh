#!/usr/bin/env bash
# Runs every test: installs missing dependencies, builds, runs the tiers.
#
#   tests/run.sh              what CI runs, each test compiled once: the
#                             e2e tier on the Release binaries (build/), the
#                             unit and service tiers under ASan+UBSan with
#                             clang (build-asan/), then clang-tidy
#   tests/run.sh --release    the whole Release build and all its tiers
#   tests/run.sh --sanitize   only the ASan+UBSan tier (build-asan/)
#   tests/run.sh --tidy       clang-tidy over every file of ours (build-tidy/)
#   tests/run.sh -L unit      Release, one tier (ctest arguments pass through)
#
# Exits non-zero on any failure. BUILD_DIR moves the Release build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
JOBS="${JOBS:-$(nproc)}"

release() {
  BUILD_DIR="$BUILD_DIR" "$ROOT/deploy/build.sh"
  (cd "$BUILD_DIR" && ctest --output-on-failure --timeout 600 -j "${CTEST_JOBS:-2}" "$@")
}

# The Release binaries as they ship and the e2e tier that runs them as
# processes (crm_e2e builds exactly that); the unit and service tiers run
# in the sanitizer tree instead of being compiled a second time.
release_e2e() {
  cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD_DIR" -j "$JOBS" --target crm_e2e
  (cd "$BUILD_DIR" && ctest --output-on-failure --timeout 600 -j "${CTEST_JOBS:-2}" -L e2e)
}

# The unit and service tiers built with clang, AddressSanitizer and
# UndefinedBehaviorSanitizer (CMakePresets.json: asan-ubsan). Any report
# fails its test.
sanitize() {
  cmake --preset asan-ubsan -S "$ROOT" >/dev/null
  cmake --build "$ROOT/build-asan" -j "$JOBS" --target crm_tests_unit crm_tests_service
  (cd "$ROOT/build-asan" &&
    ASAN_OPTIONS="detect_leaks=1:abort_on_error=0" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    ctest --output-on-failure --timeout 900 -j "${CTEST_JOBS:-2}" -L 'unit|service')
}

# Every .cc file of ours through clang-tidy (.clang-tidy; headers of ours
# are checked through them), with the sanitizer tree's compile commands: only
# the generated protos need building. Any finding is an error.
tidy() {
  cmake --preset asan-ubsan -S "$ROOT" >/dev/null
  cmake --build "$ROOT/build-asan" -j "$JOBS" --target crm_generated >/dev/null
  # (clang-tidy counts the warnings it suppressed in system headers on
  # stderr; those lines are dropped.)
  (cd "$ROOT" && git ls-files -- 'common/*.cc' 'services/*.cc' 'tests/*.cc' |
    xargs -P "$JOBS" -n 4 clang-tidy -p build-asan --quiet 2>&1 |
    sed -e '/^[0-9]* warnings\? generated\.$/d' -e '/^Suppressed [0-9]* warnings/d' \
        -e '/^Use -header-filter/d') ||
    { echo "clang-tidy found problems (above)" >&2; return 1; }
}

"$ROOT/deploy/install_deps.sh"
case "${1:-}" in
  --release) shift; release "$@" ;;
  --sanitize) sanitize ;;
  --tidy) tidy ;;
  "") release_e2e; sanitize; tidy ;;
  *) release "$@" ;;
esac
