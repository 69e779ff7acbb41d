#include "services/deals/storage/deal_store.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "rocksdb/write_batch.h"

#include "common/grpc/message_limits.h"
#include "common/money/decimal.h"
#include "common/rocks/key_codec.h"
#include "common/status/status_macros.h"
#include "common/text/etag.h"

namespace crm::deals {
namespace {

namespace storage = ::crm::deals::storage;

constexpr char kDeals[] = "deals";
constexpr char kByStage[] = "deals_by_stage";
constexpr char kByAssignee[] = "deals_by_assignee";
constexpr char kByCloseDate[] = "deals_by_close_date";
constexpr char kColumnTotals[] = "column_totals";
constexpr char kHistory[] = "stage_history";
constexpr char kOutbox[] = "outbox";
constexpr char kRequestIds[] = "request_ids";
constexpr char kMeta[] = "meta";
constexpr char kSequencesKey[] = "sequences";

std::string StageKey(int64_t pipeline_id, const std::string& stage_id) {
  std::string key;
  common::AppendInt64(&key, pipeline_id);
  common::AppendString(&key, stage_id);
  return key;
}

// The secondary index entries of a deal, as (column family, key).
std::set<std::pair<const char*, std::string>> IndexKeys(const v1::Deal& deal) {
  std::set<std::pair<const char*, std::string>> keys;
  std::string by_stage = StageKey(deal.pipeline_id(), deal.stage_id());
  common::AppendInt64(&by_stage, deal.id());
  keys.emplace(kByStage, std::move(by_stage));
  std::string by_assignee;
  common::AppendInt64(&by_assignee, deal.assignee_id());
  common::AppendInt64(&by_assignee, deal.id());
  keys.emplace(kByAssignee, std::move(by_assignee));
  std::string by_close;
  common::AppendString(&by_close, deal.close_date());
  common::AppendInt64(&by_close, deal.id());
  keys.emplace(kByCloseDate, std::move(by_close));
  return keys;
}

absl::StatusOr<int64_t> AmountMicros(const v1::Deal& deal) {
  if (deal.amount().empty()) return 0;
  CRM_ASSIGN_OR_RETURN(common::Decimal amount,
                       common::Decimal::Parse(deal.amount(), "deal.amount"));
  return amount.micro_units();
}

template <typename Message>
absl::Status ParseValue(const rocksdb::Slice& value, Message* message,
                        const char* what) {
  if (!message->ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return absl::DataLossError(absl::StrCat("unreadable ", what, " record"));
  }
  return absl::OkStatus();
}

}  // namespace

DealStore::DealStore(std::unique_ptr<common::RocksDb> db, int shard,
                     storage::Sequences sequences)
    : db_(std::move(db)), shard_(shard), sequences_(std::move(sequences)) {}

absl::StatusOr<std::unique_ptr<DealStore>> DealStore::Open(
    const std::string& path, const common::RocksOptions& options, int shard) {
  if (shard < 0 || shard > kMaxShard) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard: must be 0..", kMaxShard));
  }
  CRM_ASSIGN_OR_RETURN(
      std::unique_ptr<common::RocksDb> db,
      common::RocksDb::Open(
          path,
          {kDeals, kByStage, kByAssignee, kByCloseDate, kColumnTotals, kHistory,
           kOutbox, kRequestIds, kMeta},
          options));
  storage::Sequences sequences;
  CRM_ASSIGN_OR_RETURN(std::optional<std::string> stored,
                       db->Get(db->Handle(kMeta), kSequencesKey));
  if (stored.has_value() && !sequences.ParseFromString(*stored)) {
    return absl::DataLossError("unreadable sequences record");
  }
  sequences.set_next_deal_seq(std::max<int64_t>(1, sequences.next_deal_seq()));
  sequences.set_next_event_seq(
      std::max<int64_t>(1, sequences.next_event_seq()));
  sequences.set_next_history_seq(
      std::max<int64_t>(1, sequences.next_history_seq()));
  return std::unique_ptr<DealStore>(
      new DealStore(std::move(db), shard, std::move(sequences)));
}

int64_t DealStore::AllocateDealId() {
  absl::MutexLock lock(&mu_);
  const int64_t seq = sequences_.next_deal_seq();
  sequences_.set_next_deal_seq(seq + 1);
  return (seq << kShardBits) | shard_;
}

absl::StatusOr<std::optional<storage::DealRecord>> DealStore::Get(
    int64_t deal_id) const {
  CRM_ASSIGN_OR_RETURN(
      std::optional<std::string> value,
      db_->Get(db_->Handle(kDeals), common::EncodeInt64(deal_id)));
  if (!value.has_value()) return std::optional<storage::DealRecord>();
  storage::DealRecord record;
  if (!record.ParseFromString(*value))
    return absl::DataLossError("unreadable deal record");
  return std::optional<storage::DealRecord>(std::move(record));
}

