// gRPC front of the automation engine: crm.automation.v1.AutomationService
// and the crm.deals.v1.DealEventSink the deals relay delivers to, plus the
// incoming-webhook and test-clock HTTP handlers.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include "absl/status/statusor.h"

#include "crm/automation/v1/automation_service.grpc.pb.h"
#include "crm/deals/v1/deal_events.grpc.pb.h"

#include "common/auth/auth.h"
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
};

class AutomationServiceImpl final : public v1::AutomationService::Service {
 public:
  explicit AutomationServiceImpl(ServiceDeps deps) : deps_(std::move(deps)) {}

  grpc::Status CreateRule(grpc::ServerContext* context,
                          const v1::CreateRuleRequest* request,
                          v1::Rule* response) override;
  grpc::Status GetRule(grpc::ServerContext* context,
                       const v1::GetRuleRequest* request,
                       v1::Rule* response) override;
  grpc::Status ListRules(grpc::ServerContext* context,
                         const v1::ListRulesRequest* request,
                         v1::ListRulesResponse* response) override;
  grpc::Status UpdateRule(grpc::ServerContext* context,
                          const v1::UpdateRuleRequest* request,
                          v1::Rule* response) override;
  grpc::Status DeleteRule(grpc::ServerContext* context,
                          const v1::DeleteRuleRequest* request,
                          google::protobuf::Empty* response) override;
  grpc::Status CreateTrigger(grpc::ServerContext* context,
                             const v1::CreateTriggerRequest* request,
                             v1::Trigger* response) override;
  grpc::Status GetTrigger(grpc::ServerContext* context,
                          const v1::GetTriggerRequest* request,
                          v1::Trigger* response) override;
  grpc::Status ListTriggers(grpc::ServerContext* context,
                            const v1::ListTriggersRequest* request,
                            v1::ListTriggersResponse* response) override;
  grpc::Status UpdateTrigger(grpc::ServerContext* context,
                             const v1::UpdateTriggerRequest* request,
                             v1::Trigger* response) override;
  grpc::Status DeleteTrigger(grpc::ServerContext* context,
                             const v1::DeleteTriggerRequest* request,
                             google::protobuf::Empty* response) override;
  grpc::Status FireTrigger(grpc::ServerContext* context,
                           const v1::FireTriggerRequest* request,
                           v1::FireTriggerResponse* response) override;
  grpc::Status ListTasks(grpc::ServerContext* context,
                         const v1::ListTasksRequest* request,
                         v1::ListTasksResponse* response) override;
  grpc::Status CompleteTask(grpc::ServerContext* context,
                            const v1::CompleteTaskRequest* request,
                            v1::Task* response) override;
  grpc::Status ListRuns(grpc::ServerContext* context,
                        const v1::ListRunsRequest* request,
                        v1::ListRunsResponse* response) override;
  grpc::Status ListNotifications(
      grpc::ServerContext* context, const v1::ListNotificationsRequest* request,
      v1::ListNotificationsResponse* response) override;

 private:
  ServiceDeps deps_;
};

class EventSinkImpl final : public crm::deals::v1::DealEventSink::Service {
 public:
  EventSinkImpl(AutomationEngine& engine,
                const common::Authenticator& authenticator)
      : engine_(engine), authenticator_(authenticator) {}

  grpc::Status DeliverEvents(
      grpc::ServerContext* context,
      const crm::deals::v1::DeliverEventsRequest* request,
      crm::deals::v1::DeliverEventsResponse* response) override;
  grpc::Status Ping(grpc::ServerContext* context,
                    const google::protobuf::Empty* request,
                    google::protobuf::Empty* response) override;

 private:
  AutomationEngine& engine_;
  const common::Authenticator& authenticator_;
};

// POST /hooks/<token> (body {"deal_id": N} or ?deal_id=N): fires the
// incoming-webhook trigger holding the token. With `clock` adjustable, also
// POST /test/clock?advance_seconds=N.
void RegisterHttpHandlers(common::HttpServer& http, AutomationEngine& engine,
                          Clock& clock);

}  // namespace crm::automation
