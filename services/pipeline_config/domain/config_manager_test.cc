#include "services/pipeline_config/domain/config_manager.h"

#include <algorithm>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/field_mask.pb.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

#include "common/status/status_matchers.h"
#include "common/testing/temp_dir.h"
#include "services/pipeline_config/domain/permissions.h"
#include "services/pipeline_config/domain/validation.h"

namespace crm::pipeline_config {
namespace {

using ::crm::testing::IsOk;
using ::crm::testing::StatusIs;
using ::google::protobuf::FieldMask;
using ::google::protobuf::util::MessageDifferencer;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;
using ::testing::UnorderedElementsAre;

using Code = absl::StatusCode;

constexpr int64_t kT0 = 1700000000;

MATCHER_P(EqualsProto, expected, "equals " + expected.ShortDebugString()) {
  *result_listener << "is " << arg.ShortDebugString();
  return MessageDifferencer::Equals(arg, expected);
}

// Deal counts per pipeline and per stage; everything else is empty.
// `during_count`, when set, runs inside each count (between the delete's
// mark and its final step).
class FakeDealCounter final : public DealCounter {
 public:
  absl::StatusOr<int64_t> CountDealsInPipeline(
      int64_t pipeline_id, int64_t min_config_version) override {
    ++pipeline_calls;
    last_min_version = min_config_version;
    if (during_count) during_count();
    if (min_config_version > 0 && !final_count_error.ok())
      return final_count_error;
    auto it = pipeline_deals.find(pipeline_id);
    return it == pipeline_deals.end() ? 0 : it->second;
  }
  absl::StatusOr<int64_t> CountDealsInStage(
      int64_t pipeline_id, const std::string& stage_id,
      int64_t min_config_version) override {
    ++stage_calls;
    last_min_version = min_config_version;
    if (during_count) during_count();
    if (min_config_version > 0 && !final_count_error.ok())
      return final_count_error;
    auto it = stage_deals.find({pipeline_id, stage_id});
    return it == stage_deals.end() ? 0 : it->second;
  }

  std::map<int64_t, int64_t> pipeline_deals;
  std::map<std::pair<int64_t, std::string>, int64_t> stage_deals;
  int pipeline_calls = 0;
  int stage_calls = 0;
  int64_t last_min_version = 0;
  std::function<void()> during_count;
  // Returned by counts with a min_config_version (the final count).
  absl::Status final_count_error;
};

// The deals service cannot be reached.
class UnavailableDealCounter final : public DealCounter {
 public:
  absl::StatusOr<int64_t> CountDealsInPipeline(
      int64_t /*pipeline_id*/, int64_t /*min_config_version*/) override {
    return absl::UnavailableError("deals service unreachable");
  }
  absl::StatusOr<int64_t> CountDealsInStage(
      int64_t /*pipeline_id*/, const std::string& /*stage_id*/,
      int64_t /*min_config_version*/) override {
    return absl::UnavailableError("deals service unreachable");
  }
};

FieldMask Mask(std::initializer_list<const char*> paths) {
  FieldMask mask;
  for (const char* path : paths) mask.add_paths(path);
  return mask;
}

v1::Pipeline Named(const std::string& name, int sort = 0) {
  v1::Pipeline pipeline;
  pipeline.set_name(name);
  pipeline.set_sort(sort);
  return pipeline;
}

v1::Stage NewStage(const std::string& id, int sort,
                   v1::StageSemantics semantics) {
  v1::Stage stage;
  stage.set_stage_id(id);
  stage.set_name("Stage " + id);
  stage.set_sort(sort);
  stage.set_semantics(semantics);
  return stage;
}

template <typename Stages>
std::vector<std::string> IdsOf(const Stages& stages) {
  std::vector<std::string> ids;
  for (const auto& stage : stages) ids.push_back(stage.stage_id());
  return ids;
}

v1::ActionLevels AllActions(v1::AccessLevel level) {
  return UniformLevels(level);
}

v1::PipelinePermissions Entry(int64_t pipeline_id, v1::AccessLevel level) {
  v1::PipelinePermissions permissions;
  permissions.set_pipeline_id(pipeline_id);
  *permissions.mutable_levels() = AllActions(level);
  return permissions;
}

v1::TransitionRule ListRule(std::initializer_list<const char*> targets) {
  v1::TransitionRule rule;
  rule.set_mode(v1::TransitionRule::MODE_LIST);
  for (const char* target : targets) rule.add_to_stage_ids(target);
  return rule;
}

v1::TransitionRule ModeRule(v1::TransitionRule::Mode mode) {
  v1::TransitionRule rule;
  rule.set_mode(mode);
  return rule;
}

v1::Role NamedRole(const std::string& name) {
  v1::Role role;
  role.set_name(name);
  return role;
}

v1::Department NewDepartment(const std::string& name, int64_t parent_id = 0,
                             int64_t head_user_id = 0,
                             std::vector<int64_t> members = {}) {
  v1::Department department;
  department.set_name(name);
  department.set_parent_id(parent_id);
  department.set_head_user_id(head_user_id);
  for (int64_t member : members) department.add_member_user_ids(member);
  return department;
}

v1::RoleAssignment ToUser(int64_t role_id, int64_t user_id) {
  v1::RoleAssignment assignment;
  assignment.set_role_id(role_id);
  assignment.set_user_id(user_id);
  return assignment;
}

v1::RoleAssignment ToDepartment(int64_t role_id, int64_t department_id,
                                bool include_sub) {
  v1::RoleAssignment assignment;
  assignment.set_role_id(role_id);
  assignment.set_department_id(department_id);
  assignment.set_include_subdepartments(include_sub);
  return assignment;
}

v1::FieldDefinition EnumField(const std::string& code,
                              std::initializer_list<const char*> values) {
  v1::FieldDefinition field;
  field.set_code(code);
  field.set_type(v1::FIELD_TYPE_ENUMERATION);
  field.set_label("Label " + code);
  for (const char* value : values) field.add_options()->set_value(value);
  return field;
}

template <typename Map>
bool SameMessageMaps(const Map& a, const Map& b, const std::string& what,
                     std::string* diff) {
  if (a.size() != b.size()) {
    *diff = absl::StrCat(what, ": ", a.size(), " vs ", b.size(), " entries");
    return false;
  }
  for (auto ia = a.begin(), ib = b.begin(); ia != a.end(); ++ia, ++ib) {
    if (ia->first != ib->first) {
      *diff = absl::StrCat(what, ": keys ", ::testing::PrintToString(ia->first),
                           " vs ", ::testing::PrintToString(ib->first));
      return false;
    }
    if (!MessageDifferencer::Equals(ia->second, ib->second)) {
      *diff = absl::StrCat(what, "[", ::testing::PrintToString(ia->first),
                           "]: ", ia->second.ShortDebugString(), " vs ",
                           ib->second.ShortDebugString());
      return false;
    }
  }
  return true;
}

// Deep comparison of two configurations.
::testing::AssertionResult SameConfig(const ConfigData& a,
                                      const ConfigData& b) {
  std::string diff;
  if (!MessageDifferencer::Equals(a.counters, b.counters)) {
    return ::testing::AssertionFailure()
           << "counters: " << a.counters.ShortDebugString() << " vs "
           << b.counters.ShortDebugString();
  }
  std::map<int64_t, v1::Pipeline> pipelines_a;
  std::map<int64_t, v1::Pipeline> pipelines_b;
  for (const auto& [id, entry] : a.pipelines) {
    pipelines_a[id] = entry.pipeline;
    for (const auto& stage : entry.stages)
      *pipelines_a[id].add_stages() = stage;
  }
  for (const auto& [id, entry] : b.pipelines) {
    pipelines_b[id] = entry.pipeline;
    for (const auto& stage : entry.stages)
      *pipelines_b[id].add_stages() = stage;
  }
  if (!SameMessageMaps(pipelines_a, pipelines_b, "pipelines", &diff) ||
      !SameMessageMaps(a.fields, b.fields, "fields", &diff) ||
      !SameMessageMaps(a.departments, b.departments, "departments", &diff) ||
      !SameMessageMaps(a.roles, b.roles, "roles", &diff) ||
      !SameMessageMaps(a.assignments, b.assignments, "assignments", &diff)) {
    return ::testing::AssertionFailure() << diff;
  }
  return ::testing::AssertionSuccess();
}

// Everything a typical configuration holds (see Populate).
struct Populated {
  v1::Pipeline pipeline;  // id 1, created with request id "populate"
  v1::Stage review;       // C1:REVIEW
  v1::FieldDefinition field;
  v1::Department root;
  v1::Department child;
  v1::Role role;
  v1::RoleAssignment by_user;
  v1::RoleAssignment by_department;
};

class ConfigManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    notifier_.Subscribe([this](int64_t version) {
      notified_.push_back(version);
      if (manager_ != nullptr)
        version_at_notify_.push_back(manager_->version());
    });
    ASSERT_NO_FATAL_FAILURE(OpenStore());
    ASSERT_NO_FATAL_FAILURE(StartManager(counter_));
  }

  void OpenStore() {
    ASSERT_OK_AND_ASSIGN(store_, ConfigStore::Open(dir_.path(), {}));
  }

  void StartManager(DealCounter& counter) {
    ASSERT_OK_AND_ASSIGN(manager_,
                         ConfigManager::Create(*store_, counter, notifier_,
                                               [this] { return now_; }));
  }

  // Closes the manager and the store, reopens the store, reads what is on
  // disk into `disk`, and starts a new manager over it.
  void Reopen(ConfigData* disk, DealCounter* counter = nullptr) {
    manager_.reset();
    store_.reset();
    ASSERT_NO_FATAL_FAILURE(OpenStore());
    ASSERT_OK_AND_ASSIGN(*disk, store_->Load());
    ASSERT_NO_FATAL_FAILURE(
        StartManager(counter != nullptr ? *counter : counter_));
  }

  std::shared_ptr<const ConfigData> Snapshot() const {
    return manager_->Snapshot();
  }

  const v1::Stage* FindStage(int64_t pipeline_id, const std::string& stage_id) {
    snapshot_hold_ = Snapshot();
    return snapshot_hold_->FindStage(pipeline_id, stage_id);
  }

  void Populate(Populated* out) {
    ASSERT_OK_AND_ASSIGN(
        out->pipeline,
        manager_->CreatePipeline(Named("Wholesale", 10), "populate"));
    ASSERT_EQ(out->pipeline.id(), 1);
    ASSERT_OK_AND_ASSIGN(
        out->review,
        manager_->CreateStage(
            1, NewStage("REVIEW", 15, v1::STAGE_SEMANTICS_PROCESS)));
    v1::FieldDefinition field = EnumField("UF_CRM_SIZE", {"S", "M", "L"});
    field.set_multiple(true);
    ASSERT_OK_AND_ASSIGN(out->field, manager_->CreateField(field));
    ASSERT_OK_AND_ASSIGN(out->root, manager_->CreateDepartment(NewDepartment(
                                        "Sales", 0, 10, {11, 12})));
    ASSERT_OK_AND_ASSIGN(
        out->child, manager_->CreateDepartment(
                        NewDepartment("Sales East", out->root.id(), 20, {21})));
    v1::Role role = NamedRole("Manager");
    role.set_config(true);
    v1::PipelinePermissions* zero = role.add_pipelines();
    *zero = Entry(0, v1::ACCESS_LEVEL_DEPARTMENT);
    (*zero->mutable_stage_levels())["WON"] = AllActions(v1::ACCESS_LEVEL_SELF);
    (*zero->mutable_transitions())["NEW"] = ListRule({"PREPARATION", "LOSE"});
    zero->set_hide_sum(true);
    zero->set_automation(v1::AUTOMATION_ACCESS_READ);
    v1::PipelinePermissions* one = role.add_pipelines();
    *one = Entry(1, v1::ACCESS_LEVEL_ALL);
    (*one->mutable_transitions())["C1:WON"] =
        ModeRule(v1::TransitionRule::MODE_BLOCKED);
    ASSERT_OK_AND_ASSIGN(out->role, manager_->CreateRole(role));
    ASSERT_OK_AND_ASSIGN(out->by_user, manager_->CreateRoleAssignment(
                                           ToUser(out->role.id(), 42)));
    ASSERT_OK_AND_ASSIGN(out->by_department,
                         manager_->CreateRoleAssignment(ToDepartment(
                             out->role.id(), out->child.id(), true)));
  }