absl::StatusOr<std::vector<std::optional<storage::DealRecord>>>
DealStore::GetMany(const std::vector<int64_t>& ids) const {
  std::vector<std::string> encoded;
  encoded.reserve(ids.size());
  for (int64_t id : ids) encoded.push_back(common::EncodeInt64(id));
  std::vector<rocksdb::Slice> keys(encoded.begin(), encoded.end());
  std::vector<rocksdb::PinnableSlice> values(ids.size());
  std::vector<rocksdb::Status> statuses(ids.size());
  db_->db()->MultiGet(rocksdb::ReadOptions(), db_->Handle(kDeals), keys.size(),
                      keys.data(), values.data(), statuses.data());
  std::vector<std::optional<storage::DealRecord>> records(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (statuses[i].IsNotFound()) continue;
    CRM_RETURN_IF_ERROR(common::FromRocksStatus(statuses[i], "read deals"));
    storage::DealRecord record;
    CRM_RETURN_IF_ERROR(ParseValue(values[i], &record, "deal"));
    records[i] = std::move(record);
  }
  return records;
}

namespace {

// What Commit prepares before it takes the lock: every value whose bytes do
// not depend on the sequences (so the lock is held for bookkeeping only).
struct PreparedWrite {
  int64_t deal_id = 0;
  int64_t before_revision = 0;  // 0 for a create
  int64_t after_revision = 0;   // 0 for a delete
  std::string record;           // serialized DealRecord, empty for a delete
  std::set<std::pair<const char*, std::string>> old_keys;
  std::set<std::pair<const char*, std::string>> new_keys;
  std::vector<std::string> history;  // serialized entries
  // The event without sequence, shard and event id; the lock appends those
  // as a second serialized message (protobuf merges concatenated messages).
  std::optional<std::string> event;
};

}  // namespace

absl::StatusOr<storage::ColumnTotals*> DealStore::CachedColumn(
    const std::string& key) {
  auto it = columns_.find(key);
  if (it == columns_.end()) {
    storage::ColumnTotals totals;
    CRM_ASSIGN_OR_RETURN(std::optional<std::string> value,
                         db_->Get(db_->Handle(kColumnTotals), key));
    if (value.has_value() && !totals.ParseFromString(*value)) {
      return absl::DataLossError("unreadable column totals record");
    }
    // Sums written before they were 128-bit move to the exact field.
    for (const auto& [currency, micros] : totals.sums_micros()) {
      if (totals.sums().count(currency) > 0) continue;
      common::DecimalSum sum;
      sum.AddUnits(micros);
      storage::Int128& exact = (*totals.mutable_sums())[currency];
      exact.set_hi(sum.hi());
      exact.set_lo(sum.lo());
    }
    totals.clear_sums_micros();
    it = columns_.emplace(key, std::move(totals)).first;
  }
  return &it->second;
}

absl::StatusOr<int64_t> DealStore::LatestRevision(int64_t deal_id) {
  auto pending = pending_revisions_.find(deal_id);
  if (pending != pending_revisions_.end()) return pending->second.revision;
  CRM_ASSIGN_OR_RETURN(std::optional<storage::DealRecord> stored, Get(deal_id));
  return stored.has_value() ? stored->revision() : 0;
}

