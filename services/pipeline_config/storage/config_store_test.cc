#include "services/pipeline_config/storage/config_store.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "rocksdb/write_batch.h"

#include "common/rocks/key_codec.h"
#include "common/rocks/rocks_db.h"
#include "common/status/status_matchers.h"
#include "common/testing/temp_dir.h"

namespace crm::pipeline_config {
namespace {

using ::crm::pipelines::storage::Counters;
using ::crm::pipelines::storage::RequestRecord;
using ::crm::testing::IsOk;
using ::crm::testing::StatusIs;
using ::google::protobuf::util::MessageDifferencer;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

const std::vector<std::string> kColumnFamilies = {
    "pipelines", "stages",           "fields",      "departments",
    "roles",     "role_assignments", "request_ids", "meta"};

MATCHER_P(EqualsProto, expected, "equals " + expected.ShortDebugString()) {
  *result_listener << "is " << arg.ShortDebugString();
  return MessageDifferencer::Equals(arg, expected);
}

v1::Pipeline MakePipeline(int64_t id, const std::string& name) {
  v1::Pipeline pipeline;
  pipeline.set_id(id);
  pipeline.set_name(name);
  pipeline.set_sort(static_cast<int32_t>(id * 10));
  pipeline.mutable_create_time()->set_seconds(1700000000 + id);
  pipeline.mutable_update_time()->set_seconds(1700000100 + id);
  pipeline.set_etag("\"3\"");
  pipeline.set_is_default(id == 0);
  return pipeline;
}

v1::Stage MakeStage(int64_t pipeline_id, const std::string& id, int sort,
                    v1::StageSemantics semantics) {
  v1::Stage stage;
  stage.set_pipeline_id(pipeline_id);
  stage.set_stage_id(id);
  stage.set_name("Stage " + id);
  stage.set_sort(sort);
  stage.set_semantics(semantics);
  stage.set_color("#112233");
  stage.set_default_probability(40);
  stage.set_rotting_days(7);
  stage.set_etag("\"2\"");
  return stage;
}

v1::FieldDefinition MakeField(const std::string& code) {
  v1::FieldDefinition field;
  field.set_code(code);
  field.set_type(v1::FIELD_TYPE_ENUMERATION);
  field.set_multiple(true);
  field.set_mandatory(true);
  field.set_label("Label of " + code);
  field.set_sort(5);
  auto* option = field.add_options();
  option->set_id(11);
  option->set_value("Red");
  option->set_is_default(true);
  option = field.add_options();
  option->set_id(12);
  option->set_value("Blue");
  option->set_sort(20);
  field.set_etag("\"4\"");
  return field;
}

v1::Department MakeDepartment(int64_t id, int64_t parent_id) {
  v1::Department department;
  department.set_id(id);
  department.set_name("Department " + std::to_string(id));
  department.set_parent_id(parent_id);
  department.set_head_user_id(100 + id);
  department.add_member_user_ids(200 + id);
  department.add_member_user_ids(300 + id);
  return department;
}

v1::Role MakeRole(int64_t id) {
  v1::Role role;
  role.set_id(id);
  role.set_name("Role " + std::to_string(id));
  role.set_config(id % 2 == 1);
  auto* permissions = role.add_pipelines();
  permissions->set_pipeline_id(1);
  permissions->mutable_levels()->set_read(v1::ACCESS_LEVEL_ALL);
  permissions->mutable_levels()->set_write(v1::ACCESS_LEVEL_SELF);
  (*permissions->mutable_stage_levels())["C1:WON"].set_read(
      v1::ACCESS_LEVEL_DEPARTMENT);
  auto& rule = (*permissions->mutable_transitions())["C1:NEW"];
  rule.set_mode(v1::TransitionRule::MODE_LIST);
  rule.add_to_stage_ids("C1:WON");
  (*permissions->mutable_transitions())["C1:WON"].set_mode(
      v1::TransitionRule::MODE_BLOCKED);
  permissions->set_hide_sum(true);
  permissions->set_automation(v1::AUTOMATION_ACCESS_EDIT);
  return role;
}

v1::RoleAssignment UserAssignment(int64_t id, int64_t role_id,
                                  int64_t user_id) {
  v1::RoleAssignment assignment;
  assignment.set_id(id);
  assignment.set_role_id(role_id);
  assignment.set_user_id(user_id);
  assignment.mutable_create_time()->set_seconds(1700000000);
  return assignment;
}

v1::RoleAssignment DepartmentAssignment(int64_t id, int64_t role_id,
                                        int64_t department_id) {
  v1::RoleAssignment assignment;
  assignment.set_id(id);
  assignment.set_role_id(role_id);
  assignment.set_department_id(department_id);
  assignment.set_include_subdepartments(true);
  return assignment;
}

class ConfigStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(Open()); }

