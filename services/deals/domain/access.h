// Enforcement of deal access permissions for the deals
// service, as pure functions over (caller, effective permissions, deal).
//
// pipeline-config computes a user's EffectivePermissions (levels per pipeline
// and stage for every action, transition rules, hide_sum and the DEPARTMENT /
// SUBDEPARTMENTS user closures); this file only evaluates them:
//
//   std::shared_ptr<const IndexedPermissions> indexed =
//       cache.Get(permissions_proto);           // built once per version
//   Caller caller = MakeCaller(principal, indexed);
//   CRM_RETURN_IF_ERROR(CheckRead(caller, deal));        // NOT_FOUND if not
//   CRM_RETURN_IF_ERROR(CheckAction(caller, Action::kWrite, deal));
//   CRM_RETURN_IF_ERROR(CheckTransition(caller, deal, "C1:WON"));
//
// Scopes: NONE nothing; SELF deals assigned to the caller; DEPARTMENT deals
// assigned to the caller or a member of one of the caller's departments
// (department_user_ids); SUBDEPARTMENTS also members of every department
// below those (subdepartment_user_ids); OPEN SUBDEPARTMENTS plus every deal
// with opened = true (an unset `opened` counts as true, the proto default);
// ALL every deal. A level is looked up in the deal's pipeline and current
// stage; an absent pipeline or stage, ACCESS_LEVEL_UNSPECIFIED and unknown
// enum values all count as NONE (fail closed).
//
// Privileged callers (administrators and service identities) pass every
// check: their level is ALL everywhere, every transition is allowed and sums
// are never hidden.
//
// Everything here is thread-safe: IndexedPermissions is immutable after
// construction, and the free functions only read their arguments.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

#include "crm/deals/v1/deal.pb.h"
#include "crm/pipelines/v1/access.pb.h"

#include "common/auth/auth.h"

namespace crm::deals {

using AccessLevel = crm::pipelines::v1::AccessLevel;

enum class Action { kRead, kAdd, kWrite, kDelete, kExport, kImport };

// "read", "add", "write", "delete", "export" or "import".
const char* ActionName(Action action);

// EffectivePermissions indexed for fast checks: pipelines and stages in hash
// maps (O(1)), levels normalised (UNSPECIFIED and unknown values -> NONE),
// transition targets in hash sets, and the DEPARTMENT / SUBDEPARTMENTS user
// closures as sorted, de-duplicated vectors (O(log n) membership; they double
// as the assignee lists of ReadScope without copying). The DEPARTMENT set
// always contains the user and the SUBDEPARTMENTS set always contains the
// DEPARTMENT set, so that higher levels never see less than lower ones.
//
// Building one walks the whole proto, so build it once per user and config
// version and share it (IndexedPermissionsCache does that), rather than per
// request. Immutable and thread-safe.
class IndexedPermissions {
 public:
  // One stage of one pipeline.
  struct Stage {
    // Indexed by static_cast<int>(Action); never UNSPECIFIED.
    std::array<AccessLevel, 6> levels;
    // False when the effective proto carried no transition rule for the
    // stage (pipeline-config always sends one; a missing rule means the
    // permissions were computed before the stage existed): treated as
    // BLOCKED.
    bool has_transition = false;
    // Never MODE_UNSPECIFIED (normalised to MODE_ANY, as the proto says).
    crm::pipelines::v1::TransitionRule::Mode transition_mode =
        crm::pipelines::v1::TransitionRule::MODE_BLOCKED;
    absl::flat_hash_set<std::string> transition_targets;  // For MODE_LIST.
  };
  struct Pipeline {
    absl::flat_hash_map<std::string, Stage> stages;
    bool hide_sum = false;
    crm::pipelines::v1::AutomationAccess automation =
        crm::pipelines::v1::AUTOMATION_ACCESS_NONE;
  };

  // `proto` must not be null; it is kept alive and reachable via proto().
  static std::shared_ptr<const IndexedPermissions> Build(
      std::shared_ptr<const crm::pipelines::v1::EffectivePermissions> proto);
  // Copies the proto; convenient for tests.
  static std::shared_ptr<const IndexedPermissions> Build(
      const crm::pipelines::v1::EffectivePermissions& proto);

  int64_t user_id() const { return proto_->user_id(); }
  bool is_admin() const { return proto_->is_admin(); }
  int64_t config_version() const { return proto_->config_version(); }
  const crm::pipelines::v1::EffectivePermissions& proto() const {
    return *proto_;
  }

  // Null when no role mentions the pipeline (no access at all).
  const Pipeline* FindPipeline(int64_t pipeline_id) const;
  // Null when the pipeline or the stage is absent.
  const Stage* FindStage(int64_t pipeline_id,
                         const std::string& stage_id) const;

  // O(log n) membership in the DEPARTMENT / SUBDEPARTMENTS closures.
  bool InDepartment(int64_t user_id) const;
  bool InSubdepartments(int64_t user_id) const;
  // Sorted and unique; shared ownership with this object.
  std::shared_ptr<const std::vector<int64_t>> department_user_ids() const;
  std::shared_ptr<const std::vector<int64_t>> subdepartment_user_ids() const;

