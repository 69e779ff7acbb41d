#include "services/automation/storage/automation_store.h"

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "rocksdb/iterator.h"
#include "rocksdb/write_batch.h"

#include "common/log/log.h"
#include "common/rocks/key_codec.h"
#include "common/rocks/rocks_db.h"
#include "common/status/status_macros.h"

namespace crm::automation {
namespace {

constexpr char kCountersKey[] = "counters";

// Parses the record under the iterator; false when it does not parse.
bool ParseValue(const rocksdb::Iterator& it, google::protobuf::Message* out) {
  return out->ParseFromArray(it.value().data(),
                             static_cast<int>(it.value().size()));
}

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

AutomationStore::AutomationStore() = default;
AutomationStore::~AutomationStore() = default;

rocksdb::ColumnFamilyHandle* AutomationStore::cf(std::string_view name) const {
  return db_->Handle(name);
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

absl::Status AutomationStore::WriteRawForTest(std::string_view cf_name,
                                              std::string_view key,
                                              std::string_view value) {
  rocksdb::WriteBatch batch;
  static_cast<void>(batch.Put(cf(cf_name), key, value));
  return db_->Write(&batch);
}

absl::Status AutomationStore::Fault(Op op, std::string_view cf_name) const {
  if (!has_fault_hook_.load(std::memory_order_acquire)) return absl::OkStatus();
  absl::MutexLock lock(&fault_mu_);
  return fault_hook_ != nullptr ? fault_hook_(op, cf_name) : absl::OkStatus();
}

absl::Status AutomationStore::WriteWithCounters(
    Batch& batch,
    const std::function<absl::Status(rocksdb::WriteBatch*)>& write) {
  CRM_RETURN_IF_ERROR(Fault(Op::kWrite, ""));
  absl::MutexLock lock(&counters_mu_);
  const int64_t generation = generation_;
  if (generation != stored_generation_) batch.PutMeta(kCountersKey, counters_);
  CRM_RETURN_IF_ERROR(write(batch.batch_.get()));
  stored_generation_ = generation;
  return absl::OkStatus();
}

absl::Status AutomationStore::Write(Batch& batch) {
  return WriteWithCounters(
      batch, [this](rocksdb::WriteBatch* b) { return db_->Write(b); });
}

absl::Status AutomationStore::WriteDeferringSync(Batch& batch) {
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

absl::StatusOr<bool> AutomationStore::GetRun(std::string_view run_key,
                                             storage::RunRecord* out) const {
  return GetProto(kRunsCf, run_key, out);
}

absl::StatusOr<bool> AutomationStore::GetEntry(
    int64_t deal_id, storage::EntryRecord* out) const {
  return GetProto(kEntriesCf, common::EncodeInt64(deal_id), out);
}

absl::StatusOr<bool> AutomationStore::GetTask(int64_t task_id,
                                              v1::Task* out) const {
  return GetProto(kTasksCf, common::EncodeInt64(task_id), out);
}

absl::StatusOr<bool> AutomationStore::GetMeta(
    std::string_view key, google::protobuf::Message* out) const {
  return GetProto(kMetaCf, key, out);
}

absl::StatusOr<int64_t> AutomationStore::GetApplied(int32_t shard) const {
  return GetInt(kMetaCf, AppliedKey(shard));
}

absl::StatusOr<int64_t> AutomationStore::GetRoundRobin(int64_t rule_id) const {
  return GetInt(kMetaCf, RoundRobinKey(rule_id));
}

absl::Status AutomationStore::ForEachRunOfEntry(
    int64_t deal_id, int64_t entry_seq,
    const std::function<bool(const std::string& run_key,
                             storage::RunRecord& record)>& visit,
    const RunScan& scan) const {
  std::string prefix;
  common::AppendInt64(&prefix, deal_id);
  common::AppendInt64(&prefix, entry_seq);
  auto it = NewIterator(kRunsCf);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    if (scan.skip != nullptr && scan.skip(it->key().ToString())) continue;
    storage::RunRecord record;
    if (!ParseValue(*it, &record)) {
      if (!scan.skip_unreadable) {
        return absl::DataLossError("unreadable run record");
      }
      CRM_LOG(kError, "unreadable run record skipped",
              {{"key", absl::CHexEscape(it->key().ToString())}});
      continue;
    }
    if (!visit(it->key().ToString(), record)) break;
  }
  return common::FromRocksStatus(it->status(), "runs");
}

absl::Status AutomationStore::ForEachDue(
    const std::function<void(int64_t due_micros, std::string run_key)>& visit)
    const {
  auto it = NewIterator(kDueCf);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    int64_t micros = 0;
    std::string key;
    if (!ParseDueKey(it->key().ToString(), &micros, &key)) {
      return absl::DataLossError("unreadable due index key");
    }
    visit(micros, std::move(key));
  }
  return common::FromRocksStatus(it->status(), "due");
}

absl::Status AutomationStore::ForEachTaskId(
    bool by_deal, int64_t owner_id, const std::string& after_key,
    const std::function<bool(const std::string& index_key, int64_t task_id)>&
        visit) const {
  const std::string prefix = common::EncodeInt64(owner_id);
  auto it = NewIterator(by_deal ? kTasksByDealCf : kTasksByUserCf);
  if (after_key.empty()) {
    it->Seek(prefix);
  } else {
    it->Seek(after_key);
    if (it->Valid() && it->key().ToString() == after_key) it->Next();
  }
  for (; it->Valid() && it->key().starts_with(prefix); it->Next()) {
    const std::string index_key = it->key().ToString();
    common::KeyReader reader(index_key);
    int64_t owner = 0, task_id = 0;
    if (!reader.ReadInt64(&owner) || !reader.ReadInt64(&task_id)) continue;
    if (!visit(index_key, task_id)) break;
  }
  return common::FromRocksStatus(it->status(), "tasks");
}

template <typename Record>
absl::Status AutomationStore::ForEachRecord(
    std::string_view cf_name, std::string_view what,
    const std::function<void(Record)>& visit) const {
  auto it = NewIterator(cf_name);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    Record record;
    if (!ParseValue(*it, &record)) {
      return absl::DataLossError(
          absl::StrCat("unreadable ", std::string(what), " record"));
    }
    visit(std::move(record));
  }
  return common::FromRocksStatus(it->status(), cf_name);
}

absl::Status AutomationStore::ForEachRule(
    const std::function<void(v1::Rule rule)>& visit) const {
  return ForEachRecord<v1::Rule>(kRulesCf, "rule", visit);
}

absl::Status AutomationStore::ForEachTrigger(
    const std::function<void(v1::Trigger trigger)>& visit) const {
  return ForEachRecord<v1::Trigger>(kTriggersCf, "trigger", visit);
}

template <typename Record>
absl::StatusOr<bool> AutomationStore::ForEachNewestFirst(
    std::string_view cf_name, const std::string& prefix,
    const std::string& after_key, const std::function<bool()>& full,
    const std::function<void(const std::string& key, Record& record)>& visit)
    const {
  auto it = NewIterator(cf_name);
  if (after_key.empty()) {
    it->SeekForPrev(common::PrefixSuccessor(prefix));
    if (it->Valid() && !it->key().starts_with(prefix)) it->Prev();
  } else {
    it->SeekForPrev(after_key);
    if (it->Valid() && it->key().ToString() == after_key) it->Prev();
  }
  bool more = false;
  for (; it->Valid() && it->key().starts_with(prefix); it->Prev()) {
    if (full()) {
      more = true;
      break;
    }
    Record record;
    if (!ParseValue(*it, &record)) {
      return absl::DataLossError(
          absl::StrCat("unreadable ", std::string(cf_name), " record"));
    }
    visit(it->key().ToString(), record);
  }
  CRM_RETURN_IF_ERROR(common::FromRocksStatus(it->status(), cf_name));
  return more;
}

absl::StatusOr<bool> AutomationStore::ForEachRunNewestFirst(
    int64_t deal_id, const std::string& after_key,
    const std::function<bool()>& full,
    const std::function<void(const std::string& key,
                             storage::RunRecord& record)>& visit) const {
  return ForEachNewestFirst<storage::RunRecord>(
      kRunsCf, common::EncodeInt64(deal_id), after_key, full, visit);
}

absl::StatusOr<bool> AutomationStore::ForEachNotificationNewestFirst(
    int64_t user_id, const std::string& after_key,
    const std::function<bool()>& full,
    const std::function<void(const std::string& key, v1::Notification& note)>&
        visit) const {
  return ForEachNewestFirst<v1::Notification>(
      kNotificationsCf, common::EncodeInt64(user_id), after_key, full, visit);
}

// ---------------------------------------------------------------- Batch

AutomationStore::Batch::Batch(AutomationStore& store)
    : store_(&store), batch_(std::make_unique<rocksdb::WriteBatch>()) {}
AutomationStore::Batch::~Batch() = default;
AutomationStore::Batch::Batch(Batch&&) noexcept = default;
AutomationStore::Batch& AutomationStore::Batch::operator=(Batch&&) noexcept =
    default;

void AutomationStore::Batch::Put(std::string_view cf, std::string_view key,
                                 std::string value) {
  static_cast<void>(batch_->Put(store_->cf(cf), key, value));
}

void AutomationStore::Batch::PutRule(const v1::Rule& rule) {
  Put(kRulesCf, common::EncodeInt64(rule.id()), rule.SerializeAsString());
}

void AutomationStore::Batch::DeleteRule(int64_t rule_id) {
  static_cast<void>(
      batch_->Delete(store_->cf(kRulesCf), common::EncodeInt64(rule_id)));
}

void AutomationStore::Batch::PutTrigger(const v1::Trigger& trigger) {
  Put(kTriggersCf, common::EncodeInt64(trigger.id()),
      trigger.SerializeAsString());
}

void AutomationStore::Batch::DeleteTrigger(int64_t trigger_id) {
  static_cast<void>(
      batch_->Delete(store_->cf(kTriggersCf), common::EncodeInt64(trigger_id)));
}

void AutomationStore::Batch::PutRun(std::string_view run_key,
                                    const storage::RunRecord& record) {
  Put(kRunsCf, run_key, record.SerializeAsString());
}

void AutomationStore::Batch::PutDue(int64_t due_micros,
                                    std::string_view run_key) {
  Put(kDueCf, DueKey(due_micros, run_key), "");
}

void AutomationStore::Batch::DeleteDue(int64_t due_micros,
                                       std::string_view run_key) {
  static_cast<void>(
      batch_->Delete(store_->cf(kDueCf), DueKey(due_micros, run_key)));
}

void AutomationStore::Batch::PutEntry(int64_t deal_id,
                                      const storage::EntryRecord& entry) {
  Put(kEntriesCf, common::EncodeInt64(deal_id), entry.SerializeAsString());
}

void AutomationStore::Batch::DeleteEntry(int64_t deal_id) {
  static_cast<void>(
      batch_->Delete(store_->cf(kEntriesCf), common::EncodeInt64(deal_id)));
}

void AutomationStore::Batch::PutApplied(int32_t shard, int64_t sequence) {
  Put(kMetaCf, AppliedKey(shard), absl::StrCat(sequence));
}

void AutomationStore::Batch::PutRoundRobin(int64_t rule_id, int64_t position) {
  Put(kMetaCf, RoundRobinKey(rule_id), absl::StrCat(position));
}

void AutomationStore::Batch::PutTask(const v1::Task& task) {
  std::string by_deal, by_user;
  common::AppendInt64(&by_deal, task.deal_id());
  common::AppendInt64(&by_deal, task.id());
  common::AppendInt64(&by_user, task.responsible_id());
  common::AppendInt64(&by_user, task.id());
  Put(kTasksCf, common::EncodeInt64(task.id()), task.SerializeAsString());
  Put(kTasksByDealCf, by_deal, "");
  Put(kTasksByUserCf, by_user, "");
}

void AutomationStore::Batch::PutNotification(const v1::Notification& note) {
  std::string key;
  common::AppendInt64(&key, note.user_id());
  common::AppendInt64(&key, note.id());
  Put(kNotificationsCf, key, note.SerializeAsString());
}

void AutomationStore::Batch::PutMeta(std::string_view key,
                                     const google::protobuf::Message& value) {
  Put(kMetaCf, key, value.SerializeAsString());
}

void AutomationStore::Batch::DeleteMeta(std::string_view key) {
  static_cast<void>(batch_->Delete(store_->cf(kMetaCf), key));
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
