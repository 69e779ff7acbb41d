#include "services/automation/engine/catalog.h"

#include <algorithm>
#include <climits>
#include <set>
#include <type_traits>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"

#include "common/grpc/update_mask.h"
#include "common/status/status_macros.h"
#include "common/text/etag.h"
#include "common/time/proto_time.h"
#include "openssl/rand.h"
#include "services/automation/domain/rules.h"

namespace crm::automation {
namespace {

using ::crm::common::ToTimestamp;

absl::Status CheckEtag(const std::string& stored, const std::string& given,
                       const char* what, int64_t id) {
  return common::CheckEtag(given, stored, absl::StrCat(what, " ", id));
}

std::string NewWebhookToken() {
  unsigned char bytes[24];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    // RAND_bytes fails only without an entropy source; absl's generator is
    // seeded from the OS too.
    absl::BitGen gen;
    for (unsigned char& b : bytes) b = absl::Uniform<unsigned char>(gen);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string token;
  for (unsigned char b : bytes) {
    token.push_back(kHex[b >> 4]);
    token.push_back(kHex[b & 15]);
  }
  return token;
}

}  // namespace

Catalog::Catalog(AutomationStore& store, crm::common::PipelineClient& config,
                 const Clock& clock)
    : store_(store), config_(config), clock_(clock) {}

absl::Status Catalog::Load() {
  absl::flat_hash_map<int64_t, RulePtr> rules;
  absl::flat_hash_map<int64_t, TriggerPtr> triggers;
  CRM_RETURN_IF_ERROR(store_.ForEachRule([&](v1::Rule rule) {
    const int64_t id = rule.id();
    rules[id] = std::make_shared<const v1::Rule>(std::move(rule));
  }));
  CRM_RETURN_IF_ERROR(store_.ForEachTrigger([&](v1::Trigger trigger) {
    const int64_t id = trigger.id();
    triggers[id] = std::make_shared<const v1::Trigger>(std::move(trigger));
  }));
  absl::MutexLock lock(&mu_);
  rules_ = std::move(rules);
  triggers_ = std::move(triggers);
  RebuildIndexes();
  return absl::OkStatus();
}

void Catalog::RebuildIndexes() {
  stage_rules_.clear();
  for (const auto& [id, rule] : rules_) {
    stage_rules_[{rule->pipeline_id(), rule->stage_id()}].push_back(rule);
  }
  for (auto& [stage, rules] : stage_rules_) {
    std::sort(rules.begin(), rules.end(),
              [](const RulePtr& a, const RulePtr& b) {
                if (a->sort() != b->sort()) return a->sort() < b->sort();
                return a->id() < b->id();
              });
  }
  pipeline_triggers_.clear();
  trigger_tokens_.clear();
  for (const auto& [id, trigger] : triggers_) {
    pipeline_triggers_[trigger->pipeline_id()].push_back(trigger);
    if (!trigger->webhook_token().empty())
      trigger_tokens_[trigger->webhook_token()] = id;
  }
  for (auto& [pipeline, triggers] : pipeline_triggers_) {
    std::sort(triggers.begin(), triggers.end(),
              [](const TriggerPtr& a, const TriggerPtr& b) {
                return a->id() < b->id();
              });
  }
}

std::vector<Catalog::RulePtr> Catalog::StageRules(
    int64_t pipeline_id, const std::string& stage_id) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = stage_rules_.find({pipeline_id, stage_id});
  if (it == stage_rules_.end()) return {};
  return it->second;
}

Catalog::RulePtr Catalog::FindRule(int64_t rule_id) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = rules_.find(rule_id);
  return it == rules_.end() ? nullptr : it->second;
}

std::vector<Catalog::TriggerPtr> Catalog::PipelineTriggers(
    int64_t pipeline_id) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = pipeline_triggers_.find(pipeline_id);
  if (it == pipeline_triggers_.end()) return {};
  return it->second;
}

bool Catalog::HasTrigger(int64_t trigger_id) const {
  absl::ReaderMutexLock lock(&mu_);
  return triggers_.contains(trigger_id);
}

template <typename T>
absl::StatusOr<T> Catalog::Find(const char* what, int64_t id) const {
  absl::ReaderMutexLock lock(&mu_);
  const auto& items = ItemsOf<T>();
  auto it = items.find(id);
  if (it == items.end()) {
    return absl::NotFoundError(absl::StrCat(what, " ", id, " not found"));
  }
  return *it->second;
}

