#include "services/pipeline_config/demo_data.h"

#include "common/status/status_macros.h"

namespace crm::pipeline_config {

absl::StatusOr<bool> SeedDemoData(ConfigManager& manager) {
  const auto snapshot = manager.Snapshot();
  if (snapshot->pipelines.size() != 1 || !snapshot->departments.empty() ||
      !snapshot->roles.empty() || !snapshot->fields.empty()) {
    return false;
  }
  v1::Pipeline partners;
  partners.set_name("Partners");
  partners.set_sort(20);
  CRM_ASSIGN_OR_RETURN(v1::Pipeline created,
                       manager.CreatePipeline(partners, "demo-partners"));

  v1::Department sales;
  sales.set_name("Sales");
  sales.set_head_user_id(2);
  sales.add_member_user_ids(3);
  CRM_ASSIGN_OR_RETURN(sales, manager.CreateDepartment(sales));
  v1::Department east;
  east.set_name("Sales East");
  east.set_parent_id(sales.id());
  east.set_head_user_id(4);
  east.add_member_user_ids(5);
  CRM_ASSIGN_OR_RETURN(east, manager.CreateDepartment(east));

  v1::Role head;
  head.set_name("Head of sales");
  for (int64_t pipeline_id : {int64_t{0}, created.id()}) {
    auto* p = head.add_pipelines();
    p->set_pipeline_id(pipeline_id);
    auto* levels = p->mutable_levels();
    levels->set_read(v1::ACCESS_LEVEL_SUBDEPARTMENTS);
    levels->set_add(v1::ACCESS_LEVEL_SUBDEPARTMENTS);
    levels->set_write(v1::ACCESS_LEVEL_SUBDEPARTMENTS);
    levels->set_delete_(v1::ACCESS_LEVEL_DEPARTMENT);
    levels->set_export_(v1::ACCESS_LEVEL_SUBDEPARTMENTS);
    levels->set_import(v1::ACCESS_LEVEL_NONE);
    p->set_automation(v1::AUTOMATION_ACCESS_EDIT);
  }
  CRM_ASSIGN_OR_RETURN(head, manager.CreateRole(head));

  v1::Role rep;
  rep.set_name("Sales representative");
  auto* p = rep.add_pipelines();
  p->set_pipeline_id(0);
  auto* levels = p->mutable_levels();
  levels->set_read(v1::ACCESS_LEVEL_OPEN);
  levels->set_add(v1::ACCESS_LEVEL_SELF);
  levels->set_write(v1::ACCESS_LEVEL_SELF);
  levels->set_delete_(v1::ACCESS_LEVEL_NONE);
  levels->set_export_(v1::ACCESS_LEVEL_SELF);
  levels->set_import(v1::ACCESS_LEVEL_NONE);
  p->set_hide_sum(true);
  p->set_automation(v1::AUTOMATION_ACCESS_READ);
  // Lost deals can only be reopened to the first stage.
  v1::TransitionRule reopen;
  reopen.set_mode(v1::TransitionRule::MODE_LIST);
  reopen.add_to_stage_ids("NEW");
  (*p->mutable_transitions())["LOSE"] = reopen;
  CRM_ASSIGN_OR_RETURN(rep, manager.CreateRole(rep));

  v1::RoleAssignment head_assignment;
  head_assignment.set_role_id(head.id());
  head_assignment.set_user_id(2);
  CRM_RETURN_IF_ERROR(manager.CreateRoleAssignment(head_assignment).status());
  v1::RoleAssignment rep_assignment;
  rep_assignment.set_role_id(rep.id());
  rep_assignment.set_department_id(sales.id());
  rep_assignment.set_include_subdepartments(true);
  CRM_RETURN_IF_ERROR(manager.CreateRoleAssignment(rep_assignment).status());

  v1::FieldDefinition channel;
  channel.set_code("UF_CRM_CHANNEL");
  channel.set_type(v1::FIELD_TYPE_ENUMERATION);
  channel.set_label("Channel");
  channel.set_sort(100);
  for (const char* value : {"Website", "Referral", "Cold call"}) {
    channel.add_options()->set_value(value);
  }
  CRM_RETURN_IF_ERROR(manager.CreateField(channel).status());
  v1::FieldDefinition contract_date;
  contract_date.set_code("UF_CRM_CONTRACT_DATE");
  contract_date.set_type(v1::FIELD_TYPE_DATE);
  contract_date.set_label("Contract date");
  contract_date.set_sort(200);
  CRM_RETURN_IF_ERROR(manager.CreateField(contract_date).status());
  return true;
}

}  // namespace crm::pipeline_config