absl::StatusOr<CommitResult> DealStore::Commit(DealWrite write) {
  if (!write.before.has_value() && !write.after.has_value()) {
    return absl::InternalError("a deal write needs a before or an after state");
  }
  const int64_t deal_id =
      write.after.has_value() ? write.after->id() : write.before->deal().id();
  if (write.before.has_value() && write.after.has_value() &&
      write.before->deal().id() != write.after->id()) {
    return absl::InternalError("a deal write cannot change the deal id");
  }
  // Parse amounts and serialize before taking the lock: bad input never
  // reaches the batch, and the lock is held for bookkeeping only.
  common::Decimal before_amount;
  common::Decimal after_amount;
  if (write.before.has_value()) {
    CRM_ASSIGN_OR_RETURN(int64_t micros, AmountMicros(write.before->deal()));
    before_amount = common::Decimal::FromUnits(micros);
  }
  if (write.after.has_value()) {
    CRM_ASSIGN_OR_RETURN(int64_t micros, AmountMicros(*write.after));
    after_amount = common::Decimal::FromUnits(micros);
  }
  // Every deal fits one message with room to spare (an event carries it, a
  // page holds at least one). A deal stored larger by an older version may
  // still be written as long as the write does not grow it.
  if (write.after.has_value()) {
    const size_t bytes = write.after->ByteSizeLong();
    if (bytes > common::kMaxDealBytes &&
        (!write.before.has_value() ||
         bytes > write.before->deal().ByteSizeLong())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "deal: ", bytes, " bytes serialized, at most ", common::kMaxDealBytes,
          " (title, comments, custom fields and product rows together)"));
    }
  }
  CommitResult result;
  PreparedWrite prepared;
  prepared.deal_id = deal_id;
  if (write.before.has_value()) {
    prepared.before_revision = write.before->revision();
    prepared.old_keys = IndexKeys(write.before->deal());
  }
  if (write.after.has_value()) {
    storage::DealRecord record;
    record.set_revision(prepared.before_revision + 1);
    record.set_config_version(
        std::max(write.before.has_value() ? write.before->config_version() : 0,
                 write.config_version));
    *record.mutable_deal() = *std::move(write.after);
    record.mutable_deal()->set_etag(common::EtagOf(record.revision()));
    prepared.after_revision = record.revision();
    prepared.new_keys = IndexKeys(record.deal());
    prepared.record = record.SerializeAsString();
    result.revision = record.revision();
    result.deal = std::move(*record.mutable_deal());
  }
  for (const auto& entry : write.history)
    prepared.history.push_back(entry.SerializeAsString());
  if (write.event.has_value()) {
    v1::DealEvent& event = *write.event;
    event.clear_sequence();
    event.clear_shard();
    event.clear_event_id();
    event.set_deal_id(deal_id);
    if (result.deal.has_value()) {
      *event.mutable_deal() = *result.deal;
    } else {
      *event.mutable_deal() = write.before->deal();
    }
    prepared.event = event.SerializeAsString();
  }

  absl::MutexLock lock(&mu_);
  // A queued commit of the same deal or request id goes to disk first: the
  // caller read the durable state, and its retry must be able to see what
  // that commit did.
  AwaitNotPending(deal_id, write.request_id);
  // Optimistic check: the revision must still be the one read.
  CRM_ASSIGN_OR_RETURN(const int64_t latest, LatestRevision(deal_id));
  if (write.before.has_value()) {
    if (latest != prepared.before_revision) {
      return absl::AbortedError(
          absl::StrCat("deal ", deal_id, " was changed concurrently"));
    }
  } else if (latest != 0) {
    return absl::AbortedError(
        absl::StrCat("deal ", deal_id, " exists already"));
  }
  if (!write.request_id.empty()) {
    auto pending = pending_requests_.find(write.request_id);
    if (pending != pending_requests_.end()) {
      return absl::AlreadyExistsError(
          "request_id: used already by a concurrent request");
    }
    CRM_ASSIGN_OR_RETURN(std::optional<storage::RequestRecord> used,
                         FindRequest(write.request_id));
    if (used.has_value()) {
      return absl::AlreadyExistsError(
          absl::StrCat("request_id: used already by deal ", used->deal_id()));
    }
  }

  // Counters: take the deal out of its old column, into its new one. Done
  // on a copy so that a failure half way leaves the cache as it was.
  std::map<std::string, storage::ColumnTotals> columns;
  auto column = [&](int64_t pipeline_id, const std::string& stage_id)
                    ABSL_EXCLUSIVE_LOCKS_REQUIRED(
                        mu_) -> absl::StatusOr<storage::ColumnTotals*> {
    const std::string key = StageKey(pipeline_id, stage_id);
    auto it = columns.find(key);
    if (it == columns.end()) {
      CRM_ASSIGN_OR_RETURN(storage::ColumnTotals * cached, CachedColumn(key));
      it = columns.emplace(key, *cached).first;
    }
    return &it->second;
  };
  auto add = [](storage::ColumnTotals* totals, const std::string& currency,
                common::Decimal amount, int sign) {
    storage::Int128& stored = (*totals->mutable_sums())[currency];
    common::DecimalSum sum =
        common::DecimalSum::FromParts(stored.hi(), stored.lo());
    if (sign > 0) {
      sum.Add(amount);
    } else {
      sum.Subtract(amount);
    }
    stored.set_hi(sum.hi());
    stored.set_lo(sum.lo());
  };
  if (write.before.has_value()) {
    const v1::Deal& deal = write.before->deal();
    CRM_ASSIGN_OR_RETURN(storage::ColumnTotals * totals,
                         column(deal.pipeline_id(), deal.stage_id()));
    totals->set_count(totals->count() - 1);
    add(totals, deal.currency(), before_amount, -1);
  }
  if (result.deal.has_value()) {
    const v1::Deal& deal = *result.deal;
    CRM_ASSIGN_OR_RETURN(storage::ColumnTotals * totals,
                         column(deal.pipeline_id(), deal.stage_id()));
    totals->set_count(totals->count() + 1);
    add(totals, deal.currency(), after_amount, +1);
  }

  // Everything checked: the commit goes into the open group.
  if (open_batch_ == nullptr)
    open_batch_ = std::make_unique<rocksdb::WriteBatch>();
  rocksdb::WriteBatch& batch = *open_batch_;
  auto put = [&](const char* cf, const std::string& key,
                 const std::string& value) {
    static_cast<void>(batch.Put(db_->Handle(cf), key, value));
  };
  auto del = [&](const char* cf, const std::string& key) {
    static_cast<void>(batch.Delete(db_->Handle(cf), key));
  };
  if (result.deal.has_value()) {
    put(kDeals, common::EncodeInt64(deal_id), prepared.record);
  } else {
    del(kDeals, common::EncodeInt64(deal_id));
  }
  for (const auto& key : prepared.old_keys) {
    if (prepared.new_keys.count(key) == 0) del(key.first, key.second);
  }
  for (const auto& key : prepared.new_keys) {
    if (prepared.old_keys.count(key) == 0) put(key.first, key.second, "");
  }
  for (auto& [key, totals] : columns) {
    // Currencies that no deal of the column uses any more are dropped.
    for (auto it = totals.mutable_sums()->begin();
         it != totals.mutable_sums()->end();) {
      it = it->second.hi() == 0 && it->second.lo() == 0
               ? totals.mutable_sums()->erase(it)
               : std::next(it);
    }
    if (totals.count() == 0 && totals.sums().empty()) {
      del(kColumnTotals, key);
    } else {
      put(kColumnTotals, key, totals.SerializeAsString());
    }
    columns_[key] = std::move(totals);
  }
  for (const std::string& entry : prepared.history) {
    std::string key;
    common::AppendInt64(&key, deal_id);
    common::AppendUint64(&key,
                         static_cast<uint64_t>(sequences_.next_history_seq()));
    sequences_.set_next_history_seq(sequences_.next_history_seq() + 1);
    put(kHistory, key, entry);
  }
  if (prepared.event.has_value()) {
    const int64_t sequence = sequences_.next_event_seq();
    sequences_.set_next_event_seq(sequence + 1);
    v1::DealEvent numbering;
    numbering.set_sequence(sequence);
    numbering.set_shard(shard_);
    numbering.set_event_id(absl::StrCat(shard_, "-", sequence));
    prepared.event->append(numbering.SerializeAsString());
    put(kOutbox, common::EncodeUint64(static_cast<uint64_t>(sequence)),
        *prepared.event);
    result.event_sequence = sequence;
  }
  if (!write.request_id.empty()) {
    storage::RequestRecord request;
    request.set_fingerprint(write.request_fingerprint);
    request.set_deal_id(deal_id);
    put(kRequestIds, write.request_id, request.SerializeAsString());
    pending_requests_[write.request_id] = open_generation_;
    open_requests_.push_back(write.request_id);
  }
  // Allocated ids are covered too: next_deal_seq only grows.
  put(kMeta, kSequencesKey, sequences_.SerializeAsString());
  pending_revisions_[deal_id] =
      PendingRevision{prepared.after_revision, open_generation_};
  open_deals_.push_back(deal_id);

  Waiter waiter;
  open_waiters_.push_back(&waiter);
  CRM_RETURN_IF_ERROR(AwaitGroup(&waiter));
  {
    // Bumped before the writer is answered, so whoever reads after the
    // acknowledgement sees the new count.
    absl::MutexLock counts(&write_counts_mu_);
    if (write.before.has_value())
      ++write_counts_[write.before->deal().pipeline_id()];
    if (result.deal.has_value()) ++write_counts_[result.deal->pipeline_id()];
  }
  return result;
}

