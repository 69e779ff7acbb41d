#include "services/automation/engine/engine.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

#include "common/grpc/message_limits.h"
#include "common/log/log.h"
#include "common/status/status_macros.h"
#include "common/text/request_id.h"
#include "common/time/proto_time.h"
#include "services/automation/engine/runs.h"

namespace crm::automation {
namespace {

namespace dv1 = ::crm::deals::v1;
using ::crm::common::ToTimestamp;

ActionOptions ActionOptionsOf(const EngineOptions& options) {
  ActionOptions actions;
  actions.mail_from = options.mail_from;
  actions.sms_gateway_url = options.sms_gateway_url;
  actions.allow_private_webhooks = options.allow_private_webhooks;
  actions.outbound_timeout = options.outbound_timeout;
  return actions;
}

IntakeOptions IntakeOptionsOf(const EngineOptions& options) {
  IntakeOptions intake;
  intake.zone = options.zone;
  intake.loop_max_depth = options.loop_max_depth;
  intake.loop_window = options.loop_window;
  intake.metrics = options.metrics;
  return intake;
}

ExecutorOptions ExecutorOptionsOf(const EngineOptions& options) {
  ExecutorOptions executor;
  executor.zone = options.zone;
  executor.max_attempts = options.max_attempts;
  executor.retry_base = options.retry_base;
  executor.retry_max = options.retry_max;
  executor.deals_retry_max = options.deals_retry_max;
  executor.metrics = options.metrics;
  return executor;
}

RunQueue::Options QueueOptionsOf(const EngineOptions& options) {
  RunQueue::Options queue;
  queue.store_retry = options.store_retry;
  queue.metrics = options.metrics;
  return queue;
}

std::unique_ptr<MailSender> OwnMail(const EngineOptions& options) {
  if (options.mail != nullptr) return nullptr;
  SmtpServer server = options.smtp;
  server.timeout = options.outbound_timeout;
  return std::make_unique<SmtpMailSender>(std::move(server));
}

std::unique_ptr<HttpSender> OwnHttp(const EngineOptions& options) {
  if (options.http != nullptr) return nullptr;
  return std::make_unique<CurlHttpSender>();
}

}  // namespace

// ---------------------------------------------------------------- Lifecycle

AutomationEngine::AutomationEngine(AutomationStore& store,
                                   crm::common::PipelineClient& config,
                                   DealsClient& deals, Clock& clock,
                                   EngineOptions options)
    : store_(store),
      config_(config),
      deals_(deals),
      clock_(clock),
      options_(std::move(options)),
      catalog_(store, config, clock),
      queue_(store, QueueOptionsOf(options_)),
      own_mail_(OwnMail(options_)),
      own_http_(OwnHttp(options_)),
      actions_(deals, config,
               options_.mail != nullptr ? *options_.mail : *own_mail_,
               options_.http != nullptr ? *options_.http : *own_http_,
               ActionOptionsOf(options_)),
      intake_(store, queue_, catalog_, config, clock,
              IntakeOptionsOf(options_)),
      executor_(store, queue_, catalog_, actions_, clock,
                ExecutorOptionsOf(options_)),
      scheduler_(queue_, clock, options_.workers,
                 [this](const std::string& key) { executor_.Execute(key); }) {}

AutomationEngine::~AutomationEngine() { Stop(); }

absl::Status AutomationEngine::Start() {
  CRM_RETURN_IF_ERROR(catalog_.Load());
  {
    absl::MutexLock lock(&queue_.mu());
    CRM_RETURN_IF_ERROR(queue_.Reload());
  }
  scheduler_.Start();
  return absl::OkStatus();
}

void AutomationEngine::Stop() { scheduler_.Stop(); }

absl::StatusOr<int64_t> AutomationEngine::ApplyEvents(
    const google::protobuf::RepeatedPtrField<dv1::DealEvent>& events) {
  return intake_.ApplyEvents(events);
}

bool AutomationEngine::Idle(absl::Duration horizon) const {
  return queue_.Idle(clock_.Now() + horizon);
}

void AutomationEngine::Wake() { queue_.Wake(); }

// ---------------------------------------------------------------- Triggers

absl::StatusOr<v1::FireTriggerResponse> AutomationEngine::FireTrigger(
    int64_t deal_id, v1::TriggerType type, const std::string& app_code,
    const std::string& request_id, int64_t only_trigger_id) {
  if (deal_id <= 0) {
    return absl::InvalidArgumentError("deal_id: must be a positive deal id");
  }
  if (type == v1::TRIGGER_TYPE_UNSPECIFIED || !v1::TriggerType_IsValid(type)) {
    return absl::InvalidArgumentError("type: required");
  }
  if (type == v1::TRIGGER_TYPE_FIELD_CHANGED ||
      type == v1::TRIGGER_TYPE_ASSIGNEE_CHANGED) {
    return absl::InvalidArgumentError(
        "type: field and assignee changes fire from deal events");
  }
  if (type == v1::TRIGGER_TYPE_APP && app_code.empty()) {
    return absl::InvalidArgumentError(
        "app_code: required for TRIGGER_TYPE_APP");
  }
  // Deals is called with "fire/<request_id>".
  CRM_RETURN_IF_ERROR(
      common::ValidateRequestId(request_id, kFireRequestIdReserved));
  // A repeated request answers what the first one did (the deal has moved
  // since, so choosing again would say "not moved"). The request id is bound
  // to the request it came with (kept under "fired-for/", beside the
  // answer): another deal, type or app under the id is refused as deals
  // refuses a reused request id. Answers kept before the request was have
  // none and answer any repeat.
  const std::string answer_key =
      request_id.empty() ? "" : absl::StrCat("fired/", request_id);
  const std::string request_key =
      request_id.empty() ? "" : absl::StrCat("fired-for/", request_id);
  v1::FireTriggerRequest fired;
  fired.set_deal_id(deal_id);
  fired.set_type(type);
  fired.set_app_code(app_code);
  if (!answer_key.empty()) {
    v1::FireTriggerResponse earlier;
    CRM_ASSIGN_OR_RETURN(bool answered, store_.GetMeta(answer_key, &earlier));
    if (answered) {
      v1::FireTriggerRequest first;
      CRM_ASSIGN_OR_RETURN(bool bound, store_.GetMeta(request_key, &first));
      if (bound && first.SerializeAsString() != fired.SerializeAsString()) {
        return absl::AlreadyExistsError(
            "request_id: used already for a different request");
      }
      return earlier;
    }
  }
  // Best effort: without it a retry still changes nothing (deals knows the
  // request id), it only answers "not moved".
  auto keep_answer = [&](const v1::FireTriggerResponse& response) {
    if (answer_key.empty()) return;
    AutomationStore::Batch batch(store_);
    batch.PutMeta(answer_key, response);
    batch.PutMeta(request_key, fired);
    if (absl::Status kept = store_.Write(batch); !kept.ok()) {
      CRM_LOG(kWarning, "cannot keep a trigger answer",
              {{"error", kept.ToString()}});
    }
  };
  CRM_ASSIGN_OR_RETURN(dv1::Deal deal, deals_.GetDeal(deal_id));
  v1::Trigger chosen;
  bool found = false;
  {
    const std::vector<Catalog::TriggerPtr> triggers =
        catalog_.PipelineTriggers(deal.pipeline_id());
    std::vector<const v1::Trigger*> candidates;
    for (const Catalog::TriggerPtr& trigger : triggers) {
      if (trigger->type() != type) continue;
      if (only_trigger_id != 0 && trigger->id() != only_trigger_id) continue;
      if (type == v1::TRIGGER_TYPE_APP && trigger->app_code() != app_code)
        continue;
      candidates.push_back(trigger.get());
    }
    if (const v1::Trigger* best =
            ChooseTrigger(*config_.GetConfig(), deal, candidates)) {
      chosen = *best;
      found = true;
    }
  }
  v1::FireTriggerResponse response;
  if (!found) {
    // "Not moved" is an answer too: a repeat after the deal changed must
    // not move it then.
    keep_answer(response);
    return response;
  }
  absl::StatusOr<dv1::Deal> moved = deals_.MoveStage(
      deal_id, chosen.stage_id(),
      request_id.empty() ? "" : absl::StrCat("fire/", request_id),
      dv1::CHANNEL_TRIGGER);
  response.set_trigger_id(chosen.id());
  response.set_to_stage_id(chosen.stage_id());
  if (moved.ok()) {
    response.set_moved(moved->stage_id() == chosen.stage_id());
  } else if (!MadeByEarlierAttempt(moved.status())) {
    return moved.status();
  }
  // else: an earlier fire with this id moved the deal (its answer was not
  // kept) and the deal has changed since, so this one moved nothing.
  keep_answer(response);
  return response;
}

// ---------------------------------------------------------------- Queries

absl::StatusOr<Page<v1::Task>> AutomationEngine::ListTasks(
    const TaskQuery& query, const std::string& after_key, int limit) const {
  if (query.deal_id <= 0 && query.responsible_id <= 0) {
    return absl::InvalidArgumentError(
        "deal_id: name a deal or a responsible_id");
  }
  const bool by_deal = query.deal_id > 0;
  Page<v1::Task> page;
  common::ReplyBudget budget;  // a page also ends at the reply budget
  absl::Status read;
  CRM_RETURN_IF_ERROR(store_.ForEachTaskId(
      by_deal, by_deal ? query.deal_id : query.responsible_id, after_key,
      [&](const std::string& index_key, int64_t task_id) {
        v1::Task task;
        absl::StatusOr<bool> found = store_.GetTask(task_id, &task);
        if (!found.ok()) {
          read = found.status();
          return false;
        }
        if (!*found) return true;
        if (query.responsible_id > 0 &&
            task.responsible_id() != query.responsible_id) {
          return true;
        }
        if (query.status != v1::Task::STATUS_UNSPECIFIED &&
            task.status() != query.status) {
          return true;
        }
        if (static_cast<int>(page.items.size()) >= limit || budget.spent()) {
          page.more = true;
          return false;
        }
        budget.Spend(task.ByteSizeLong());
        page.items.push_back(std::move(task));
        page.last_key = index_key;
        return true;
      }));
  CRM_RETURN_IF_ERROR(read);
  return page;
}

absl::StatusOr<v1::Task> AutomationEngine::GetTask(int64_t task_id) const {
  v1::Task task;
  CRM_ASSIGN_OR_RETURN(bool found, store_.GetTask(task_id, &task));
  if (!found) {
    return absl::NotFoundError(absl::StrCat("task ", task_id, " not found"));
  }
  return task;
}

absl::StatusOr<v1::Task> AutomationEngine::CompleteTask(int64_t task_id) {
  // Under the engine's write lock: a run completing the stage's tasks
  // writes the same records.
  absl::MutexLock lock(&queue_.mu());
  CRM_ASSIGN_OR_RETURN(v1::Task task, GetTask(task_id));
  if (task.status() == v1::Task::STATUS_COMPLETED) return task;
  task.set_status(v1::Task::STATUS_COMPLETED);
  *task.mutable_complete_time() = ToTimestamp(clock_.Now());
  AutomationStore::Batch batch(store_);
  batch.PutTask(task);
  CRM_RETURN_IF_ERROR(store_.Write(batch));
  return task;
}

namespace {

// Fills a newest-first page: at most `limit` items, and at most the reply
// budget.
template <typename Item>
class PageFiller {
 public:
  PageFiller(int limit, Page<Item>* page) : limit_(limit), page_(page) {}
  bool full() const {
    return static_cast<int>(page_->items.size()) >= limit_ || budget_.spent();
  }
  void Take(const std::string& key, size_t bytes, Item item) {
    budget_.Spend(bytes);
    page_->items.push_back(std::move(item));
    page_->last_key = key;
  }

