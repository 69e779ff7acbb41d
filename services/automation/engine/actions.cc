#include "services/automation/engine/actions.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/field_mask.pb.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

#include "common/deal_filter/deal_query.h"
#include "common/time/proto_time.h"
#include "services/automation/domain/rules.h"
#include "services/automation/domain/template.h"
#include "services/automation/engine/runs.h"
#include "services/automation/outbound/signing.h"

namespace crm::automation {
namespace {

namespace dv1 = ::crm::deals::v1;
using ::crm::common::ToTimestamp;

// A failed call: retried when it may recover (`outside`: mail, SMS or
// webhook; otherwise deals), failed at once when it cannot work.
RunResult Failed(const absl::Status& status, bool outside) {
  RunResult result;
  const bool recover =
      outside ? OutsideWillRecover(status) : DealsWillRecover(status);
  result.error = std::string(status.message());
  if (recover) {
    result.outcome = v1::Run::OUTCOME_RETRYING;
    result.retry = true;
    result.counts = outside || !DealsIsAway(status);
  } else {
    result.outcome = v1::Run::OUTCOME_FAILED;
  }
  return result;
}

// The same for the calls to deals around the action (a trigger's move,
// reading the deal): a failure that cannot recover names its code.
RunResult DealsFailed(const absl::Status& status) {
  RunResult result = Failed(status, /*outside=*/false);
  if (!result.retry) {
    result.error = absl::StrCat(absl::StatusCodeToString(status.code()), ": ",
                                status.message());
  }
  return result;
}

RunResult Ended(v1::Run::Outcome outcome, std::string error) {
  RunResult result;
  result.outcome = outcome;
  result.error = std::move(error);
  return result;
}

// A change to the deal went through, or an earlier attempt had made it.
RunResult Changed(const absl::Status& status) {
  if (status.ok() || MadeByEarlierAttempt(status)) return RunResult();
  return Failed(status, /*outside=*/false);
}

// Names the first part of an AND condition that fails, for the run log.
std::string WhyNotMatched(const dv1::Filter& filter,
                          const crm::common::ConfigView& config,
                          const dv1::Deal& deal) {
  if (filter.has_group() && filter.group().op() != dv1::FilterGroup::OP_OR) {
    for (int i = 0; i < filter.group().filters_size(); ++i) {
      auto part = crm::common::CompiledFilter::Compile(
          filter.group().filters(i), config);
      if (part.ok() && !part->Matches(deal)) {
        const dv1::Filter& failed = filter.group().filters(i);
        std::string detail;
        if (failed.has_condition()) {
          detail = absl::StrCat(
              " (", failed.condition().field(), " ",
              dv1::Condition::Operator_Name(failed.condition().op()), " ",
              absl::StrJoin(failed.condition().values(), ","), ")");
        }
        return absl::StrCat("condition not met: rule.condition.group.filters[",
                            i, "]", detail);
      }
    }
  }
  if (filter.has_condition()) {
    return absl::StrCat("condition not met: ", filter.condition().field(), " ",
                        dv1::Condition::Operator_Name(filter.condition().op()),
                        " ", absl::StrJoin(filter.condition().values(), ","));
  }
  return "condition not met";
}

}  // namespace

ActionRunner::ActionRunner(DealsClient& deals,
                           crm::common::PipelineClient& config,
                           MailSender& mail, HttpSender& http,
                           ActionOptions options)
    : deals_(deals),
      config_(config),
      mail_(mail),
      http_(http),
      options_(std::move(options)) {}

RunResult ActionRunner::Attempt(const storage::RunRecord& record,
                                const v1::Rule* rule,
                                std::optional<dv1::Deal> snapshot,
                                absl::Time now) {
  const v1::Run& run = record.run();
  if (run.trigger_id() != 0) {
    auto moved = deals_.MoveStage(run.deal_id(), record.target_stage_id(),
                                  run.run_id(), dv1::CHANNEL_TRIGGER);
    if (!moved.ok() && !MadeByEarlierAttempt(moved.status()))
      return DealsFailed(moved.status());
    return RunResult();
  }
  if (rule == nullptr) {
    return Ended(v1::Run::OUTCOME_CANCELLED,
                 "the rule was deleted before the run was due");
  }
  if (!Enabled(*rule)) {
    return Ended(v1::Run::OUTCOME_CANCELLED,
                 "the rule was disabled before the run was due");
  }
  dv1::Deal deal;
  if (snapshot.has_value()) {
    deal = *std::move(snapshot);
  } else {
    auto fresh = deals_.GetDeal(run.deal_id());
    if (!fresh.ok()) return DealsFailed(fresh.status());
    deal = *std::move(fresh);
    // A delayed run whose deal left the stage while the leave event was on
    // its way. Runs due at the entry count as run at the entry (after a
    // crash mid-run the deal may already show the run's own move).
    const bool left = deal.pipeline_id() != run.pipeline_id() ||
                      deal.stage_id() != run.stage_id() ||
                      (record.entry_move_micros() != 0 &&
                       EnteredMicros(deal) != record.entry_move_micros());
    if (!Immediate(rule->timing()) && left) {
      return Ended(v1::Run::OUTCOME_CANCELLED,
                   "the deal is no longer in the rule's stage");
    }
  }
  if (rule->has_condition()) {
    const auto config = config_.GetConfig();
    auto condition =
        crm::common::CompiledFilter::Compile(rule->condition(), *config);
    if (!condition.ok()) {
      return Ended(v1::Run::OUTCOME_FAILED,
                   absl::StrCat("rule.condition no longer compiles: ",
                                condition.status().message()));
    }
    if (!condition->Matches(deal)) {
      return Ended(v1::Run::OUTCOME_SKIPPED,
                   WhyNotMatched(rule->condition(), *config, deal));
    }
  }
  return RunAction(Job{record, *rule, deal, now});
}

RunResult ActionRunner::RunAction(const Job& job) {
  switch (job.rule.action().kind_case()) {
    case v1::Action::kSendEmail:
      return SendEmail(job);
    case v1::Action::kSendSms:
      return SendSms(job);
    case v1::Action::kCallWebhook:
      return CallWebhook(job);
    case v1::Action::kCreateTask:
      return CreateTask(job);
    case v1::Action::kCompleteStageTasks: {
      RunResult result;
      result.complete_stage_tasks = true;
      return result;
    }
    case v1::Action::kNotifyEmployee:
      return NotifyEmployee(job);
    case v1::Action::kChangeStage:
      return ChangeStage(job);
    case v1::Action::kMoveToPipeline:
      return MoveToPipeline(job);
    case v1::Action::kChangeAssignee:
      return ChangeAssignee(job);
    case v1::Action::kSetFields:
      return SetFields(job);
    case v1::Action::kAddComment:
      return AddComment(job);
    case v1::Action::KIND_NOT_SET:
      break;
  }
  return Ended(v1::Run::OUTCOME_FAILED, "the rule has no action");
}

// ---------------------------------------------------------------- Outside

RunResult ActionRunner::SendEmail(const Job& job) {
  const v1::SendEmail& email = job.rule.action().send_email();
  if (email.to().empty()) {
    return Failed(absl::FailedPreconditionError(
                      "send_email: the deal's contact email is not "
                      "available (contacts are not supported yet); set "
                      "send_email.to"),
                  true);
  }
  auto subject = RenderDealTemplate(email.subject(), job.deal);
  if (!subject.ok()) return Failed(subject.status(), true);
  auto body = RenderDealTemplate(email.body(), job.deal);
  if (!body.ok()) return Failed(body.status(), true);
  SmtpMail mail;
  mail.from = options_.mail_from;
  mail.to = email.to();
  mail.subject = *subject;
  mail.text_body = *body;
  const size_t at = options_.mail_from.find('@');
  mail.message_id = MakeMessageId(job.record.run().run_id(),
                                  at == std::string::npos
                                      ? "localhost"
                                      : options_.mail_from.substr(at + 1));
  if (absl::Status sent = mail_.Send(mail); !sent.ok())
    return Failed(sent, true);
  return RunResult();
}

RunResult ActionRunner::PostOutside(const HttpPost& post, const char* who) {
  auto sent = http_.Post(post);
  if (!sent.ok()) return Failed(sent.status(), true);
  if (sent->status_code / 100 != 2) {
    const bool again = sent->status_code == 408 || sent->status_code == 429;
    const std::string message =
        absl::StrCat(who, " answered HTTP ", sent->status_code);
    return Failed(again ? absl::UnavailableError(message)
                        : absl::FailedPreconditionError(message),
                  true);
  }
  return RunResult();
}

RunResult ActionRunner::SendSms(const Job& job) {
  const v1::SendSms& sms = job.rule.action().send_sms();
  if (sms.to().empty()) {
    return Failed(absl::FailedPreconditionError(
                      "send_sms: the deal's contact phone is not available "
                      "(contacts are not supported yet); set send_sms.to"),
                  true);
  }
  if (options_.sms_gateway_url.empty()) {
    return Failed(
        absl::FailedPreconditionError("send_sms: no SMS gateway is configured "
                                      "(--sms_gateway_url)"),
        true);
  }
  auto text = RenderDealTemplate(sms.text(), job.deal);
  if (!text.ok()) return Failed(text.status(), true);
  const std::string& request_id = job.record.run().run_id();
  HttpPost post;
  post.url = options_.sms_gateway_url;
  post.content_type = kFormContentType;
  post.body = FormEncode(
      {{"to", sms.to()}, {"text", *text}, {"message_id", request_id}});
  post.headers.emplace_back(kIdempotencyKeyHeader, request_id);
  post.timeout = options_.outbound_timeout;
  return PostOutside(post, "SMS gateway");
}

RunResult ActionRunner::CallWebhook(const Job& job) {
  const v1::CallWebhook& hook = job.rule.action().call_webhook();
  const v1::Run& run = job.record.run();
  std::string deal_json;
  google::protobuf::util::JsonPrintOptions print;
  print.preserve_proto_field_names = true;
  static_cast<void>(
      google::protobuf::util::MessageToJsonString(job.deal, &deal_json, print));
  nlohmann::json body = {
      {"event", "automation.rule_run"},
      {"run_id", run.run_id()},
      {"rule_id", job.rule.id()},
      {"deal_id", job.deal.id()},
      {"pipeline_id", run.pipeline_id()},
      {"stage_id", run.stage_id()},
      {"cause_event_id", run.cause_event_id()},
      {"deal", nlohmann::json::parse(deal_json, nullptr, false)}};
  HttpPost post;
  post.url = hook.url();
  post.body = body.dump();
  // Signed with the real time: receivers check it against their clock.
  const std::string timestamp = absl::StrCat(absl::ToUnixSeconds(absl::Now()));
  post.headers.emplace_back(kTimestampHeader, timestamp);
  post.headers.emplace_back(kSignatureHeader,
                            SignWebhook(hook.secret(), timestamp, post.body));
  post.headers.emplace_back(kIdempotencyKeyHeader, run.run_id());
  post.timeout = options_.outbound_timeout;
  post.public_addresses_only = !options_.allow_private_webhooks;
  return PostOutside(post, "webhook");
}

// ---------------------------------------------------------------- Records

RunResult ActionRunner::CreateTask(const Job& job) {
  const v1::CreateTask& spec = job.rule.action().create_task();
  auto title = RenderDealTemplate(spec.title(), job.deal);
  if (!title.ok()) return Failed(title.status(), true);
  auto description = RenderDealTemplate(spec.description(), job.deal);
  if (!description.ok()) return Failed(description.status(), true);
  v1::Task task;
  task.set_deal_id(job.deal.id());
  task.set_title(*title);
  task.set_description(*description);
  task.set_responsible_id(spec.responsible_id() != 0 ? spec.responsible_id()
                                                     : job.deal.assignee_id());
  if (task.responsible_id() <= 0) {
    return Failed(absl::FailedPreconditionError(
                      "create_task: the deal has no assignee to give the "
                      "task to; set create_task.responsible_id"),
                  true);
  }
  if (spec.has_deadline_after() && (spec.deadline_after().seconds() != 0 ||
                                    spec.deadline_after().nanos() != 0)) {
    *task.mutable_deadline() =
        ToTimestamp(job.now + absl::Seconds(spec.deadline_after().seconds()));
  }
  task.set_status(v1::Task::STATUS_OPEN);
  task.set_rule_id(job.rule.id());
  task.set_pipeline_id(job.record.run().pipeline_id());
  task.set_stage_id(job.record.run().stage_id());
  *task.mutable_create_time() = ToTimestamp(job.now);
  RunResult result;
  result.task = std::move(task);
  return result;
}

RunResult ActionRunner::NotifyEmployee(const Job& job) {
  const v1::NotifyEmployee& spec = job.rule.action().notify_employee();
  auto text = RenderDealTemplate(spec.text(), job.deal);
  if (!text.ok()) return Failed(text.status(), true);
  v1::Notification note;
  note.set_user_id(spec.user_id() != 0 ? spec.user_id()
                                       : job.deal.assignee_id());
  if (note.user_id() <= 0) {
    return Failed(absl::FailedPreconditionError(
                      "notify_employee: the deal has no assignee to notify; "
                      "set notify_employee.user_id"),
                  true);
  }
  note.set_deal_id(job.deal.id());
  note.set_text(*text);
  note.set_rule_id(job.rule.id());
  *note.mutable_create_time() = ToTimestamp(job.now);
  RunResult result;
  result.notification = std::move(note);
  return result;
}

// ---------------------------------------------------------------- Deal changes

RunResult ActionRunner::ChangeStage(const Job& job) {
  return Changed(
      deals_
          .MoveStage(job.deal.id(), job.rule.action().change_stage().stage_id(),
                     job.record.run().run_id(), dv1::CHANNEL_AUTOMATION)
          .status());
}

RunResult ActionRunner::MoveToPipeline(const Job& job) {
  const v1::MoveToPipeline& spec = job.rule.action().move_to_pipeline();
  return Changed(deals_
                     .MoveToPipeline(job.deal.id(), spec.pipeline_id(),
                                     spec.stage_id(), job.record.run().run_id())
                     .status());
}

RunResult ActionRunner::ChangeAssignee(const Job& job) {
  dv1::Deal change;
  change.set_id(job.deal.id());
  change.set_assignee_id(job.record.assignee_pick());
  google::protobuf::FieldMask mask;
  mask.add_paths("assignee_id");
  return Changed(
      deals_.UpdateDeal(change, mask, job.record.run().run_id(), "").status());
}

RunResult ActionRunner::SetFields(const Job& job) {
  const auto config = config_.GetConfig();
  nlohmann::json fields = nlohmann::json::object();
  dv1::Deal change;
  google::protobuf::FieldMask mask;
  for (const auto& [name, values] : job.rule.action().set_fields().values()) {
    std::vector<std::string> rendered;
    for (const std::string& value : values.values()) {
      auto text = RenderDealTemplate(value, job.deal);
      if (!text.ok()) return Failed(text.status(), true);
      rendered.push_back(*std::move(text));
    }
    if (config->FindField(name) != nullptr) {
      auto& target = (*change.mutable_custom_fields())[name];
      for (auto& value : rendered) target.add_values(std::move(value));
      mask.add_paths("custom_fields." + name);
      continue;
    }
    mask.add_paths(name);
    if (name == "contact_ids" || name == "observer_ids") {
      fields[name] = rendered;
    } else if (name == "opened" || name == "manual_amount") {
      const std::string value = rendered.empty() ? "" : rendered[0];
      if (value != "true" && value != "false") {
        return Failed(
            absl::InvalidArgumentError(absl::StrCat(
                "set_fields.", name, ": \"", value, "\" is not true or false")),
            false);
      }
      fields[name] = value == "true";
    } else if (!rendered.empty()) {
      fields[name] = rendered[0];
    }
  }
  if (!fields.empty()) {
    dv1::Deal parsed;
    google::protobuf::util::JsonParseOptions parse;
    auto status = google::protobuf::util::JsonStringToMessage(fields.dump(),
                                                              &parsed, parse);
    if (!status.ok()) {
      return Failed(absl::InvalidArgumentError(absl::StrCat(
                        "set_fields: ", status.message().as_string())),
                    false);
    }
    parsed.MergeFrom(change);
    change = std::move(parsed);
  }
  change.set_id(job.deal.id());
  return Changed(
      deals_.UpdateDeal(change, mask, job.record.run().run_id(), "").status());
}

RunResult ActionRunner::AddComment(const Job& job) {
  auto text =
      RenderDealTemplate(job.rule.action().add_comment().text(), job.deal);
  if (!text.ok()) return Failed(text.status(), true);
  // Appended to the current comments (fresh copy, guarded by its etag).
  auto current = deals_.GetDeal(job.deal.id());
  if (!current.ok()) return Failed(current.status(), false);
  dv1::Deal change;
  change.set_id(job.deal.id());
  change.set_comments(current->comments().empty()
                          ? *text
                          : absl::StrCat(current->comments(), "\n\n", *text));
  google::protobuf::FieldMask mask;
  mask.add_paths("comments");
  return Changed(
      deals_
          .UpdateDeal(change, mask, job.record.run().run_id(), current->etag())
          .status());
}

}  // namespace crm::automation
