#include "services/automation/api/automation_service_impl.h"

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

#include "common/grpc/message_limits.h"
#include "common/http/http_status.h"
#include "common/log/log.h"
#include "common/pipelines_client/permissions.h"
#include "common/status/grpc_status.h"
#include "common/status/status_macros.h"
#include "common/text/request_id.h"

namespace crm::automation {
namespace {

namespace pv1 = ::crm::pipelines::v1;

using Caller = common::CallerIdentity;

absl::StatusOr<Caller> Authenticate(const ServiceDeps& deps,
                                    const grpc::ServerContextBase& context) {
  return deps.authenticator.AuthenticateCaller(context, deps.admin_user_ids);
}

// The caller's AUTOMATION access to a pipeline.
absl::StatusOr<pv1::AutomationAccess> AutomationAccess(const ServiceDeps& deps,
                                                       const Caller& caller,
                                                       int64_t pipeline_id) {
  if (caller.privileged) return pv1::AUTOMATION_ACCESS_EDIT;
  CRM_ASSIGN_OR_RETURN(auto proto,
                       deps.config.GetPermissions(caller.principal.user_id));
  std::shared_ptr<const common::IndexedPermissions> permissions =
      deps.permissions_cache->Get(proto);
  if (permissions->is_admin()) return pv1::AUTOMATION_ACCESS_EDIT;
  const auto* pipeline = permissions->FindPipeline(pipeline_id);
  if (pipeline == nullptr) return pv1::AUTOMATION_ACCESS_NONE;
  return pipeline->automation;
}

absl::Status RequireAutomation(const ServiceDeps& deps, const Caller& caller,
                               int64_t pipeline_id, bool edit) {
  CRM_ASSIGN_OR_RETURN(pv1::AutomationAccess access,
                       AutomationAccess(deps, caller, pipeline_id));
  const bool ok = edit ? access == pv1::AUTOMATION_ACCESS_EDIT
                       : (access == pv1::AUTOMATION_ACCESS_READ ||
                          access == pv1::AUTOMATION_ACCESS_EDIT);
  if (ok) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      edit ? "changing" : "reading", " automation of pipeline ", pipeline_id,
      " needs the AUTOMATION ", edit ? "EDIT" : "READ", " permission"));
}

// Creating a rule or trigger: the caller, an existing pipeline (named in
// `field`) and AUTOMATION EDIT on it.
absl::Status AuthorizeCreate(const ServiceDeps& deps,
                             const grpc::ServerContextBase& context,
                             int64_t pipeline_id, const char* field) {
  CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps, context));
  if (deps.config.GetConfig()->FindPipeline(pipeline_id) == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": pipeline ", pipeline_id, " does not exist"));
  }
  return RequireAutomation(deps, caller, pipeline_id, true);
}

// Changing a stored rule or trigger (read by `get`): the caller and
// AUTOMATION EDIT on its pipeline.
template <typename Get>
absl::Status AuthorizeChange(const ServiceDeps& deps,
                             const grpc::ServerContextBase& context, Get get) {
  CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps, context));
  auto stored = get();
  if (!stored.ok()) return stored.status();
  return RequireAutomation(deps, caller, stored->pipeline_id(), true);
}

// Incoming webhooks fire with "hook<trigger id>/<request_id>".
constexpr size_t kHookRequestIdReserved =
    kFireRequestIdReserved + 4 + common::kMaxInt64Digits + 1;

// A rule that moves deals into another pipeline needs AUTOMATION EDIT there
// too: otherwise it would feed deals to automation its author may not run.
absl::Status AuthorizeMoveTarget(const ServiceDeps& deps,
                                 const grpc::ServerContextBase& context,
                                 const v1::Action& action) {
  if (!action.has_move_to_pipeline()) return absl::OkStatus();
  CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps, context));
  return RequireAutomation(deps, caller,
                           action.move_to_pipeline().pipeline_id(), true);
}

// Whether the caller may read automation of a pipeline, asked once per
// pipeline of a listing.
class ReadablePipelines {
 public:
  ReadablePipelines(const ServiceDeps& deps, const Caller& caller)
      : deps_(deps), caller_(caller) {}

