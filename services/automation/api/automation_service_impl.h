// gRPC front of the automation engine: crm.automation.v1.AutomationService
// and the crm.deals.v1.DealEventSink the deals relay delivers to, plus the
// incoming-webhook and test-clock HTTP handlers.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <utility>

#include "absl/status/statusor.h"

#include "crm/automation/v1/automation_service.grpc.pb.h"
#include "crm/deals/v1/deal_events.grpc.pb.h"

#include "common/auth/auth.h"
#include "common/concurrency/worker_pool.h"
#include "common/grpc/unary_call.h"
#include "common/http/http_server.h"
#include "common/pagination/page_token.h"
#include "common/pipelines_client/permissions.h"
#include "common/pipelines_client/pipeline_client.h"
#include "services/automation/engine/engine.h"

namespace crm::automation {

struct ServiceDeps {
  AutomationEngine& engine;
  crm::common::PipelineClient& config;
  const common::Authenticator& authenticator;
  const common::PageTokenCodec& page_tokens;
  std::set<int64_t> admin_user_ids;
  // Indexed permissions per user and config version, built once each.
  std::shared_ptr<common::IndexedPermissionsCache> permissions_cache =
      std::make_shared<common::IndexedPermissionsCache>();
  // Calls run here (they read and write the store and call deals); inline
  // on gRPC's threads when null (tests that need no pool).
  common::WorkerPool* workers = nullptr;
};

class AutomationServiceImpl final
    : public v1::AutomationService::CallbackService {
 public:
  explicit AutomationServiceImpl(ServiceDeps deps) : deps_(std::move(deps)) {}

  grpc::ServerUnaryReactor* CreateRule(grpc::CallbackServerContext* context,
                                       const v1::CreateRuleRequest* request,
                                       v1::Rule* response) override;
  grpc::ServerUnaryReactor* GetRule(grpc::CallbackServerContext* context,
                                    const v1::GetRuleRequest* request,
                                    v1::Rule* response) override;
  grpc::ServerUnaryReactor* ListRules(grpc::CallbackServerContext* context,
                                      const v1::ListRulesRequest* request,
                                      v1::ListRulesResponse* response) override;
  grpc::ServerUnaryReactor* UpdateRule(grpc::CallbackServerContext* context,
                                       const v1::UpdateRuleRequest* request,
                                       v1::Rule* response) override;
  grpc::ServerUnaryReactor* DeleteRule(
      grpc::CallbackServerContext* context,
      const v1::DeleteRuleRequest* request,
      google::protobuf::Empty* response) override;
  grpc::ServerUnaryReactor* CreateTrigger(
      grpc::CallbackServerContext* context,
      const v1::CreateTriggerRequest* request, v1::Trigger* response) override;
  grpc::ServerUnaryReactor* GetTrigger(grpc::CallbackServerContext* context,
                                       const v1::GetTriggerRequest* request,
                                       v1::Trigger* response) override;
  grpc::ServerUnaryReactor* ListTriggers(
      grpc::CallbackServerContext* context,
      const v1::ListTriggersRequest* request,
      v1::ListTriggersResponse* response) override;
  grpc::ServerUnaryReactor* UpdateTrigger(
      grpc::CallbackServerContext* context,
      const v1::UpdateTriggerRequest* request, v1::Trigger* response) override;
  grpc::ServerUnaryReactor* DeleteTrigger(
      grpc::CallbackServerContext* context,
      const v1::DeleteTriggerRequest* request,
      google::protobuf::Empty* response) override;
  grpc::ServerUnaryReactor* FireTrigger(
      grpc::CallbackServerContext* context,
      const v1::FireTriggerRequest* request,
      v1::FireTriggerResponse* response) override;
  grpc::ServerUnaryReactor* ListTasks(grpc::CallbackServerContext* context,
                                      const v1::ListTasksRequest* request,
                                      v1::ListTasksResponse* response) override;
  grpc::ServerUnaryReactor* CompleteTask(grpc::CallbackServerContext* context,
                                         const v1::CompleteTaskRequest* request,
                                         v1::Task* response) override;
  grpc::ServerUnaryReactor* ListRuns(grpc::CallbackServerContext* context,
                                     const v1::ListRunsRequest* request,
                                     v1::ListRunsResponse* response) override;
  grpc::ServerUnaryReactor* ListNotifications(
      grpc::CallbackServerContext* context,
      const v1::ListNotificationsRequest* request,
      v1::ListNotificationsResponse* response) override;

 private:
  // Every call runs on deps_.workers (common::RunUnary).
  template <typename Work>
  grpc::ServerUnaryReactor* Run(grpc::CallbackServerContext* context,
                                Work work) {
    return common::RunUnary(context, deps_.workers, "automation",
                            std::move(work));
  }

  ServiceDeps deps_;
};

class EventSinkImpl final
    : public crm::deals::v1::DealEventSink::CallbackService {
 public:
  // Deliveries are applied on `workers` (they write and fsync); inline on
  // gRPC's threads when null.
  EventSinkImpl(AutomationEngine& engine,
                const common::Authenticator& authenticator,
                common::WorkerPool* workers = nullptr)
      : engine_(engine), authenticator_(authenticator), workers_(workers) {}

  grpc::ServerUnaryReactor* DeliverEvents(
      grpc::CallbackServerContext* context,
      const crm::deals::v1::DeliverEventsRequest* request,
      crm::deals::v1::DeliverEventsResponse* response) override;
  grpc::ServerUnaryReactor* Ping(grpc::CallbackServerContext* context,
                                 const google::protobuf::Empty* request,
                                 google::protobuf::Empty* response) override;

 private:
  template <typename Work>
  grpc::ServerUnaryReactor* Run(grpc::CallbackServerContext* context,
                                Work work) {
    return common::RunUnary(context, workers_, "automation", std::move(work));
  }

  AutomationEngine& engine_;
  const common::Authenticator& authenticator_;
  common::WorkerPool* workers_;
};

// POST /hooks/<token> (body {"deal_id": N} or ?deal_id=N): fires the
// incoming-webhook trigger holding the token. With `clock` adjustable, also
// POST /test/clock?advance_seconds=N.
void RegisterHttpHandlers(common::HttpServer& http, AutomationEngine& engine,
                          Clock& clock);

}  // namespace crm::automation
