// One attempt of a run: a trigger's move, or a rule's condition and then its
// action, with one runner per action kind. Outside effects go through the
// mail and HTTP senders (outbound/senders.h), changes to the deal through
// the deals client with the run id as request id. Nothing here writes the
// store: the outcome (and a task or notification to keep) is returned for
// the executor to record. Thread-safe; runs of many deals go at once.
#pragma once

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

#include "crm/automation/v1/automation.pb.h"
#include "crm/deals/v1/deal.pb.h"

#include "common/pipelines_client/pipeline_client.h"
#include "services/automation/clients/deals_client.h"
#include "services/automation/outbound/senders.h"
#include "services/automation/storage/automation_records.pb.h"

namespace crm::automation {

// What one attempt came to.
struct RunResult {
  v1::Run::Outcome outcome = v1::Run::OUTCOME_SUCCEEDED;
  std::string error;
  // Try again later; `counts` = towards max_attempts (outside calls).
  bool retry = false;
  bool counts = true;
  // Records the run leaves (kept in the same write as its outcome).
  std::optional<v1::Task> task;
  bool complete_stage_tasks = false;
  std::optional<v1::Notification> notification;
};

struct ActionOptions {
  std::string mail_from = "crm@localhost";
  // Empty: SendSms runs fail with a clear reason.
  std::string sms_gateway_url;
  // Webhook URLs are written by users: unless allowed, they may not reach
  // loopback, private or link-local addresses.
  bool allow_private_webhooks = false;
  absl::Duration outbound_timeout = absl::Seconds(10);
};

class ActionRunner {
 public:
  ActionRunner(DealsClient& deals, crm::common::PipelineClient& config,
               MailSender& mail, HttpSender& http, ActionOptions options);

  // One attempt of the run in `record`. `rule` is null for a trigger's move
  // or when the rule is gone; `snapshot` is the deal as it entered the
  // stage (for runs due at the entry), otherwise the deal is read from
  // deals and a delayed run whose deal left the stage is cancelled.
  RunResult Attempt(const storage::RunRecord& record, const v1::Rule* rule,
                    std::optional<crm::deals::v1::Deal> snapshot,
                    absl::Time now);

 private:
  // What each action kind gets.
  struct Job {
    const storage::RunRecord& record;
    const v1::Rule& rule;
    const crm::deals::v1::Deal& deal;
    absl::Time now;
  };
  RunResult RunAction(const Job& job);

  RunResult SendEmail(const Job& job);
  RunResult SendSms(const Job& job);
  RunResult CallWebhook(const Job& job);
  RunResult CreateTask(const Job& job);
  RunResult NotifyEmployee(const Job& job);
  RunResult ChangeStage(const Job& job);
  RunResult MoveToPipeline(const Job& job);
  RunResult ChangeAssignee(const Job& job);
  RunResult SetFields(const Job& job);
  RunResult AddComment(const Job& job);

  // A POST (SMS gateway or webhook) whose non-2xx answers are failures
  // (408 and 429 worth retrying) named after `who`.
  RunResult PostOutside(const HttpPost& post, const char* who);

  DealsClient& deals_;
  crm::common::PipelineClient& config_;
  MailSender& mail_;
  HttpSender& http_;
  const ActionOptions options_;
};

}  // namespace crm::automation
