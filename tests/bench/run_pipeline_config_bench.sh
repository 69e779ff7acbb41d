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

# shellcheck source=tests/bench/bench_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"
bench_build crm-bench-pipeline-config crm-pipeline-config

exec "${build_dir}/tests/bench/crm-bench-pipeline-config" \
  --binary="${build_dir}/services/pipeline_config/crm-pipeline-config" "$@"