  void Open() {
    ASSERT_OK_AND_ASSIGN(store_, ConfigStore::Open(dir_.path(), {}));
  }
  void Reopen() {
    store_.reset();
    ASSERT_NO_FATAL_FAILURE(Open());
  }

  ConfigData LoadOrDie() {
    auto data = store_->Load();
    EXPECT_THAT(data, IsOk());
    return data.ok() ? *std::move(data) : ConfigData();
  }

  // Writes `value` under `key` of column family `cf`, bypassing ConfigStore
  // (which is closed meanwhile), then reopens the store.
  void WriteRaw(const std::string& cf, const std::string& key,
                const std::string& value) {
    store_.reset();
    {
      ASSERT_OK_AND_ASSIGN(
          auto db, common::RocksDb::Open(dir_.path(), kColumnFamilies, {}));
      rocksdb::WriteBatch batch;
      ASSERT_TRUE(batch.Put(db->Handle(cf), key, value).ok());
      ASSERT_OK(db->Write(&batch));
    }
    ASSERT_NO_FATAL_FAILURE(Open());
  }

  crm::testing::TempDir dir_;
  std::unique_ptr<ConfigStore> store_;
};

TEST_F(ConfigStoreTest, EmptyStoreLoadsEmpty) {
  const ConfigData data = LoadOrDie();
  EXPECT_THAT(data.counters, EqualsProto(Counters()));
  EXPECT_THAT(data.pipelines, IsEmpty());
  EXPECT_THAT(data.fields, IsEmpty());
  EXPECT_THAT(data.departments, IsEmpty());
  EXPECT_THAT(data.roles, IsEmpty());
  EXPECT_THAT(data.assignments, IsEmpty());
  EXPECT_EQ(data.FindPipeline(0), nullptr);
  EXPECT_EQ(data.FindStage(0, "NEW"), nullptr);
}

