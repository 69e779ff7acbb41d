// The rules and triggers of every pipeline: validated, stored, cached in
// memory with their indexes (rules of a stage in sort order, triggers of a
// pipeline, webhook tokens), and handed to the engine as shared immutable
// copies, so a rule changed or deleted while a run uses it is never
// changed under that run. Thread-safe, with its own lock: rule changes do
// not wait for event intake or the scheduler.
//
//   Catalog catalog(store, pipelines, clock);
//   CRM_RETURN_IF_ERROR(catalog.Load());
//   for (const auto& rule : catalog.StageRules(pipeline_id, "NEW")) ...
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/field_mask.pb.h"

#include "crm/automation/v1/automation.pb.h"

#include "common/pipelines_client/pipeline_client.h"
#include "services/automation/engine/clock.h"
#include "services/automation/storage/automation_store.h"

namespace crm::automation {

inline constexpr size_t kMaxRulesPerStage = 100;
inline constexpr size_t kMaxTriggersPerPipeline = 200;

class Catalog {
 public:
  using RulePtr = std::shared_ptr<const v1::Rule>;
  using TriggerPtr = std::shared_ptr<const v1::Trigger>;

  // All three must outlive the catalog.
  Catalog(AutomationStore& store, crm::common::PipelineClient& config,
          const Clock& clock);

  // Reads every rule and trigger from the store (DATA_LOSS for an
  // unreadable record).
  [[nodiscard]] absl::Status Load();

  // Rules. Secrets are returned as stored; callers strip them.
  [[nodiscard]] absl::StatusOr<v1::Rule> CreateRule(v1::Rule rule);
  [[nodiscard]] absl::StatusOr<v1::Rule> GetRule(int64_t rule_id) const;
  // Stages in pipeline order, then sort order, then id; stage_id empty =
  // the whole pipeline.
  std::vector<v1::Rule> ListRules(int64_t pipeline_id,
                                  const std::string& stage_id) const;
  [[nodiscard]] absl::StatusOr<v1::Rule> UpdateRule(
      const v1::Rule& rule, const google::protobuf::FieldMask& mask,
      const std::string& etag);
  [[nodiscard]] absl::Status DeleteRule(int64_t rule_id,
                                        const std::string& etag);

  [[nodiscard]] absl::StatusOr<v1::Trigger> CreateTrigger(v1::Trigger trigger);
  [[nodiscard]] absl::StatusOr<v1::Trigger> GetTrigger(int64_t id) const;
  std::vector<v1::Trigger> ListTriggers(int64_t pipeline_id,
                                        const std::string& stage_id) const;
  [[nodiscard]] absl::StatusOr<v1::Trigger> UpdateTrigger(
      const v1::Trigger& trigger, const google::protobuf::FieldMask& mask,
      const std::string& etag);
  [[nodiscard]] absl::Status DeleteTrigger(int64_t id, const std::string& etag);
  std::optional<v1::Trigger> FindTriggerByToken(const std::string& token) const;

  // For the engine: the rules of one stage in execution order (sort, then
  // id), one rule, the triggers of one pipeline (by id), whether a trigger
  // still exists.
  std::vector<RulePtr> StageRules(int64_t pipeline_id,
                                  const std::string& stage_id) const;
  RulePtr FindRule(int64_t rule_id) const;
  std::vector<TriggerPtr> PipelineTriggers(int64_t pipeline_id) const;
  bool HasTrigger(int64_t trigger_id) const;

 private:
  // Read from the cache; store a new item (id 0) or a changed one (etag
  // checked) with a fresh etag and times; delete one (and `meta_key` with
  // it). Each writes one batch, then the cache.
  template <typename T>
  absl::StatusOr<T> Find(const char* what, int64_t id) const;
  template <typename T>
  absl::StatusOr<T> Save(const char* what, T item, const std::string& etag);
  template <typename T>
  absl::Status Remove(const char* what, int64_t id, const std::string& etag,
                      const std::string& meta_key = "");
  // rules_ or triggers_.
  template <typename T>
  absl::flat_hash_map<int64_t, std::shared_ptr<const T>>& ItemsOf()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if constexpr (std::is_same_v<T, v1::Rule>) {
      return rules_;
    } else {
      return triggers_;
    }
  }
  template <typename T>
  const absl::flat_hash_map<int64_t, std::shared_ptr<const T>>& ItemsOf() const
      ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    if constexpr (std::is_same_v<T, v1::Rule>) {
      return rules_;
    } else {
      return triggers_;
    }
  }
  void RebuildIndexes() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  AutomationStore& store_;
  crm::common::PipelineClient& config_;
  const Clock& clock_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<int64_t, RulePtr> rules_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<int64_t, TriggerPtr> triggers_ ABSL_GUARDED_BY(mu_);
  // (pipeline, stage) -> rules in execution order.
  absl::flat_hash_map<std::pair<int64_t, std::string>, std::vector<RulePtr>>
      stage_rules_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<int64_t, std::vector<TriggerPtr>> pipeline_triggers_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int64_t> trigger_tokens_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace crm::automation