  // Use Build().
  explicit IndexedPermissions(
      std::shared_ptr<const crm::pipelines::v1::EffectivePermissions> proto);

 private:
  std::shared_ptr<const crm::pipelines::v1::EffectivePermissions> proto_;
  absl::flat_hash_map<int64_t, Pipeline> pipelines_;
  std::shared_ptr<const std::vector<int64_t>> department_users_;
  std::shared_ptr<const std::vector<int64_t>> subdepartment_users_;
};

// Reuses the IndexedPermissions of a user as long as PipelineClient hands
// out the same EffectivePermissions object (it caches one per user and
// config version), and rebuilds it when a new one arrives. Bounded: when more
// than `max_users` users are cached, the cache is cleared and refilled.
// Thread-safe.
class IndexedPermissionsCache {
 public:
  explicit IndexedPermissionsCache(size_t max_users = 10000)
      : max_users_(max_users) {}

  // `proto` must not be null.
  std::shared_ptr<const IndexedPermissions> Get(
      const std::shared_ptr<const crm::pipelines::v1::EffectivePermissions>&
          proto);

 private:
  const size_t max_users_;
  absl::Mutex mu_;
  absl::flat_hash_map<int64_t, std::shared_ptr<const IndexedPermissions>>
      by_user_ ABSL_GUARDED_BY(mu_);
};

// Who is calling. The permissions are held pre-indexed (IndexedPermissions)
// rather than as the raw proto, so checks never scan repeated fields; the
// proto stays reachable through permissions->proto().
struct Caller {
  // The user (0 for a service identity). SELF compares assignees with it;
  // DEPARTMENT and wider use the closures in `permissions`, which are
  // computed for permissions->user_id(): the two must be the same user
  // (MakeCaller with the principal's own permissions guarantees it).
  int64_t user_id = 0;
  // An administrator or a service identity: passes every check.
  bool privileged = false;
  // May be null only when privileged. A non-privileged caller without
  // permissions is refused everything (fail closed) rather than crashing.
  std::shared_ptr<const IndexedPermissions> permissions;
};

// A Caller for an authenticated principal: privileged when the token says
// admin, when it is a service identity, or when pipeline-config reports the
// user as an administrator (is_admin in the permissions).
Caller MakeCaller(const crm::common::Principal& principal,
                  std::shared_ptr<const IndexedPermissions> permissions);

// True when `caller` passes every check (privileged, or is_admin in its
// permissions).
bool IsPrivileged(const Caller& caller);

// The caller's level for `action` on deals in a stage: ALL for privileged
// callers; NONE when the pipeline or stage is absent (or permissions are
// missing). Never ACCESS_LEVEL_UNSPECIFIED.
AccessLevel LevelFor(const Caller& caller, Action action, int64_t pipeline_id,
                     const std::string& stage_id);

// True when `level` reaches a deal with this assignee and `opened` flag for
// `caller` (SELF uses caller.user_id, the sets come from its permissions).
bool LevelCovers(const Caller& caller, AccessLevel level, int64_t assignee_id,
                 bool opened);

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

// True when kanban column sums of the pipeline must be hidden from the
// caller: the pipeline's effective hide_sum, and also when the caller has no
// entry for the pipeline at all (nothing to show). False for privileged
// callers.
bool HidesSums(const Caller& caller, int64_t pipeline_id);

// A read filter for listing the deals of one stage, so that a list can
// restrict an index scan instead of checking every deal:
//   - level NONE: nothing qualifies; skip the stage.
//   - level ALL (and privileged callers): everything qualifies; scan the
//     stage unfiltered.
//   - SELF / DEPARTMENT / SUBDEPARTMENTS: exactly the deals whose assignee is
//     in `assignee_ids` (sorted, unique); scan the by-assignee index for
//     those users (or the stage and filter with Matches when the set is
//     large).
//   - OPEN (`include_opened` true): the deals of `assignee_ids` plus every
//     deal with opened = true (or unset); scan the stage and filter with
//     Matches.
// Matches(deal) is exactly Allows(caller, Action::kRead, deal) for a deal in
// that pipeline and stage.
struct ReadScope {
  AccessLevel level = crm::pipelines::v1::ACCESS_LEVEL_NONE;
  // Never null; empty for NONE and ALL. Shares ownership with the caller's
  // IndexedPermissions, so keeping a ReadScope costs no copy of the set.
  std::shared_ptr<const std::vector<int64_t>> assignee_ids;
  bool include_opened = false;

  bool none() const { return level == crm::pipelines::v1::ACCESS_LEVEL_NONE; }
  bool all() const { return level == crm::pipelines::v1::ACCESS_LEVEL_ALL; }
  // O(log n).
  bool Matches(int64_t assignee_id, bool opened) const;
  bool Matches(const crm::deals::v1::Deal& deal) const;
};

ReadScope ReadScopeFor(const Caller& caller, int64_t pipeline_id,
                       const std::string& stage_id);

}  // namespace crm::deals
