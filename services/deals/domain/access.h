// Checks of deal records against a caller's permissions, for the deals
// service: the generic half (IndexedPermissions, Caller, levels, read
// scopes) is common/pipelines_client/permissions.h, whose names this header
// also brings into crm::deals.
//
//   Caller caller = MakeCaller(principal, cache.Get(permissions_proto));
//   CRM_RETURN_IF_ERROR(CheckRead(caller, deal));        // NOT_FOUND if not
//   CRM_RETURN_IF_ERROR(CheckAction(caller, Action::kWrite, deal));
//   CRM_RETURN_IF_ERROR(CheckTransition(caller, deal, "C1:WON"));
//
// Everything here is thread-safe: the functions only read their arguments.
#pragma once

#include <string>

#include "absl/status/status.h"

#include "crm/deals/v1/deal.pb.h"

#include "common/pipelines_client/permissions.h"

namespace crm::deals {

using ::crm::common::AccessLevel;
using ::crm::common::Action;
using ::crm::common::ActionName;
using ::crm::common::Caller;
using ::crm::common::HidesSums;
using ::crm::common::IndexedPermissions;
using ::crm::common::IndexedPermissionsCache;
using ::crm::common::IsPrivileged;
using ::crm::common::LevelCovers;
using ::crm::common::LevelFor;
using ::crm::common::MakeCaller;
using ::crm::common::ReadScope;
using ::crm::common::ReadScopeFor;

// LevelFor(deal's pipeline and stage) evaluated against the deal's scope
// (assignee_id, opened with unset = true).
bool Allows(const Caller& caller, Action action,
            const crm::deals::v1::Deal& deal);

// NOT_FOUND "deal <id> not found" unless the caller may read the deal.
[[nodiscard]] absl::Status CheckRead(const Caller& caller,
                                     const crm::deals::v1::Deal& deal);

// For an existing deal: NOT_FOUND (as CheckRead) when the caller may not even
// read it, so that ids never leak; otherwise PERMISSION_DENIED
// "not allowed to <action> deal <id>" unless `action` is allowed on it.
// Action::kRead is the same as CheckRead.
[[nodiscard]] absl::Status CheckAction(const Caller& caller, Action action,
                                       const crm::deals::v1::Deal& deal);

// ADD applied to the deal as it would be created: pass it with the defaults
// already filled in (pipeline, first stage, assignee = creator, opened), since
// the level is looked up in its stage and scoped by its assignee and opened
// flag. PERMISSION_DENIED "not allowed to add deals to stage <s> of pipeline
// <p> assigned to user <a>" otherwise. No read check: the deal does not exist
// yet.
[[nodiscard]] absl::Status CheckAdd(const Caller& caller,
                                    const crm::deals::v1::Deal& deal_to_create);

// Moving an existing deal within its pipeline, from deal.stage_id() to
// `to_stage_id`: NOT_FOUND when the caller may not read the deal,
// PERMISSION_DENIED "not allowed to write deal <id>" without WRITE on the
// deal in its current stage, and PERMISSION_DENIED "moving deals from <from>
// to <to> is not allowed" unless the current stage's effective transition
// rule is ANY (or unspecified) or a LIST containing the target (BLOCKED, or a
// stage without a rule, refuses). Staying in the current stage is not a move
// and needs only WRITE. Whether the target stage exists is the caller's
// business (the rule only names stages of the pipeline anyway).
[[nodiscard]] absl::Status CheckTransition(const Caller& caller,
                                           const crm::deals::v1::Deal& deal,
                                           const std::string& to_stage_id);

// ReadScope::Matches for a deal record (its assignee, and opened with unset
// = true): exactly Allows(caller, Action::kRead, deal) for a deal in the
// scope's pipeline and stage.
bool ScopeMatches(const ReadScope& scope, const crm::deals::v1::Deal& deal);

}  // namespace crm::deals