TEST_F(ConfigStoreTest, EveryRecordKindRoundTrips) {
  const v1::Pipeline p0 = MakePipeline(0, "General");
  v1::Pipeline p1 = MakePipeline(1, "Wholesale");
  // Stages given with a pipeline are not stored with it.
  *p1.add_stages() = MakeStage(1, "C1:IGNORED", 1, v1::STAGE_SEMANTICS_PROCESS);
  // Written out of order: Load sorts by (sort, id).
  const v1::Stage won = MakeStage(1, "C1:WON", 60, v1::STAGE_SEMANTICS_SUCCESS);
  const v1::Stage lose =
      MakeStage(1, "C1:LOSE", 70, v1::STAGE_SEMANTICS_FAILURE);
  const v1::Stage b = MakeStage(1, "C1:B", 10, v1::STAGE_SEMANTICS_PROCESS);
  const v1::Stage a = MakeStage(1, "C1:A", 10, v1::STAGE_SEMANTICS_PROCESS);
  const v1::Stage first =
      MakeStage(1, "C1:FIRST", 5, v1::STAGE_SEMANTICS_PROCESS);
  const v1::Stage zero_new =
      MakeStage(0, "NEW", 10, v1::STAGE_SEMANTICS_PROCESS);
  const v1::FieldDefinition field_a = MakeField("UF_CRM_A");
  const v1::FieldDefinition field_b = MakeField("UF_CRM_B");
  const v1::Department root = MakeDepartment(1, 0);
  const v1::Department child = MakeDepartment(2, 1);
  const v1::Role role = MakeRole(5);
  const v1::RoleAssignment by_user = UserAssignment(7, 5, 42);
  const v1::RoleAssignment by_department = DepartmentAssignment(8, 5, 2);
  Counters counters;
  counters.set_version(9);
  counters.set_next_pipeline_id(2);
  counters.set_next_department_id(3);
  counters.set_next_role_id(6);
  counters.set_next_assignment_id(9);
  counters.set_next_option_id(13);
  RequestRecord request;
  request.set_fingerprint(std::string("fp\0with-nul", 11));
  request.set_pipeline_id(1);

  ConfigStore::Batch batch = store_->NewBatch();
  EXPECT_EQ(batch.changes(), 0);
  batch.PutPipeline(p1);
  batch.PutPipeline(p0);
  for (const v1::Stage* stage : {&won, &lose, &b, &a, &first, &zero_new})
    batch.PutStage(*stage);
  batch.PutField(field_b);
  batch.PutField(field_a);
  batch.PutDepartment(child);
  batch.PutDepartment(root);
  batch.PutRole(role);
  batch.PutAssignment(by_user);
  batch.PutAssignment(by_department);
  batch.PutRequest("req-1", request);
  batch.PutCounters(counters);
  EXPECT_EQ(batch.changes(), 16);  // Counters do not count.
  ASSERT_OK(store_->Commit(batch));

  // Read back both from the live store and after a reopen.
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(round == 0 ? "live" : "reopened");
    if (round == 1) {
      ASSERT_NO_FATAL_FAILURE(Reopen());
    }
    const ConfigData data = LoadOrDie();
    EXPECT_THAT(data.counters, EqualsProto(counters));

    ASSERT_THAT(data.pipelines, SizeIs(2));
    EXPECT_THAT(data.pipelines.at(0).pipeline, EqualsProto(p0));
    v1::Pipeline p1_stored = p1;
    p1_stored.clear_stages();
    EXPECT_THAT(data.pipelines.at(1).pipeline, EqualsProto(p1_stored));
    EXPECT_THAT(data.pipelines.at(0).stages,
                ElementsAre(EqualsProto(zero_new)));
    EXPECT_THAT(data.pipelines.at(1).stages,
                ElementsAre(EqualsProto(first), EqualsProto(a), EqualsProto(b),
                            EqualsProto(won), EqualsProto(lose)));
    ASSERT_NE(data.FindStage(1, "C1:WON"), nullptr);
    EXPECT_THAT(*data.FindStage(1, "C1:WON"), EqualsProto(won));
    EXPECT_EQ(data.FindStage(1, "C1:IGNORED"), nullptr);
    EXPECT_EQ(data.FindStage(0, "C1:WON"), nullptr);
    EXPECT_EQ(data.FindStage(2, "C1:WON"), nullptr);

    ASSERT_THAT(data.fields, SizeIs(2));
    EXPECT_THAT(data.fields.at("UF_CRM_A"), EqualsProto(field_a));
    EXPECT_THAT(data.fields.at("UF_CRM_B"), EqualsProto(field_b));
    ASSERT_THAT(data.departments, SizeIs(2));
    EXPECT_THAT(data.departments.at(1), EqualsProto(root));
    EXPECT_THAT(data.departments.at(2), EqualsProto(child));
    ASSERT_THAT(data.roles, SizeIs(1));
    EXPECT_THAT(data.roles.at(5), EqualsProto(role));
    ASSERT_THAT(data.assignments, SizeIs(2));
    EXPECT_THAT(data.assignments.at(7), EqualsProto(by_user));
    EXPECT_THAT(data.assignments.at(8), EqualsProto(by_department));

    ASSERT_OK_AND_ASSIGN(auto stored_request, store_->GetRequest("req-1"));
    ASSERT_TRUE(stored_request.has_value());
    EXPECT_THAT(*stored_request, EqualsProto(request));
  }
}

TEST_F(ConfigStoreTest, PutOverwrites) {
  ConfigStore::Batch batch = store_->NewBatch();
  batch.PutPipeline(MakePipeline(3, "Old name"));
  batch.PutStage(MakeStage(3, "C3:NEW", 10, v1::STAGE_SEMANTICS_PROCESS));
  ASSERT_OK(store_->Commit(batch));

  ConfigStore::Batch second = store_->NewBatch();
  const v1::Pipeline renamed = MakePipeline(3, "New name");
  v1::Stage moved = MakeStage(3, "C3:NEW", 99, v1::STAGE_SEMANTICS_PROCESS);
  moved.set_name("Moved");
  second.PutPipeline(renamed);
  second.PutStage(moved);
  ASSERT_OK(store_->Commit(second));

  const ConfigData data = LoadOrDie();
  ASSERT_THAT(data.pipelines, SizeIs(1));
  EXPECT_THAT(data.pipelines.at(3).pipeline, EqualsProto(renamed));
  EXPECT_THAT(data.pipelines.at(3).stages, ElementsAre(EqualsProto(moved)));
}