  crm::testing::TempDir dir_;
  FakeDealCounter counter_;
  VersionNotifier notifier_;
  std::vector<int64_t> notified_;
  std::vector<int64_t> version_at_notify_;
  absl::Time now_ = absl::FromUnixSeconds(kT0);
  std::unique_ptr<ConfigStore> store_;
  std::unique_ptr<ConfigManager> manager_;
  std::shared_ptr<const ConfigData> snapshot_hold_;
};

// --- Start -------------------------------------------------------------------

TEST_F(ConfigManagerTest, FirstStartCreatesDefaultPipelineAtVersionOne) {
  EXPECT_EQ(manager_->version(), 1);
  EXPECT_THAT(notified_, ElementsAre(1));
  ASSERT_OK_AND_ASSIGN(v1::Pipeline p0, manager_->GetPipeline(0));
  EXPECT_EQ(p0.id(), 0);
  EXPECT_TRUE(p0.is_default());
  EXPECT_THAT(ValidateName("name", p0.name()), IsOk());
  EXPECT_EQ(p0.etag(), EtagForVersion(1));
  EXPECT_EQ(p0.create_time().seconds(), kT0);
  EXPECT_EQ(p0.update_time().seconds(), kT0);

  const std::vector<v1::Stage> defaults = DefaultStages(0);
  ASSERT_THAT(p0.stages(), SizeIs(8));
  for (int i = 0; i < 8; ++i) {
    const v1::Stage& stage = p0.stages(i);
    SCOPED_TRACE(stage.stage_id());
    EXPECT_EQ(stage.stage_id(), defaults[i].stage_id());
    EXPECT_EQ(stage.sort(), defaults[i].sort());
    EXPECT_EQ(stage.semantics(), defaults[i].semantics());
    EXPECT_EQ(stage.pipeline_id(), 0);
    EXPECT_EQ(stage.etag(), EtagForVersion(1));
    EXPECT_EQ(stage.create_time().seconds(), kT0);
  }
  EXPECT_THAT(
      IdsOf(p0.stages()),
      ElementsAre("NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING",
                  "FINAL_INVOICE", "WON", "LOSE", "APOLOGY"));
  EXPECT_THAT(manager_->GetPipeline(1), StatusIs(Code::kNotFound));

  // A second start over the same store finds pipeline 0 and writes nothing.
  const auto before = Snapshot();
  ConfigData disk;
  ASSERT_NO_FATAL_FAILURE(Reopen(&disk));
  EXPECT_EQ(disk.counters.version(), 1);
  EXPECT_EQ(manager_->version(), 1);
  EXPECT_THAT(notified_, ElementsAre(1));
  EXPECT_TRUE(SameConfig(disk, *before));
  EXPECT_TRUE(SameConfig(*Snapshot(), *before));
}

// --- Pipelines ---------------------------------------------------------------

TEST_F(ConfigManagerTest, CreatePipelineGetsPrefixedDefaultStages) {
  now_ += absl::Minutes(1);
  v1::Pipeline input = Named("Wholesale", 20);
  input.set_id(77);            // output only: ignored
  input.set_is_default(true);  // output only: ignored
  *input.add_stages() =
      NewStage("ODD", 1, v1::STAGE_SEMANTICS_PROCESS);  // ignored
  ASSERT_OK_AND_ASSIGN(v1::Pipeline p1, manager_->CreatePipeline(input, ""));
  EXPECT_EQ(p1.id(), 1);
  EXPECT_EQ(p1.name(), "Wholesale");
  EXPECT_EQ(p1.sort(), 20);
  EXPECT_FALSE(p1.is_default());
  EXPECT_EQ(p1.etag(), EtagForVersion(2));
  EXPECT_EQ(p1.create_time().seconds(), kT0 + 60);
  EXPECT_EQ(p1.update_time().seconds(), kT0 + 60);
  EXPECT_THAT(IdsOf(p1.stages()),
              ElementsAre("C1:NEW", "C1:PREPARATION", "C1:PREPAYMENT_INVOICE",
                          "C1:EXECUTING", "C1:FINAL_INVOICE", "C1:WON",
                          "C1:LOSE", "C1:APOLOGY"));
  for (const auto& stage : p1.stages()) {
    EXPECT_EQ(stage.pipeline_id(), 1);
    EXPECT_EQ(stage.etag(), EtagForVersion(2));
  }
  EXPECT_EQ(manager_->version(), 2);
  ASSERT_OK_AND_ASSIGN(v1::Pipeline read_back, manager_->GetPipeline(1));
  EXPECT_THAT(read_back, EqualsProto(p1));

  ASSERT_OK_AND_ASSIGN(v1::Pipeline p2,
                       manager_->CreatePipeline(Named("Retail"), ""));
  EXPECT_EQ(p2.id(), 2);
  EXPECT_EQ(p2.stages(0).stage_id(), "C2:NEW");
  EXPECT_EQ(manager_->version(), 3);
  EXPECT_THAT(notified_, ElementsAre(1, 2, 3));
}

TEST_F(ConfigManagerTest, CreatePipelineRejectsBadInput) {
  EXPECT_THAT(manager_->CreatePipeline(Named(""), ""),
              StatusIs(Code::kInvalidArgument, HasSubstr("pipeline.name")));
  EXPECT_THAT(manager_->CreatePipeline(Named("   "), ""),
              StatusIs(Code::kInvalidArgument, HasSubstr("pipeline.name")));
  EXPECT_THAT(manager_->CreatePipeline(Named(std::string(256, 'p')), ""),
              StatusIs(Code::kInvalidArgument, HasSubstr("pipeline.name")));
  EXPECT_THAT(manager_->CreatePipeline(Named("Ok", -1), ""),
              StatusIs(Code::kInvalidArgument, HasSubstr("pipeline.sort")));
  EXPECT_THAT(manager_->CreatePipeline(Named("Ok"), "has space"),
              StatusIs(Code::kInvalidArgument, HasSubstr("request_id")));
  EXPECT_THAT(manager_->CreatePipeline(Named("Ok"), std::string(129, 'r')),
              StatusIs(Code::kInvalidArgument, HasSubstr("request_id")));
  EXPECT_EQ(manager_->version(), 1);
  EXPECT_THAT(Snapshot()->pipelines, SizeIs(1));
}

TEST_F(ConfigManagerTest, UpdatePipelineChangesEtagAndVersion) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline p1,
                       manager_->CreatePipeline(Named("Wholesale", 10), ""));
  now_ += absl::Hours(1);
  v1::Pipeline change;
  change.set_id(1);
  change.set_name("Wholesale EU");
  change.set_sort(999);  // not in the mask: ignored
  ASSERT_OK_AND_ASSIGN(
      v1::Pipeline updated,
      manager_->UpdatePipeline(change, Mask({"name"}), p1.etag()));
  EXPECT_EQ(updated.name(), "Wholesale EU");
  EXPECT_EQ(updated.sort(), 10);
  EXPECT_EQ(updated.etag(), EtagForVersion(3));
  EXPECT_NE(updated.etag(), p1.etag());
  EXPECT_EQ(updated.create_time().seconds(), kT0);
  EXPECT_EQ(updated.update_time().seconds(), kT0 + 3600);
  EXPECT_THAT(updated.stages(), SizeIs(8));
  EXPECT_EQ(manager_->version(), 3);

  // The same values again: nothing changes, nothing is written.
  now_ += absl::Hours(1);
  ASSERT_OK_AND_ASSIGN(
      v1::Pipeline same,
      manager_->UpdatePipeline(change, Mask({"name"}), updated.etag()));
  EXPECT_THAT(same, EqualsProto(updated));
  EXPECT_EQ(manager_->version(), 3);
  EXPECT_THAT(notified_, ElementsAre(1, 2, 3));

  // A stale etag.
  change.set_name("Other");
  EXPECT_THAT(manager_->UpdatePipeline(change, Mask({"name"}), p1.etag()),
              StatusIs(Code::kAborted, HasSubstr("etag")));
  EXPECT_EQ(manager_->GetPipeline(1)->name(), "Wholesale EU");
  EXPECT_EQ(manager_->version(), 3);

  // Sort only, without etag.
  v1::Pipeline resort;
  resort.set_id(1);
  resort.set_sort(5);
  resort.set_name("ignored");
  ASSERT_OK_AND_ASSIGN(v1::Pipeline resorted,
                       manager_->UpdatePipeline(resort, Mask({"sort"}), ""));
  EXPECT_EQ(resorted.sort(), 5);
  EXPECT_EQ(resorted.name(), "Wholesale EU");
  EXPECT_EQ(resorted.etag(), EtagForVersion(4));

  // The default pipeline can be renamed.
  v1::Pipeline rename0;
  rename0.set_id(0);
  rename0.set_name("Main funnel");
  ASSERT_OK_AND_ASSIGN(v1::Pipeline p0,
                       manager_->UpdatePipeline(rename0, Mask({"name"}), ""));
  EXPECT_EQ(p0.name(), "Main funnel");
  EXPECT_TRUE(p0.is_default());
  EXPECT_EQ(manager_->version(), 5);
}

TEST_F(ConfigManagerTest, UpdatePipelineRejectsBadRequests) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline p1,
                       manager_->CreatePipeline(Named("Wholesale"), ""));
  v1::Pipeline change;
  change.set_id(1);
  change.set_name("New name");
  EXPECT_THAT(
      manager_->UpdatePipeline(change, FieldMask(), ""),
      StatusIs(Code::kInvalidArgument, HasSubstr("update_mask: required")));
  for (const char* path :
       {"id", "stages", "is_default", "etag", "create_time"}) {
    EXPECT_THAT(manager_->UpdatePipeline(change, Mask({"name", path}), ""),
                StatusIs(Code::kInvalidArgument, HasSubstr("immutable")))
        << path;
  }
  EXPECT_THAT(
      manager_->UpdatePipeline(change, Mask({"colour"}), ""),
      StatusIs(Code::kInvalidArgument, HasSubstr("unknown field \"colour\"")));
  v1::Pipeline missing = change;
  missing.set_id(9);
  EXPECT_THAT(manager_->UpdatePipeline(missing, Mask({"name"}), ""),
              StatusIs(Code::kNotFound, HasSubstr("pipeline 9")));
  v1::Pipeline blank = change;
  blank.set_name(" ");
  EXPECT_THAT(manager_->UpdatePipeline(blank, Mask({"name"}), ""),
              StatusIs(Code::kInvalidArgument, HasSubstr("pipeline.name")));
  v1::Pipeline negative = change;
  negative.set_sort(-3);
  EXPECT_THAT(manager_->UpdatePipeline(negative, Mask({"sort"}), ""),
              StatusIs(Code::kInvalidArgument, HasSubstr("pipeline.sort")));
  EXPECT_EQ(manager_->version(), 2);
  ASSERT_OK_AND_ASSIGN(v1::Pipeline now, manager_->GetPipeline(1));
  EXPECT_THAT(now, EqualsProto(p1));
}

TEST_F(ConfigManagerTest, DeletePipelineFailureModes) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline p1,
                       manager_->CreatePipeline(Named("Wholesale"), ""));
  EXPECT_THAT(
      manager_->DeletePipeline(0, ""),
      StatusIs(Code::kFailedPrecondition, HasSubstr("default pipeline")));
  EXPECT_THAT(manager_->DeletePipeline(9, ""), StatusIs(Code::kNotFound));
  EXPECT_THAT(manager_->DeletePipeline(1, EtagForVersion(1)),
              StatusIs(Code::kAborted));
  counter_.pipeline_deals[1] = 12;
  EXPECT_THAT(
      manager_->DeletePipeline(1, p1.etag()),
      StatusIs(Code::kFailedPrecondition, HasSubstr("still holds 12 deals")));
  EXPECT_EQ(manager_->version(), 2);
  EXPECT_TRUE(manager_->GetPipeline(1).ok());

  // The deals service cannot answer: refuse rather than risk it.
  UnavailableDealCounter unavailable;
  manager_.reset();
  ASSERT_NO_FATAL_FAILURE(StartManager(unavailable));
  EXPECT_THAT(manager_->DeletePipeline(1, p1.etag()),
              StatusIs(Code::kUnavailable));
  EXPECT_TRUE(manager_->GetPipeline(1).ok());
  EXPECT_EQ(manager_->version(), 2);
  manager_.reset();
  ASSERT_NO_FATAL_FAILURE(StartManager(counter_));

  counter_.pipeline_deals[1] = 0;
  ASSERT_OK(manager_->DeletePipeline(1, p1.etag()));
  // Two versions: the `deleting` mark, then the delete.
  EXPECT_EQ(manager_->version(), 4);
  EXPECT_THAT(manager_->GetPipeline(1), StatusIs(Code::kNotFound));
  EXPECT_THAT(manager_->DeletePipeline(1, ""), StatusIs(Code::kNotFound));
  // Ids are not reused.
  ASSERT_OK_AND_ASSIGN(v1::Pipeline p2,
                       manager_->CreatePipeline(Named("Next"), ""));
  EXPECT_EQ(p2.id(), 2);
}

