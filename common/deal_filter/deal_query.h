// Filters and orderings of deal lists (ListDeals, kanban columns, batch
// targets), validated against the pipeline-config snapshot once and then
// applied to many deals.
//
//   CRM_ASSIGN_OR_RETURN(CompiledFilter filter,
//                        CompiledFilter::Compile(request.filter(), *config));
//   CRM_ASSIGN_OR_RETURN(DealOrdering order,
//                        DealOrdering::Compile(request.order_by(), *config));
//   if (filter.stage_ids()) ... scan deals_by_stage instead of every deal
//   for (const Deal& deal : candidates)
//     if (filter.Matches(deal)) page.emplace(order.SortKey(deal), deal);
//
// Fields are Deal fields by their proto names (title, amount, stage_id,
// close_date, ...) or custom field codes (UF_CRM_...), typed as follows:
//   ids and integers   id, pipeline_id, assignee_id, company_id, lead_id,
//                      created_by, updated_by, moved_by, probability,
//                      integer and employee custom fields: "42"
//   exact decimals     amount, tax_amount, money custom fields (the amount
//                      part of "12.50|EUR"; a "|EUR" in a filter value is
//                      accepted and ignored): "12.5", compared exactly and
//                      regardless of currency
//   doubles            double custom fields: "1.5"
//   text               title, source, comments, currency, string and url
//                      custom fields: compared in FoldForSearch form, so
//                      EQ is case- and accent-insensitive too
//   ids as text        stage_id: exact, byte order
//   stage semantics    "SUCCESS" or "STAGE_SEMANTICS_SUCCESS";
//                      PROCESS < SUCCESS < FAILURE
//   booleans           manual_amount, opened (unset counts as true),
//                      closed, boolean custom fields: "true" / "false"
//   dates              begin_date, close_date, date custom fields:
//                      "YYYY-MM-DD"
//   times              create_time, update_time, move_time, datetime custom
//                      fields: RFC 3339, or "YYYY-MM-DD" for that day's
//                      start (UTC)
//   enumerations       option ids; EQ, NE, IN and NOT_IN only
//   several values     contact_ids, observer_ids (EQ, NE, IN, NOT_IN only)
//                      and multiple custom fields
//
// Operators: EQ, NE, GT, GE, LT, LE, IN and NOT_IN on every field except
// booleans (EQ and NE only) and the ones noted above; CONTAINS (a
// case- and accent-insensitive substring) on text only. A field without a
// value (unset probability, empty close_date, unset times, an absent custom
// field, no contacts) never satisfies EQ, GT, GE, LT, LE, IN or CONTAINS and
// always satisfies NE and NOT_IN. On a field with several values EQ, IN, GT,
// GE, LT, LE and CONTAINS hold when any value satisfies them; NE and NOT_IN
// hold when no value equals one of the given ones.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

#include "crm/deals/v1/deal.pb.h"
#include "crm/deals/v1/deals_service.pb.h"

#include "common/pipelines_client/config_view.h"

namespace crm::common {

// Limits of one filter.
inline constexpr int kMaxFilterDepth = 8;         // groups nested in groups
inline constexpr int kMaxFilterConditions = 200;  // in the whole filter
inline constexpr int kMaxConditionValues = 1000;  // IN / NOT_IN
inline constexpr int kMaxOrderByEntries = 5;

namespace query_internal {
struct FilterNode;
struct OrderKey;
}  // namespace query_internal

// A ListDeals/kanban filter, validated against the configuration and compiled
// for fast matching. Immutable and thread-safe after Compile.
class CompiledFilter {
 public:
  // An empty filter (matches everything).
  CompiledFilter();

