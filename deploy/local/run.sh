#!/usr/bin/env bash
# Runs the whole system locally on loopback.
#
#   deploy/local/run.sh             install missing packages, build (Release),
#                                   start every service, seed demo data on the
#                                   first start; Ctrl-C stops them all
#   deploy/local/run.sh token 7     print a dev token for user 7
#   deploy/local/run.sh token 7 --admin
#
# Data lives under ./var (or $CRM_DATA_DIR); restarting keeps it. The JWT
# secret every service shares is $CRM_JWT_SECRET when set, else a random one
# generated on the first start and kept in $CRM_DATA_DIR/jwt_secret (mode
# 0600); `token` signs with the same. User 1 is the demo administrator
# (--admin_users=1, or $CRM_ADMIN_USERS).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
export CRM_DATA_DIR="${CRM_DATA_DIR:-$ROOT/var}"

SECRET_FILE="$CRM_DATA_DIR/jwt_secret"

# The secret of this data folder: $CRM_JWT_SECRET, else the kept one (made
# once, readable by this user only).
ensure_secret() {
  if [ -n "${CRM_JWT_SECRET:-}" ]; then return; fi
  if [ ! -s "$SECRET_FILE" ]; then
    mkdir -p "$CRM_DATA_DIR"
    (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$SECRET_FILE.tmp" &&
      echo >>"$SECRET_FILE.tmp" && mv "$SECRET_FILE.tmp" "$SECRET_FILE")
  fi
  chmod 600 "$SECRET_FILE"
  CRM_JWT_SECRET="$(head -n 1 "$SECRET_FILE")"
  export CRM_JWT_SECRET
}

build() {
  "$ROOT/deploy/install_deps.sh"
  BUILD_DIR="$BUILD_DIR" "$ROOT/deploy/build.sh"
}

if [ "${1:-}" = "token" ]; then
  [ -x "$BUILD_DIR/common/auth/crm-dev-token" ] || build >&2
  shift
  user="${1:?usage: run.sh token USER_ID [--admin]}"
  shift
  ensure_secret
  exec "$BUILD_DIR/common/auth/crm-dev-token" --user="$user" "$@"
fi

build
mkdir -p "$CRM_DATA_DIR"
ensure_secret
# The demo administrator; nobody is one unless named.
export CRM_ADMIN_USERS="${CRM_ADMIN_USERS:-1}"
RUN_DIR="$CRM_DATA_DIR/run"
mkdir -p "$RUN_DIR"

# name | binary | gRPC port | HTTP port | extra flags. In start order: deals
# and automation load their configuration from pipeline-config when they
# start; automation starts before deals so the demo rules exist when the demo
# deals' events arrive.
SERVICES=(
  "pipeline-config|$BUILD_DIR/services/pipeline_config/crm-pipeline-config|50052|9102|--deals_addr=127.0.0.1:50051"
  "automation|$BUILD_DIR/services/automation/crm-automation|50053|9103|--pipeline_config_addr=127.0.0.1:50052 --deals_addr=127.0.0.1:50051 --smtp_host=127.0.0.1 --smtp_port=2525"
  "deals|$BUILD_DIR/services/deals/crm-deals|50051|9101|--pipeline_config_addr=127.0.0.1:50052 --subscribers=automation=127.0.0.1:50053"
)

