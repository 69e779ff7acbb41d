// Durability of crm-pipeline-config under SIGKILL: every write the server
// acknowledged is there after a restart on the same data dir, with the same
// ids, and the config version does not go backwards.
#include <algorithm>
#include <atomic>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

#include "tests/e2e/pipeline_config_fixture.h"

namespace crm::testing {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using PipelinesStub = v1::PipelinesService::Stub;
using FieldsStub = v1::DealFieldsService::Stub;
using AccessStub = v1::AccessService::Stub;

::testing::AssertionResult SameMessage(
    const google::protobuf::Message& expected,
    const google::protobuf::Message& actual) {
  std::string diff;
  MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&diff);
  if (differencer.Compare(expected, actual))
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << expected.GetTypeName() << " differs:\n"
         << diff;
}

v1::Pipeline WithoutStages(v1::Pipeline pipeline) {
  pipeline.clear_stages();
  return pipeline;
}

// Runs `checks` with a client on `channel`; the channel is closed when it
// returns (ASSERT_* inside return from the checks only).
void CheckAfterRestart(std::shared_ptr<grpc::Channel> channel,
                       const std::function<void(const Client&)>& checks) {
  Client client(channel);
  channel.reset();
  checks(client);
}

class DurabilityTest : public PipelineConfigTest,
                       public ::testing::WithParamInterface<bool> {
 protected:
  std::vector<std::string> SyncArgs() const {
    return {GetParam() ? "--sync_writes=true" : "--sync_writes=false"};
  }
};

INSTANTIATE_TEST_SUITE_P(SyncWrites, DurabilityTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& param) {
                           return param.param ? "Sync" : "NoSync";
                         });