template <typename T>
absl::StatusOr<T> Catalog::Save(const char* what, T item,
                                const std::string& etag) {
  absl::MutexLock lock(&mu_);
  auto& items = ItemsOf<T>();
  const absl::Time now = clock_.Now();
  if (item.id() == 0) {
    // Bounded, so one stage entry stays one small batch.
    constexpr bool is_rule = std::is_same_v<T, v1::Rule>;
    size_t same_place = 0;
    for (const auto& [id, other] : items) {
      if (other->pipeline_id() == item.pipeline_id() &&
          (!is_rule || other->stage_id() == item.stage_id())) {
        ++same_place;
      }
    }
    const size_t limit = is_rule ? kMaxRulesPerStage : kMaxTriggersPerPipeline;
    if (same_place >= limit) {
      return absl::ResourceExhaustedError(
          absl::StrCat("at most ", limit, " ", what, "s per ",
                       is_rule ? "stage" : "pipeline"));
    }
    item.set_id(is_rule ? store_.NewRuleId() : store_.NewTriggerId());
    *item.mutable_create_time() = ToTimestamp(now);
  } else {
    auto it = items.find(item.id());
    if (it == items.end()) {
      return absl::NotFoundError(
          absl::StrCat(what, " ", item.id(), " not found"));
    }
    CRM_RETURN_IF_ERROR(CheckEtag(it->second->etag(), etag, what, item.id()));
  }
  item.set_etag(common::EtagOf(store_.NewRevision()));
  *item.mutable_update_time() = ToTimestamp(now);
  AutomationStore::Batch batch(store_);
  if constexpr (std::is_same_v<T, v1::Rule>) {
    batch.PutRule(item);
  } else {
    batch.PutTrigger(item);
  }
  CRM_RETURN_IF_ERROR(store_.Write(batch));
  items[item.id()] = std::make_shared<const T>(item);
  RebuildIndexes();
  return item;
}

template <typename T>
absl::Status Catalog::Remove(const char* what, int64_t id,
                             const std::string& etag,
                             const std::string& meta_key) {
  absl::MutexLock lock(&mu_);
  auto& items = ItemsOf<T>();
  auto it = items.find(id);
  if (it == items.end()) {
    return absl::NotFoundError(absl::StrCat(what, " ", id, " not found"));
  }
  CRM_RETURN_IF_ERROR(CheckEtag(it->second->etag(), etag, what, id));
  AutomationStore::Batch batch(store_);
  if constexpr (std::is_same_v<T, v1::Rule>) {
    batch.DeleteRule(id);
  } else {
    batch.DeleteTrigger(id);
  }
  if (!meta_key.empty()) batch.DeleteMeta(meta_key);
  CRM_RETURN_IF_ERROR(store_.Write(batch));
  items.erase(it);
  RebuildIndexes();
  return absl::OkStatus();
}

// ---------------------------------------------------------------- Rules

absl::StatusOr<v1::Rule> Catalog::CreateRule(v1::Rule rule) {
  rule.clear_id();
  rule.clear_create_time();
  rule.clear_update_time();
  rule.clear_etag();
  if (!rule.has_enabled()) rule.set_enabled(true);
  CRM_RETURN_IF_ERROR(ValidateRule(rule, *config_.GetConfig()));
  return Save("rule", std::move(rule), "");
}

absl::StatusOr<v1::Rule> Catalog::GetRule(int64_t rule_id) const {
  return Find<v1::Rule>("rule", rule_id);
}

std::vector<v1::Rule> Catalog::ListRules(int64_t pipeline_id,
                                         const std::string& stage_id) const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<v1::Rule> out;
  for (const auto& [stage, ids] : stage_rules_) {
    if (stage.first != pipeline_id) continue;
    if (!stage_id.empty() && stage.second != stage_id) continue;
    for (const RulePtr& rule : ids) out.push_back(*rule);
  }
  // Stages in pipeline order, then the rules' own order.
  const auto config = config_.GetConfig();
  std::stable_sort(out.begin(), out.end(),
                   [&](const v1::Rule& a, const v1::Rule& b) {
                     auto ia = config->StageIndex(pipeline_id, a.stage_id());
                     auto ib = config->StageIndex(pipeline_id, b.stage_id());
                     const int sa = ia.value_or(INT32_MAX);
                     const int sb = ib.value_or(INT32_MAX);
                     if (sa != sb) return sa < sb;
                     if (a.stage_id() != b.stage_id())
                       return a.stage_id() < b.stage_id();
                     if (a.sort() != b.sort()) return a.sort() < b.sort();
                     return a.id() < b.id();
                   });
  return out;
}