TEST_F(ConfigStoreTest, DeletesRemoveEachRecordKind) {
  ConfigStore::Batch batch = store_->NewBatch();
  batch.PutPipeline(MakePipeline(1, "One"));
  batch.PutPipeline(MakePipeline(2, "Two"));
  batch.PutStage(MakeStage(1, "C1:A", 10, v1::STAGE_SEMANTICS_PROCESS));
  batch.PutStage(MakeStage(1, "C1:B", 20, v1::STAGE_SEMANTICS_PROCESS));
  batch.PutStage(MakeStage(2, "C2:A", 10, v1::STAGE_SEMANTICS_PROCESS));
  batch.PutField(MakeField("UF_CRM_A"));
  batch.PutField(MakeField("UF_CRM_B"));
  batch.PutDepartment(MakeDepartment(1, 0));
  batch.PutDepartment(MakeDepartment(2, 0));
  batch.PutRole(MakeRole(1));
  batch.PutRole(MakeRole(2));
  batch.PutAssignment(UserAssignment(1, 1, 10));
  batch.PutAssignment(UserAssignment(2, 2, 10));
  ASSERT_OK(store_->Commit(batch));

  ConfigStore::Batch deletes = store_->NewBatch();
  deletes.DeleteStage(2, "C2:A");
  deletes.DeletePipeline(2);
  deletes.DeleteStage(1, "C1:B");
  deletes.DeleteField("UF_CRM_B");
  deletes.DeleteDepartment(2);
  deletes.DeleteRole(2);
  deletes.DeleteAssignment(2);
  // Deleting what is not there is harmless.
  deletes.DeleteRole(77);
  EXPECT_EQ(deletes.changes(), 8);
  ASSERT_OK(store_->Commit(deletes));
  ASSERT_NO_FATAL_FAILURE(Reopen());

  const ConfigData data = LoadOrDie();
  ASSERT_THAT(data.pipelines, SizeIs(1));
  ASSERT_TRUE(data.pipelines.count(1));
  ASSERT_THAT(data.pipelines.at(1).stages, SizeIs(1));
  EXPECT_EQ(data.pipelines.at(1).stages[0].stage_id(), "C1:A");
  ASSERT_THAT(data.fields, SizeIs(1));
  EXPECT_TRUE(data.fields.count("UF_CRM_A"));
  ASSERT_THAT(data.departments, SizeIs(1));
  EXPECT_TRUE(data.departments.count(1));
  ASSERT_THAT(data.roles, SizeIs(1));
  EXPECT_TRUE(data.roles.count(1));
  ASSERT_THAT(data.assignments, SizeIs(1));
  EXPECT_TRUE(data.assignments.count(1));
}

TEST_F(ConfigStoreTest, CountersAreOverwrittenAndDoNotCountAsChanges) {
  Counters first;
  first.set_version(1);
  first.set_next_pipeline_id(1);
  ConfigStore::Batch batch = store_->NewBatch();
  batch.PutCounters(first);
  EXPECT_EQ(batch.changes(), 0);
  ASSERT_OK(store_->Commit(batch));
  EXPECT_THAT(LoadOrDie().counters, EqualsProto(first));

  Counters second;
  second.set_version(2);
  second.set_next_role_id(4);
  ConfigStore::Batch next = store_->NewBatch();
  next.PutCounters(second);
  ASSERT_OK(store_->Commit(next));
  ASSERT_NO_FATAL_FAILURE(Reopen());
  // The whole record is replaced, not merged.
  EXPECT_THAT(LoadOrDie().counters, EqualsProto(second));
}

TEST_F(ConfigStoreTest, UncommittedBatchWritesNothing) {
  {
    ConfigStore::Batch batch = store_->NewBatch();
    batch.PutPipeline(MakePipeline(1, "Never"));
    Counters counters;
    counters.set_version(5);
    batch.PutCounters(counters);
  }
  ASSERT_NO_FATAL_FAILURE(Reopen());
  const ConfigData data = LoadOrDie();
  EXPECT_THAT(data.pipelines, IsEmpty());
  EXPECT_EQ(data.counters.version(), 0);
}

TEST_F(ConfigStoreTest, GetRequest) {
  ASSERT_OK_AND_ASSIGN(auto missing, store_->GetRequest("nope"));
  EXPECT_FALSE(missing.has_value());

  RequestRecord record;
  record.set_fingerprint("5:Sales|10");
  record.set_pipeline_id(4);
  ConfigStore::Batch batch = store_->NewBatch();
  batch.PutRequest("req-A", record);
  EXPECT_EQ(batch.changes(), 1);
  ASSERT_OK(store_->Commit(batch));

  ASSERT_OK_AND_ASSIGN(auto found, store_->GetRequest("req-A"));
  ASSERT_TRUE(found.has_value());
  EXPECT_THAT(*found, EqualsProto(record));
  ASSERT_OK_AND_ASSIGN(auto other, store_->GetRequest("req-a"));
  EXPECT_FALSE(other.has_value());
  ASSERT_OK_AND_ASSIGN(auto prefix, store_->GetRequest("req-"));
  EXPECT_FALSE(prefix.has_value());

  // Request ids are not part of ConfigData.
  EXPECT_THAT(LoadOrDie().pipelines, IsEmpty());
}