TEST_F(ConfigManagerTest, DeletePipelineCascadesStagesAndRoleEntries) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline p1,
                       manager_->CreatePipeline(Named("Wholesale"), ""));
  ASSERT_OK_AND_ASSIGN(v1::Pipeline p2,
                       manager_->CreatePipeline(Named("Retail"), ""));
  ASSERT_OK(
      manager_
          ->CreateStage(1, NewStage("EXTRA", 1, v1::STAGE_SEMANTICS_PROCESS))
          .status());

  v1::Role both = NamedRole("Both");
  *both.add_pipelines() = Entry(0, v1::ACCESS_LEVEL_ALL);
  v1::PipelinePermissions* one = both.add_pipelines();
  *one = Entry(1, v1::ACCESS_LEVEL_SELF);
  (*one->mutable_stage_levels())["C1:WON"] = AllActions(v1::ACCESS_LEVEL_ALL);
  (*one->mutable_transitions())["C1:NEW"] = ListRule({"C1:WON"});
  *both.add_pipelines() = Entry(2, v1::ACCESS_LEVEL_OPEN);
  ASSERT_OK_AND_ASSIGN(v1::Role both_role, manager_->CreateRole(both));
  v1::Role other = NamedRole("Other");
  *other.add_pipelines() = Entry(2, v1::ACCESS_LEVEL_ALL);
  ASSERT_OK_AND_ASSIGN(v1::Role other_role, manager_->CreateRole(other));

  now_ += absl::Hours(2);
  const int64_t before = manager_->version();
  ASSERT_OK(manager_->DeletePipeline(1, p1.etag()));
  EXPECT_EQ(manager_->version(), before + 2);  // mark, then delete

  auto check = [&](const ConfigData& data) {
    EXPECT_EQ(data.FindPipeline(1), nullptr);
    EXPECT_NE(data.FindPipeline(2), nullptr);
    EXPECT_EQ(data.FindStage(1, "C1:NEW"), nullptr);
    EXPECT_EQ(data.FindStage(1, "C1:EXTRA"), nullptr);
    const v1::Role& stripped = data.roles.at(both_role.id());
    ASSERT_THAT(stripped.pipelines(), SizeIs(2));
    EXPECT_THAT(stripped.pipelines(0), EqualsProto(both.pipelines(0)));
    EXPECT_THAT(stripped.pipelines(1), EqualsProto(both.pipelines(2)));
    EXPECT_EQ(stripped.etag(), EtagForVersion(before + 2));
    EXPECT_EQ(stripped.update_time().seconds(), kT0 + 7200);
    EXPECT_THAT(data.roles.at(other_role.id()), EqualsProto(other_role));
  };
  check(*Snapshot());
  ConfigData disk;
  ASSERT_NO_FATAL_FAILURE(Reopen(&disk));  // orphan stages would make Load fail
  check(disk);
  EXPECT_TRUE(SameConfig(disk, *Snapshot()));
  EXPECT_EQ(p2.id(), 2);
}

// Runs `fn` on another thread and says whether it finished within 5 s (it
// cannot while this thread holds the writer lock it needs).
bool FinishesOnAnotherThread(std::function<void()> fn) {
  auto done = std::make_shared<absl::Notification>();
  std::thread([fn = std::move(fn), done] {
    fn();
    done->Notify();
  }).detach();
  return done->WaitForNotificationWithTimeout(absl::Seconds(5));
}

TEST_F(ConfigManagerTest, DeletePipelineMarksItThenCountsWithoutTheLock) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline p1,
                       manager_->CreatePipeline(Named("Wholesale"), ""));
  ASSERT_OK_AND_ASSIGN(v1::Pipeline p2,
                       manager_->CreatePipeline(Named("Retail"), ""));
  std::vector<int64_t> min_versions;
  bool marked_during_final_count = false;
  bool other_writes_went_through = false;
  counter_.during_count = [&] {
    min_versions.push_back(counter_.last_min_version);
    if (counter_.last_min_version == 0) {
      // The first count writes nothing.
      EXPECT_FALSE(Snapshot()->FindPipeline(1)->pipeline.deleting());
      return;
    }
    const auto snapshot = Snapshot();
    EXPECT_EQ(snapshot->counters.version(), counter_.last_min_version);
    const v1::Pipeline& marked = snapshot->FindPipeline(1)->pipeline;
    marked_during_final_count = marked.deleting();
    EXPECT_EQ(marked.etag(), p1.etag());  // the mark keeps the etag
    // Other changes are not held up by the count.
    v1::Pipeline rename = p2;
    rename.set_name("Retail 2");
    other_writes_went_through = FinishesOnAnotherThread([this, rename] {
      EXPECT_OK(manager_->UpdatePipeline(rename, Mask({"name"}), "").status());
    });
    // A second delete of the same pipeline meanwhile is refused.
    EXPECT_THAT(manager_->DeletePipeline(1, ""),
                StatusIs(Code::kAborted, HasSubstr("being deleted")));
  };
  const int64_t before = manager_->version();
  ASSERT_OK(manager_->DeletePipeline(1, p1.etag()));
  EXPECT_THAT(min_versions, ElementsAre(0, before + 1));
  EXPECT_TRUE(marked_during_final_count);
  EXPECT_TRUE(other_writes_went_through);
  EXPECT_EQ(manager_->GetPipeline(1).status().code(), Code::kNotFound);
  EXPECT_EQ(manager_->GetPipeline(2)->name(), "Retail 2");
}

TEST_F(ConfigManagerTest, DealsArrivingBeforeTheMarkRefuseTheDeleteAndClearIt) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline p1,
                       manager_->CreatePipeline(Named("Wholesale"), ""));
  const std::string stage_etag = FindStage(1, "C1:NEW")->etag();
  // The first count sees none; by the marked version two deals are there.
  counter_.during_count = [&] {
    if (counter_.last_min_version > 0) {
      counter_.pipeline_deals[1] = 2;
      counter_.stage_deals[{1, "C1:NEW"}] = 2;
    }
  };
  EXPECT_THAT(manager_->DeletePipeline(1, p1.etag()),
              StatusIs(Code::kFailedPrecondition, HasSubstr("still holds 2")));
  ASSERT_OK_AND_ASSIGN(v1::Pipeline kept, manager_->GetPipeline(1));
  EXPECT_FALSE(kept.deleting());
  EXPECT_EQ(kept.etag(), p1.etag());
  counter_.pipeline_deals.clear();
  counter_.stage_deals.clear();
  EXPECT_THAT(manager_->DeleteStage(1, "C1:NEW", stage_etag),
              StatusIs(Code::kFailedPrecondition, HasSubstr("still holds 2")));
  ASSERT_NE(FindStage(1, "C1:NEW"), nullptr);
  EXPECT_FALSE(FindStage(1, "C1:NEW")->deleting());
  EXPECT_EQ(FindStage(1, "C1:NEW")->etag(), stage_etag);

  // Deals cannot answer the second count: refused, mark cleared.
  counter_.during_count = nullptr;
  counter_.pipeline_deals.clear();
  counter_.stage_deals.clear();
  counter_.final_count_error = absl::UnavailableError("deals went away");
  EXPECT_THAT(manager_->DeletePipeline(1, p1.etag()),
              StatusIs(Code::kUnavailable, HasSubstr("went away")));
  ASSERT_OK_AND_ASSIGN(kept, manager_->GetPipeline(1));
  EXPECT_FALSE(kept.deleting());
  counter_.final_count_error = absl::OkStatus();

  // An edit between the mark and the delete makes the etag stale.
  counter_.during_count = [&] {
    if (counter_.last_min_version == 0) return;
    v1::Pipeline rename = p1;
    rename.set_name("Renamed meanwhile");
    EXPECT_OK(manager_->UpdatePipeline(rename, Mask({"name"}), "").status());
  };
  // (The rename runs on this thread: the count holds no lock.)
  EXPECT_THAT(manager_->DeletePipeline(1, p1.etag()), StatusIs(Code::kAborted));
  ASSERT_OK_AND_ASSIGN(kept, manager_->GetPipeline(1));
  EXPECT_FALSE(kept.deleting());
  EXPECT_EQ(kept.name(), "Renamed meanwhile");
}

TEST_F(ConfigManagerTest, DeleteStageMarksItThenCountsWithoutTheLock) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline p1,
                       manager_->CreatePipeline(Named("Wholesale"), ""));
  const std::string etag = FindStage(1, "C1:PREPARATION")->etag();
  std::vector<int64_t> min_versions;
  bool marked = false;
  counter_.during_count = [&] {
    min_versions.push_back(counter_.last_min_version);
    if (counter_.last_min_version == 0) return;
    const auto snapshot = Snapshot();
    EXPECT_EQ(snapshot->counters.version(), counter_.last_min_version);
    const v1::Stage* stage = snapshot->FindStage(1, "C1:PREPARATION");
    ASSERT_NE(stage, nullptr);
    marked = stage->deleting();
    EXPECT_EQ(stage->etag(), etag);
    EXPECT_THAT(manager_->DeleteStage(1, "PREPARATION", ""),
                StatusIs(Code::kAborted, HasSubstr("being deleted")));
    // Other stages can be edited meanwhile (the writer lock is free).
    v1::Stage rename;
    rename.set_pipeline_id(1);
    rename.set_stage_id("C1:NEW");
    rename.set_name("Fresh");
    EXPECT_TRUE(FinishesOnAnotherThread([this, rename] {
      EXPECT_OK(manager_->UpdateStage(rename, Mask({"name"}), "").status());
    }));
  };
  const int64_t before = manager_->version();
  ASSERT_OK(manager_->DeleteStage(1, "C1:PREPARATION", etag));
  EXPECT_THAT(min_versions, ElementsAre(0, before + 1));
  EXPECT_TRUE(marked);
  EXPECT_EQ(FindStage(1, "C1:PREPARATION"), nullptr);
  EXPECT_EQ(FindStage(1, "C1:NEW")->name(), "Fresh");
}

TEST_F(ConfigManagerTest, MarksOfAnInterruptedDeleteAreClearedAtStart) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline p1,
                       manager_->CreatePipeline(Named("Wholesale"), ""));
  // What a process stopped between the mark and the delete leaves on disk.
  v1::Pipeline pipeline = p1;
  pipeline.clear_stages();
  pipeline.set_deleting(true);
  v1::Stage stage = *FindStage(0, "PREPARATION");
  stage.set_deleting(true);
  ConfigStore::Batch batch = store_->NewBatch();
  batch.PutPipeline(pipeline);
  batch.PutStage(stage);
  ASSERT_OK(store_->Commit(batch));
  ConfigData disk;
  ASSERT_NO_FATAL_FAILURE(Reopen(&disk));
  ASSERT_TRUE(disk.FindPipeline(1)->pipeline.deleting());  // as written
  EXPECT_FALSE(Snapshot()->FindPipeline(1)->pipeline.deleting());
  EXPECT_FALSE(FindStage(0, "PREPARATION")->deleting());
  ASSERT_NO_FATAL_FAILURE(Reopen(&disk));
  EXPECT_FALSE(disk.FindPipeline(1)->pipeline.deleting());  // and durable
  EXPECT_FALSE(disk.FindStage(0, "PREPARATION")->deleting());
  // The pipeline can be deleted now.
  ASSERT_OK(manager_->DeletePipeline(1, ""));
}