  bool operator()(int64_t pipeline_id) {
    if (caller_.privileged) return true;
    auto [it, added] = known_.try_emplace(pipeline_id, false);
    if (added) {
      it->second =
          RequireAutomation(deps_, caller_, pipeline_id, /*edit=*/false).ok();
    }
    return it->second;
  }

 private:
  const ServiceDeps& deps_;
  const Caller& caller_;
  absl::flat_hash_map<int64_t, bool> known_;
};

v1::Rule Redacted(v1::Rule rule) {
  if (rule.action().has_call_webhook())
    rule.mutable_action()->mutable_call_webhook()->clear_secret();
  return rule;
}

// Pages over an in-memory list by position (rules and triggers of a
// pipeline are few).
template <typename T, typename Add>
absl::Status PageList(const std::vector<T>& items, int32_t page_size,
                      const std::string& page_token, const std::string& query,
                      const common::PageTokenCodec& codec, Add add,
                      std::string* next) {
  CRM_ASSIGN_OR_RETURN(int size, common::ResolvePageSize(page_size));
  size_t start = 0;
  if (!page_token.empty()) {
    CRM_ASSIGN_OR_RETURN(std::string cursor, codec.Decode(page_token, query));
    if (!absl::SimpleAtoi(cursor, &start)) {
      return absl::InvalidArgumentError("page_token: not a token of this list");
    }
  }
  size_t end = std::min(items.size(), start + static_cast<size_t>(size));
  common::ReplyBudget budget;  // a page also ends at the reply budget
  for (size_t i = start; i < end; ++i) {
    add(items[i]);
    if (budget.Spend(items[i].ByteSizeLong())) end = i + 1;
  }
  if (end < items.size()) *next = codec.Encode(query, absl::StrCat(end));
  return absl::OkStatus();
}

// Decodes a key page token (empty = first page).
absl::StatusOr<std::string> KeyCursor(const ServiceDeps& deps,
                                      const std::string& token,
                                      const std::string& query) {
  if (token.empty()) return std::string();
  return deps.page_tokens.Decode(token, query);
}

}  // namespace

// ---------------------------------------------------------------- Rules

grpc::ServerUnaryReactor* AutomationServiceImpl::CreateRule(
    grpc::CallbackServerContext* context, const v1::CreateRuleRequest* request,
    v1::Rule* response) {
  return Run(context, [=]() -> absl::Status {
    CRM_RETURN_IF_ERROR(AuthorizeCreate(
        deps_, *context, request->rule().pipeline_id(), "rule.pipeline_id"));
    CRM_RETURN_IF_ERROR(
        AuthorizeMoveTarget(deps_, *context, request->rule().action()));
    CRM_ASSIGN_OR_RETURN(v1::Rule rule,
                         deps_.engine.catalog().CreateRule(request->rule()));
    *response = Redacted(std::move(rule));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AutomationServiceImpl::GetRule(
    grpc::CallbackServerContext* context, const v1::GetRuleRequest* request,
    v1::Rule* response) {
  return Run(context, [=]() -> absl::Status {
    CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps_, *context));
    CRM_ASSIGN_OR_RETURN(v1::Rule rule,
                         deps_.engine.catalog().GetRule(request->rule_id()));
    CRM_RETURN_IF_ERROR(
        RequireAutomation(deps_, caller, rule.pipeline_id(), false));
    *response = Redacted(std::move(rule));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AutomationServiceImpl::ListRules(
    grpc::CallbackServerContext* context, const v1::ListRulesRequest* request,
    v1::ListRulesResponse* response) {
  return Run(context, [=]() -> absl::Status {
    CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps_, *context));
    const auto config = deps_.config.GetConfig();
    if (config->FindPipeline(request->pipeline_id()) == nullptr) {
      return absl::NotFoundError(
          absl::StrCat("pipeline ", request->pipeline_id(), " not found"));
    }
    if (!request->stage_id().empty() &&
        config->FindStage(request->pipeline_id(), request->stage_id()) ==
            nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "stage_id: \"", request->stage_id(), "\" is not a stage of pipeline ",
          request->pipeline_id()));
    }
    CRM_RETURN_IF_ERROR(
        RequireAutomation(deps_, caller, request->pipeline_id(), false));
    const std::vector<v1::Rule> rules = deps_.engine.catalog().ListRules(
        request->pipeline_id(), request->stage_id());
    return PageList(
        rules, request->page_size(), request->page_token(),
        absl::StrCat("rules/", request->pipeline_id(), "/",
                     request->stage_id()),
        deps_.page_tokens,
        [&](const v1::Rule& rule) { *response->add_rules() = Redacted(rule); },
        response->mutable_next_page_token());
  });
}

