#include "services/pipeline_config/storage/config_store.h"

#include <algorithm>
#include <functional>
#include <set>

#include "absl/strings/str_cat.h"
#include "rocksdb/write_batch.h"

#include "common/rocks/key_codec.h"

namespace crm::pipeline_config {
namespace {

constexpr char kPipelines[] = "pipelines";
constexpr char kStages[] = "stages";
constexpr char kFields[] = "fields";
constexpr char kDepartments[] = "departments";
constexpr char kRoles[] = "roles";
constexpr char kAssignments[] = "role_assignments";
constexpr char kRequestIds[] = "request_ids";
constexpr char kMeta[] = "meta";
constexpr char kCountersKey[] = "counters";

std::string StageKey(int64_t pipeline_id, const std::string& stage_id) {
  std::string key;
  common::AppendInt64(&key, pipeline_id);
  common::AppendString(&key, stage_id);
  return key;
}

template <typename Message>
absl::Status ForEach(const common::RocksDb& db, const char* cf,
                     const std::function<void(Message&&)>& fn) {
  auto it = db.NewIterator(db.Handle(cf));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    Message message;
    if (!message.ParseFromArray(it->value().data(),
                                static_cast<int>(it->value().size()))) {
      return absl::DataLossError(absl::StrCat("unreadable record in ", cf));
    }
    fn(std::move(message));
  }
  return common::FromRocksStatus(it->status(), absl::StrCat("scan ", cf));
}

bool StageLess(const v1::Stage& a, const v1::Stage& b) {
  if (a.sort() != b.sort()) return a.sort() < b.sort();
  return a.stage_id() < b.stage_id();
}

}  // namespace

const PipelineEntry* ConfigData::FindPipeline(int64_t id) const {
  auto it = pipelines.find(id);
  return it == pipelines.end() ? nullptr : &it->second;
}

void ConfigData::RefreshWireViews() {
  for (auto& [id, entry] : pipelines) {
    v1::Pipeline full = entry.pipeline;
    v1::ListStagesResponse stages;
    for (const auto& stage : entry.stages) {
      *full.add_stages() = stage;
      *stages.add_stages() = stage;
    }
    entry.wire_pipeline = full.SerializeAsString();
    entry.wire_stages = stages.SerializeAsString();
  }
}

const v1::Stage* ConfigData::FindStage(int64_t pipeline_id,
                                       const std::string& stage_id) const {
  const PipelineEntry* entry = FindPipeline(pipeline_id);
  if (entry == nullptr) return nullptr;
  for (const auto& stage : entry->stages) {
    if (stage.stage_id() == stage_id) return &stage;
  }
  return nullptr;
}

struct ConfigStore::Batch::Impl {
  const common::RocksDb* db;
  rocksdb::WriteBatch batch;

  void Put(const char* cf, const std::string& key,
           const google::protobuf::Message& value) {
    static_cast<void>(
        batch.Put(db->Handle(cf), key, value.SerializeAsString()));
  }
  void Delete(const char* cf, const std::string& key) {
    static_cast<void>(batch.Delete(db->Handle(cf), key));
  }
};

ConfigStore::Batch::Batch(const ConfigStore& store)
    : impl_(std::make_unique<Impl>()) {
  impl_->db = store.db_.get();
}
ConfigStore::Batch::~Batch() = default;
ConfigStore::Batch::Batch(Batch&&) noexcept = default;

void ConfigStore::Batch::PutPipeline(const v1::Pipeline& pipeline) {
  v1::Pipeline stored = pipeline;
  stored.clear_stages();
  impl_->Put(kPipelines, common::EncodeInt64(pipeline.id()), stored);
  ++changes_;
}
void ConfigStore::Batch::DeletePipeline(int64_t pipeline_id) {
  impl_->Delete(kPipelines, common::EncodeInt64(pipeline_id));
  ++changes_;
}
void ConfigStore::Batch::PutStage(const v1::Stage& stage) {
  impl_->Put(kStages, StageKey(stage.pipeline_id(), stage.stage_id()), stage);
  ++changes_;
}
void ConfigStore::Batch::DeleteStage(int64_t pipeline_id,
                                     const std::string& stage_id) {
  impl_->Delete(kStages, StageKey(pipeline_id, stage_id));
  ++changes_;
}
void ConfigStore::Batch::PutField(const v1::FieldDefinition& field) {
  impl_->Put(kFields, field.code(), field);
  ++changes_;
}
void ConfigStore::Batch::DeleteField(const std::string& code) {
  impl_->Delete(kFields, code);
  ++changes_;
}
void ConfigStore::Batch::PutDepartment(const v1::Department& department) {
  impl_->Put(kDepartments, common::EncodeInt64(department.id()), department);
  ++changes_;
}
void ConfigStore::Batch::DeleteDepartment(int64_t department_id) {
  impl_->Delete(kDepartments, common::EncodeInt64(department_id));
  ++changes_;
}
void ConfigStore::Batch::PutRole(const v1::Role& role) {
  impl_->Put(kRoles, common::EncodeInt64(role.id()), role);
  ++changes_;
}
void ConfigStore::Batch::DeleteRole(int64_t role_id) {
  impl_->Delete(kRoles, common::EncodeInt64(role_id));
  ++changes_;
}
void ConfigStore::Batch::PutAssignment(const v1::RoleAssignment& assignment) {
  impl_->Put(kAssignments, common::EncodeInt64(assignment.id()), assignment);
  ++changes_;
}
void ConfigStore::Batch::DeleteAssignment(int64_t assignment_id) {
  impl_->Delete(kAssignments, common::EncodeInt64(assignment_id));
  ++changes_;
}
void ConfigStore::Batch::PutRequest(
    const std::string& request_id,
    const crm::pipelines::storage::RequestRecord& record) {
  impl_->Put(kRequestIds, request_id, record);
  ++changes_;
}
void ConfigStore::Batch::PutCounters(
    const crm::pipelines::storage::Counters& counters) {
  impl_->Put(kMeta, kCountersKey, counters);
}

