#!/usr/bin/env bash
# Builds (Release) and runs crm-bench-pipeline-config: QPS and p50/p99 of
# PipelinesService GetPipeline/ListStages (pipeline 0) vs grpc.health.v1
# Health/Check at 1, 8 and 64 calls in flight, against a server the bench
# starts on a temp data dir. A full run takes ~35 s plus the build.
#
#   tests/bench/run_pipeline_config_bench.sh [bench flags...]
#   BUILD_DIR=build-e2e tests/bench/run_pipeline_config_bench.sh --duration_s=5
#   tests/bench/run_pipeline_config_bench.sh --target=127.0.0.1:50052 \
#       --token="$(build-bench/common/auth/crm-dev-token --user=1)"
#
# Environment: BUILD_DIR (default <repo>/build-bench), JOBS (default 2).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build_dir="${BUILD_DIR:-${repo}/build-bench}"
case "${build_dir}" in
  /*) ;;
  *) build_dir="${repo}/${build_dir}" ;;
esac
jobs="${JOBS:-2}"

if [[ ! -f "${build_dir}/CMakeCache.txt" ]]; then
  cmake -S "${repo}" -B "${build_dir}" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
build_type="$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "${build_dir}/CMakeCache.txt")"
if [[ "${build_type}" != "Release" ]]; then
  echo "warning: ${build_dir} is a '${build_type}' build; figures are not comparable" >&2
fi
# Incremental: only rebuilds what changed.
cmake --build "${build_dir}" -j"${jobs}" \
  --target crm-bench-pipeline-config crm-pipeline-config >/dev/null

exec "${build_dir}/tests/bench/crm-bench-pipeline-config" \
  --binary="${build_dir}/services/pipeline_config/crm-pipeline-config" "$@"
