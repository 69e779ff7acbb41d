#include "services/deals/domain/access.h"

#include "absl/strings/str_cat.h"

namespace crm::deals {
namespace {

namespace pv1 = crm::pipelines::v1;

bool OpenedOf(const crm::deals::v1::Deal& deal) {
  return !deal.has_opened() || deal.opened();
}

absl::Status NotFound(const crm::deals::v1::Deal& deal) {
  return absl::NotFoundError(absl::StrCat("deal ", deal.id(), " not found"));
}
}  // namespace

bool Allows(const Caller& caller, Action action,
            const crm::deals::v1::Deal& deal) {
  if (IsPrivileged(caller)) return true;
  return LevelCovers(
      caller, LevelFor(caller, action, deal.pipeline_id(), deal.stage_id()),
      deal.assignee_id(), OpenedOf(deal));
}

absl::Status CheckRead(const Caller& caller, const crm::deals::v1::Deal& deal) {
  if (Allows(caller, Action::kRead, deal)) return absl::OkStatus();
  return NotFound(deal);
}

absl::Status CheckAction(const Caller& caller, Action action,
                         const crm::deals::v1::Deal& deal) {
  if (IsPrivileged(caller)) return absl::OkStatus();
  if (!Allows(caller, Action::kRead, deal)) return NotFound(deal);
  if (action == Action::kRead || Allows(caller, action, deal)) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(
      absl::StrCat("not allowed to ", ActionName(action), " deal ", deal.id()));
}

absl::Status CheckAdd(const Caller& caller,
                      const crm::deals::v1::Deal& deal_to_create) {
  if (Allows(caller, Action::kAdd, deal_to_create)) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      "not allowed to add deals to stage ", deal_to_create.stage_id(),
      " of pipeline ", deal_to_create.pipeline_id(), " assigned to user ",
      deal_to_create.assignee_id()));
}

absl::Status CheckTransition(const Caller& caller,
                             const crm::deals::v1::Deal& deal,
                             const std::string& to_stage_id) {
  if (IsPrivileged(caller)) return absl::OkStatus();
  if (absl::Status status = CheckAction(caller, Action::kWrite, deal);
      !status.ok()) {
    return status;
  }
  if (to_stage_id == deal.stage_id()) return absl::OkStatus();
  // WRITE passed, so permissions and the stage exist.
  const IndexedPermissions::Stage* stage =
      caller.permissions->FindStage(deal.pipeline_id(), deal.stage_id());
  bool allowed = false;
  if (stage != nullptr && stage->has_transition) {
    switch (stage->transition_mode) {
      case pv1::TransitionRule::MODE_ANY:
        allowed = true;
        break;
      case pv1::TransitionRule::MODE_LIST:
        allowed = stage->transition_targets.contains(to_stage_id);
        break;
      default:
        allowed = false;
        break;
    }
  }
  if (allowed) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat("moving deals from ", deal.stage_id(), " to ", to_stage_id,
                   " is not allowed"));
}

bool ScopeMatches(const ReadScope& scope, const crm::deals::v1::Deal& deal) {
  return scope.Matches(deal.assignee_id(), OpenedOf(deal));
}

}  // namespace crm::deals
