#!/usr/bin/env bash
# Builds (Release) and runs the deals benchmark end to end:
#   1. crm-deals-bench-load fills a temp deals data dir offline with --count
#      deals (default 1,000,000) through DealStore;
#   2. starts crm-pipeline-config and crm-deals on that dir (port 0 + port
#      files, loopback);
#   3. crm-deals-bench: QPS and p50/p99 of CreateDeal, GetDeal, MoveDealStage
#      (1, 8, 64 in flight) and ListDeals / GetKanbanBoard (1, 8) vs
#      grpc.health.v1 Health/Check;
#   4. prints crm-deals' VmRSS and VmHWM after start-up on the loaded data
#      and after the bench, stops both servers with SIGTERM and removes the
#      temp dir.
# A full run takes a few minutes for the load plus ~2 minutes of bench.
#
#   tests/bench/run_deals_bench.sh                      # 1,000,000 deals
#   tests/bench/run_deals_bench.sh --count 100000 --seconds 1 --repeats 1
#   tests/bench/run_deals_bench.sh --count 100000 --methods=health,get
#
# Options: --count N (deals to load), --seconds S (measured seconds per
# point, the bench's --duration_s); anything else goes to crm-deals-bench
# (see crm-deals-bench --help).
# Environment: BUILD_DIR (default <repo>/build-bench), JOBS (default 2).
set -euo pipefail

# shellcheck source=tests/bench/bench_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"

count=1000000
bench_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --count) count="$2"; shift 2 ;;
    --count=*) count="${1#--count=}"; shift ;;
    --seconds) bench_args+=("--duration_s=$2"); shift 2 ;;
    --seconds=*) bench_args+=("--duration_s=${1#--seconds=}"); shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) bench_args+=("$1"); shift ;;
  esac
done
if ! [[ "${count}" =~ ^[0-9]+$ ]]; then
  echo "--count: a number of deals, got '${count}'" >&2
  exit 2
fi

bench_build crm-deals-bench-load crm-deals-bench crm-deals crm-pipeline-config

loader="${build_dir}/tests/bench/crm-deals-bench-load"
bench="${build_dir}/tests/bench/crm-deals-bench"
deals_bin="${build_dir}/services/deals/crm-deals"
pipeline_bin="${build_dir}/services/pipeline_config/crm-pipeline-config"
secret="crm-bench-secret-0123456789"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/crm-deals-bench.XXXXXX")"
deals_pid=""
pipeline_pid=""

# Sends SIGTERM to a server we started and waits for it (SIGKILL after 30 s).
stop() {
  local name="$1" pid="$2"
  [[ -n "${pid}" ]] || return 0
  kill -0 "${pid}" 2>/dev/null || { wait "${pid}" 2>/dev/null || true; return 0; }
  local start=${SECONDS}
  kill -TERM "${pid}" 2>/dev/null || true
  for _ in $(seq 300); do
    kill -0 "${pid}" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "${pid}" 2>/dev/null; then
    echo "${name} (pid ${pid}) still running 30 s after SIGTERM: SIGKILL" >&2
    kill -KILL "${pid}" 2>/dev/null || true
  fi
  local rc=0
  wait "${pid}" 2>/dev/null || rc=$?
  echo "${name} stopped by SIGTERM: exit ${rc} after $((SECONDS - start)) s"
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop crm-deals "${deals_pid}"
  deals_pid=""
  stop crm-pipeline-config "${pipeline_pid}"
  pipeline_pid=""
  if [[ ${rc} -ne 0 ]]; then
    for log in "${tmp}"/*.log; do
      [[ -s "${log}" ]] || continue
      echo "--- last lines of $(basename "${log}")" >&2
      tail -n 20 "${log}" >&2
    done
  fi
  rm -rf "${tmp}"
  exit "${rc}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits until a server wrote its port file (it does so once it serves).
wait_ports() {
  local name="$1" pid="$2" file="$3"
  for _ in $(seq 1200); do
    if [[ -f "${file}" && $(wc -l <"${file}") -ge 2 ]]; then
      return 0
    fi
    if ! kill -0 "${pid}" 2>/dev/null; then
      echo "${name} exited before serving" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "${name} did not serve within 120 s" >&2
  return 1
}

# "VmRSS X MiB, VmHWM Y MiB" of a process (resident now, and its peak).
memory() {
  awk '/^VmRSS:/ { rss = $2 } /^VmHWM:/ { hwm = $2 }
       END { printf "VmRSS %.1f MiB, VmHWM %.1f MiB", rss / 1024, hwm / 1024 }' \
    "/proc/$1/status"
}

echo "== loading ${count} deals into ${tmp}/deals"
"${loader}" --data_dir="${tmp}/deals" --count="${count}"

echo "== starting crm-pipeline-config and crm-deals"
"${pipeline_bin}" --port=0 --http_port=0 --port_file="${tmp}/pipeline-config.ports" \
  --data_dir="${tmp}/pipeline-config" --jwt_secret="${secret}" --admin_users=1 \
  --log_level=warn >"${tmp}/pipeline-config.log" 2>&1 &
pipeline_pid=$!
wait_ports crm-pipeline-config "${pipeline_pid}" "${tmp}/pipeline-config.ports"
pipeline_port="$(sed -n 1p "${tmp}/pipeline-config.ports")"

start=${EPOCHREALTIME}
"${deals_bin}" --port=0 --http_port=0 --port_file="${tmp}/deals.ports" \
  --data_dir="${tmp}/deals" --jwt_secret="${secret}" --admin_users=1 \
  --pipeline_config_addr="127.0.0.1:${pipeline_port}" --shard=0 \
  --log_level=warn >"${tmp}/deals.log" 2>&1 &
deals_pid=$!
wait_ports crm-deals "${deals_pid}" "${tmp}/deals.ports"
deals_port="$(sed -n 1p "${tmp}/deals.ports")"
deals_http_port="$(sed -n 2p "${tmp}/deals.ports")"
serving_after="$(awk -v a="${start}" -v b="${EPOCHREALTIME}" 'BEGIN { printf "%.1f", b - a }')"
echo "crm-deals (pid ${deals_pid}) serving on 127.0.0.1:${deals_port} (HTTP ${deals_http_port}) ${serving_after} s after start; crm-pipeline-config on 127.0.0.1:${pipeline_port}"
rss_loaded="$(memory "${deals_pid}")"
echo "crm-deals memory after start-up on ${count} loaded deals: ${rss_loaded}"

echo "== crm-deals-bench"
bench_rc=0
"${bench}" --target="127.0.0.1:${deals_port}" --jwt_secret="${secret}" \
  --server_pid="${deals_pid}" "${bench_args[@]}" || bench_rc=$?

rss_after="$(memory "${deals_pid}")"
echo
echo "crm-deals memory (${count} deals loaded):"
echo "  after start-up: ${rss_loaded}"
echo "  after the bench: ${rss_after}"
stop crm-deals "${deals_pid}"
deals_pid=""
stop crm-pipeline-config "${pipeline_pid}"
pipeline_pid=""
if [[ ${bench_rc} -ne 0 ]]; then
  echo "crm-deals-bench exited ${bench_rc} (errors or skipped methods above)" >&2
fi
exit "${bench_rc}"