absl::Status DealStore::RememberRequest(const std::string& request_id,
                                        const storage::RequestRecord& record) {
  if (request_id.empty()) return absl::InternalError("no request id");
  const std::string value = record.SerializeAsString();
  absl::MutexLock lock(&mu_);
  AwaitNotPending(record.deal_id(), request_id);
  if (pending_requests_.count(request_id) > 0) {
    return absl::AlreadyExistsError(
        "request_id: used already by a concurrent request");
  }
  CRM_ASSIGN_OR_RETURN(std::optional<storage::RequestRecord> used,
                       FindRequest(request_id));
  if (used.has_value()) {
    return absl::AlreadyExistsError("request_id: used already");
  }
  if (open_batch_ == nullptr)
    open_batch_ = std::make_unique<rocksdb::WriteBatch>();
  static_cast<void>(
      open_batch_->Put(db_->Handle(kRequestIds), request_id, value));
  pending_requests_[request_id] = open_generation_;
  open_requests_.push_back(request_id);
  Waiter waiter;
  open_waiters_.push_back(&waiter);
  return AwaitGroup(&waiter);
}

void DealStore::AwaitNotPending(int64_t deal_id,
                                const std::string& request_id) {
  struct Wake {
    DealStore* store;
    int64_t deal_id;
    const std::string* request_id;
    static bool Pending(const Wake* wake) ABSL_NO_THREAD_SAFETY_ANALYSIS {
      const DealStore& s = *wake->store;
      return s.pending_revisions_.count(wake->deal_id) > 0 ||
             (!wake->request_id->empty() &&
              s.pending_requests_.count(*wake->request_id) > 0);
    }
    static bool Ready(Wake* wake) ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return !Pending(wake) || !wake->store->writing_;
    }
  } wake{this, deal_id, &request_id};
  while (Wake::Pending(&wake)) {
    if (!writing_) {
      WriteOpenGroup();
      continue;
    }
    mu_.Await(absl::Condition(&Wake::Ready, &wake));
  }
}