// A scripted series of writes touching every resource kind, SIGKILL right
// after the last acknowledgement, restart, compare.
TEST_P(DurabilityTest, AcknowledgedWritesSurviveSigkill) {
  auto server = StartServer(SyncArgs());
  ASSERT_NE(server, nullptr);
  int64_t max_etag_version = 0;
  auto saw = [&](const std::string& etag) {
    EXPECT_GT(EtagVersion(etag), 0) << "etag " << etag;
    max_etag_version = std::max(max_etag_version, EtagVersion(etag));
  };

  v1::Pipeline eu;
  v1::Pipeline americas;
  v1::Stage qualify;
  v1::Stage renamed_new;
  std::string apology_id;
  v1::FieldDefinition source;
  v1::FieldDefinition budget;
  v1::Department hq;
  v1::Department sales;
  v1::Role role;
  std::vector<v1::RoleAssignment> assignments;
  int64_t version_before_last = 0;
  {
    Client client(server->NewChannel());
    v1::CreatePipelineRequest create_eu;
    create_eu.mutable_pipeline()->set_name("Sales EU");
    create_eu.mutable_pipeline()->set_sort(100);
    create_eu.set_request_id("e2e-create-eu");
    ASSERT_TRUE(
        IsOk(client.Call(&PipelinesStub::CreatePipeline, create_eu, &eu)));
    ASSERT_GT(eu.id(), 0);
    ASSERT_EQ(eu.stages_size(), 8);
    saw(eu.etag());

    v1::CreatePipelineRequest create_us;
    create_us.mutable_pipeline()->set_name("Sales US");
    create_us.set_request_id("e2e-create-us");
    v1::Pipeline us;
    ASSERT_TRUE(
        IsOk(client.Call(&PipelinesStub::CreatePipeline, create_us, &us)));
    ASSERT_NE(us.id(), eu.id());
    saw(us.etag());

    v1::CreateStageRequest create_stage;
    create_stage.set_pipeline_id(eu.id());
    create_stage.mutable_stage()->set_stage_id("QUALIFY");
    create_stage.mutable_stage()->set_name("Qualified");
    create_stage.mutable_stage()->set_sort(15);
    create_stage.mutable_stage()->set_semantics(v1::STAGE_SEMANTICS_PROCESS);
    create_stage.mutable_stage()->set_rotting_days(7);
    ASSERT_TRUE(
        IsOk(client.Call(&PipelinesStub::CreateStage, create_stage, &qualify)));
    EXPECT_EQ(qualify.stage_id(), absl::StrCat("C", eu.id(), ":QUALIFY"));
    saw(qualify.etag());

    v1::UpdateStageRequest update_stage;
    update_stage.mutable_stage()->set_pipeline_id(eu.id());
    update_stage.mutable_stage()->set_stage_id(
        absl::StrCat("C", eu.id(), ":NEW"));
    update_stage.mutable_stage()->set_name("Fresh lead");
    update_stage.mutable_update_mask()->add_paths("name");
    ASSERT_TRUE(IsOk(
        client.Call(&PipelinesStub::UpdateStage, update_stage, &renamed_new)));
    EXPECT_EQ(renamed_new.name(), "Fresh lead");
    saw(renamed_new.etag());

    apology_id = absl::StrCat("C", eu.id(), ":APOLOGY");
    v1::DeleteStageRequest delete_stage;
    delete_stage.set_pipeline_id(eu.id());
    delete_stage.set_stage_id(apology_id);
    google::protobuf::Empty empty;
    ASSERT_TRUE(
        IsOk(client.Call(&PipelinesStub::DeleteStage, delete_stage, &empty)));

    v1::UpdatePipelineRequest update_us;
    update_us.mutable_pipeline()->set_id(us.id());
    update_us.mutable_pipeline()->set_name("Sales Americas");
    update_us.mutable_pipeline()->set_sort(5);
    update_us.mutable_update_mask()->add_paths("name");
    update_us.mutable_update_mask()->add_paths("sort");
    update_us.set_etag(us.etag());
    ASSERT_TRUE(IsOk(
        client.Call(&PipelinesStub::UpdatePipeline, update_us, &americas)));
    EXPECT_EQ(americas.name(), "Sales Americas");
    saw(americas.etag());

    v1::CreateFieldRequest create_source;
    create_source.mutable_field()->set_code("UF_CRM_E2E_SOURCE");
    create_source.mutable_field()->set_type(v1::FIELD_TYPE_ENUMERATION);
    create_source.mutable_field()->set_label("Source");
    auto* web = create_source.mutable_field()->add_options();
    web->set_value("Web");
    web->set_sort(10);
    auto* phone = create_source.mutable_field()->add_options();
    phone->set_value("Phone");
    phone->set_sort(20);
    phone->set_is_default(true);
    ASSERT_TRUE(
        IsOk(client.Call(&FieldsStub::CreateField, create_source, &source)));
    ASSERT_EQ(source.options_size(), 2);
    EXPECT_GT(source.options(0).id(), 0);
    saw(source.etag());

    v1::CreateFieldRequest create_budget;
    create_budget.mutable_field()->set_code("UF_CRM_E2E_BUDGET");
    create_budget.mutable_field()->set_type(v1::FIELD_TYPE_MONEY);
    create_budget.mutable_field()->set_label("Budget");
    create_budget.mutable_field()->set_mandatory(true);
    v1::FieldDefinition created_budget;
    ASSERT_TRUE(IsOk(
        client.Call(&FieldsStub::CreateField, create_budget, &created_budget)));

    v1::UpdateFieldRequest update_budget;
    update_budget.mutable_field()->set_code("UF_CRM_E2E_BUDGET");
    update_budget.mutable_field()->set_label("Budget (EUR)");
    update_budget.mutable_update_mask()->add_paths("label");
    ASSERT_TRUE(
        IsOk(client.Call(&FieldsStub::UpdateField, update_budget, &budget)));
    EXPECT_EQ(budget.label(), "Budget (EUR)");
    saw(budget.etag());

    v1::CreateFieldRequest create_temp;
    create_temp.mutable_field()->set_code("UF_CRM_E2E_TEMP");
    create_temp.mutable_field()->set_type(v1::FIELD_TYPE_STRING);
    create_temp.mutable_field()->set_label("Temporary");
    v1::FieldDefinition temp;
    ASSERT_TRUE(
        IsOk(client.Call(&FieldsStub::CreateField, create_temp, &temp)));
    v1::DeleteFieldRequest delete_temp;
    delete_temp.set_code("UF_CRM_E2E_TEMP");
    delete_temp.set_etag(temp.etag());
    ASSERT_TRUE(
        IsOk(client.Call(&FieldsStub::DeleteField, delete_temp, &empty)));

    v1::CreateDepartmentRequest create_hq;
    create_hq.mutable_department()->set_name("Headquarters");
    create_hq.mutable_department()->set_head_user_id(1);
    ASSERT_TRUE(
        IsOk(client.Call(&AccessStub::CreateDepartment, create_hq, &hq)));
    saw(hq.etag());
    v1::CreateDepartmentRequest create_sales;
    create_sales.mutable_department()->set_name("Sales");
    create_sales.mutable_department()->set_parent_id(hq.id());
    create_sales.mutable_department()->set_head_user_id(2);
    create_sales.mutable_department()->add_member_user_ids(2);
    create_sales.mutable_department()->add_member_user_ids(3);
    ASSERT_TRUE(
        IsOk(client.Call(&AccessStub::CreateDepartment, create_sales, &sales)));
    EXPECT_NE(sales.id(), hq.id());
    saw(sales.etag());

    v1::CreateRoleRequest create_role;
    create_role.mutable_role()->set_name("Sales rep");
    auto* permissions = create_role.mutable_role()->add_pipelines();
    permissions->set_pipeline_id(eu.id());
    permissions->mutable_levels()->set_read(v1::ACCESS_LEVEL_DEPARTMENT);
    permissions->mutable_levels()->set_add(v1::ACCESS_LEVEL_SELF);
    permissions->mutable_levels()->set_write(v1::ACCESS_LEVEL_SELF);
    (*permissions->mutable_stage_levels())[qualify.stage_id()].set_read(
        v1::ACCESS_LEVEL_ALL);
    v1::Role created_role;
    ASSERT_TRUE(
        IsOk(client.Call(&AccessStub::CreateRole, create_role, &created_role)));

    v1::UpdateRoleRequest update_role;
    update_role.mutable_role()->set_id(created_role.id());
    update_role.mutable_role()->set_name("Sales representative");
    update_role.mutable_update_mask()->add_paths("name");
    ASSERT_TRUE(IsOk(client.Call(&AccessStub::UpdateRole, update_role, &role)));
    saw(role.etag());

    v1::CreateRoleAssignmentRequest to_user;
    to_user.mutable_assignment()->set_role_id(role.id());
    to_user.mutable_assignment()->set_user_id(2);
    v1::RoleAssignment assignment;
    ASSERT_TRUE(IsOk(
        client.Call(&AccessStub::CreateRoleAssignment, to_user, &assignment)));
    assignments.push_back(assignment);
    v1::CreateRoleAssignmentRequest to_department;
    to_department.mutable_assignment()->set_role_id(role.id());
    to_department.mutable_assignment()->set_department_id(sales.id());
    to_department.mutable_assignment()->set_include_subdepartments(true);
    ASSERT_TRUE(IsOk(client.Call(&AccessStub::CreateRoleAssignment,
                                 to_department, &assignment)));
    assignments.push_back(assignment);

    ASSERT_TRUE(IsOk(client.ConfigVersion(&version_before_last)));
    EXPECT_GE(version_before_last, max_etag_version);
    // The last write; SIGKILL follows its acknowledgement at once.
    v1::CreateRoleAssignmentRequest last;
    last.mutable_assignment()->set_role_id(role.id());
    last.mutable_assignment()->set_user_id(3);
    ASSERT_TRUE(IsOk(
        client.Call(&AccessStub::CreateRoleAssignment, last, &assignment)));
    absl::StatusOr<ExitInfo> killed = server->process().Kill();
    ASSERT_TRUE(killed.ok()) << killed.status();
    EXPECT_TRUE(killed->signaled) << killed->ToString();
    assignments.push_back(assignment);
  }

  server = StartServer(SyncArgs());
  ASSERT_NE(server, nullptr);
  // Checked in a scope: the client's connection closes before the SIGTERM
  // at the end (see kShutdownTimeout).
  CheckAfterRestart(server->NewChannel(), [&](const Client& client) {
    int64_t version = 0;
    ASSERT_TRUE(IsOk(client.ConfigVersion(&version)));
    EXPECT_GT(version, version_before_last)
        << "the config version went backwards";
    EXPECT_GE(version, max_etag_version);

    // Pipelines: exactly 0, EU and Americas.
    std::vector<v1::Pipeline> pipelines;
    ASSERT_TRUE(
        IsOk(client.ListAllPipelines(/*include_stages=*/false, &pipelines)));
    std::vector<int64_t> ids;
    for (const auto& p : pipelines) ids.push_back(p.id());
    std::sort(ids.begin(), ids.end());
    EXPECT_EQ(ids, (std::vector<int64_t>{0, std::min(eu.id(), americas.id()),
                                         std::max(eu.id(), americas.id())}));

    v1::GetPipelineRequest get;
    get.set_pipeline_id(americas.id());
    v1::Pipeline got;
    ASSERT_TRUE(IsOk(client.Call(&PipelinesStub::GetPipeline, get, &got)));
    EXPECT_TRUE(SameMessage(americas, got));

    get.set_pipeline_id(eu.id());
    ASSERT_TRUE(IsOk(client.Call(&PipelinesStub::GetPipeline, get, &got)));
    EXPECT_TRUE(SameMessage(WithoutStages(eu), WithoutStages(got)));
    // Expected stages: the defaults, NEW renamed, QUALIFY added, APOLOGY gone.
    std::map<std::string, v1::Stage> expected_stages;
    for (const auto& stage : eu.stages())
      expected_stages[stage.stage_id()] = stage;
    expected_stages[renamed_new.stage_id()] = renamed_new;
    expected_stages[qualify.stage_id()] = qualify;
    ASSERT_EQ(expected_stages.erase(apology_id), 1u);
    ASSERT_EQ(got.stages_size(), static_cast<int>(expected_stages.size()));
    for (int i = 0; i < got.stages_size(); ++i) {
      const v1::Stage& stage = got.stages(i);
      ASSERT_EQ(expected_stages.count(stage.stage_id()), 1u)
          << stage.stage_id();
      EXPECT_TRUE(SameMessage(expected_stages[stage.stage_id()], stage));
      if (i > 0) {
        EXPECT_LE(got.stages(i - 1).sort(), stage.sort())
            << "stages out of order";
      }
    }

    v1::GetFieldRequest get_field;
    v1::FieldDefinition field;
    get_field.set_code(source.code());
    ASSERT_TRUE(IsOk(client.Call(&FieldsStub::GetField, get_field, &field)));
    EXPECT_TRUE(SameMessage(source, field));
    get_field.set_code(budget.code());
    ASSERT_TRUE(IsOk(client.Call(&FieldsStub::GetField, get_field, &field)));
    EXPECT_TRUE(SameMessage(budget, field));
    get_field.set_code("UF_CRM_E2E_TEMP");
    EXPECT_EQ(
        client.Call(&FieldsStub::GetField, get_field, &field).error_code(),
        grpc::StatusCode::NOT_FOUND)
        << "a deleted field came back";

    for (const v1::Department& department : {hq, sales}) {
      v1::GetDepartmentRequest get_department;
      get_department.set_department_id(department.id());
      v1::Department got_department;
      ASSERT_TRUE(IsOk(client.Call(&AccessStub::GetDepartment, get_department,
                                   &got_department)));
      EXPECT_TRUE(SameMessage(department, got_department));
    }

    v1::GetRoleRequest get_role;
    get_role.set_role_id(role.id());
    v1::Role got_role;
    ASSERT_TRUE(IsOk(client.Call(&AccessStub::GetRole, get_role, &got_role)));
    EXPECT_TRUE(SameMessage(role, got_role));

    std::vector<v1::RoleAssignment> got_assignments;
    ASSERT_TRUE(IsOk(client.ListAllAssignments(&got_assignments)));
    ASSERT_EQ(got_assignments.size(), assignments.size());
    auto by_id = [](const v1::RoleAssignment& a, const v1::RoleAssignment& b) {
      return a.id() < b.id();
    };
    std::sort(got_assignments.begin(), got_assignments.end(), by_id);
    std::sort(assignments.begin(), assignments.end(), by_id);
    for (size_t i = 0; i < assignments.size(); ++i) {
      EXPECT_TRUE(SameMessage(assignments[i], got_assignments[i]));
    }

    // The request id still deduplicates after the crash: the same payload
    // returns the same pipeline and writes nothing; another payload is refused.
    v1::CreatePipelineRequest replay;
    replay.mutable_pipeline()->set_name("Sales EU");
    replay.mutable_pipeline()->set_sort(100);
    replay.set_request_id("e2e-create-eu");
    v1::Pipeline replayed;
    ASSERT_TRUE(
        IsOk(client.Call(&PipelinesStub::CreatePipeline, replay, &replayed)));
    EXPECT_EQ(replayed.id(), eu.id());
    int64_t version_after_replay = 0;
    ASSERT_TRUE(IsOk(client.ConfigVersion(&version_after_replay)));
    EXPECT_EQ(version_after_replay, version);
    replay.mutable_pipeline()->set_name("Sales EU (other)");
    EXPECT_EQ(client.Call(&PipelinesStub::CreatePipeline, replay, &replayed)
                  .error_code(),
              grpc::StatusCode::ALREADY_EXISTS);

    // Id counters survived too: new resources get fresh ids.
    v1::CreatePipelineRequest fresh;
    fresh.mutable_pipeline()->set_name("After restart");
    v1::Pipeline fresh_pipeline;
    ASSERT_TRUE(IsOk(
        client.Call(&PipelinesStub::CreatePipeline, fresh, &fresh_pipeline)));
    EXPECT_GT(fresh_pipeline.id(), std::max(eu.id(), americas.id()));
    EXPECT_GT(EtagVersion(fresh_pipeline.etag()), version);
    v1::CreateDepartmentRequest fresh_department;
    fresh_department.mutable_department()->set_name("After restart");
    v1::Department department;
    ASSERT_TRUE(IsOk(client.Call(&AccessStub::CreateDepartment,
                                 fresh_department, &department)));
    EXPECT_GT(department.id(), std::max(hq.id(), sales.id()));
  });

  absl::StatusOr<ExitInfo> exit = server->Terminate(SIGTERM, kShutdownTimeout);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->Success()) << exit->ToString();
}

