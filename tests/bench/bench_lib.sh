# shellcheck shell=bash
# Sourced by the run_*_bench.sh scripts, not run. Sets
#   repo       the repository root
#   build_dir  BUILD_DIR (default <repo>/build-bench; relative to the repo)
#   jobs       JOBS (default 2)
# and defines bench_build.

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build_dir="${BUILD_DIR:-${repo}/build-bench}"
case "${build_dir}" in
  /*) ;;
  *) build_dir="${repo}/${build_dir}" ;;
esac
jobs="${JOBS:-2}"

# bench_build TARGET...: configures ${build_dir} (Release) unless it is
# already, warns when it is not a Release build, and builds the targets.
bench_build() {
  if [[ ! -f "${build_dir}/CMakeCache.txt" ]]; then
    cmake -S "${repo}" -B "${build_dir}" -DCMAKE_BUILD_TYPE=Release >/dev/null
  fi
  local build_type
  build_type="$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "${build_dir}/CMakeCache.txt")"
  if [[ "${build_type}" != "Release" ]]; then
    echo "warning: ${build_dir} is a '${build_type}' build; figures are not comparable" >&2
  fi
  # Incremental: only rebuilds what changed.
  cmake --build "${build_dir}" -j"${jobs}" --target "$@" >/dev/null
}