grpc::ServerUnaryReactor* AutomationServiceImpl::UpdateRule(
    grpc::CallbackServerContext* context, const v1::UpdateRuleRequest* request,
    v1::Rule* response) {
  return Run(context, [=]() -> absl::Status {
    CRM_RETURN_IF_ERROR(AuthorizeChange(deps_, *context, [&] {
      return deps_.engine.catalog().GetRule(request->rule().id());
    }));
    for (const std::string& path : request->update_mask().paths()) {
      if (path == "action") {
        CRM_RETURN_IF_ERROR(
            AuthorizeMoveTarget(deps_, *context, request->rule().action()));
      }
    }
    CRM_ASSIGN_OR_RETURN(
        v1::Rule rule,
        deps_.engine.catalog().UpdateRule(
            request->rule(), request->update_mask(), request->etag()));
    *response = Redacted(std::move(rule));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AutomationServiceImpl::DeleteRule(
    grpc::CallbackServerContext* context, const v1::DeleteRuleRequest* request,
    google::protobuf::Empty*) {
  return Run(context, [=]() -> absl::Status {
    CRM_RETURN_IF_ERROR(AuthorizeChange(deps_, *context, [&] {
      return deps_.engine.catalog().GetRule(request->rule_id());
    }));
    return deps_.engine.catalog().DeleteRule(request->rule_id(),
                                             request->etag());
  });
}

// ---------------------------------------------------------------- Triggers

grpc::ServerUnaryReactor* AutomationServiceImpl::CreateTrigger(
    grpc::CallbackServerContext* context,
    const v1::CreateTriggerRequest* request, v1::Trigger* response) {
  return Run(context, [=]() -> absl::Status {
    CRM_RETURN_IF_ERROR(AuthorizeCreate(deps_, *context,
                                        request->trigger().pipeline_id(),
                                        "trigger.pipeline_id"));
    CRM_ASSIGN_OR_RETURN(
        *response, deps_.engine.catalog().CreateTrigger(request->trigger()));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AutomationServiceImpl::GetTrigger(
    grpc::CallbackServerContext* context, const v1::GetTriggerRequest* request,
    v1::Trigger* response) {
  return Run(context, [=]() -> absl::Status {
    CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps_, *context));
    CRM_ASSIGN_OR_RETURN(v1::Trigger trigger, deps_.engine.catalog().GetTrigger(
                                                  request->trigger_id()));
    // The webhook token is a secret of those who may edit the trigger.
    CRM_ASSIGN_OR_RETURN(
        pv1::AutomationAccess access,
        AutomationAccess(deps_, caller, trigger.pipeline_id()));
    if (access != pv1::AUTOMATION_ACCESS_READ &&
        access != pv1::AUTOMATION_ACCESS_EDIT) {
      return RequireAutomation(deps_, caller, trigger.pipeline_id(), false);
    }
    if (access != pv1::AUTOMATION_ACCESS_EDIT) trigger.clear_webhook_token();
    *response = std::move(trigger);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AutomationServiceImpl::ListTriggers(
    grpc::CallbackServerContext* context,
    const v1::ListTriggersRequest* request,
    v1::ListTriggersResponse* response) {
  return Run(context, [=]() -> absl::Status {
    CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps_, *context));
    const auto config = deps_.config.GetConfig();
    if (config->FindPipeline(request->pipeline_id()) == nullptr) {
      return absl::NotFoundError(
          absl::StrCat("pipeline ", request->pipeline_id(), " not found"));
    }
    CRM_ASSIGN_OR_RETURN(
        pv1::AutomationAccess access,
        AutomationAccess(deps_, caller, request->pipeline_id()));
    if (access != pv1::AUTOMATION_ACCESS_READ &&
        access != pv1::AUTOMATION_ACCESS_EDIT) {
      return RequireAutomation(deps_, caller, request->pipeline_id(), false);
    }
    const std::vector<v1::Trigger> triggers =
        deps_.engine.catalog().ListTriggers(request->pipeline_id(),
                                            request->stage_id());
    return PageList(
        triggers, request->page_size(), request->page_token(),
        absl::StrCat("triggers/", request->pipeline_id(), "/",
                     request->stage_id()),
        deps_.page_tokens,
        [&](const v1::Trigger& trigger) {
          v1::Trigger* out = response->add_triggers();
          *out = trigger;
          if (access != pv1::AUTOMATION_ACCESS_EDIT) out->clear_webhook_token();
        },
        response->mutable_next_page_token());
  });
}

grpc::ServerUnaryReactor* AutomationServiceImpl::UpdateTrigger(
    grpc::CallbackServerContext* context,
    const v1::UpdateTriggerRequest* request, v1::Trigger* response) {
  return Run(context, [=]() -> absl::Status {
    CRM_RETURN_IF_ERROR(AuthorizeChange(deps_, *context, [&] {
      return deps_.engine.catalog().GetTrigger(request->trigger().id());
    }));
    CRM_ASSIGN_OR_RETURN(
        *response,
        deps_.engine.catalog().UpdateTrigger(
            request->trigger(), request->update_mask(), request->etag()));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AutomationServiceImpl::DeleteTrigger(
    grpc::CallbackServerContext* context,
    const v1::DeleteTriggerRequest* request, google::protobuf::Empty*) {
  return Run(context, [=]() -> absl::Status {
    CRM_RETURN_IF_ERROR(AuthorizeChange(deps_, *context, [&] {
      return deps_.engine.catalog().GetTrigger(request->trigger_id());
    }));
    return deps_.engine.catalog().DeleteTrigger(request->trigger_id(),
                                                request->etag());
  });
}

grpc::ServerUnaryReactor* AutomationServiceImpl::FireTrigger(
    grpc::CallbackServerContext* context, const v1::FireTriggerRequest* request,
    v1::FireTriggerResponse* response) {
  return Run(context, [=]() -> absl::Status {
    CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps_, *context));
    // Outside events come from integrations (services) and administrators.
    if (!caller.privileged) {
      return absl::PermissionDeniedError(
          "firing triggers is for service identities and administrators");
    }
    CRM_RETURN_IF_ERROR(common::ValidateRequestId(request->request_id(),
                                                  kFireRequestIdReserved));
    // Each caller's request ids are its own.
    const std::string request_id =
        request->request_id().empty()
            ? ""
            : absl::StrCat(caller.principal.IsService()
                               ? caller.principal.service
                               : absl::StrCat("u", caller.principal.user_id),
                           "/", request->request_id());
    CRM_ASSIGN_OR_RETURN(
        *response, deps_.engine.FireTrigger(request->deal_id(), request->type(),
                                            request->app_code(), request_id));
    return absl::OkStatus();
  });
}

// ---------------------------------------------------------------- Tasks, runs

grpc::ServerUnaryReactor* AutomationServiceImpl::ListTasks(
    grpc::CallbackServerContext* context, const v1::ListTasksRequest* request,
    v1::ListTasksResponse* response) {
  return Run(context, [=]() -> absl::Status {
    CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps_, *context));
    if (request->deal_id() < 0 || request->responsible_id() < 0) {
      return absl::InvalidArgumentError(
          "deal_id: ids are positive (responsible_id too)");
    }
    if (!v1::Task::Status_IsValid(request->status())) {
      return absl::InvalidArgumentError("status: unknown");
    }
    CRM_ASSIGN_OR_RETURN(int size,
                         common::ResolvePageSize(request->page_size()));
    const std::string query =
        absl::StrCat("tasks/", request->deal_id(), "/",
                     request->responsible_id(), "/", request->status());
    CRM_ASSIGN_OR_RETURN(std::string after,
                         KeyCursor(deps_, request->page_token(), query));
    TaskQuery task_query{request->deal_id(), request->responsible_id(),
                         request->status()};
    CRM_ASSIGN_OR_RETURN(Page<v1::Task> page,
                         deps_.engine.ListTasks(task_query, after, size));
    // Users see their own tasks, and the tasks of pipelines whose
    // automation they may read.
    ReadablePipelines readable(deps_, caller);
    for (v1::Task& task : page.items) {
      if (task.responsible_id() != caller.principal.user_id &&
          !readable(task.pipeline_id())) {
        continue;
      }
      *response->add_tasks() = std::move(task);
    }
    if (page.more) {
      response->set_next_page_token(
          deps_.page_tokens.Encode(query, page.last_key));
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AutomationServiceImpl::CompleteTask(
    grpc::CallbackServerContext* context,
    const v1::CompleteTaskRequest* request, v1::Task* response) {
  return Run(context, [=]() -> absl::Status {
    CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps_, *context));
    if (request->task_id() <= 0) {
      return absl::InvalidArgumentError("task_id: must be a positive task id");
    }
    CRM_ASSIGN_OR_RETURN(v1::Task task,
                         deps_.engine.GetTask(request->task_id()));
    if (!caller.privileged &&
        task.responsible_id() != caller.principal.user_id) {
      CRM_RETURN_IF_ERROR(
          RequireAutomation(deps_, caller, task.pipeline_id(), true));
    }
    CRM_ASSIGN_OR_RETURN(*response,
                         deps_.engine.CompleteTask(request->task_id()));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AutomationServiceImpl::ListRuns(
    grpc::CallbackServerContext* context, const v1::ListRunsRequest* request,
    v1::ListRunsResponse* response) {
  return Run(context, [=]() -> absl::Status {
    CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps_, *context));
    CRM_ASSIGN_OR_RETURN(int size,
                         common::ResolvePageSize(request->page_size()));
    const std::string query = absl::StrCat("runs/", request->deal_id());
    CRM_ASSIGN_OR_RETURN(std::string after,
                         KeyCursor(deps_, request->page_token(), query));
    CRM_ASSIGN_OR_RETURN(
        Page<v1::Run> page,
        deps_.engine.ListRuns(request->deal_id(), after, size));
    ReadablePipelines readable(deps_, caller);
    for (v1::Run& run : page.items) {
      if (!readable(run.pipeline_id())) continue;
      *response->add_runs() = std::move(run);
    }
    if (page.more) {
      response->set_next_page_token(
          deps_.page_tokens.Encode(query, page.last_key));
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AutomationServiceImpl::ListNotifications(
    grpc::CallbackServerContext* context,
    const v1::ListNotificationsRequest* request,
    v1::ListNotificationsResponse* response) {
  return Run(context, [=]() -> absl::Status {
    CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps_, *context));
    const int64_t user_id =
        request->user_id() != 0 ? request->user_id() : caller.principal.user_id;
    if (!caller.privileged && user_id != caller.principal.user_id) {
      return absl::PermissionDeniedError(
          "user_id: only your own notifications");
    }
    CRM_ASSIGN_OR_RETURN(int size,
                         common::ResolvePageSize(request->page_size()));
    const std::string query = absl::StrCat("notifications/", user_id);
    CRM_ASSIGN_OR_RETURN(std::string after,
                         KeyCursor(deps_, request->page_token(), query));
    CRM_ASSIGN_OR_RETURN(Page<v1::Notification> page,
                         deps_.engine.ListNotifications(user_id, after, size));
    for (v1::Notification& note : page.items)
      *response->add_notifications() = std::move(note);
    if (page.more) {
      response->set_next_page_token(
          deps_.page_tokens.Encode(query, page.last_key));
    }
    return absl::OkStatus();
  });
}

// ---------------------------------------------------------------- Event sink

grpc::ServerUnaryReactor* EventSinkImpl::DeliverEvents(
    grpc::CallbackServerContext* context,
    const crm::deals::v1::DeliverEventsRequest* request,
    crm::deals::v1::DeliverEventsResponse* response) {
  return Run(context, [=]() -> absl::Status {
    CRM_ASSIGN_OR_RETURN(common::Principal caller,
                         authenticator_.Authenticate(*context));
    // Only the deals service publishes deal events (a forged sequence
    // would make automation skip a shard's real events).
    if (caller.service != "deals") {
      return absl::PermissionDeniedError(
          "only the deals service may deliver deal events");
    }
    for (int i = 0; i < request->events_size(); ++i) {
      const auto& event = request->events(i);
      if (i > 0 && event.shard() != request->events(0).shard()) {
        return absl::InvalidArgumentError(
            absl::StrCat("events[", i, "].shard: one shard per request"));
      }
      if (i > 0 && event.sequence() <= request->events(i - 1).sequence()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "events[", i, "].sequence: must increase within a request"));
      }
    }
    CRM_ASSIGN_OR_RETURN(int64_t applied,
                         engine_.ApplyEvents(request->events()));
    response->set_applied_sequence(applied);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* EventSinkImpl::Ping(
    grpc::CallbackServerContext* context, const google::protobuf::Empty*,
    google::protobuf::Empty*) {
  // Like every method but health and reflection: a valid token (any
  // identity; only DeliverEvents is limited to deals).
  return Run(context, [=]() -> absl::Status {
    return authenticator_.Authenticate(*context).status();
  });
}

// ---------------------------------------------------------------- HTTP

namespace {

common::HttpServer::Response JsonAnswer(int status, nlohmann::json body) {
  common::HttpServer::Response response;
  response.status = status;
  response.content_type = "application/json";
  response.body = body.dump();
  return response;
}

}  // namespace

void RegisterHttpHandlers(common::HttpServer& http, AutomationEngine& engine,
                          Clock& clock) {
  http.HandlePost("/hooks/*", [&engine](
                                  const common::HttpServer::Request& request) {
    const std::string prefix = "/hooks/";
    const std::string token = request.path.substr(prefix.size());
    std::optional<v1::Trigger> trigger =
        engine.catalog().FindTriggerByToken(token);
    if (token.empty() || !trigger.has_value()) {
      return JsonAnswer(404, {{"error", "unknown webhook token"}});
    }
    int64_t deal_id = 0;
    std::string request_id;
    if (auto it = request.query.find("deal_id"); it != request.query.end()) {
      if (!absl::SimpleAtoi(it->second, &deal_id)) deal_id = -1;
    } else if (!request.body.empty()) {
      nlohmann::json body = nlohmann::json::parse(request.body, nullptr, false);
      if (body.is_object() && body.contains("deal_id")) {
        if (body["deal_id"].is_number_integer()) {
          deal_id = body["deal_id"].get<int64_t>();
        } else if (body["deal_id"].is_string()) {
          if (!absl::SimpleAtoi(body["deal_id"].get<std::string>(), &deal_id))
            deal_id = -1;
        }
      }
      if (body.is_object() && body.contains("request_id") &&
          body["request_id"].is_string()) {
        request_id = body["request_id"].get<std::string>();
      }
    }
    if (auto it = request.query.find("request_id"); it != request.query.end())
      request_id = it->second;
    if (deal_id <= 0) {
      return JsonAnswer(400,
                        {{"error",
                          "deal_id: a positive deal id is required (query or "
                          "JSON body)"}});
    }
    if (absl::Status valid =
            common::ValidateRequestId(request_id, kHookRequestIdReserved);
        !valid.ok()) {
      return JsonAnswer(400, {{"error", std::string(valid.message())}});
    }
    absl::StatusOr<v1::FireTriggerResponse> fired = engine.FireTrigger(
        deal_id, v1::TRIGGER_TYPE_INCOMING_WEBHOOK, "",
        request_id.empty()
            ? ""
            : absl::StrCat("hook", trigger->id(), "/", request_id),
        trigger->id());
    if (!fired.ok()) {
      return JsonAnswer(common::HttpStatusFor(fired.status()),
                        {{"error", std::string(fired.status().message())}});
    }
    return JsonAnswer(200, {{"moved", fired->moved()},
                            {"trigger_id", trigger->id()},
                            {"to_stage_id", fired->to_stage_id()}});
  });
  if (!clock.adjustable()) return;
  http.HandlePost(
      "/test/clock",
      [&engine, &clock](const common::HttpServer::Request& request) {
        int64_t seconds = 0;
        auto it = request.query.find("advance_seconds");
        if (it == request.query.end() ||
            !absl::SimpleAtoi(it->second, &seconds) || seconds < 0 ||
            seconds > int64_t{10} * 366 * 24 * 3600) {
          return JsonAnswer(400,
                            {{"error",
                              "advance_seconds: a whole number of seconds, "
                              "0 to 10 years"}});
        }
        if (absl::Status moved = clock.Advance(absl::Seconds(seconds));
            !moved.ok()) {
          return JsonAnswer(common::HttpStatusFor(moved),
                            {{"error", std::string(moved.message())}});
        }
        engine.Wake();
        return JsonAnswer(
            200, {{"now_unix_micros", absl::ToUnixMicros(clock.Now())}});
      });
}

}  // namespace crm::automation