 private:
  const int limit_;
  Page<Item>* page_;
  common::ReplyBudget budget_;
};

}  // namespace

absl::StatusOr<Page<v1::Run>> AutomationEngine::ListRuns(
    int64_t deal_id, const std::string& after_key, int limit) const {
  if (deal_id <= 0)
    return absl::InvalidArgumentError("deal_id: must be a positive deal id");
  Page<v1::Run> page;
  PageFiller<v1::Run> filler(limit, &page);
  CRM_ASSIGN_OR_RETURN(
      page.more, store_.ForEachRunNewestFirst(
                     deal_id, after_key, [&] { return filler.full(); },
                     [&](const std::string& key, storage::RunRecord& record) {
                       const size_t bytes = record.ByteSizeLong();
                       filler.Take(key, bytes,
                                   std::move(*record.mutable_run()));
                     }));
  return page;
}

absl::StatusOr<Page<v1::Notification>> AutomationEngine::ListNotifications(
    int64_t user_id, const std::string& after_key, int limit) const {
  if (user_id <= 0)
    return absl::InvalidArgumentError("user_id: must be a positive user id");
  Page<v1::Notification> page;
  PageFiller<v1::Notification> filler(limit, &page);
  CRM_ASSIGN_OR_RETURN(page.more,
                       store_.ForEachNotificationNewestFirst(
                           user_id, after_key, [&] { return filler.full(); },
                           [&](const std::string& key, v1::Notification& note) {
                             const size_t bytes = note.ByteSizeLong();
                             filler.Take(key, bytes, std::move(note));
                           }));
  return page;
}

}  // namespace crm::automation