PIDS=()
stop_all() {
  trap - INT TERM EXIT
  if [ ${#PIDS[@]} -gt 0 ]; then
    echo
    echo "Stopping ${#PIDS[@]} service(s)..."
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  fi
  echo "Stopped. Data kept in $CRM_DATA_DIR"
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

# A local SMTP server (python3-aiosmtpd) for the automation's emails; each
# message lands as a file in $CRM_DATA_DIR/mail/new.
MAIL_DIR="$CRM_DATA_DIR/mail"
mkdir -p "$MAIL_DIR/tmp" "$MAIL_DIR/new" "$MAIL_DIR/cur"
/usr/bin/python3 -m aiosmtpd -n -l 127.0.0.1:2525 -c aiosmtpd.handlers.Mailbox "$MAIL_DIR" \
  >>"$RUN_DIR/smtp.log" 2>&1 &
PIDS+=("$!")
echo "started smtp: 127.0.0.1:2525, mail in $MAIL_DIR/new (log $RUN_DIR/smtp.log)"

for entry in "${SERVICES[@]}"; do
  IFS='|' read -r name binary grpc_port http_port extra <<<"$entry"
  port_file="$RUN_DIR/$name.ports"
  rm -f "$port_file"
  "$binary" --port="$grpc_port" --http_port="$http_port" --port_file="$port_file" \
    --seed_demo $extra >>"$RUN_DIR/$name.log" 2>&1 &
  PIDS+=("$!")
  for _ in $(seq 1 100); do
    [ -s "$port_file" ] && break
    if ! kill -0 "${PIDS[-1]}" 2>/dev/null; then
      echo "$name failed to start; its log ($RUN_DIR/$name.log) ends with:" >&2
      tail -n 20 "$RUN_DIR/$name.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  [ -s "$port_file" ] || { echo "$name did not start in 10 s" >&2; exit 1; }
  echo "started $name: gRPC 127.0.0.1:$grpc_port, HTTP http://127.0.0.1:$http_port (log $RUN_DIR/$name.log)"
done

TOKEN="$("$BUILD_DIR/common/auth/crm-dev-token" --user=1)"
cat <<INFO

All services are up (data in $CRM_DATA_DIR). Press Ctrl-C to stop them.

A token for user 1 (the demo administrator); for another user run
  deploy/local/run.sh token 7
  TOKEN=$TOKEN

Try it with grpcurl (server reflection, no .proto files needed):
  grpcurl -plaintext 127.0.0.1:50052 list
  grpcurl -plaintext -H "authorization: Bearer \$TOKEN" 127.0.0.1:50052 crm.pipelines.v1.PipelinesService/ListPipelines
  grpcurl -plaintext -H "authorization: Bearer \$TOKEN" -d '{"pipeline_id": 0}' 127.0.0.1:50052 crm.pipelines.v1.PipelinesService/ListStages
  grpcurl -plaintext -H "authorization: Bearer \$TOKEN" -d '{"pipeline": {"name": "Wholesale"}}' 127.0.0.1:50052 crm.pipelines.v1.PipelinesService/CreatePipeline
  grpcurl -plaintext -H "authorization: Bearer \$TOKEN" -d '{"user_id": 5}' 127.0.0.1:50052 crm.pipelines.v1.AccessService/GetEffectivePermissions
  grpcurl -plaintext 127.0.0.1:50052 grpc.health.v1.Health/Check
  grpcurl -plaintext -d '{"service": "crm.deals.v1.DealsService"}' 127.0.0.1:50051 grpc.health.v1.Health/Check

Deals (port 50051):
  grpcurl -plaintext -H "authorization: Bearer \$TOKEN" -d '{"page_size": 5}' 127.0.0.1:50051 crm.deals.v1.DealsService/ListDeals
  grpcurl -plaintext -H "authorization: Bearer \$TOKEN" -d '{"filter": {"condition": {"field": "title", "op": "OPERATOR_CONTAINS", "values": ["negocio"]}}}' 127.0.0.1:50051 crm.deals.v1.DealsService/ListDeals
  grpcurl -plaintext -H "authorization: Bearer \$TOKEN" -d '{"pipeline_id": 0, "cards_per_column": 3}' 127.0.0.1:50051 crm.deals.v1.DealsService/GetKanbanBoard
  grpcurl -plaintext -H "authorization: Bearer \$TOKEN" -d '{"deal": {"title": "New deal", "amount": "1500", "currency": "EUR"}}' 127.0.0.1:50051 crm.deals.v1.DealsService/CreateDeal
  grpcurl -plaintext -H "authorization: Bearer \$TOKEN" -d '{"deal_id": "<id>", "stage_id": "WON"}' 127.0.0.1:50051 crm.deals.v1.DealsService/MoveDealStage
Automation (port 50053): the demo rules emailed each demo deal in NEW (see
$MAIL_DIR/new) and gave its assignee a task.
  ls $MAIL_DIR/new
  grpcurl -plaintext -H "authorization: Bearer \$TOKEN" -d '{"pipeline_id": 0}' 127.0.0.1:50053 crm.automation.v1.AutomationService/ListRules
  grpcurl -plaintext -H "authorization: Bearer \$TOKEN" -d '{"responsible_id": 1}' 127.0.0.1:50053 crm.automation.v1.AutomationService/ListTasks
  grpcurl -plaintext -H "authorization: Bearer \$TOKEN" -d '{"deal_id": "<id>"}' 127.0.0.1:50053 crm.automation.v1.AutomationService/ListRuns
  grpcurl -plaintext -H "authorization: Bearer \$TOKEN" -d '{"deal_id": "<id>", "type": "TRIGGER_TYPE_PAYMENT_RECEIVED"}' 127.0.0.1:50053 crm.automation.v1.AutomationService/FireTrigger
Metrics: curl http://127.0.0.1:9102/metrics (pipeline-config), http://127.0.0.1:9101/metrics (deals), http://127.0.0.1:9103/metrics (automation)
INFO

wait -n "${PIDS[@]}" || true
echo "A service exited; see the logs in $RUN_DIR" >&2
