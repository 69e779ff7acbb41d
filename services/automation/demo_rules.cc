#include "services/automation/demo_rules.h"

#include "common/status/status_macros.h"

namespace crm::automation {

absl::StatusOr<int> SeedDemoAutomation(AutomationEngine& engine,
                                       const std::string& demo_email) {
  if (!engine.catalog().ListRules(0, "").empty()) return 0;
  int created = 0;

  v1::Rule email;
  email.set_pipeline_id(0);
  email.set_stage_id("NEW");
  email.set_name("Welcome email");
  email.set_sort(10);
  v1::SendEmail* send = email.mutable_action()->mutable_send_email();
  send->set_to(demo_email);
  send->set_subject("New deal: {{title}}");
  send->set_body(
      "Deal #{{id}} \"{{title}}\" entered stage {{stage_id}} with "
      "{{amount}} {{currency}}.\n");
  CRM_RETURN_IF_ERROR(engine.catalog().CreateRule(email).status());
  ++created;

  v1::Rule task;
  task.set_pipeline_id(0);
  task.set_stage_id("NEW");
  task.set_name("First call");
  task.set_sort(20);
  v1::CreateTask* create = task.mutable_action()->mutable_create_task();
  create->set_title("Call the client about {{title}}");
  create->mutable_deadline_after()->set_seconds(24 * 3600);
  CRM_RETURN_IF_ERROR(engine.catalog().CreateRule(task).status());
  ++created;

  v1::Rule notify;
  notify.set_pipeline_id(0);
  notify.set_stage_id("PREPARATION");
  notify.set_name("Tell the assignee");
  notify.mutable_action()->mutable_notify_employee()->set_text(
      "{{title}} is being prepared");
  CRM_RETURN_IF_ERROR(engine.catalog().CreateRule(notify).status());
  ++created;

  v1::Trigger paid;
  paid.set_pipeline_id(0);
  paid.set_stage_id("WON");
  paid.set_name("Paid");
  paid.set_type(v1::TRIGGER_TYPE_PAYMENT_RECEIVED);
  CRM_RETURN_IF_ERROR(engine.catalog().CreateTrigger(paid).status());
  ++created;
  return created;
}

}  // namespace crm::automation