// Bytes that no protobuf message parses: field 1 with wire type 7.
const std::string kGarbage("\x0f\xff\xfe garbage", 11);

TEST_F(ConfigStoreTest, GarbageIsReallyUnparsable) {
  EXPECT_FALSE(v1::Pipeline().ParseFromString(kGarbage));
  EXPECT_FALSE(v1::Stage().ParseFromString(kGarbage));
  EXPECT_FALSE(Counters().ParseFromString(kGarbage));
  EXPECT_FALSE(RequestRecord().ParseFromString(kGarbage));
}

TEST_F(ConfigStoreTest, CorruptedPipelineRecordIsDataLoss) {
  ConfigStore::Batch batch = store_->NewBatch();
  batch.PutPipeline(MakePipeline(0, "General"));
  batch.PutPipeline(MakePipeline(1, "Good"));
  ASSERT_OK(store_->Commit(batch));
  ASSERT_NO_FATAL_FAILURE(
      WriteRaw("pipelines", common::EncodeInt64(1), kGarbage));
  EXPECT_THAT(store_->Load(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("pipelines")));
}

TEST_F(ConfigStoreTest, CorruptedRecordOfAnyKindIsDataLoss) {
  const std::vector<std::pair<std::string, std::string>> targets = {
      {"stages", "x"},
      {"fields", "UF_CRM_X"},
      {"departments", common::EncodeInt64(1)},
      {"roles", common::EncodeInt64(1)},
      {"role_assignments", common::EncodeInt64(1)},
      {"meta", "counters"}};
  for (const auto& [cf, key] : targets) {
    SCOPED_TRACE(cf);
    crm::testing::TempDir dir;
    {
      ASSERT_OK_AND_ASSIGN(
          auto db, common::RocksDb::Open(dir.path(), kColumnFamilies, {}));
      rocksdb::WriteBatch batch;
      ASSERT_TRUE(batch.Put(db->Handle(cf), key, kGarbage).ok());
      ASSERT_OK(db->Write(&batch));
    }
    ASSERT_OK_AND_ASSIGN(auto store, ConfigStore::Open(dir.path(), {}));
    EXPECT_THAT(store->Load(),
                StatusIs(absl::StatusCode::kDataLoss,
                         HasSubstr(cf == "meta" ? "counters" : cf)));
  }
}

TEST_F(ConfigStoreTest, CorruptedRequestRecordIsDataLoss) {
  ASSERT_NO_FATAL_FAILURE(WriteRaw("request_ids", "req-1", kGarbage));
  EXPECT_THAT(store_->GetRequest("req-1"),
              StatusIs(absl::StatusCode::kDataLoss));
  // Load does not read request ids.
  EXPECT_THAT(store_->Load(), IsOk());
}

TEST_F(ConfigStoreTest, StagesOfAMissingPipelineAreDataLoss) {
  ConfigStore::Batch batch = store_->NewBatch();
  batch.PutPipeline(MakePipeline(1, "One"));
  batch.PutStage(MakeStage(1, "C1:NEW", 10, v1::STAGE_SEMANTICS_PROCESS));
  batch.PutStage(MakeStage(4, "C4:NEW", 10, v1::STAGE_SEMANTICS_PROCESS));
  ASSERT_OK(store_->Commit(batch));
  EXPECT_THAT(store_->Load(),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("stages of missing pipeline 4")));
}

// Stages of pipeline 0 without a pipeline 0 record are as orphaned as any
// other: they must not load as a nameless default pipeline.
TEST_F(ConfigStoreTest, StagesOfAMissingPipelineZeroAreDataLoss) {
  ConfigStore::Batch batch = store_->NewBatch();
  batch.PutStage(MakeStage(0, "NEW", 10, v1::STAGE_SEMANTICS_PROCESS));
  ASSERT_OK(store_->Commit(batch));
  EXPECT_THAT(store_->Load(),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("stages of missing pipeline 0")));
}

}  // namespace
}  // namespace crm::pipeline_config
