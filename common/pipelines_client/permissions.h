// The generic half of access permissions, shared by every service that
// answers users about deals (deals, automation, reporting): pipeline-config
// computes a user's EffectivePermissions (levels per pipeline and stage for
// every action, transition rules, hide_sum, automation access and the
// DEPARTMENT / SUBDEPARTMENTS user closures); this library indexes them,
// caches the index per user and config version, and evaluates levels and
// read scopes. Checks against a deal record live with the deals service.
//
//   std::shared_ptr<const IndexedPermissions> indexed =
//       cache.Get(permissions_proto);           // built once per version
//   Caller caller = MakeCaller(principal, indexed);
//   AccessLevel read = LevelFor(caller, Action::kRead, pipeline_id, stage);
//   bool covered = LevelCovers(caller, read, assignee_id, opened);
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

#include "crm/pipelines/v1/access.pb.h"

#include "common/auth/auth.h"

namespace crm::common {

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
Caller MakeCaller(const Principal& principal,
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
// Matches(assignee, opened) for a deal of that pipeline and stage is exactly
// LevelCovers(caller, LevelFor(caller, Action::kRead, ...), assignee,
// opened).
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
};

ReadScope ReadScopeFor(const Caller& caller, int64_t pipeline_id,
                       const std::string& stage_id);

}  // namespace crm::common
