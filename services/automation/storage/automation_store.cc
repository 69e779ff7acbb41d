#include "services/automation/storage/automation_store.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

#include "common/rocks/key_codec.h"
#include "common/status/status_macros.h"

namespace crm::automation {
namespace {

constexpr char kCountersKey[] = "counters";

}  // namespace

std::string RunKey(int64_t deal_id, int64_t entry_seq, int64_t job_id) {
  std::string key;
  common::AppendInt64(&key, deal_id);
  common::AppendInt64(&key, entry_seq);
  common::AppendInt64(&key, job_id);
  return key;
}

std::optional<RunKeyParts> ParseRunKey(std::string_view key) {
  common::KeyReader reader(key);
  RunKeyParts parts;
  if (!reader.ReadInt64(&parts.deal_id) ||
      !reader.ReadInt64(&parts.entry_seq) || !reader.ReadInt64(&parts.job_id) ||
      !reader.done()) {
    return std::nullopt;
  }
  return parts;
}

std::string RunIdOf(const RunKeyParts& parts) {
  if (parts.job_id < 0) {
    return absl::StrCat(parts.deal_id, "/", parts.entry_seq, "/t",
                        -parts.job_id);
  }
  return absl::StrCat(parts.deal_id, "/", parts.entry_seq, "/", parts.job_id);
}

std::string DueKey(int64_t due_micros, std::string_view run_key) {
  std::string key;
  common::AppendInt64(&key, due_micros);
  key.append(run_key);
  return key;
}

bool ParseDueKey(std::string_view key, int64_t* due_micros,
                 std::string* run_key) {
  if (key.size() < 8) return false;
  common::KeyReader reader(key.substr(0, 8));
  if (!reader.ReadInt64(due_micros)) return false;
  run_key->assign(key.substr(8));
  return ParseRunKey(*run_key).has_value();
}

std::string AppliedKey(int32_t shard) {
  return absl::StrCat("applied/", shard);
}

std::string RoundRobinKey(int64_t rule_id) {
  return absl::StrCat("rr/", rule_id);
}

absl::StatusOr<std::unique_ptr<AutomationStore>> AutomationStore::Open(
    const std::string& path, const common::RocksOptions& options) {
  std::unique_ptr<AutomationStore> store(new AutomationStore());
  CRM_ASSIGN_OR_RETURN(
      store->db_,
      common::RocksDb::Open(
          path,
          {kRulesCf, kTriggersCf, kRunsCf, kDueCf, kEntriesCf, kTasksCf,
           kTasksByDealCf, kTasksByUserCf, kNotificationsCf, kMetaCf},
          options));
  storage::Counters counters;
  CRM_RETURN_IF_ERROR(
      store->GetProto(kMetaCf, kCountersKey, &counters).status());
  {
    absl::MutexLock lock(&store->counters_mu_);
    store->counters_ = std::move(counters);
  }
  return store;
}

void AutomationStore::SetFaultHookForTest(FaultHook hook) {
  absl::MutexLock lock(&fault_mu_);
  has_fault_hook_.store(hook != nullptr, std::memory_order_release);
  fault_hook_ = std::move(hook);
}

absl::Status AutomationStore::Fault(Op op, std::string_view cf_name) const {
  if (!has_fault_hook_.load(std::memory_order_acquire)) return absl::OkStatus();
  absl::MutexLock lock(&fault_mu_);
  return fault_hook_ != nullptr ? fault_hook_(op, cf_name) : absl::OkStatus();
}

absl::Status AutomationStore::WriteWithCounters(
    rocksdb::WriteBatch* batch,
    const std::function<absl::Status(rocksdb::WriteBatch*)>& write) {
  CRM_RETURN_IF_ERROR(Fault(Op::kWrite, ""));
  absl::MutexLock lock(&counters_mu_);
  const int64_t generation = generation_;
  if (generation != stored_generation_) {
    Put(batch, kMetaCf, kCountersKey, counters_);
  }
  CRM_RETURN_IF_ERROR(write(batch));
  stored_generation_ = generation;
  return absl::OkStatus();
}

absl::Status AutomationStore::Write(rocksdb::WriteBatch* batch) {
  return WriteWithCounters(
      batch, [this](rocksdb::WriteBatch* b) { return db_->Write(b); });
}

absl::Status AutomationStore::WriteDeferringSync(rocksdb::WriteBatch* batch) {
  return WriteWithCounters(batch, [this](rocksdb::WriteBatch* b) {
    return db_->WriteDeferringSync(b);
  });
}

absl::Status AutomationStore::SyncWal() {
  CRM_RETURN_IF_ERROR(Fault(Op::kWrite, ""));
  return db_->SyncWal();
}

std::unique_ptr<rocksdb::Iterator> AutomationStore::NewIterator(
    std::string_view cf_name) const {
  if (absl::Status fault = Fault(Op::kIterate, cf_name); !fault.ok()) {
    return std::unique_ptr<rocksdb::Iterator>(rocksdb::NewErrorIterator(
        rocksdb::Status::IOError(std::string(fault.message()))));
  }
  return db_->NewIterator(cf(cf_name));
}

absl::StatusOr<bool> AutomationStore::GetProto(
    std::string_view cf_name, std::string_view key,
    google::protobuf::Message* out) const {
  CRM_RETURN_IF_ERROR(Fault(Op::kRead, cf_name));
  CRM_ASSIGN_OR_RETURN(std::optional<std::string> value,
                       db_->Get(cf(cf_name), key));
  if (!value.has_value()) return false;
  if (!out->ParseFromString(*value)) {
    return absl::DataLossError(
        absl::StrCat("unreadable ", std::string(cf_name), " record"));
  }
  return true;
}

absl::StatusOr<int64_t> AutomationStore::GetInt(std::string_view cf_name,
                                                std::string_view key) const {
  CRM_RETURN_IF_ERROR(Fault(Op::kRead, cf_name));
  CRM_ASSIGN_OR_RETURN(std::optional<std::string> value,
                       db_->Get(cf(cf_name), key));
  if (!value.has_value()) return 0;
  int64_t number = 0;
  if (!absl::SimpleAtoi(*value, &number)) {
    return absl::DataLossError(
        absl::StrCat("unreadable ", std::string(cf_name), " value"));
  }
  return number;
}

void AutomationStore::Put(rocksdb::WriteBatch* batch, std::string_view cf_name,
                          std::string_view key,
                          const google::protobuf::Message& value) {
  static_cast<void>(batch->Put(cf(cf_name), key, value.SerializeAsString()));
}

void AutomationStore::PutInt(rocksdb::WriteBatch* batch,
                             std::string_view cf_name, std::string_view key,
                             int64_t value) {
  static_cast<void>(batch->Put(cf(cf_name), key, absl::StrCat(value)));
}

void AutomationStore::Delete(rocksdb::WriteBatch* batch,
                             std::string_view cf_name, std::string_view key) {
  static_cast<void>(batch->Delete(cf(cf_name), key));
}

int64_t AutomationStore::NewRuleId() {
  absl::MutexLock lock(&counters_mu_);
  ++generation_;
  counters_.set_next_rule_id(counters_.next_rule_id() + 1);
  return counters_.next_rule_id();
}

int64_t AutomationStore::NewTriggerId() {
  absl::MutexLock lock(&counters_mu_);
  ++generation_;
  counters_.set_next_trigger_id(counters_.next_trigger_id() + 1);
  return counters_.next_trigger_id();
}

int64_t AutomationStore::NewTaskId() {
  absl::MutexLock lock(&counters_mu_);
  ++generation_;
  counters_.set_next_task_id(counters_.next_task_id() + 1);
  return counters_.next_task_id();
}

int64_t AutomationStore::NewNotificationId() {
  absl::MutexLock lock(&counters_mu_);
  ++generation_;
  counters_.set_next_notification_id(counters_.next_notification_id() + 1);
  return counters_.next_notification_id();
}

int64_t AutomationStore::NewRevision() {
  absl::MutexLock lock(&counters_mu_);
  ++generation_;
  counters_.set_next_revision(counters_.next_revision() + 1);
  return counters_.next_revision();
}

}  // namespace crm::automation