TEST_F(ConfigManagerTest, DeletingIsOutputOnly) {
  v1::Stage input = NewStage("EXTRA", 15, v1::STAGE_SEMANTICS_PROCESS);
  input.set_deleting(true);
  ASSERT_OK_AND_ASSIGN(v1::Stage created, manager_->CreateStage(0, input));
  EXPECT_FALSE(created.deleting());
  EXPECT_FALSE(FindStage(0, "EXTRA")->deleting());
  v1::Stage update = created;
  update.set_deleting(true);
  EXPECT_THAT(manager_->UpdateStage(update, Mask({"deleting"}), ""),
              StatusIs(Code::kInvalidArgument, HasSubstr("deleting")));
  v1::Pipeline pipeline;
  pipeline.set_id(0);
  pipeline.set_deleting(true);
  EXPECT_THAT(manager_->UpdatePipeline(pipeline, Mask({"deleting"}), ""),
              StatusIs(Code::kInvalidArgument, HasSubstr("deleting")));
}

// --- Stages ------------------------------------------------------------------

TEST_F(ConfigManagerTest, CreateStage) {
  ASSERT_OK(manager_->CreatePipeline(Named("Wholesale"), "").status());
  now_ += absl::Minutes(5);
  ASSERT_OK_AND_ASSIGN(
      v1::Stage review,
      manager_->CreateStage(
          1, NewStage("REVIEW", 15, v1::STAGE_SEMANTICS_PROCESS)));
  EXPECT_EQ(review.stage_id(), "C1:REVIEW");
  EXPECT_EQ(review.pipeline_id(), 1);
  EXPECT_EQ(review.color(), DefaultStageColor(v1::STAGE_SEMANTICS_PROCESS));
  EXPECT_EQ(review.etag(), EtagForVersion(3));
  EXPECT_EQ(review.create_time().seconds(), kT0 + 300);
  EXPECT_EQ(manager_->version(), 3);
  ASSERT_OK_AND_ASSIGN(v1::Pipeline p1, manager_->GetPipeline(1));
  EXPECT_THAT(
      IdsOf(p1.stages()),
      ElementsAre("C1:NEW", "C1:REVIEW", "C1:PREPARATION",
                  "C1:PREPAYMENT_INVOICE", "C1:EXECUTING", "C1:FINAL_INVOICE",
                  "C1:WON", "C1:LOSE", "C1:APOLOGY"));

  // The prefixed form is accepted too; pipeline_id in the body is ignored.
  v1::Stage spam = NewStage("C1:SPAM", 90, v1::STAGE_SEMANTICS_FAILURE);
  spam.set_pipeline_id(0);
  spam.set_color("#123abc");
  ASSERT_OK_AND_ASSIGN(v1::Stage created_spam, manager_->CreateStage(1, spam));
  EXPECT_EQ(created_spam.stage_id(), "C1:SPAM");
  EXPECT_EQ(created_spam.pipeline_id(), 1);
  EXPECT_EQ(created_spam.color(), "#123abc");
  ASSERT_OK_AND_ASSIGN(
      v1::Stage lost,
      manager_->CreateStage(
          0, NewStage("LOST2", 95, v1::STAGE_SEMANTICS_FAILURE)));
  EXPECT_EQ(lost.stage_id(), "LOST2");
  EXPECT_EQ(lost.color(), DefaultStageColor(v1::STAGE_SEMANTICS_FAILURE));
  EXPECT_EQ(manager_->version(), 5);
}

TEST_F(ConfigManagerTest, CreateStageFailureModes) {
  ASSERT_OK(manager_->CreatePipeline(Named("Wholesale"), "").status());
  EXPECT_THAT(manager_->CreateStage(
                  1, NewStage("C2:X", 15, v1::STAGE_SEMANTICS_PROCESS)),
              StatusIs(Code::kInvalidArgument, HasSubstr("stage_id")));
  EXPECT_THAT(manager_->CreateStage(
                  1, NewStage("review", 15, v1::STAGE_SEMANTICS_PROCESS)),
              StatusIs(Code::kInvalidArgument, HasSubstr("stage_id")));
  EXPECT_THAT(manager_->CreateStage(
                  1, NewStage("NEW", 15, v1::STAGE_SEMANTICS_PROCESS)),
              StatusIs(Code::kAlreadyExists, HasSubstr("C1:NEW")));
  EXPECT_THAT(manager_->CreateStage(
                  1, NewStage("C1:NEW", 15, v1::STAGE_SEMANTICS_PROCESS)),
              StatusIs(Code::kAlreadyExists));
  EXPECT_THAT(
      manager_->CreateStage(5, NewStage("X", 15, v1::STAGE_SEMANTICS_PROCESS)),
      StatusIs(Code::kNotFound, HasSubstr("pipeline 5")));
  EXPECT_THAT(manager_->CreateStage(
                  1, NewStage("X", 15, v1::STAGE_SEMANTICS_UNSPECIFIED)),
              StatusIs(Code::kInvalidArgument, HasSubstr("stage.semantics")));
  v1::Stage nameless = NewStage("X", 15, v1::STAGE_SEMANTICS_PROCESS);
  nameless.set_name("");
  EXPECT_THAT(manager_->CreateStage(1, nameless),
              StatusIs(Code::kInvalidArgument, HasSubstr("stage.name")));
  v1::Stage bad_probability = NewStage("X", 15, v1::STAGE_SEMANTICS_PROCESS);
  bad_probability.set_default_probability(101);
  EXPECT_THAT(
      manager_->CreateStage(1, bad_probability),
      StatusIs(Code::kInvalidArgument, HasSubstr("default_probability")));
  // Ordering rules.
  EXPECT_THAT(manager_->CreateStage(
                  1, NewStage("LATE", 65, v1::STAGE_SEMANTICS_PROCESS)),
              StatusIs(Code::kFailedPrecondition,
                       HasSubstr("PROCESS stage C1:LATE must come before")));
  EXPECT_THAT(manager_->CreateStage(
                  1, NewStage("WON2", 65, v1::STAGE_SEMANTICS_SUCCESS)),
              StatusIs(Code::kFailedPrecondition, HasSubstr("found 2")));
  EXPECT_THAT(manager_->CreateStage(
                  1, NewStage("EARLY", 5, v1::STAGE_SEMANTICS_FAILURE)),
              StatusIs(Code::kFailedPrecondition));
  EXPECT_EQ(manager_->version(), 2);
  EXPECT_THAT(Snapshot()->pipelines.at(1).stages, SizeIs(8));
}

TEST_F(ConfigManagerTest, StageLimitIsResourceExhausted) {
  ASSERT_EQ(Snapshot()->pipelines.at(0).stages.size(), 8u);
  for (int i = 8; i < kMaxStagesPerPipeline; ++i) {
    ASSERT_OK(manager_
                  ->CreateStage(0, NewStage(absl::StrCat("P", i), 1,
                                            v1::STAGE_SEMANTICS_PROCESS))
                  .status())
        << i;
  }
  ASSERT_EQ(Snapshot()->pipelines.at(0).stages.size(),
            static_cast<size_t>(kMaxStagesPerPipeline));
  const int64_t version = manager_->version();
  EXPECT_THAT(
      manager_->CreateStage(
          0, NewStage("ONE_TOO_MANY", 1, v1::STAGE_SEMANTICS_PROCESS)),
      StatusIs(Code::kResourceExhausted, HasSubstr("at most 100 stages")));
  EXPECT_EQ(manager_->version(), version);
  EXPECT_EQ(Snapshot()->pipelines.at(0).stages.size(),
            static_cast<size_t>(kMaxStagesPerPipeline));
  // The limit is per pipeline.
  ASSERT_OK(manager_->CreatePipeline(Named("Other"), "").status());
  EXPECT_THAT(manager_->CreateStage(
                  1, NewStage("ONE_MORE", 1, v1::STAGE_SEMANTICS_PROCESS)),
              IsOk());
}

TEST_F(ConfigManagerTest, UpdateStage) {
  const v1::Stage* won = FindStage(0, "WON");
  ASSERT_NE(won, nullptr);
  const v1::Stage original = *won;
  now_ += absl::Hours(1);
  v1::Stage change;
  change.set_pipeline_id(0);
  change.set_stage_id("WON");
  change.set_name("Closed won");
  change.set_color("#00FF00");
  change.set_default_probability(99);
  change.set_rotting_days(30);
  change.set_sort(1);                                 // not in the mask
  change.set_semantics(v1::STAGE_SEMANTICS_FAILURE);  // not in the mask
  ASSERT_OK_AND_ASSIGN(
      v1::Stage updated,
      manager_->UpdateStage(
          change,
          Mask({"name", "color", "default_probability", "rotting_days"}),
          original.etag()));
  EXPECT_EQ(updated.name(), "Closed won");
  EXPECT_EQ(updated.color(), "#00FF00");
  EXPECT_EQ(updated.default_probability(), 99);
  EXPECT_EQ(updated.rotting_days(), 30);
  EXPECT_EQ(updated.sort(), original.sort());
  EXPECT_EQ(updated.semantics(), v1::STAGE_SEMANTICS_SUCCESS);
  EXPECT_EQ(updated.etag(), EtagForVersion(2));
  EXPECT_NE(updated.etag(), original.etag());
  EXPECT_EQ(updated.create_time().seconds(), kT0);
  EXPECT_EQ(updated.update_time().seconds(), kT0 + 3600);
  EXPECT_EQ(manager_->version(), 2);

  // No-op.
  ASSERT_OK_AND_ASSIGN(v1::Stage same,
                       manager_->UpdateStage(change, Mask({"name"}), ""));
  EXPECT_THAT(same, EqualsProto(updated));
  EXPECT_EQ(manager_->version(), 2);

  // A sort change moves the stage in the ordered list.
  v1::Stage move;
  move.set_pipeline_id(0);
  move.set_stage_id("NEW");
  move.set_sort(35);
  ASSERT_OK(manager_->UpdateStage(move, Mask({"sort"}), "").status());
  EXPECT_THAT(
      IdsOf(Snapshot()->pipelines.at(0).stages),
      ElementsAre("PREPARATION", "PREPAYMENT_INVOICE", "NEW", "EXECUTING",
                  "FINAL_INVOICE", "WON", "LOSE", "APOLOGY"));
  EXPECT_EQ(manager_->version(), 3);
}

TEST_F(ConfigManagerTest, UpdateStageFailureModes) {
  v1::Stage change;
  change.set_pipeline_id(0);
  change.set_stage_id("WON");
  change.set_sort(5);
  EXPECT_THAT(manager_->UpdateStage(change, Mask({"sort"}), ""),
              StatusIs(Code::kFailedPrecondition, HasSubstr("stage order")));
  change.set_semantics(v1::STAGE_SEMANTICS_PROCESS);
  for (const char* path : {"semantics", "stage_id", "pipeline_id"}) {
    EXPECT_THAT(manager_->UpdateStage(change, Mask({path}), ""),
                StatusIs(Code::kInvalidArgument, HasSubstr("immutable")))
        << path;
  }
  EXPECT_THAT(manager_->UpdateStage(change, FieldMask(), ""),
              StatusIs(Code::kInvalidArgument, HasSubstr("update_mask")));
  change.set_name("Fine");
  EXPECT_THAT(manager_->UpdateStage(change, Mask({"name"}), EtagForVersion(7)),
              StatusIs(Code::kAborted, HasSubstr("etag")));
  change.set_color("green");
  EXPECT_THAT(manager_->UpdateStage(change, Mask({"color"}), ""),
              StatusIs(Code::kInvalidArgument, HasSubstr("stage.color")));
  change.set_rotting_days(-1);
  EXPECT_THAT(
      manager_->UpdateStage(change, Mask({"rotting_days"}), ""),
      StatusIs(Code::kInvalidArgument, HasSubstr("stage.rotting_days")));
  v1::Stage missing = change;
  missing.set_stage_id("NOPE");
  EXPECT_THAT(manager_->UpdateStage(missing, Mask({"name"}), ""),
              StatusIs(Code::kNotFound, HasSubstr("NOPE")));
  missing.set_pipeline_id(4);
  EXPECT_THAT(manager_->UpdateStage(missing, Mask({"name"}), ""),
              StatusIs(Code::kNotFound, HasSubstr("pipeline 4")));
  EXPECT_EQ(manager_->version(), 1);
  EXPECT_EQ(FindStage(0, "WON")->name(), DefaultStages(0)[5].name());
}

