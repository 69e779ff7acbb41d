#!/usr/bin/env bash
# Benchmark (not a test) of the deals write path, the way it runs in
# production: CreateDeal QPS and crm-deals' CPU per create, with and without
# an event subscriber attached and with and without --sync_writes, measured
# side by side in one run on fresh stores.
#
#   1. starts crm-pipeline-config once (port 0 + port file, loopback);
#   2. for each configuration starts a fresh crm-deals (and, where the
#      configuration has one, crm-test-event-sink as its subscriber: a real
#      process that fsyncs what it applies) and runs crm-deals-bench
#      --methods=create at 1, 8 and 64 calls in flight;
#      then once more paced at --rate creates/s (default 2000, up to 64 in
#      flight), so that CPU per create also compares at equal load (closed
#      loops run each configuration at a different rate, and gRPC's cost per
#      call falls as the rate grows);
#   3. prints a summary: QPS and server CPU per create for each
#      configuration, the CPU ratio with/without subscriber (relay cost) and
#      the durable/non-durable QPS ratio at 64 in flight.
#
#   tests/bench/run_deals_write_bench.sh                # 5 s per point
#   tests/bench/run_deals_write_bench.sh --seconds 2 --repeats 1
#   tests/bench/run_deals_write_bench.sh --baseline OTHER_BUILD_DIR
#
# Options: --seconds S (measured seconds per point), --repeats N (median of
# N runs per point, default 3), --rate R (creates/s of the paced run,
# default 2000; 0 = none), --baseline DIR (also run every
# configuration with DIR/services/deals/crm-deals, e.g. a build of an older
# commit, in the same run, for before/after figures); anything else goes to
# crm-deals-bench.
# Environment: BUILD_DIR (default <repo>/build-bench), JOBS (default 2).
set -euo pipefail

# shellcheck source=tests/bench/bench_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"

seconds=5
repeats=3
rate=2000
baseline=""
bench_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --seconds=*) seconds="${1#--seconds=}"; shift ;;
    --repeats) repeats="$2"; shift 2 ;;
    --repeats=*) repeats="${1#--repeats=}"; shift ;;
    --rate) rate="$2"; shift 2 ;;
    --rate=*) rate="${1#--rate=}"; shift ;;
    --baseline) baseline="$2"; shift 2 ;;
    --baseline=*) baseline="${1#--baseline=}"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) bench_args+=("$1"); shift ;;
  esac
done

bench_build crm-deals-bench crm-deals crm-pipeline-config crm-test-event-sink

bench="${build_dir}/tests/bench/crm-deals-bench"
deals_bin="${build_dir}/services/deals/crm-deals"
pipeline_bin="${build_dir}/services/pipeline_config/crm-pipeline-config"
sink_bin="${build_dir}/tests/e2e/crm-test-event-sink"
secret="crm-bench-secret-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/crm-deals-write-bench.XXXXXX")"
pids=()

stop_pid() {
  local pid="$1"
  kill -0 "${pid}" 2>/dev/null || { wait "${pid}" 2>/dev/null || true; return 0; }
  kill -TERM "${pid}" 2>/dev/null || true
  for _ in $(seq 300); do
    kill -0 "${pid}" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "${pid}" 2>/dev/null || true
  wait "${pid}" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do stop_pid "${pid}"; done
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

wait_ports() {
  local name="$1" pid="$2" file="$3"
  for _ in $(seq 600); do
    if [[ -f "${file}" && $(wc -l <"${file}") -ge 2 ]]; then return 0; fi
    kill -0 "${pid}" 2>/dev/null || { echo "${name} exited before serving" >&2; return 1; }
    sleep 0.1
  done
  echo "${name} did not serve within 60 s" >&2
  return 1
}

"${pipeline_bin}" --port=0 --http_port=0 --port_file="${tmp}/pipeline-config.ports" \
  --data_dir="${tmp}/pipeline-config" --jwt_secret="${secret}" --admin_users=1 \
  --log_level=warn >"${tmp}/pipeline-config.log" 2>&1 &
pipeline_pid=$!
pids+=("${pipeline_pid}")
wait_ports crm-pipeline-config "${pipeline_pid}" "${tmp}/pipeline-config.ports"
pipeline_port="$(sed -n 1p "${tmp}/pipeline-config.ports")"

# run_config NAME SYNC(true|false) SUBSCRIBER(yes|no) DEALS_BINARY: one
# fresh crm-deals.
run_config() {
  local name="$1" sync="$2" subscriber="$3" deals_bin="$4"
  local dir="${tmp}/${name}"
  mkdir -p "${dir}"
  local sink_pid="" subscribers=""
  if [[ "${subscriber}" == yes ]]; then
    "${sink_bin}" --port=0 --port_file="${dir}/sink.ports" \
      --out_file="${dir}/sink.out" --jwt_secret="${secret}" \
      >"${tmp}/${name}-sink.log" 2>&1 &
    sink_pid=$!
    pids+=("${sink_pid}")
    wait_ports crm-test-event-sink "${sink_pid}" "${dir}/sink.ports"
    subscribers="sink=127.0.0.1:$(sed -n 1p "${dir}/sink.ports")"
  fi
  "${deals_bin}" --port=0 --http_port=0 --port_file="${dir}/deals.ports" \
    --data_dir="${dir}/deals" --jwt_secret="${secret}" --admin_users=1 \
    --pipeline_config_addr="127.0.0.1:${pipeline_port}" --shard=0 \
    --sync_writes="${sync}" --subscribers="${subscribers}" \
    --log_level=warn >"${tmp}/${name}-deals.log" 2>&1 &
  local deals_pid=$!
  pids+=("${deals_pid}")
  wait_ports crm-deals "${deals_pid}" "${dir}/deals.ports"
  echo "== ${name}: sync_writes=${sync}, subscriber=${subscriber}"
  "${bench}" --target="127.0.0.1:$(sed -n 1p "${dir}/deals.ports")" \
    --jwt_secret="${secret}" --server_pid="${deals_pid}" --methods=create \
    --in_flight=1,8,64 --scan_in_flight=1 --duration_s="${seconds}" \
    --repeats="${repeats}" "${bench_args[@]}" | tee "${dir}/bench.out"
  if [[ "${rate}" != 0 ]]; then
    echo "-- paced at ${rate} creates/s"
    "${bench}" --target="127.0.0.1:$(sed -n 1p "${dir}/deals.ports")" \
      --jwt_secret="${secret}" --server_pid="${deals_pid}" --methods=create \
      --in_flight=64 --scan_in_flight=1 --duration_s="${seconds}" \
      --repeats="${repeats}" --paced_qps="${rate}" "${bench_args[@]}" |
      tee "${dir}/paced.out"
  fi
  if [[ -n "${sink_pid}" ]]; then
    # Everything created reached the subscriber before we stop.
    local metrics_port created applied
    metrics_port="$(sed -n 2p "${dir}/deals.ports")"
    for _ in $(seq 300); do
      applied="$(wc -l <"${dir}/sink.out")"
      created="$(curl -s "http://127.0.0.1:${metrics_port}/metrics" |
        awk '/^crm_grpc_server_handled_total.*CreateDeal.*grpc_code="OK"/ { s += $2 } END { print s + 0 }')"
      [[ "${applied}" -ge "${created}" ]] && break
      sleep 0.1
    done
    echo "subscriber applied ${applied} events for ${created} creates"
  fi
  stop_pid "${deals_pid}"
  [[ -n "${sink_pid}" ]] && stop_pid "${sink_pid}"
  return 0
}