absl::Status DealStore::AwaitGroup(Waiter* waiter) {
  while (!waiter->done) {
    if (!writing_) {
      WriteOpenGroup();
      continue;
    }
    struct Wake {
      DealStore* store;
      Waiter* waiter;
      static bool Ready(Wake* wake) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return wake->waiter->done || !wake->store->writing_;
      }
    } wake{this, waiter};
    mu_.Await(absl::Condition(&Wake::Ready, &wake));
  }
  return waiter->status;
}

void DealStore::WriteOpenGroup() {
  if (open_batch_ == nullptr) return;
  std::unique_ptr<rocksdb::WriteBatch> batch = std::move(open_batch_);
  std::vector<Waiter*> waiters = std::move(open_waiters_);
  std::vector<int64_t> deals = std::move(open_deals_);
  std::vector<std::string> requests = std::move(open_requests_);
  open_waiters_.clear();
  open_deals_.clear();
  open_requests_.clear();
  const uint64_t generation = open_generation_++;
  writing_ = true;
  mu_.Unlock();
  const absl::Status written = db_->Write(batch.get());
  mu_.Lock();
  writing_ = false;
  if (written.ok()) {
    for (int64_t deal : deals) {
      auto it = pending_revisions_.find(deal);
      if (it != pending_revisions_.end() &&
          it->second.generation == generation) {
        pending_revisions_.erase(it);
      }
    }
    for (const std::string& request : requests) {
      auto it = pending_requests_.find(request);
      if (it != pending_requests_.end() && it->second == generation)
        pending_requests_.erase(it);
    }
    for (Waiter* waiter : waiters) waiter->done = true;
    return;
  }
  // The group is lost, and so is the open group behind it: it was checked
  // against the lost state. Start again from what is on disk.
  for (Waiter* waiter : open_waiters_) waiters.push_back(waiter);
  for (Waiter* waiter : waiters) {
    waiter->status = written;
    waiter->done = true;
  }
  open_batch_.reset();
  open_waiters_.clear();
  open_deals_.clear();
  open_requests_.clear();
  ++open_generation_;
  pending_revisions_.clear();
  pending_requests_.clear();
  columns_.clear();
  storage::Sequences stored;
  absl::StatusOr<std::optional<std::string>> value =
      db_->Get(db_->Handle(kMeta), kSequencesKey);
  if (value.ok() && value->has_value() && stored.ParseFromString(**value)) {
    // Ids handed out stay handed out.
    stored.set_next_deal_seq(
        std::max(stored.next_deal_seq(), sequences_.next_deal_seq()));
    sequences_ = std::move(stored);
  }
  // If even that read fails the store is broken; the sequences in memory
  // stay ahead of disk, which leaves gaps but never reuses a number.
}

int64_t DealStore::PipelineWriteCount(int64_t pipeline_id) const {
  absl::MutexLock lock(&write_counts_mu_);
  auto it = write_counts_.find(pipeline_id);
  return it == write_counts_.end() ? 0 : it->second;
}

absl::StatusOr<std::optional<storage::RequestRecord>> DealStore::FindRequest(
    const std::string& request_id) const {
  CRM_ASSIGN_OR_RETURN(std::optional<std::string> value,
                       db_->Get(db_->Handle(kRequestIds), request_id));
  if (!value.has_value()) return std::optional<storage::RequestRecord>();
  storage::RequestRecord record;
  if (!record.ParseFromString(*value))
    return absl::DataLossError("unreadable request record");
  return std::optional<storage::RequestRecord>(std::move(record));
}

absl::StatusOr<std::vector<v1::DealEvent>> DealStore::ReadOutbox(
    int64_t from, int limit) const {
  std::vector<v1::DealEvent> events;
  auto it = db_->NewIterator(db_->Handle(kOutbox));
  for (it->Seek(common::EncodeUint64(
           static_cast<uint64_t>(std::max<int64_t>(from, 0))));
       it->Valid() && static_cast<int>(events.size()) < limit; it->Next()) {
    v1::DealEvent event;
    CRM_RETURN_IF_ERROR(ParseValue(it->value(), &event, "outbox"));
    events.push_back(std::move(event));
  }
  CRM_RETURN_IF_ERROR(common::FromRocksStatus(it->status(), "scan outbox"));
  return events;
}

absl::Status DealStore::ReadOutboxRaw(int64_t from, int limit, size_t max_bytes,
                                      std::vector<std::string>* events,
                                      std::vector<int64_t>* sequences) const {
  events->clear();
  sequences->clear();
  size_t bytes = 0;
  auto it = db_->NewIterator(db_->Handle(kOutbox));
  for (it->Seek(common::EncodeUint64(
           static_cast<uint64_t>(std::max<int64_t>(from, 0))));
       it->Valid() && static_cast<int>(events->size()) < limit; it->Next()) {
    if (!events->empty() && bytes + it->value().size() > max_bytes) break;
    common::KeyReader reader(
        std::string_view(it->key().data(), it->key().size()));
    uint64_t sequence = 0;
    if (!reader.ReadUint64(&sequence) || !reader.done())
      return absl::DataLossError("malformed outbox key");
    bytes += it->value().size();
    events->emplace_back(it->value().data(), it->value().size());
    sequences->push_back(static_cast<int64_t>(sequence));
  }
  return common::FromRocksStatus(it->status(), "scan outbox");
}

