// Builders for ListDeals filters in code (tests, and services that build
// filters for their rules):
//
//   v1::Filter filter = And({Where("stage_id", v1::Condition::OPERATOR_IN,
//                                  {"NEW", "PREPARATION"}),
//                            Where("title", v1::Condition::OPERATOR_CONTAINS,
//                                  {"acme"})});
#pragma once

#include <string>
#include <vector>

#include "crm/deals/v1/deals_service.pb.h"

namespace crm::common::filters {

inline crm::deals::v1::Filter Where(const std::string& field,
                                    crm::deals::v1::Condition::Operator op,
                                    const std::vector<std::string>& values) {
  crm::deals::v1::Filter filter;
  crm::deals::v1::Condition* condition = filter.mutable_condition();
  condition->set_field(field);
  condition->set_op(op);
  for (const std::string& value : values) condition->add_values(value);
  return filter;
}

inline crm::deals::v1::Filter Group(
    crm::deals::v1::FilterGroup::Op op,
    const std::vector<crm::deals::v1::Filter>& parts) {
  crm::deals::v1::Filter filter;
  filter.mutable_group()->set_op(op);
  for (const auto& part : parts) *filter.mutable_group()->add_filters() = part;
  return filter;
}

inline crm::deals::v1::Filter And(
    const std::vector<crm::deals::v1::Filter>& parts) {
  return Group(crm::deals::v1::FilterGroup::OP_AND, parts);
}

inline crm::deals::v1::Filter Or(
    const std::vector<crm::deals::v1::Filter>& parts) {
  return Group(crm::deals::v1::FilterGroup::OP_OR, parts);
}

}  // namespace crm::common::filters