absl::StatusOr<v1::Rule> Catalog::UpdateRule(
    const v1::Rule& input, const google::protobuf::FieldMask& mask,
    const std::string& etag) {
  CRM_ASSIGN_OR_RETURN(
      std::set<std::string> paths,
      common::ParseUpdateMask(mask,
                              {"name", "sort", "timing", "execution",
                               "condition", "action", "enabled"},
                              {"id", "pipeline_id", "stage_id", "etag",
                               "create_time", "update_time"}));
  CRM_ASSIGN_OR_RETURN(v1::Rule rule, GetRule(input.id()));
  CRM_RETURN_IF_ERROR(CheckEtag(rule.etag(), etag, "rule", rule.id()));
  for (const std::string& path : paths) {
    if (path == "name") {
      rule.set_name(input.name());
    } else if (path == "sort") {
      rule.set_sort(input.sort());
    } else if (path == "timing") {
      *rule.mutable_timing() = input.timing();
    } else if (path == "execution") {
      rule.set_execution(input.execution());
    } else if (path == "condition") {
      if (input.has_condition()) {
        *rule.mutable_condition() = input.condition();
      } else {
        rule.clear_condition();
      }
    } else if (path == "action") {
      // A webhook secret is write-only: an update that leaves it empty
      // keeps the stored one.
      std::string secret;
      if (rule.action().has_call_webhook())
        secret = rule.action().call_webhook().secret();
      *rule.mutable_action() = input.action();
      if (rule.action().has_call_webhook() &&
          rule.action().call_webhook().secret().empty()) {
        rule.mutable_action()->mutable_call_webhook()->set_secret(secret);
      }
    } else if (path == "enabled") {
      rule.set_enabled(!input.has_enabled() || input.enabled());
    }
  }
  CRM_RETURN_IF_ERROR(ValidateRule(rule, *config_.GetConfig()));
  const std::string expected = etag.empty() ? rule.etag() : etag;
  return Save("rule", std::move(rule), expected);
}

absl::Status Catalog::DeleteRule(int64_t rule_id, const std::string& etag) {
  return Remove<v1::Rule>("rule", rule_id, etag, RoundRobinKey(rule_id));
}

// ---------------------------------------------------------------- Triggers

absl::StatusOr<v1::Trigger> Catalog::CreateTrigger(v1::Trigger trigger) {
  trigger.clear_id();
  trigger.clear_create_time();
  trigger.clear_update_time();
  trigger.clear_etag();
  trigger.clear_webhook_token();
  CRM_RETURN_IF_ERROR(ValidateTrigger(trigger, *config_.GetConfig()));
  if (trigger.type() == v1::TRIGGER_TYPE_INCOMING_WEBHOOK)
    trigger.set_webhook_token(NewWebhookToken());
  return Save("trigger", std::move(trigger), "");
}

absl::StatusOr<v1::Trigger> Catalog::GetTrigger(int64_t id) const {
  return Find<v1::Trigger>("trigger", id);
}

std::vector<v1::Trigger> Catalog::ListTriggers(
    int64_t pipeline_id, const std::string& stage_id) const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<v1::Trigger> out;
  auto it = pipeline_triggers_.find(pipeline_id);
  if (it == pipeline_triggers_.end()) return out;
  for (const TriggerPtr& trigger : it->second) {
    if (stage_id.empty() || trigger->stage_id() == stage_id)
      out.push_back(*trigger);
  }
  return out;
}

absl::StatusOr<v1::Trigger> Catalog::UpdateTrigger(
    const v1::Trigger& input, const google::protobuf::FieldMask& mask,
    const std::string& etag) {
  CRM_ASSIGN_OR_RETURN(
      std::set<std::string> paths,
      common::ParseUpdateMask(
          mask, {"name", "condition", "allow_backwards", "field", "app_code"},
          {"id", "pipeline_id", "stage_id", "type", "etag", "webhook_token",
           "create_time", "update_time"}));
  CRM_ASSIGN_OR_RETURN(v1::Trigger trigger, GetTrigger(input.id()));
  CRM_RETURN_IF_ERROR(CheckEtag(trigger.etag(), etag, "trigger", trigger.id()));
  for (const std::string& path : paths) {
    if (path == "name") {
      trigger.set_name(input.name());
    } else if (path == "condition") {
      if (input.has_condition()) {
        *trigger.mutable_condition() = input.condition();
      } else {
        trigger.clear_condition();
      }
    } else if (path == "allow_backwards") {
      trigger.set_allow_backwards(input.allow_backwards());
    } else if (path == "field") {
      trigger.set_field(input.field());
    } else if (path == "app_code") {
      trigger.set_app_code(input.app_code());
    }
  }
  CRM_RETURN_IF_ERROR(ValidateTrigger(trigger, *config_.GetConfig()));
  const std::string expected = etag.empty() ? trigger.etag() : etag;
  return Save("trigger", std::move(trigger), expected);
}

absl::Status Catalog::DeleteTrigger(int64_t id, const std::string& etag) {
  return Remove<v1::Trigger>("trigger", id, etag);
}

std::optional<v1::Trigger> Catalog::FindTriggerByToken(
    const std::string& token) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = trigger_tokens_.find(token);
  if (it == trigger_tokens_.end()) return std::nullopt;
  return *triggers_.at(it->second);
}

}  // namespace crm::automation