  // INVALID_ARGUMENT naming the place: "filter.condition.field: unknown field
  // \"foo\"", "filter.group.filters[2].condition.values[0]: \"abc\" is not a
  // number", an operator not allowed for the field type (CONTAINS on amount,
  // GT on a boolean), a wrong value count (exactly one value except IN and
  // NOT_IN, which take 1..1000), groups nested deeper than kMaxFilterDepth,
  // more than kMaxFilterConditions conditions in total, a nested Filter with
  // neither condition nor group, an unspecified operator.
  //
  // A top-level Filter with neither condition nor group is the empty filter
  // (matches everything): proto3 cannot tell an unset request.filter from an
  // empty one, so callers may pass request.filter() as it is. Groups with no
  // filters follow logic: an empty AND matches everything, an empty OR
  // nothing.
  static absl::StatusOr<CompiledFilter> Compile(
      const crm::deals::v1::Filter& filter, const common::ConfigView& config);

  bool empty() const;
  bool Matches(const crm::deals::v1::Deal& deal) const;

  // Conjunctive constraints implied by the filter (from the conditions of the
  // top-level AND group, of AND groups nested in it, or a lone top-level
  // condition); used to pick an index. nullopt = unconstrained. Every deal
  // that Matches satisfies them, but not the other way round: still call
  // Matches on what an index returns.
  //   pipeline_id: EQ (or IN with a single value)
  //   stage_ids, assignee_ids: EQ or IN (intersected when several apply;
  //     an empty list means nothing can match)
  //   close_date_range: EQ, GT, GE, LT, LE and IN as an inclusive day range
  //     ["YYYY-MM-DD", "YYYY-MM-DD"]; "" = open end; lo > hi means nothing
  //     can match. Deals without a close date are never in range.
  const std::optional<int64_t>& pipeline_id() const;
  // Sorted, unique.
  const std::optional<std::vector<std::string>>& stage_ids() const;
  // Sorted, unique.
  const std::optional<std::vector<int64_t>>& assignee_ids() const;
  // Inclusive [lo, hi]; "" = open end.
  const std::optional<std::pair<std::string, std::string>>& close_date_range()
      const;

  // A canonical string of the compiled filter, used to bind page tokens to
  // their query: values in canonical form ("10.00" and "10" give the same
  // string, text folded), everything else as given. "" for the empty filter.
  const std::string& fingerprint() const;

 private:
  std::shared_ptr<const query_internal::FilterNode> root_;
  std::optional<int64_t> pipeline_id_;
  std::optional<std::vector<std::string>> stage_ids_;
  std::optional<std::vector<int64_t>> assignee_ids_;
  std::optional<std::pair<std::string, std::string>> close_date_range_;
  std::string fingerprint_;
};

// The order of a list: the requested fields, then id ascending as the
// tie-breaker.
class DealOrdering {
 public:
  DealOrdering();  // by id ascending

  // INVALID_ARGUMENT "order_by[1].field: unknown field \"x\"",
  // "order_by[0].field: cannot order by contact_ids" (repeated fields and
  // multiple-value custom fields cannot be ordered), more than
  // kMaxOrderByEntries entries. Entries after an id entry, and repeats of a
  // field already ordered by, change nothing and are dropped.
  static absl::StatusOr<DealOrdering> Compile(
      const google::protobuf::RepeatedPtrField<crm::deals::v1::OrderBy>&
          order_by,
      const common::ConfigView& config);

  // True when the order is just id ascending (no order_by, or order_by
  // starting with id ascending).
  bool by_id() const;

  // A byte string whose memcmp order against another deal's SortKey is the
  // requested order of the two deals, ending with the id (8 bytes,
  // order-preserving) so keys of different deals differ. Text compares by
  // FoldForSearch form, amounts as exact decimals whatever the currency,
  // dates as strings, stage semantics as PROCESS < SUCCESS < FAILURE,
  // enumerations by the position of the option in the field definition.
  // Values that are missing (or unparsable) sort first ascending and last
  // descending. Keys of one DealOrdering compare with each other only.
  std::string SortKey(const crm::deals::v1::Deal& deal) const;

  const std::string& fingerprint() const;

 private:
  // Shared so that copies are cheap; never changed after Compile.
  std::shared_ptr<const std::vector<query_internal::OrderKey>> keys_;
  std::string fingerprint_;
};

}  // namespace crm::common