TEST_F(ConfigManagerTest, DeleteStage) {
  const std::string etag = FindStage(0, "PREPARATION")->etag();
  EXPECT_THAT(manager_->DeleteStage(0, "NOPE", ""), StatusIs(Code::kNotFound));
  EXPECT_THAT(manager_->DeleteStage(3, "NEW", ""), StatusIs(Code::kNotFound));
  EXPECT_THAT(manager_->DeleteStage(0, "PREPARATION", EtagForVersion(9)),
              StatusIs(Code::kAborted));
  // Rules about what must remain.
  EXPECT_THAT(
      manager_->DeleteStage(0, "WON", ""),
      StatusIs(Code::kFailedPrecondition, HasSubstr("exactly one SUCCESS")));
  ASSERT_OK(manager_->DeleteStage(0, "LOSE", ""));
  EXPECT_THAT(manager_->DeleteStage(0, "APOLOGY", ""),
              StatusIs(Code::kFailedPrecondition, HasSubstr("FAILURE")));
  EXPECT_EQ(manager_->version(), 3);  // LOSE: the mark, then the delete

  // Deals present.
  counter_.stage_deals[{0, "PREPARATION"}] = 5;
  EXPECT_THAT(
      manager_->DeleteStage(0, "PREPARATION", etag),
      StatusIs(Code::kFailedPrecondition, HasSubstr("still holds 5 deals")));
  EXPECT_NE(FindStage(0, "PREPARATION"), nullptr);
  EXPECT_EQ(manager_->version(), 3);

  // The deals service cannot answer.
  UnavailableDealCounter unavailable;
  manager_.reset();
  ASSERT_NO_FATAL_FAILURE(StartManager(unavailable));
  EXPECT_THAT(manager_->DeleteStage(0, "PREPARATION", etag),
              StatusIs(Code::kUnavailable));
  EXPECT_NE(FindStage(0, "PREPARATION"), nullptr);
  EXPECT_EQ(manager_->version(), 3);
  manager_.reset();
  ASSERT_NO_FATAL_FAILURE(StartManager(counter_));

  counter_.stage_deals.clear();
  ASSERT_OK(manager_->DeleteStage(0, "PREPARATION", etag));
  EXPECT_EQ(FindStage(0, "PREPARATION"), nullptr);
  EXPECT_EQ(manager_->version(), 5);
  EXPECT_THAT(IdsOf(Snapshot()->pipelines.at(0).stages),
              ElementsAre("NEW", "PREPAYMENT_INVOICE", "EXECUTING",
                          "FINAL_INVOICE", "WON", "APOLOGY"));
}

TEST_F(ConfigManagerTest, DeleteStageStripsItFromRoles) {
  ASSERT_OK(manager_->CreatePipeline(Named("Wholesale"), "").status());
  v1::Role role = NamedRole("Strip");
  v1::PipelinePermissions* zero = role.add_pipelines();
  *zero = Entry(0, v1::ACCESS_LEVEL_ALL);
  (*zero->mutable_stage_levels())["PREPARATION"] =
      AllActions(v1::ACCESS_LEVEL_NONE);
  (*zero->mutable_stage_levels())["NEW"] = AllActions(v1::ACCESS_LEVEL_SELF);
  (*zero->mutable_transitions())["PREPARATION"] =
      ModeRule(v1::TransitionRule::MODE_ANY);
  (*zero->mutable_transitions())["NEW"] = ListRule({"PREPARATION"});
  (*zero->mutable_transitions())["EXECUTING"] =
      ListRule({"PREPARATION", "WON"});
  (*zero->mutable_transitions())["WON"] =
      ModeRule(v1::TransitionRule::MODE_BLOCKED);
  v1::PipelinePermissions* one = role.add_pipelines();
  *one = Entry(1, v1::ACCESS_LEVEL_SELF);
  (*one->mutable_stage_levels())["C1:PREPARATION"] =
      AllActions(v1::ACCESS_LEVEL_ALL);
  (*one->mutable_transitions())["C1:NEW"] = ListRule({"C1:PREPARATION"});
  ASSERT_OK_AND_ASSIGN(v1::Role strip, manager_->CreateRole(role));
  v1::Role bystander_input = NamedRole("Bystander");
  *bystander_input.add_pipelines() = Entry(0, v1::ACCESS_LEVEL_ALL);
  ASSERT_OK_AND_ASSIGN(v1::Role bystander,
                       manager_->CreateRole(bystander_input));

  now_ += absl::Hours(3);
  ASSERT_OK(manager_->DeleteStage(0, "PREPARATION", ""));
  const int64_t version = manager_->version();

  auto check = [&](const ConfigData& data) {
    const v1::Role& stripped = data.roles.at(strip.id());
    EXPECT_EQ(stripped.etag(), EtagForVersion(version));
    EXPECT_EQ(stripped.update_time().seconds(), kT0 + 3 * 3600);
    ASSERT_THAT(stripped.pipelines(), SizeIs(2));
    const v1::PipelinePermissions& p0 = stripped.pipelines(0);
    EXPECT_THAT(p0.levels(), EqualsProto(zero->levels()));
    EXPECT_EQ(p0.stage_levels().size(), 1u);
    EXPECT_EQ(p0.stage_levels().count("PREPARATION"), 0u);
    ASSERT_EQ(p0.stage_levels().count("NEW"), 1u);
    EXPECT_THAT(p0.stage_levels().at("NEW"),
                EqualsProto(AllActions(v1::ACCESS_LEVEL_SELF)));
    EXPECT_EQ(p0.transitions().size(), 3u);
    EXPECT_EQ(p0.transitions().count("PREPARATION"), 0u);
    // A list that lost its only target blocks; one that kept others stays a
    // list.
    EXPECT_THAT(p0.transitions().at("NEW"),
                EqualsProto(ModeRule(v1::TransitionRule::MODE_BLOCKED)));
    EXPECT_THAT(p0.transitions().at("EXECUTING"),
                EqualsProto(ListRule({"WON"})));
    EXPECT_THAT(p0.transitions().at("WON"),
                EqualsProto(ModeRule(v1::TransitionRule::MODE_BLOCKED)));
    // The same bare id in another pipeline is another stage.
    EXPECT_THAT(stripped.pipelines(1), EqualsProto(*one));
    EXPECT_THAT(data.roles.at(bystander.id()), EqualsProto(bystander));
  };
  check(*Snapshot());
  ConfigData disk;
  ASSERT_NO_FATAL_FAILURE(Reopen(&disk));
  check(disk);
  // The stripped role is still a valid role.
  v1::Role rename = disk.roles.at(strip.id());
  rename.set_name("Stripped");
  EXPECT_THAT(manager_->UpdateRole(rename, Mask({"name", "pipelines"}), ""),
              IsOk());
}

TEST_F(ConfigManagerTest, ReorderStages) {
  const std::vector<std::string> current =
      IdsOf(Snapshot()->pipelines.at(0).stages);
  // The same order with sorts 10..80 already: nothing to write.
  ASSERT_OK_AND_ASSIGN(auto same, manager_->ReorderStages(0, current));
  EXPECT_THAT(IdsOf(same), ::testing::ElementsAreArray(current));
  EXPECT_EQ(manager_->version(), 1);

  const std::vector<std::string> order = {
      "EXECUTING",     "NEW", "PREPARATION", "PREPAYMENT_INVOICE",
      "FINAL_INVOICE", "WON", "APOLOGY",     "LOSE"};
  ASSERT_OK_AND_ASSIGN(auto reordered, manager_->ReorderStages(0, order));
  EXPECT_THAT(IdsOf(reordered), ::testing::ElementsAreArray(order));
  for (size_t i = 0; i < reordered.size(); ++i) {
    EXPECT_EQ(reordered[i].sort(), static_cast<int>((i + 1) * 10))
        << reordered[i].stage_id();
  }
  EXPECT_EQ(manager_->version(), 2);
  // Only stages whose sort changed got a new etag.
  EXPECT_EQ(reordered[0].etag(), EtagForVersion(2));  // EXECUTING 40 -> 10
  EXPECT_EQ(reordered[4].etag(), EtagForVersion(1));  // FINAL_INVOICE stays 50

  EXPECT_THAT(
      manager_->ReorderStages(0, {"NEW", "WON"}),
      StatusIs(Code::kInvalidArgument, HasSubstr("must list all 8 stages")));
  std::vector<std::string> twice = order;
  twice[1] = "EXECUTING";
  EXPECT_THAT(manager_->ReorderStages(0, twice),
              StatusIs(Code::kInvalidArgument, HasSubstr("listed twice")));
  std::vector<std::string> unknown = order;
  unknown[1] = "C1:NEW";
  EXPECT_THAT(manager_->ReorderStages(0, unknown),
              StatusIs(Code::kInvalidArgument, HasSubstr("C1:NEW")));
  std::vector<std::string> broken = order;
  std::swap(broken[0], broken[5]);  // WON first
  EXPECT_THAT(manager_->ReorderStages(0, broken),
              StatusIs(Code::kFailedPrecondition));
  EXPECT_THAT(manager_->ReorderStages(8, order), StatusIs(Code::kNotFound));
  EXPECT_EQ(manager_->version(), 2);
}

// --- Fields ------------------------------------------------------------------

TEST_F(ConfigManagerTest, FieldLifecycle) {
  v1::FieldDefinition size = EnumField("UF_CRM_SIZE", {"S", "M", "L"});
  size.mutable_options(0)->set_id(555);  // output only on create
  size.set_etag("bogus");
  ASSERT_OK_AND_ASSIGN(v1::FieldDefinition created,
                       manager_->CreateField(size));
  ASSERT_THAT(created.options(), SizeIs(3));
  EXPECT_EQ(created.options(0).id(), 1);
  EXPECT_EQ(created.options(1).id(), 2);
  EXPECT_EQ(created.options(2).id(), 3);
  EXPECT_EQ(created.etag(), EtagForVersion(2));
  EXPECT_EQ(created.create_time().seconds(), kT0);
  EXPECT_THAT(Snapshot()->fields.at("UF_CRM_SIZE"), EqualsProto(created));
  EXPECT_THAT(manager_->CreateField(size),
              StatusIs(Code::kAlreadyExists, HasSubstr("UF_CRM_SIZE")));
  EXPECT_THAT(manager_->CreateField(EnumField("UF_CRM_EMPTY", {})),
              StatusIs(Code::kInvalidArgument, HasSubstr("field.options")));
  EXPECT_THAT(manager_->CreateField(EnumField("uf_crm_x", {"a"})),
              StatusIs(Code::kInvalidArgument, HasSubstr("field.code")));
  EXPECT_EQ(manager_->version(), 2);

  // Keep option 1 (renamed), drop 2 and 3, add one.
  now_ += absl::Hours(1);
  v1::FieldDefinition change = created;
  change.set_label("Size (EU)");
  change.set_type(v1::FIELD_TYPE_STRING);  // not in the mask
  change.clear_options();
  auto* kept = change.add_options();
  kept->set_id(1);
  kept->set_value("Small");
  change.add_options()->set_value("XL");
  ASSERT_OK_AND_ASSIGN(v1::FieldDefinition updated,
                       manager_->UpdateField(change, Mask({"label", "options"}),
                                             created.etag()));
  EXPECT_EQ(updated.label(), "Size (EU)");
  EXPECT_EQ(updated.type(), v1::FIELD_TYPE_ENUMERATION);
  ASSERT_THAT(updated.options(), SizeIs(2));
  EXPECT_EQ(updated.options(0).id(), 1);
  EXPECT_EQ(updated.options(0).value(), "Small");
  EXPECT_EQ(updated.options(1).id(), 4);
  EXPECT_EQ(updated.options(1).value(), "XL");
  EXPECT_EQ(updated.etag(), EtagForVersion(3));
  EXPECT_EQ(updated.update_time().seconds(), kT0 + 3600);
  EXPECT_EQ(updated.create_time().seconds(), kT0);

  // No-op.
  ASSERT_OK_AND_ASSIGN(
      v1::FieldDefinition same,
      manager_->UpdateField(updated, Mask({"label", "options"}), ""));
  EXPECT_THAT(same, EqualsProto(updated));
  EXPECT_EQ(manager_->version(), 3);

  // Failure modes.
  v1::FieldDefinition dropped = updated;
  dropped.mutable_options(0)->set_id(2);  // removed above
  EXPECT_THAT(
      manager_->UpdateField(dropped, Mask({"options"}), ""),
      StatusIs(Code::kInvalidArgument, HasSubstr("field.options[0].id")));
  for (const char* path : {"type", "code", "multiple"}) {
    EXPECT_THAT(manager_->UpdateField(updated, Mask({path}), ""),
                StatusIs(Code::kInvalidArgument, HasSubstr("immutable")))
        << path;
  }
  EXPECT_THAT(manager_->UpdateField(updated, Mask({"label"}), created.etag()),
              StatusIs(Code::kAborted));
  v1::FieldDefinition duplicate = updated;
  duplicate.mutable_options(1)->set_value("Small");
  EXPECT_THAT(manager_->UpdateField(duplicate, Mask({"options"}), ""),
              StatusIs(Code::kInvalidArgument, HasSubstr("appears twice")));
  v1::FieldDefinition unknown = updated;
  unknown.set_code("UF_CRM_NOPE");
  EXPECT_THAT(manager_->UpdateField(unknown, Mask({"label"}), ""),
              StatusIs(Code::kNotFound));
  EXPECT_EQ(manager_->version(), 3);
  EXPECT_THAT(Snapshot()->fields.at("UF_CRM_SIZE"), EqualsProto(updated));

  EXPECT_THAT(manager_->DeleteField("UF_CRM_SIZE", created.etag()),
              StatusIs(Code::kAborted));
  ASSERT_OK(manager_->DeleteField("UF_CRM_SIZE", updated.etag()));
  EXPECT_THAT(Snapshot()->fields, IsEmpty());
  EXPECT_EQ(manager_->version(), 4);
  EXPECT_THAT(manager_->DeleteField("UF_CRM_SIZE", ""),
              StatusIs(Code::kNotFound));
}