// What one writer thread got acknowledged.
struct WriterLog {
  std::vector<v1::Pipeline> pipelines;
  std::vector<v1::FieldDefinition> fields;
  int64_t max_version = 0;
  // The first failure before the kill (there should be none).
  std::string early_error;
};

// Four writers create pipelines (with request ids) and fields as fast as they
// can; the server is SIGKILLed while they run.
TEST_P(DurabilityTest, ConcurrentAcknowledgedWritesSurviveSigkill) {
  constexpr int kWriters = 4;
  // Below the server's limits (1000 pipelines, 500 fields) in total.
  constexpr int kPipelinesPerWriter = 200;
  constexpr int kFieldsPerWriter = 110;
  constexpr int kKillAfterAcks =
      (kPipelinesPerWriter + kFieldsPerWriter) * kWriters * 3 / 4;
  constexpr absl::Duration kKillAfter = absl::Seconds(1);

  auto server = StartServer(SyncArgs());
  ASSERT_NE(server, nullptr);

  std::atomic<bool> killed{false};
  std::atomic<int> acks{0};
  std::atomic<int> running{kWriters};
  std::vector<WriterLog> logs(kWriters);
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w, channel = server->NewChannel()] {
      Client client(channel);
      WriterLog& log = logs[w];
      int pipelines = 0;
      int fields = 0;
      while (pipelines < kPipelinesPerWriter || fields < kFieldsPerWriter) {
        grpc::Status status;
        const bool pipeline =
            fields >= kFieldsPerWriter ||
            (pipelines < kPipelinesPerWriter && pipelines <= fields);
        if (pipeline) {
          v1::CreatePipelineRequest request;
          request.mutable_pipeline()->set_name(
              absl::StrCat("Writer ", w, " pipeline ", pipelines));
          request.set_request_id(absl::StrCat("writer-", w, "-", pipelines));
          v1::Pipeline created;
          status =
              client.Call(&PipelinesStub::CreatePipeline, request, &created);
          if (status.ok()) {
            log.max_version =
                std::max(log.max_version, EtagVersion(created.etag()));
            log.pipelines.push_back(std::move(created));
            ++pipelines;
          }
        } else {
          v1::CreateFieldRequest request;
          request.mutable_field()->set_code(
              absl::StrCat("UF_CRM_W", w, "_", fields));
          request.mutable_field()->set_type(v1::FIELD_TYPE_STRING);
          request.mutable_field()->set_label(
              absl::StrCat("Writer ", w, " field ", fields));
          v1::FieldDefinition created;
          status = client.Call(&FieldsStub::CreateField, request, &created);
          if (status.ok()) {
            log.max_version =
                std::max(log.max_version, EtagVersion(created.etag()));
            log.fields.push_back(std::move(created));
            ++fields;
          }
        }
        if (status.ok()) {
          acks.fetch_add(1);
          continue;
        }
        if (!killed.load() && log.early_error.empty()) {
          log.early_error =
              absl::StrCat(status.error_code(), ": ", status.error_message());
        }
        break;
      }
      running.fetch_sub(1);
    });
  }
  const absl::Time start = absl::Now();
  while (absl::Now() - start < kKillAfter && acks.load() < kKillAfterAcks &&
         running.load() > 0) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  const int running_at_kill = running.load();
  killed.store(true);
  absl::StatusOr<ExitInfo> exit = server->process().Kill();
  for (auto& writer : writers) writer.join();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->signaled) << exit->ToString();
  EXPECT_GT(running_at_kill, 0)
      << "the writers finished before the kill; nothing was tested";

  std::map<int64_t, const v1::Pipeline*> acked_pipelines;
  std::map<std::string, const v1::FieldDefinition*> acked_fields;
  int64_t max_version = 0;
  for (int w = 0; w < kWriters; ++w) {
    EXPECT_EQ(logs[w].early_error, "")
        << "writer " << w << " failed before the kill";
    for (const auto& p : logs[w].pipelines) {
      EXPECT_TRUE(acked_pipelines.emplace(p.id(), &p).second)
          << "pipeline id " << p.id() << " given twice";
    }
    for (const auto& f : logs[w].fields) acked_fields.emplace(f.code(), &f);
    max_version = std::max(max_version, logs[w].max_version);
  }
  ASSERT_GT(acked_pipelines.size(), 0u);
  ASSERT_GT(acked_fields.size(), 0u);
  std::cout << "acknowledged before SIGKILL: " << acked_pipelines.size()
            << " pipelines, " << acked_fields.size() << " fields; "
            << running_at_kill << " writers running at the kill\n";

  server = StartServer(SyncArgs());
  ASSERT_NE(server, nullptr);
  CheckAfterRestart(server->NewChannel(), [&](const Client& client) {
    int64_t version = 0;
    ASSERT_TRUE(IsOk(client.ConfigVersion(&version)));
    EXPECT_GE(version, max_version) << "the config version went backwards";

    std::vector<v1::Pipeline> pipelines;
    ASSERT_TRUE(
        IsOk(client.ListAllPipelines(/*include_stages=*/true, &pipelines)));
    std::map<int64_t, const v1::Pipeline*> stored_pipelines;
    for (const auto& p : pipelines) {
      EXPECT_TRUE(stored_pipelines.emplace(p.id(), &p).second)
          << "pipeline " << p.id() << " twice";
    }
    int missing = 0;
    for (const auto& [id, acked] : acked_pipelines) {
      auto it = stored_pipelines.find(id);
      if (it == stored_pipelines.end()) {
        ++missing;
        ADD_FAILURE() << "acknowledged pipeline " << id << " (" << acked->name()
                      << ") is lost";
        continue;
      }
      EXPECT_TRUE(SameMessage(*acked, *it->second));
    }
    std::vector<v1::FieldDefinition> fields;
    ASSERT_TRUE(IsOk(client.ListAllFields(&fields)));
    std::map<std::string, const v1::FieldDefinition*> stored_fields;
    for (const auto& f : fields) stored_fields.emplace(f.code(), &f);
    for (const auto& [code, acked] : acked_fields) {
      auto it = stored_fields.find(code);
      if (it == stored_fields.end()) {
        ++missing;
        ADD_FAILURE() << "acknowledged field " << code << " is lost";
        continue;
      }
      EXPECT_TRUE(SameMessage(*acked, *it->second));
    }
    EXPECT_EQ(missing, 0);
    // Besides pipeline 0 and the acknowledged writes, only the (at most one per
    // writer) call in flight at the kill may have been committed.
    const size_t extra =
        (stored_pipelines.size() - 1 - acked_pipelines.size()) +
        (stored_fields.size() - acked_fields.size());
    EXPECT_LE(extra, static_cast<size_t>(kWriters));
    EXPECT_EQ(stored_pipelines.count(0), 1u);

    // Request ids were committed with their pipelines: replays return them.
    for (int w = 0; w < kWriters; ++w) {
      if (logs[w].pipelines.empty()) continue;
      const v1::Pipeline& last = logs[w].pipelines.back();
      v1::CreatePipelineRequest replay;
      replay.mutable_pipeline()->set_name(last.name());
      replay.set_request_id(
          absl::StrCat("writer-", w, "-", logs[w].pipelines.size() - 1));
      v1::Pipeline replayed;
      ASSERT_TRUE(
          IsOk(client.Call(&PipelinesStub::CreatePipeline, replay, &replayed)));
      EXPECT_EQ(replayed.id(), last.id());
    }
  });

  absl::StatusOr<ExitInfo> stopped =
      server->Terminate(SIGTERM, kShutdownTimeout);
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_TRUE(stopped->Success()) << stopped->ToString();
}

}  // namespace
}  // namespace crm::testing