builds=(current)
binaries=("${deals_bin}")
if [[ -n "${baseline}" ]]; then
  if [[ ! -x "${baseline}/services/deals/crm-deals" ]]; then
    echo "--baseline: no ${baseline}/services/deals/crm-deals" >&2
    exit 2
  fi
  builds=(baseline current)
  binaries=("${baseline}/services/deals/crm-deals" "${deals_bin}")
fi
configs=(plain relay durable durable-plain)
for i in "${!builds[@]}"; do
  run_config "${builds[$i]}-plain" false no "${binaries[$i]}"
  run_config "${builds[$i]}-relay" false yes "${binaries[$i]}"
  run_config "${builds[$i]}-durable" true yes "${binaries[$i]}"
  run_config "${builds[$i]}-durable-plain" true no "${binaries[$i]}"
done

# "QPS CPU" of CreateDeal at N in flight from a bench output (N = paced:
# the paced run).
point() {
  local file="${tmp}/$1/bench.out" n="$2"
  if [[ "${n}" == paced ]]; then file="${tmp}/$1/paced.out"; n=64; fi
  [[ -f "${file}" ]] || { echo "- -"; return; }
  awk -v n="${n}" '$1 == "DealsService/CreateDeal" && $2 == n {
      cpu = $7; print $3, cpu }' "${file}"
}
levels=(1 8 64)
[[ "${rate}" != 0 ]] && levels+=(paced)

echo
echo "== summary (CreateDeal; CPU = crm-deals' user+system CPU per create)"
echo "plain: no subscriber; relay: crm-test-event-sink subscribed;"
echo "durable: --sync_writes with the subscriber; durable-plain: without"
printf "%-9s %-14s %9s %10s %12s\n" build config "in flight" QPS "CPU/create"
for build in "${builds[@]}"; do
  for config in "${configs[@]}"; do
    for n in "${levels[@]}"; do
      read -r qps cpu <<<"$(point "${build}-${config}" "${n}")"
      printf "%-9s %-14s %9s %10s %9s us\n" "${build}" "${config}" "${n}" "${qps}" "${cpu}"
    done
  done
done
for build in "${builds[@]}"; do
  echo
  echo "${build}: relay cost, CPU/create with the subscriber / without (non-durable):"
  for n in "${levels[@]}"; do
    read -r _ plain_cpu <<<"$(point "${build}-plain" "${n}")"
    read -r _ relay_cpu <<<"$(point "${build}-relay" "${n}")"
    awk -v n="${n}" -v a="${relay_cpu}" -v b="${plain_cpu}" \
      'BEGIN { printf "  %5s: %.1f us / %.1f us = %.2fx\n", n, a, b, a / b }'
  done
  read -r durable_qps _ <<<"$(point "${build}-durable" 64)"
  read -r relay_qps _ <<<"$(point "${build}-relay" 64)"
  read -r durable_plain_qps _ <<<"$(point "${build}-durable-plain" 64)"
  read -r plain_qps _ <<<"$(point "${build}-plain" 64)"
  echo "${build}: durable writes at 64 in flight (durable / non-durable QPS):"
  awk -v a="${durable_qps}" -v b="${relay_qps}" \
    'BEGIN { printf "  with the subscriber:    %.0f / %.0f = %.2fx\n", a, b, a / b }'
  awk -v a="${durable_plain_qps}" -v b="${plain_qps}" \
    'BEGIN { printf "  without a subscriber:   %.0f / %.0f = %.2fx\n", a, b, a / b }'
done