// --- Departments -------------------------------------------------------------

TEST_F(ConfigManagerTest, DepartmentLifecycle) {
  ASSERT_OK_AND_ASSIGN(
      v1::Department root,
      manager_->CreateDepartment(NewDepartment("Sales", 0, 10, {11, 12, 11})));
  EXPECT_EQ(root.id(), 1);
  EXPECT_THAT(root.member_user_ids(), ElementsAre(11, 12));  // deduplicated
  EXPECT_EQ(root.etag(), EtagForVersion(2));
  ASSERT_OK_AND_ASSIGN(
      v1::Department child,
      manager_->CreateDepartment(NewDepartment("East", root.id(), 20, {21})));
  ASSERT_OK_AND_ASSIGN(
      v1::Department grandchild,
      manager_->CreateDepartment(NewDepartment("Team A", child.id())));
  EXPECT_EQ(child.id(), 2);
  EXPECT_EQ(grandchild.id(), 3);
  EXPECT_EQ(manager_->version(), 4);

  EXPECT_THAT(
      manager_->CreateDepartment(NewDepartment("Orphan", 99)),
      StatusIs(Code::kInvalidArgument, HasSubstr("department.parent_id")));
  EXPECT_THAT(manager_->CreateDepartment(NewDepartment("")),
              StatusIs(Code::kInvalidArgument, HasSubstr("department.name")));
  EXPECT_THAT(manager_->CreateDepartment(NewDepartment("Bad", 0, 0, {5, -5})),
              StatusIs(Code::kInvalidArgument,
                       HasSubstr("department.member_user_ids")));
  EXPECT_THAT(
      manager_->CreateDepartment(NewDepartment("Bad", 0, -1)),
      StatusIs(Code::kInvalidArgument, HasSubstr("department.head_user_id")));
  EXPECT_EQ(manager_->version(), 4);

  // Cycles.
  v1::Department move_root = root;
  move_root.set_parent_id(grandchild.id());
  EXPECT_THAT(manager_->UpdateDepartment(move_root, Mask({"parent_id"}), ""),
              StatusIs(Code::kFailedPrecondition, HasSubstr("cycle")));
  move_root.set_parent_id(root.id());
  EXPECT_THAT(manager_->UpdateDepartment(move_root, Mask({"parent_id"}), ""),
              StatusIs(Code::kFailedPrecondition, HasSubstr("cycle")));
  move_root.set_parent_id(42);
  EXPECT_THAT(manager_->UpdateDepartment(move_root, Mask({"parent_id"}), ""),
              StatusIs(Code::kInvalidArgument, HasSubstr("parent_id")));
  EXPECT_EQ(manager_->version(), 4);

  // Moves, renames, no-ops, stale etags.
  v1::Department move_up = grandchild;
  move_up.set_parent_id(root.id());
  ASSERT_OK_AND_ASSIGN(v1::Department moved,
                       manager_->UpdateDepartment(move_up, Mask({"parent_id"}),
                                                  grandchild.etag()));
  EXPECT_EQ(moved.parent_id(), root.id());
  EXPECT_EQ(moved.etag(), EtagForVersion(5));
  ASSERT_OK_AND_ASSIGN(
      v1::Department same,
      manager_->UpdateDepartment(moved, Mask({"name", "parent_id"}), ""));
  EXPECT_THAT(same, EqualsProto(moved));
  EXPECT_EQ(manager_->version(), 5);
  EXPECT_THAT(
      manager_->UpdateDepartment(moved, Mask({"name"}), grandchild.etag()),
      StatusIs(Code::kAborted));
  v1::Department members = root;
  members.clear_member_user_ids();
  members.add_member_user_ids(13);
  members.add_member_user_ids(13);
  ASSERT_OK_AND_ASSIGN(
      v1::Department with_members,
      manager_->UpdateDepartment(members, Mask({"member_user_ids"}), ""));
  EXPECT_THAT(with_members.member_user_ids(), ElementsAre(13));
  EXPECT_THAT(manager_->UpdateDepartment(members, Mask({"id"}), ""),
              StatusIs(Code::kInvalidArgument, HasSubstr("immutable")));
  v1::Department unknown = root;
  unknown.set_id(77);
  EXPECT_THAT(manager_->UpdateDepartment(unknown, Mask({"name"}), ""),
              StatusIs(Code::kNotFound));

  // Delete: not with subdepartments; assignments to it go with it.
  ASSERT_OK_AND_ASSIGN(v1::Role role, manager_->CreateRole(NamedRole("Staff")));
  ASSERT_OK_AND_ASSIGN(
      v1::RoleAssignment to_grandchild,
      manager_->CreateRoleAssignment(ToDepartment(role.id(), 3, false)));
  ASSERT_OK_AND_ASSIGN(
      v1::RoleAssignment to_root,
      manager_->CreateRoleAssignment(ToDepartment(role.id(), 1, true)));
  ASSERT_OK_AND_ASSIGN(v1::RoleAssignment to_user,
                       manager_->CreateRoleAssignment(ToUser(role.id(), 3)));
  EXPECT_THAT(
      manager_->DeleteDepartment(root.id(), ""),
      StatusIs(Code::kFailedPrecondition, HasSubstr("2 subdepartments")));
  EXPECT_THAT(manager_->DeleteDepartment(3, grandchild.etag()),
              StatusIs(Code::kAborted));
  const int64_t version = manager_->version();
  ASSERT_OK(manager_->DeleteDepartment(3, moved.etag()));
  EXPECT_EQ(manager_->version(), version + 1);
  EXPECT_EQ(Snapshot()->departments.count(3), 0u);
  std::vector<int64_t> remaining;
  for (const auto& [id, assignment] : Snapshot()->assignments)
    remaining.push_back(id);
  EXPECT_THAT(remaining, UnorderedElementsAre(to_root.id(), to_user.id()));
  EXPECT_NE(to_grandchild.id(), to_root.id());
  EXPECT_THAT(manager_->DeleteDepartment(3, ""), StatusIs(Code::kNotFound));
  ConfigData disk;
  ASSERT_NO_FATAL_FAILURE(Reopen(&disk));
  EXPECT_EQ(disk.assignments.count(to_grandchild.id()), 0u);
  EXPECT_EQ(disk.departments.count(3), 0u);
}

// --- Roles and assignments ---------------------------------------------------

TEST_F(ConfigManagerTest, CreateRoleValidatesAgainstTheConfiguration) {
  ASSERT_OK(manager_->CreatePipeline(Named("Wholesale"), "").status());
  v1::Role good = NamedRole("Manager");
  v1::PipelinePermissions* entry = good.add_pipelines();
  *entry = Entry(1, v1::ACCESS_LEVEL_DEPARTMENT);
  (*entry->mutable_stage_levels())["C1:WON"] =
      AllActions(v1::ACCESS_LEVEL_SELF);
  (*entry->mutable_transitions())["C1:NEW"] = ListRule({"C1:WON", "C1:LOSE"});
  entry->set_automation(v1::AUTOMATION_ACCESS_EDIT);
  ASSERT_OK_AND_ASSIGN(v1::Role created, manager_->CreateRole(good));
  EXPECT_EQ(created.id(), 1);
  EXPECT_EQ(created.etag(), EtagForVersion(3));
  EXPECT_THAT(created.pipelines(0), EqualsProto(*entry));

  struct Case {
    const char* what;
    std::function<void(v1::Role*)> edit;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"blank name", [](v1::Role* r) { r->set_name(" "); }, "role.name"},
      {"unknown pipeline",
       [](v1::Role* r) { r->mutable_pipelines(0)->set_pipeline_id(9); },
       "pipeline 9 does not exist"},
      {"pipeline twice",
       [](v1::Role* r) { *r->add_pipelines() = r->pipelines(0); },
       "listed twice"},
      {"stage of another pipeline",
       [](v1::Role* r) {
         (*r->mutable_pipelines(0)->mutable_stage_levels())["NEW"] =
             AllActions(v1::ACCESS_LEVEL_ALL);
       },
       "stage_levels: stage \"NEW\" is not in pipeline 1"},
      {"unknown transition source",
       [](v1::Role* r) {
         (*r->mutable_pipelines(0)->mutable_transitions())["C1:NOPE"] =
             ModeRule(v1::TransitionRule::MODE_ANY);
       },
       "C1:NOPE"},
      {"unknown transition target",
       [](v1::Role* r) {
         (*r->mutable_pipelines(0)->mutable_transitions())["C1:NEW"] =
             ListRule({"WON"});
       },
       "to_stage_ids: stage \"WON\""},
      {"empty list",
       [](v1::Role* r) {
         (*r->mutable_pipelines(0)->mutable_transitions())["C1:NEW"] =
             ListRule({});
       },
       "use BLOCKED"},
      {"targets on BLOCKED",
       [](v1::Role* r) {
         v1::TransitionRule rule = ListRule({"C1:WON"});
         rule.set_mode(v1::TransitionRule::MODE_BLOCKED);
         (*r->mutable_pipelines(0)->mutable_transitions())["C1:NEW"] = rule;
       },
       "only a LIST rule"},
      {"unknown level",
       [](v1::Role* r) {
         r->mutable_pipelines(0)->mutable_levels()->set_write(
             static_cast<v1::AccessLevel>(42));
       },
       "unknown access level 42"},
      {"unknown stage level",
       [](v1::Role* r) {
         (*r->mutable_pipelines(0)->mutable_stage_levels())["C1:WON"].set_read(
             static_cast<v1::AccessLevel>(17));
       },
       "unknown access level 17"},
      {"unknown automation",
       [](v1::Role* r) {
         r->mutable_pipelines(0)->set_automation(
             static_cast<v1::AutomationAccess>(8));
       },
       "automation"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    v1::Role role = good;
    c.edit(&role);
    EXPECT_THAT(manager_->CreateRole(role),
                StatusIs(Code::kInvalidArgument, HasSubstr(c.message)));
  }
  EXPECT_EQ(manager_->version(), 3);
  EXPECT_THAT(Snapshot()->roles, SizeIs(1));
}