int64_t DealStore::next_event_sequence() const {
  absl::MutexLock lock(&mu_);
  return sequences_.next_event_seq();
}

absl::StatusOr<int64_t> DealStore::PruneOutbox(absl::Time cutoff,
                                               int64_t max_sequence,
                                               int chunk) {
  const int64_t cutoff_micros = absl::ToUnixMicros(cutoff);
  chunk = std::max(1, chunk);
  int64_t pruned = 0;
  std::string resume;  // the last key deleted, "" = from the start
  // Bounded batches: a backlog of millions of expired events is deleted a
  // chunk at a time, each chunk its own write, never one huge batch.
  while (true) {
    rocksdb::WriteBatch batch;
    int in_batch = 0;
    bool more = false;
    {
      auto it = db_->NewIterator(db_->Handle(kOutbox));
      if (resume.empty()) {
        it->SeekToFirst();
      } else {
        it->Seek(resume);
      }
      for (; it->Valid(); it->Next()) {
        v1::DealEvent event;
        CRM_RETURN_IF_ERROR(ParseValue(it->value(), &event, "outbox"));
        // Events are in commit order, so times only grow (up to clock
        // steps): stop at the first event young enough to keep.
        if (google::protobuf::util::TimeUtil::TimestampToMicroseconds(
                event.occur_time()) >= cutoff_micros ||
            event.sequence() > max_sequence) {
          break;
        }
        if (in_batch == chunk) {
          more = true;
          break;
        }
        static_cast<void>(batch.Delete(db_->Handle(kOutbox), it->key()));
        resume = it->key().ToString();
        ++in_batch;
      }
      CRM_RETURN_IF_ERROR(common::FromRocksStatus(it->status(), "scan outbox"));
    }
    if (in_batch > 0) CRM_RETURN_IF_ERROR(db_->Write(&batch));
    pruned += in_batch;
    if (!more) return pruned;
  }
}

absl::StatusOr<int64_t> DealStore::GetCursor(
    const std::string& subscriber) const {
  CRM_ASSIGN_OR_RETURN(
      std::optional<std::string> value,
      db_->Get(db_->Handle(kMeta), absl::StrCat("cursor/", subscriber)));
  if (!value.has_value()) return 0;
  common::KeyReader reader(*value);
  uint64_t sequence = 0;
  if (!reader.ReadUint64(&sequence) || !reader.done()) {
    return absl::DataLossError(
        absl::StrCat("unreadable cursor of ", subscriber));
  }
  return static_cast<int64_t>(sequence);
}

absl::Status DealStore::SetCursor(const std::string& subscriber,
                                  int64_t sequence) {
  rocksdb::WriteBatch batch;
  static_cast<void>(
      batch.Put(db_->Handle(kMeta), absl::StrCat("cursor/", subscriber),
                common::EncodeUint64(static_cast<uint64_t>(sequence))));
  return common::FromRocksStatus(
      db_->db()->Write(rocksdb::WriteOptions(), &batch), "write cursor");
}

absl::StatusOr<std::vector<std::pair<uint64_t, v1::StageHistoryEntry>>>
DealStore::ReadHistory(int64_t deal_id, uint64_t after_seq, int limit) const {
  std::vector<std::pair<uint64_t, v1::StageHistoryEntry>> entries;
  std::string prefix = common::EncodeInt64(deal_id);
  std::string start = prefix;
  common::AppendUint64(&start, after_seq + 1);
  const std::string end = common::PrefixSuccessor(prefix);
  rocksdb::ReadOptions options;
  rocksdb::Slice upper(end);
  options.iterate_upper_bound = &upper;
  auto it = db_->NewIterator(db_->Handle(kHistory), options);
  for (it->Seek(start); it->Valid() && static_cast<int>(entries.size()) < limit;
       it->Next()) {
    common::KeyReader reader(
        std::string_view(it->key().data(), it->key().size()));
    int64_t id = 0;
    uint64_t seq = 0;
    if (!reader.ReadInt64(&id) || !reader.ReadUint64(&seq)) {
      return absl::DataLossError("malformed history key");
    }
    v1::StageHistoryEntry entry;
    CRM_RETURN_IF_ERROR(ParseValue(it->value(), &entry, "history"));
    entries.emplace_back(seq, std::move(entry));
  }
  CRM_RETURN_IF_ERROR(common::FromRocksStatus(it->status(), "scan history"));
  return entries;
}

