#!/usr/bin/env bash
# Builds (Release) and runs the automation benchmark end to end:
#   1. starts crm-pipeline-config, crm-automation and crm-deals
#      --subscribers=automation=<crm-automation> on temp data dirs (loopback;
#      crm-deals gets a free port picked up front, since crm-automation
#      needs its address before it serves);
#   2. crm-automation-bench: one immediate create-task rule on every stage of
#      pipeline 0, enough deals, then MoveDealStage open loop at 1,000/s for
#      1 s of warm-up + 10 s measured; prints intake throughput and the lag
#      deal move committed -> rule run finished (p50/p99/max), runs expected
#      vs succeeded, and whether lag p99 <= 50 ms;
#   3. prints crm-automation's VmRSS and VmHWM, stops the three servers with
#      SIGTERM and removes the temp dir.
# A run takes about a minute after the build.
#
#   tests/bench/run_automation_bench.sh
#   tests/bench/run_automation_bench.sh --seconds 5 --rate 500
#   tests/bench/run_automation_bench.sh --channels=8 --goal_p99_ms=100
#
# Options: --seconds S (measured seconds, the bench's --duration_s), --rate R
# (moves per second), --durable (the three servers run with --sync_writes:
# every acknowledged write fsynced); anything else goes to crm-automation-bench (see
# crm-automation-bench --help).
# Environment: BUILD_DIR (default <repo>/build-bench), JOBS (default 2).
set -euo pipefail

# shellcheck source=tests/bench/bench_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"

bench_args=()
server_flags=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) bench_args+=("--duration_s=$2"); shift 2 ;;
    --seconds=*) bench_args+=("--duration_s=${1#--seconds=}"); shift ;;
    --rate) bench_args+=("--rate=$2"); shift 2 ;;
    --rate=*) bench_args+=("$1"); shift ;;
    --durable) server_flags+=("--sync_writes"); shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) bench_args+=("$1"); shift ;;
  esac
done

bench_build crm-automation-bench crm-automation crm-deals crm-pipeline-config

bench="${build_dir}/tests/bench/crm-automation-bench"
automation_bin="${build_dir}/services/automation/crm-automation"
deals_bin="${build_dir}/services/deals/crm-deals"
pipeline_bin="${build_dir}/services/pipeline_config/crm-pipeline-config"
secret="crm-bench-secret-0123456789"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/crm-automation-bench.XXXXXX")"
deals_pid=""
automation_pid=""
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

# crm-deals first: its relay stops delivering before crm-automation goes.
stop_all() {
  stop crm-deals "${deals_pid}"
  deals_pid=""
  stop crm-automation "${automation_pid}"
  automation_pid=""
  stop crm-pipeline-config "${pipeline_pid}"
  pipeline_pid=""
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_all
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

# A loopback TCP port nothing uses right now (a small race remains until the
# server binds it; crm-deals then fails to start and says so).
free_port() {
  local port
  for _ in $(seq 200); do
    port=$((20000 + RANDOM % 30000))
    if command -v ss >/dev/null; then
      [[ -z "$(ss -Htan "sport = :${port}" 2>/dev/null)" ]] && { echo "${port}"; return 0; }
    elif ! (: <"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; then
      echo "${port}"
      return 0
    fi
  done
  echo "no free port found" >&2
  return 1
}

# "VmRSS X MiB, VmHWM Y MiB" of a process (resident now, and its peak).
memory() {
  awk '/^VmRSS:/ { rss = $2 } /^VmHWM:/ { hwm = $2 }
       END { printf "VmRSS %.1f MiB, VmHWM %.1f MiB", rss / 1024, hwm / 1024 }' \
    "/proc/$1/status"
}

echo "== starting crm-pipeline-config, crm-automation and crm-deals in ${tmp}"
"${pipeline_bin}" --port=0 --http_port=0 --port_file="${tmp}/pipeline-config.ports" \
  --data_dir="${tmp}/pipeline-config" --jwt_secret="${secret}" --admin_users=1 \
  --log_level=warn "${server_flags[@]}" >"${tmp}/pipeline-config.log" 2>&1 &
pipeline_pid=$!
wait_ports crm-pipeline-config "${pipeline_pid}" "${tmp}/pipeline-config.ports"
pipeline_port="$(sed -n 1p "${tmp}/pipeline-config.ports")"

deals_port="$(free_port)"
"${automation_bin}" --port=0 --http_port=0 --port_file="${tmp}/automation.ports" \
  --data_dir="${tmp}/automation" --jwt_secret="${secret}" --admin_users=1 \
  --pipeline_config_addr="127.0.0.1:${pipeline_port}" \
  --deals_addr="127.0.0.1:${deals_port}" \
  --log_level=warn "${server_flags[@]}" >"${tmp}/automation.log" 2>&1 &
automation_pid=$!
wait_ports crm-automation "${automation_pid}" "${tmp}/automation.ports"
automation_port="$(sed -n 1p "${tmp}/automation.ports")"

"${deals_bin}" --port="${deals_port}" --http_port=0 --port_file="${tmp}/deals.ports" \
  --data_dir="${tmp}/deals" --jwt_secret="${secret}" --admin_users=1 \
  --pipeline_config_addr="127.0.0.1:${pipeline_port}" --shard=0 \
  --subscribers="automation=127.0.0.1:${automation_port}" \
  --log_level=warn "${server_flags[@]}" >"${tmp}/deals.log" 2>&1 &
deals_pid=$!
wait_ports crm-deals "${deals_pid}" "${tmp}/deals.ports"
echo "crm-pipeline-config (pid ${pipeline_pid}) on 127.0.0.1:${pipeline_port}," \
  "crm-automation (pid ${automation_pid}) on 127.0.0.1:${automation_port}," \
  "crm-deals (pid ${deals_pid}) on 127.0.0.1:${deals_port}"

echo "== crm-automation-bench"
bench_rc=0
"${bench}" --deals_target="127.0.0.1:${deals_port}" \
  --automation_target="127.0.0.1:${automation_port}" \
  --pipeline_config_target="127.0.0.1:${pipeline_port}" \
  --jwt_secret="${secret}" --automation_pid="${automation_pid}" \
  --deals_pid="${deals_pid}" "${bench_args[@]}" || bench_rc=$?

echo
echo "crm-automation memory after the bench: $(memory "${automation_pid}")"
echo "crm-deals memory after the bench: $(memory "${deals_pid}")"
stop_all
if [[ ${bench_rc} -ne 0 ]]; then
  echo "crm-automation-bench exited ${bench_rc} (errors above)" >&2
fi
exit "${bench_rc}"