TEST_F(ConfigManagerTest, UpdateAndDeleteRole) {
  ASSERT_OK_AND_ASSIGN(v1::Role role,
                       manager_->CreateRole(NamedRole("Viewer")));
  ASSERT_OK_AND_ASSIGN(v1::Role other,
                       manager_->CreateRole(NamedRole("Other")));
  now_ += absl::Minutes(10);
  v1::Role change = role;
  change.set_config(true);
  *change.add_pipelines() = Entry(0, v1::ACCESS_LEVEL_ALL);
  change.set_name("ignored: not in the mask");
  ASSERT_OK_AND_ASSIGN(
      v1::Role updated,
      manager_->UpdateRole(change, Mask({"config", "pipelines"}), role.etag()));
  EXPECT_TRUE(updated.config());
  EXPECT_EQ(updated.name(), "Viewer");
  EXPECT_THAT(updated.pipelines(), SizeIs(1));
  EXPECT_EQ(updated.etag(), EtagForVersion(4));
  EXPECT_EQ(updated.update_time().seconds(), kT0 + 600);
  EXPECT_EQ(updated.create_time().seconds(), kT0);

  ASSERT_OK_AND_ASSIGN(
      v1::Role same,
      manager_->UpdateRole(updated, Mask({"name", "pipelines", "config"}), ""));
  EXPECT_THAT(same, EqualsProto(updated));
  EXPECT_EQ(manager_->version(), 4);
  EXPECT_THAT(manager_->UpdateRole(change, Mask({"config"}), role.etag()),
              StatusIs(Code::kAborted));
  EXPECT_THAT(manager_->UpdateRole(change, Mask({"id"}), ""),
              StatusIs(Code::kInvalidArgument, HasSubstr("immutable")));
  v1::Role unknown = change;
  unknown.set_id(99);
  EXPECT_THAT(manager_->UpdateRole(unknown, Mask({"config"}), ""),
              StatusIs(Code::kNotFound));
  v1::Role invalid = updated;
  invalid.mutable_pipelines(0)->set_pipeline_id(5);
  EXPECT_THAT(manager_->UpdateRole(invalid, Mask({"pipelines"}), ""),
              StatusIs(Code::kInvalidArgument));
  EXPECT_EQ(manager_->version(), 4);

  // Deleting a role removes its assignments, and only its own.
  ASSERT_OK_AND_ASSIGN(v1::Department department,
                       manager_->CreateDepartment(NewDepartment("Sales")));
  ASSERT_OK(manager_->CreateRoleAssignment(ToUser(role.id(), 7)).status());
  ASSERT_OK(
      manager_
          ->CreateRoleAssignment(ToDepartment(role.id(), department.id(), true))
          .status());
  ASSERT_OK_AND_ASSIGN(v1::RoleAssignment kept,
                       manager_->CreateRoleAssignment(ToUser(other.id(), 7)));
  EXPECT_THAT(manager_->DeleteRole(role.id(), role.etag()),
              StatusIs(Code::kAborted));
  const int64_t version = manager_->version();
  ASSERT_OK(manager_->DeleteRole(role.id(), updated.etag()));
  EXPECT_EQ(manager_->version(), version + 1);
  EXPECT_EQ(Snapshot()->roles.count(role.id()), 0u);
  ASSERT_THAT(Snapshot()->assignments, SizeIs(1));
  EXPECT_THAT(Snapshot()->assignments.at(kept.id()), EqualsProto(kept));
  EXPECT_THAT(manager_->DeleteRole(role.id(), ""), StatusIs(Code::kNotFound));
  ConfigData disk;
  ASSERT_NO_FATAL_FAILURE(Reopen(&disk));
  EXPECT_THAT(disk.assignments, SizeIs(1));
  EXPECT_EQ(disk.roles.count(role.id()), 0u);
}

TEST_F(ConfigManagerTest, RoleAssignments) {
  ASSERT_OK_AND_ASSIGN(v1::Role r1, manager_->CreateRole(NamedRole("One")));
  ASSERT_OK_AND_ASSIGN(v1::Role r2, manager_->CreateRole(NamedRole("Two")));
  ASSERT_OK_AND_ASSIGN(v1::Department department,
                       manager_->CreateDepartment(NewDepartment("Sales")));
  now_ += absl::Seconds(30);
  ASSERT_OK_AND_ASSIGN(v1::RoleAssignment a1,
                       manager_->CreateRoleAssignment(ToUser(r1.id(), 42)));
  EXPECT_EQ(a1.id(), 1);
  EXPECT_EQ(a1.create_time().seconds(), kT0 + 30);
  EXPECT_EQ(manager_->version(), 5);
  EXPECT_THAT(manager_->CreateRoleAssignment(ToUser(r1.id(), 42)),
              StatusIs(Code::kAlreadyExists, HasSubstr("id 1")));
  ASSERT_OK_AND_ASSIGN(v1::RoleAssignment a2,
                       manager_->CreateRoleAssignment(ToUser(r2.id(), 42)));
  ASSERT_OK_AND_ASSIGN(v1::RoleAssignment a3,
                       manager_->CreateRoleAssignment(
                           ToDepartment(r1.id(), department.id(), false)));
  ASSERT_OK_AND_ASSIGN(v1::RoleAssignment a4,
                       manager_->CreateRoleAssignment(
                           ToDepartment(r1.id(), department.id(), true)));
  EXPECT_THAT(std::vector<int64_t>({a2.id(), a3.id(), a4.id()}),
              ElementsAre(2, 3, 4));
  EXPECT_THAT(manager_->CreateRoleAssignment(
                  ToDepartment(r1.id(), department.id(), true)),
              StatusIs(Code::kAlreadyExists));

  EXPECT_THAT(manager_->CreateRoleAssignment(ToUser(99, 42)),
              StatusIs(Code::kInvalidArgument, HasSubstr("role 99")));
  EXPECT_THAT(manager_->CreateRoleAssignment(ToDepartment(r1.id(), 99, false)),
              StatusIs(Code::kInvalidArgument, HasSubstr("department 99")));
  v1::RoleAssignment no_subject;
  no_subject.set_role_id(r1.id());
  EXPECT_THAT(manager_->CreateRoleAssignment(no_subject),
              StatusIs(Code::kInvalidArgument, HasSubstr("subject")));
  EXPECT_THAT(manager_->CreateRoleAssignment(ToUser(r1.id(), 0)),
              StatusIs(Code::kInvalidArgument, HasSubstr("user_id")));
  v1::RoleAssignment user_with_sub = ToUser(r1.id(), 43);
  user_with_sub.set_include_subdepartments(true);
  EXPECT_THAT(
      manager_->CreateRoleAssignment(user_with_sub),
      StatusIs(Code::kInvalidArgument, HasSubstr("include_subdepartments")));
  EXPECT_EQ(manager_->version(), 8);

  ASSERT_OK(manager_->DeleteRoleAssignment(a1.id()));
  EXPECT_EQ(manager_->version(), 9);
  EXPECT_EQ(Snapshot()->assignments.count(a1.id()), 0u);
  EXPECT_THAT(manager_->DeleteRoleAssignment(a1.id()),
              StatusIs(Code::kNotFound));
  // Ids are not reused.
  ASSERT_OK_AND_ASSIGN(v1::RoleAssignment again,
                       manager_->CreateRoleAssignment(ToUser(r1.id(), 42)));
  EXPECT_EQ(again.id(), 5);
}

// --- Request ids -------------------------------------------------------------

TEST_F(ConfigManagerTest, RequestIdMakesCreatePipelineIdempotent) {
  ASSERT_OK_AND_ASSIGN(
      v1::Pipeline first,
      manager_->CreatePipeline(Named("Wholesale", 10), "req-1"));
  EXPECT_EQ(first.id(), 1);
  EXPECT_EQ(manager_->version(), 2);

  now_ += absl::Minutes(1);
  ASSERT_OK_AND_ASSIGN(
      v1::Pipeline replay,
      manager_->CreatePipeline(Named("Wholesale", 10), "req-1"));
  EXPECT_THAT(replay, EqualsProto(first));
  EXPECT_EQ(manager_->version(), 2);
  EXPECT_THAT(notified_, ElementsAre(1, 2));
  EXPECT_THAT(Snapshot()->pipelines, SizeIs(2));

  EXPECT_THAT(manager_->CreatePipeline(Named("Wholesale", 11), "req-1"),
              StatusIs(Code::kAlreadyExists, HasSubstr("request_id")));
  EXPECT_THAT(manager_->CreatePipeline(Named("Retail", 10), "req-1"),
              StatusIs(Code::kAlreadyExists, HasSubstr("request_id")));
  EXPECT_EQ(manager_->version(), 2);

  // Another request id, or none, creates anew.
  ASSERT_OK_AND_ASSIGN(
      v1::Pipeline second,
      manager_->CreatePipeline(Named("Wholesale", 10), "req-2"));
  EXPECT_EQ(second.id(), 2);
  ASSERT_OK_AND_ASSIGN(v1::Pipeline third,
                       manager_->CreatePipeline(Named("Wholesale", 10), ""));
  ASSERT_OK_AND_ASSIGN(v1::Pipeline fourth,
                       manager_->CreatePipeline(Named("Wholesale", 10), ""));
  EXPECT_EQ(third.id(), 3);
  EXPECT_EQ(fourth.id(), 4);

  // Request ids are durable.
  ConfigData disk;
  ASSERT_NO_FATAL_FAILURE(Reopen(&disk));
  const int64_t version = manager_->version();
  ASSERT_OK_AND_ASSIGN(
      v1::Pipeline after_restart,
      manager_->CreatePipeline(Named("Wholesale", 10), "req-1"));
  EXPECT_EQ(after_restart.id(), 1);
  EXPECT_EQ(manager_->version(), version);

  // A replay after the pipeline was deleted says so.
  ASSERT_OK(manager_->DeletePipeline(1, ""));
  EXPECT_THAT(manager_->CreatePipeline(Named("Wholesale", 10), "req-1"),
              StatusIs(Code::kFailedPrecondition, HasSubstr("deleted")));
  EXPECT_EQ(manager_->version(), version + 2);
}

// --- Failed changes leave no trace -------------------------------------------