absl::StatusOr<std::map<std::string, ColumnCounters>> DealStore::ColumnTotalsOf(
    int64_t pipeline_id) const {
  std::map<std::string, ColumnCounters> totals;
  const std::string prefix = common::EncodeInt64(pipeline_id);
  const std::string end = common::PrefixSuccessor(prefix);
  rocksdb::ReadOptions options;
  rocksdb::Slice upper(end);
  options.iterate_upper_bound = &upper;
  auto it = db_->NewIterator(db_->Handle(kColumnTotals), options);
  for (it->Seek(prefix); it->Valid(); it->Next()) {
    common::KeyReader reader(
        std::string_view(it->key().data(), it->key().size()));
    int64_t id = 0;
    std::string stage_id;
    if (!reader.ReadInt64(&id) || !reader.ReadString(&stage_id)) {
      return absl::DataLossError("malformed column totals key");
    }
    storage::ColumnTotals stored;
    CRM_RETURN_IF_ERROR(ParseValue(it->value(), &stored, "column totals"));
    ColumnCounters& column = totals[stage_id];
    column.count = stored.count();
    for (const auto& [currency, sum] : stored.sums()) {
      column.sums[currency] = common::DecimalSum::FromParts(sum.hi(), sum.lo());
    }
    for (const auto& [currency, micros] : stored.sums_micros()) {
      if (stored.sums().count(currency) > 0) continue;
      column.sums[currency].AddUnits(micros);
    }
  }
  CRM_RETURN_IF_ERROR(
      common::FromRocksStatus(it->status(), "scan column totals"));
  return totals;
}

absl::StatusOr<int64_t> DealStore::CountDeals(
    int64_t pipeline_id, const std::string& stage_id) const {
  CRM_ASSIGN_OR_RETURN(auto totals, ColumnTotalsOf(pipeline_id));
  int64_t count = 0;
  for (const auto& [stage, column] : totals) {
    if (stage_id.empty() || stage == stage_id) count += column.count;
  }
  return count;
}

absl::StatusOr<std::vector<int64_t>> DealStore::IdsInStage(
    int64_t pipeline_id, const std::string& stage_id, int64_t after_id,
    int limit) const {
  std::vector<int64_t> ids;
  const std::string prefix = StageKey(pipeline_id, stage_id);
  std::string start = prefix;
  if (after_id > 0) {
    common::AppendInt64(&start, after_id);
    start = common::PrefixSuccessor(start);
  }
  const std::string end = common::PrefixSuccessor(prefix);
  rocksdb::ReadOptions options;
  rocksdb::Slice upper(end);
  options.iterate_upper_bound = &upper;
  auto it = db_->NewIterator(db_->Handle(kByStage), options);
  for (it->Seek(start); it->Valid() && static_cast<int>(ids.size()) < limit;
       it->Next()) {
    common::KeyReader reader(
        std::string_view(it->key().data(), it->key().size()));
    int64_t pipeline = 0;
    std::string stage;
    int64_t id = 0;
    if (!reader.ReadInt64(&pipeline) || !reader.ReadString(&stage) ||
        !reader.ReadInt64(&id)) {
      return absl::DataLossError("malformed stage index key");
    }
    ids.push_back(id);
  }
  CRM_RETURN_IF_ERROR(
      common::FromRocksStatus(it->status(), "scan stage index"));
  return ids;
}

namespace {

// Ids from the keys of one column family range, whose keys end with the
// deal id (EncodeInt64, 8 bytes).
class RangeIdStream final : public IdStream {
 public:
  RangeIdStream(const common::RocksDb& db, rocksdb::ColumnFamilyHandle* cf,
                std::string lower, std::string upper, bool descending)
      : lower_(std::move(lower)),
        upper_(std::move(upper)),
        lower_slice_(lower_),
        upper_slice_(upper_),
        descending_(descending) {
    rocksdb::ReadOptions options;
    options.iterate_lower_bound = &lower_slice_;
    options.iterate_upper_bound = &upper_slice_;
    it_ = db.NewIterator(cf, options);
  }

  bool Next(int64_t* id) override {
    if (!started_) {
      started_ = true;
      if (descending_) {
        it_->SeekToLast();
      } else {
        it_->SeekToFirst();
      }
    } else if (it_->Valid()) {
      if (descending_) {
        it_->Prev();
      } else {
        it_->Next();
      }
    }
    if (!it_->Valid()) {
      status_ = common::FromRocksStatus(it_->status(), "scan index");
      return false;
    }
    const rocksdb::Slice key = it_->key();
    if (key.size() < 8) {
      status_ = absl::DataLossError("malformed index key");
      return false;
    }
    common::KeyReader reader(std::string_view(key.data() + key.size() - 8, 8));
    if (!reader.ReadInt64(id)) {
      status_ = absl::DataLossError("malformed index key");
      return false;
    }
    return true;
  }

  absl::Status status() const override { return status_; }