absl::StatusOr<std::unique_ptr<ConfigStore>> ConfigStore::Open(
    const std::string& path, const common::RocksOptions& options) {
  auto db = common::RocksDb::Open(path,
                                  {kPipelines, kStages, kFields, kDepartments,
                                   kRoles, kAssignments, kRequestIds, kMeta},
                                  options);
  if (!db.ok()) return db.status();
  return std::unique_ptr<ConfigStore>(new ConfigStore(std::move(db).value()));
}

absl::StatusOr<ConfigData> ConfigStore::Load() const {
  ConfigData data;
  auto counters = db_->Get(db_->Handle(kMeta), kCountersKey);
  if (!counters.ok()) return counters.status();
  if (counters->has_value() && !data.counters.ParseFromString(**counters)) {
    return absl::DataLossError("unreadable counters record");
  }
  std::set<int64_t> loaded;  // pipelines that have a record, not only stages
  absl::Status status =
      ForEach<v1::Pipeline>(*db_, kPipelines, [&](v1::Pipeline&& p) {
        loaded.insert(p.id());
        data.pipelines[p.id()].pipeline = std::move(p);
      });
  if (!status.ok()) return status;
  status = ForEach<v1::Stage>(*db_, kStages, [&](v1::Stage&& s) {
    data.pipelines[s.pipeline_id()].stages.push_back(std::move(s));
  });
  if (!status.ok()) return status;
  for (auto& [id, entry] : data.pipelines) {
    if (loaded.count(id) == 0) {
      return absl::DataLossError(
          absl::StrCat("stages of missing pipeline ", id));
    }
    std::sort(entry.stages.begin(), entry.stages.end(), StageLess);
  }
  data.RefreshWireViews();
  status =
      ForEach<v1::FieldDefinition>(*db_, kFields, [&](v1::FieldDefinition&& f) {
        std::string code = f.code();
        data.fields.emplace(std::move(code), std::move(f));
      });
  if (!status.ok()) return status;
  status = ForEach<v1::Department>(*db_, kDepartments, [&](v1::Department&& d) {
    data.departments.emplace(d.id(), std::move(d));
  });
  if (!status.ok()) return status;
  status = ForEach<v1::Role>(*db_, kRoles, [&](v1::Role&& r) {
    data.roles.emplace(r.id(), std::move(r));
  });
  if (!status.ok()) return status;
  status = ForEach<v1::RoleAssignment>(
      *db_, kAssignments, [&](v1::RoleAssignment&& a) {
        data.assignments.emplace(a.id(), std::move(a));
      });
  if (!status.ok()) return status;
  return data;
}

ConfigStore::Batch ConfigStore::NewBatch() const { return Batch(*this); }

absl::Status ConfigStore::Commit(Batch& batch) {
  return db_->Write(&batch.impl_->batch);
}

absl::StatusOr<std::optional<crm::pipelines::storage::RequestRecord>>
ConfigStore::GetRequest(const std::string& request_id) const {
  auto value = db_->Get(db_->Handle(kRequestIds), request_id);
  if (!value.ok()) return value.status();
  if (!value->has_value())
    return std::optional<crm::pipelines::storage::RequestRecord>();
  crm::pipelines::storage::RequestRecord record;
  if (!record.ParseFromString(**value))
    return absl::DataLossError("unreadable request record");
  return std::optional<crm::pipelines::storage::RequestRecord>(
      std::move(record));
}

}  // namespace crm::pipeline_config