TEST_F(ConfigManagerTest, FailedChangesLeaveSnapshotAndStoreUnchanged) {
  Populated p;
  ASSERT_NO_FATAL_FAILURE(Populate(&p));
  counter_.pipeline_deals[1] = 3;
  counter_.stage_deals[{1, "C1:REVIEW"}] = 4;
  const std::string stale = EtagForVersion(1);

  v1::Pipeline renamed = p.pipeline;
  renamed.set_name("Renamed");
  v1::Stage won_first;
  won_first.set_pipeline_id(1);
  won_first.set_stage_id("C1:WON");
  won_first.set_sort(1);
  v1::Stage review_renamed = p.review;
  review_renamed.set_name("Renamed");
  v1::FieldDefinition option_mix = p.field;
  option_mix.mutable_options(0)->set_id(0);  // a new option: takes an id...
  option_mix.mutable_options(1)->set_id(
      999);  // ...before this unknown one fails
  v1::Department root_under_child = p.root;
  root_under_child.set_parent_id(p.child.id());
  v1::Role bad_role = NamedRole("Bad");
  v1::PipelinePermissions* bad_entry = bad_role.add_pipelines();
  *bad_entry = Entry(1, v1::ACCESS_LEVEL_ALL);
  (*bad_entry->mutable_stage_levels())["NEW"] =
      AllActions(v1::ACCESS_LEVEL_ALL);
  v1::Role role_renamed = p.role;
  role_renamed.set_name("Renamed");
  std::vector<std::string> bad_order =
      IdsOf(Snapshot()->pipelines.at(1).stages);
  std::reverse(bad_order.begin(), bad_order.end());

  struct Attempt {
    const char* what;
    std::function<absl::Status()> run;
    Code code;
  };
  ConfigManager* m = manager_.get();
  const std::vector<Attempt> attempts = {
      {"create pipeline, blank name",
       [&] { return m->CreatePipeline(Named(" "), "").status(); },
       Code::kInvalidArgument},
      {"create pipeline, reused request id",
       [&] { return m->CreatePipeline(Named("Other"), "populate").status(); },
       Code::kAlreadyExists},
      {"update pipeline, stale etag",
       [&] {
         return m->UpdatePipeline(renamed, Mask({"name"}), stale).status();
       },
       Code::kAborted},
      {"delete default pipeline", [&] { return m->DeletePipeline(0, ""); },
       Code::kFailedPrecondition},
      {"delete pipeline with deals", [&] { return m->DeletePipeline(1, ""); },
       Code::kFailedPrecondition},
      {"create stage, order",
       [&] {
         return m
             ->CreateStage(1, NewStage("LATE", 99, v1::STAGE_SEMANTICS_PROCESS))
             .status();
       },
       Code::kFailedPrecondition},
      {"create stage, duplicate",
       [&] {
         return m
             ->CreateStage(1,
                           NewStage("REVIEW", 15, v1::STAGE_SEMANTICS_PROCESS))
             .status();
       },
       Code::kAlreadyExists},
      {"update stage, order",
       [&] { return m->UpdateStage(won_first, Mask({"sort"}), "").status(); },
       Code::kFailedPrecondition},
      {"update stage, stale etag",
       [&] {
         return m->UpdateStage(review_renamed, Mask({"name"}), stale).status();
       },
       Code::kAborted},
      {"delete stage, order", [&] { return m->DeleteStage(1, "C1:WON", ""); },
       Code::kFailedPrecondition},
      {"delete stage with deals",
       [&] { return m->DeleteStage(1, "C1:REVIEW", ""); },
       Code::kFailedPrecondition},
      {"reorder stages, order",
       [&] { return m->ReorderStages(1, bad_order).status(); },
       Code::kFailedPrecondition},
      {"create field, duplicate",
       [&] { return m->CreateField(p.field).status(); }, Code::kAlreadyExists},
      {"update field, unknown option id",
       [&] {
         return m->UpdateField(option_mix, Mask({"options"}), "").status();
       },
       Code::kInvalidArgument},
      {"update field, stale etag",
       [&] { return m->UpdateField(p.field, Mask({"label"}), stale).status(); },
       Code::kAborted},
      {"delete field, stale etag",
       [&] { return m->DeleteField(p.field.code(), stale); }, Code::kAborted},
      {"create department, missing parent",
       [&] { return m->CreateDepartment(NewDepartment("X", 99)).status(); },
       Code::kInvalidArgument},
      {"update department, cycle",
       [&] {
         return m->UpdateDepartment(root_under_child, Mask({"parent_id"}), "")
             .status();
       },
       Code::kFailedPrecondition},
      {"delete department with children",
       [&] { return m->DeleteDepartment(p.root.id(), ""); },
       Code::kFailedPrecondition},
      {"delete department, stale etag",
       [&] { return m->DeleteDepartment(p.child.id(), stale); },
       Code::kAborted},
      {"create role, foreign stage",
       [&] { return m->CreateRole(bad_role).status(); },
       Code::kInvalidArgument},
      {"update role, stale etag",
       [&] {
         return m->UpdateRole(role_renamed, Mask({"name"}), stale).status();
       },
       Code::kAborted},
      {"delete role, stale etag",
       [&] { return m->DeleteRole(p.role.id(), stale); }, Code::kAborted},
      {"create assignment, duplicate",
       [&] {
         return m->CreateRoleAssignment(ToUser(p.role.id(), 42)).status();
       },
       Code::kAlreadyExists},
      {"delete assignment, unknown",
       [&] { return m->DeleteRoleAssignment(99); }, Code::kNotFound},
  };

  const std::shared_ptr<const ConfigData> before = Snapshot();
  const std::vector<int64_t> notified_before = notified_;
  for (const Attempt& attempt : attempts) {
    SCOPED_TRACE(attempt.what);
    EXPECT_THAT(attempt.run(), StatusIs(attempt.code));
    // Not even a copy got published.
    EXPECT_EQ(Snapshot().get(), before.get());
  }
  EXPECT_EQ(notified_, notified_before);

  // The same with a deals service that cannot answer.
  UnavailableDealCounter unavailable;
  manager_.reset();
  ASSERT_NO_FATAL_FAILURE(StartManager(unavailable));
  counter_.pipeline_deals.clear();
  counter_.stage_deals.clear();
  EXPECT_THAT(manager_->DeletePipeline(1, ""), StatusIs(Code::kUnavailable));
  EXPECT_THAT(manager_->DeleteStage(1, "C1:REVIEW", ""),
              StatusIs(Code::kUnavailable));
  EXPECT_TRUE(SameConfig(*Snapshot(), *before));

  // What is on disk is exactly what was there before: no half writes.
  ConfigData disk;
  ASSERT_NO_FATAL_FAILURE(Reopen(&disk));
  EXPECT_TRUE(SameConfig(disk, *before));
  EXPECT_TRUE(SameConfig(*Snapshot(), *before));
  EXPECT_EQ(notified_, notified_before);
  // Counters were not advanced by the failed option-id assignment either.
  ASSERT_OK_AND_ASSIGN(v1::FieldDefinition other,
                       manager_->CreateField(EnumField("UF_CRM_OTHER", {"x"})));
  EXPECT_EQ(other.options(0).id(), before->counters.next_option_id());
}

// --- Versions and notifications ----------------------------------------------

TEST_F(ConfigManagerTest, EveryChangeBumpsTheVersionAndIsNotified) {
  std::vector<int64_t> expected = {1};
  auto expect_bump = [&](const absl::Status& status, const char* what) {
    SCOPED_TRACE(what);
    ASSERT_OK(status);
    expected.push_back(expected.back() + 1);
    EXPECT_EQ(manager_->version(), expected.back());
    EXPECT_EQ(notified_, expected);
  };
  auto expect_same = [&](const absl::Status& status, Code code,
                         const char* what) {
    SCOPED_TRACE(what);
    EXPECT_EQ(status.code(), code) << status;
    EXPECT_EQ(manager_->version(), expected.back());
    EXPECT_EQ(notified_, expected);
  };
  expect_bump(manager_->CreatePipeline(Named("Wholesale"), "r").status(),
              "create pipeline");
  expect_same(manager_->CreatePipeline(Named("Wholesale"), "r").status(),
              Code::kOk, "replay");
  v1::Pipeline rename;
  rename.set_id(1);
  rename.set_name("Renamed");
  expect_bump(manager_->UpdatePipeline(rename, Mask({"name"}), "").status(),
              "update pipeline");
  expect_same(manager_->UpdatePipeline(rename, Mask({"name"}), "").status(),
              Code::kOk, "no-op");
  expect_same(
      manager_->UpdatePipeline(rename, Mask({"name"}), "\"1\"").status(),
      Code::kAborted, "stale");
  expect_bump(
      manager_->CreateStage(1, NewStage("X", 1, v1::STAGE_SEMANTICS_PROCESS))
          .status(),
      "create stage");
  v1::Stage stage;
  stage.set_pipeline_id(1);
  stage.set_stage_id("C1:X");
  stage.set_name("Renamed");
  expect_bump(manager_->UpdateStage(stage, Mask({"name"}), "").status(),
              "update stage");
  expect_bump(manager_
                  ->ReorderStages(1, {"C1:NEW", "C1:X", "C1:PREPARATION",
                                      "C1:PREPAYMENT_INVOICE", "C1:EXECUTING",
                                      "C1:FINAL_INVOICE", "C1:WON", "C1:LOSE",
                                      "C1:APOLOGY"})
                  .status(),
              "reorder");
  expect_bump(manager_->CreateField(EnumField("UF_CRM_A", {"a"})).status(),
              "create field");
  v1::FieldDefinition field;
  field.set_code("UF_CRM_A");
  field.set_label("New label");
  expect_bump(manager_->UpdateField(field, Mask({"label"}), "").status(),
              "update field");
  expect_bump(manager_->CreateDepartment(NewDepartment("D")).status(),
              "create department");
  v1::Department department = NewDepartment("D2");
  department.set_id(1);
  expect_bump(
      manager_->UpdateDepartment(department, Mask({"name"}), "").status(),
      "update department");
  expect_bump(manager_->CreateRole(NamedRole("R")).status(), "create role");
  v1::Role role = NamedRole("R2");
  role.set_id(1);
  expect_bump(manager_->UpdateRole(role, Mask({"name"}), "").status(),
              "update role");
  expect_bump(manager_->CreateRoleAssignment(ToUser(1, 5)).status(),
              "create assignment");
  expect_bump(manager_->DeleteRoleAssignment(1), "delete assignment");
  expect_bump(manager_->DeleteRole(1, ""), "delete role");
  expect_bump(manager_->DeleteDepartment(1, ""), "delete department");
  expect_bump(manager_->DeleteField("UF_CRM_A", ""), "delete field");
  // Deleting a stage or a pipeline takes two versions: the `deleting`
  // mark deals honours before it counts, then the delete.
  // Deleting a stage or a pipeline takes two versions: the `deleting` mark
  // deals honours before it counts, then the delete.
  auto expect_two_bumps = [&](const absl::Status& status, const char* what) {
    SCOPED_TRACE(what);
    ASSERT_OK(status);
    expected.push_back(expected.back() + 1);
    expected.push_back(expected.back() + 1);
    EXPECT_EQ(manager_->version(), expected.back());
    EXPECT_EQ(notified_, expected);
  };
  expect_two_bumps(manager_->DeleteStage(1, "C1:X", ""), "delete stage");
  expect_two_bumps(manager_->DeletePipeline(1, ""), "delete pipeline");
  EXPECT_EQ(manager_->version(), 21);
  // Listeners run after the new snapshot is published.
  EXPECT_EQ(version_at_notify_,
            std::vector<int64_t>(notified_.begin() + 1, notified_.end()));
}

// --- Durability --------------------------------------------------------------

TEST_F(ConfigManagerTest, EverythingSurvivesReopen) {
  Populated p;
  ASSERT_NO_FATAL_FAILURE(Populate(&p));
  v1::Pipeline rename0;
  rename0.set_id(0);
  rename0.set_name("Main");
  ASSERT_OK(manager_->UpdatePipeline(rename0, Mask({"name"}), "").status());
  ASSERT_OK(manager_->DeleteStage(0, "APOLOGY", ""));
  const std::shared_ptr<const ConfigData> before = Snapshot();
  EXPECT_THAT(before->pipelines, SizeIs(2));
  EXPECT_THAT(before->fields, SizeIs(1));
  EXPECT_THAT(before->departments, SizeIs(2));
  EXPECT_THAT(before->roles, SizeIs(1));
  EXPECT_THAT(before->assignments, SizeIs(2));

  ConfigData disk;
  ASSERT_NO_FATAL_FAILURE(Reopen(&disk));
  EXPECT_TRUE(SameConfig(disk, *before));
  EXPECT_TRUE(SameConfig(*Snapshot(), *before));
  EXPECT_EQ(manager_->version(), before->counters.version());
  ASSERT_OK_AND_ASSIGN(v1::Pipeline p1, manager_->GetPipeline(1));
  EXPECT_EQ(p1.name(), "Wholesale");
  EXPECT_EQ(p1.stages(1).stage_id(), "C1:REVIEW");

  // Counters continue where they were.
  ASSERT_OK_AND_ASSIGN(v1::Pipeline p2,
                       manager_->CreatePipeline(Named("After"), ""));
  EXPECT_EQ(p2.id(), 2);
  ASSERT_OK_AND_ASSIGN(v1::Department d,
                       manager_->CreateDepartment(NewDepartment("After")));
  EXPECT_EQ(d.id(), p.child.id() + 1);
  ASSERT_OK_AND_ASSIGN(v1::Role r, manager_->CreateRole(NamedRole("After")));
  EXPECT_EQ(r.id(), p.role.id() + 1);
  ASSERT_OK_AND_ASSIGN(v1::RoleAssignment a,
                       manager_->CreateRoleAssignment(ToUser(r.id(), 1)));
  EXPECT_EQ(a.id(), p.by_department.id() + 1);
  ASSERT_OK_AND_ASSIGN(v1::FieldDefinition f,
                       manager_->CreateField(EnumField("UF_CRM_B", {"b"})));
  EXPECT_EQ(f.options(0).id(), p.field.options(2).id() + 1);
  EXPECT_EQ(manager_->version(), before->counters.version() + 5);

  // And the later changes survive a second reopen.
  const std::shared_ptr<const ConfigData> after = Snapshot();
  ASSERT_NO_FATAL_FAILURE(Reopen(&disk));
  EXPECT_TRUE(SameConfig(disk, *after));
  EXPECT_THAT(disk.pipelines.at(1).stages, Not(IsEmpty()));
}

}  // namespace
}  // namespace crm::pipeline_config