 private:
  const std::string lower_;
  const std::string upper_;
  rocksdb::Slice lower_slice_;
  rocksdb::Slice upper_slice_;
  const bool descending_;
  std::unique_ptr<rocksdb::Iterator> it_;
  bool started_ = false;
  absl::Status status_;
};

// The range of keys `prefix` + id for ids after the cursor.
std::unique_ptr<IdStream> PrefixStream(const common::RocksDb& db,
                                       rocksdb::ColumnFamilyHandle* cf,
                                       const std::string& prefix,
                                       int64_t after_id, bool descending) {
  std::string lower = prefix;
  std::string upper = common::PrefixSuccessor(prefix);
  if (after_id > 0) {
    std::string cursor = prefix;
    common::AppendInt64(&cursor, after_id);
    if (descending) {
      upper = cursor;
    } else {
      lower = common::PrefixSuccessor(cursor);
    }
  }
  return std::make_unique<RangeIdStream>(db, cf, std::move(lower),
                                         std::move(upper), descending);
}

class MergedIdStream final : public IdStream {
 public:
  MergedIdStream(std::vector<std::unique_ptr<IdStream>> streams,
                 bool descending)
      : streams_(std::move(streams)), descending_(descending) {
    heads_.resize(streams_.size());
    for (size_t i = 0; i < streams_.size(); ++i) Advance(i);
  }

  bool Next(int64_t* id) override {
    while (true) {
      if (!status_.ok()) return false;
      int best = -1;
      for (size_t i = 0; i < heads_.size(); ++i) {
        if (!heads_[i].has_value()) continue;
        if (best < 0 || (descending_ ? *heads_[i] > *heads_[best]
                                     : *heads_[i] < *heads_[best])) {
          best = static_cast<int>(i);
        }
      }
      if (best < 0) return false;
      const int64_t value = *heads_[best];
      Advance(static_cast<size_t>(best));
      if (has_last_ && value == last_) continue;  // a repeat
      has_last_ = true;
      last_ = value;
      *id = value;
      return true;
    }
  }

  absl::Status status() const override { return status_; }

 private:
  void Advance(size_t i) {
    int64_t id = 0;
    if (streams_[i]->Next(&id)) {
      heads_[i] = id;
    } else {
      heads_[i].reset();
      if (!streams_[i]->status().ok()) status_ = streams_[i]->status();
    }
  }

  std::vector<std::unique_ptr<IdStream>> streams_;
  std::vector<std::optional<int64_t>> heads_;
  const bool descending_;
  bool has_last_ = false;
  int64_t last_ = 0;
  absl::Status status_;
};

}  // namespace

std::unique_ptr<IdStream> MergeIdStreams(
    std::vector<std::unique_ptr<IdStream>> streams, bool descending) {
  return std::make_unique<MergedIdStream>(std::move(streams), descending);
}

std::unique_ptr<IdStream> DealStore::StreamStage(int64_t pipeline_id,
                                                 const std::string& stage_id,
                                                 int64_t after_id,
                                                 bool descending) const {
  return PrefixStream(*db_, db_->Handle(kByStage),
                      StageKey(pipeline_id, stage_id), after_id, descending);
}

std::unique_ptr<IdStream> DealStore::StreamAssignee(int64_t assignee_id,
                                                    int64_t after_id,
                                                    bool descending) const {
  return PrefixStream(*db_, db_->Handle(kByAssignee),
                      common::EncodeInt64(assignee_id), after_id, descending);
}

std::unique_ptr<IdStream> DealStore::StreamAll(int64_t after_id,
                                               bool descending) const {
  std::string lower;
  std::string upper(9, '\xff');  // above every 8-byte id key
  if (after_id > 0) {
    if (descending) {
      upper = common::EncodeInt64(after_id);
    } else {
      lower = common::PrefixSuccessor(common::EncodeInt64(after_id));
    }
  }
  return std::make_unique<RangeIdStream>(*db_, db_->Handle(kDeals),
                                         std::move(lower), std::move(upper),
                                         descending);
}

std::unique_ptr<IdStream> DealStore::StreamCloseDates(
    const std::string& from, const std::string& to) const {
  std::string lower;
  if (!from.empty()) common::AppendString(&lower, from);
  std::string upper(1, '\xff');  // above every encoded date
  if (!to.empty()) {
    upper.clear();
    common::AppendString(&upper, to);
    upper = common::PrefixSuccessor(upper);
  }
  return std::make_unique<RangeIdStream>(*db_, db_->Handle(kByCloseDate),
                                         std::move(lower), std::move(upper),
                                         /*descending=*/false);
}

absl::StatusOr<int64_t> DealStore::FirstRetainedSequence() const {
  const int64_t next = next_event_sequence();
  auto it = db_->NewIterator(db_->Handle(kOutbox));
  it->SeekToFirst();
  if (!it->Valid()) {
    CRM_RETURN_IF_ERROR(common::FromRocksStatus(it->status(), "scan outbox"));
    return next;
  }
  common::KeyReader reader(
      std::string_view(it->key().data(), it->key().size()));
  uint64_t sequence = 0;
  if (!reader.ReadUint64(&sequence))
    return absl::DataLossError("malformed outbox key");
  return static_cast<int64_t>(sequence);
}

}  // namespace crm::deals
