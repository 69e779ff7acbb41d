// In-process gRPC tests of crm.pipelines.v1.PipelinesService: pipelines,
// stages, the stage ordering invariant, the config version and WatchConfig,
// authentication and the CONFIG permission.
#include "services/pipeline_config/api/pipelines_service_impl.h"

#include <atomic>
#include <chrono>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"

#include "common/status/status_matchers.h"
#include "services/pipeline_config/api/service_test_fixture.h"

namespace crm::pipeline_config {
namespace {

using ::crm::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;

constexpr absl::StatusCode kInvalidArgument =
    absl::StatusCode::kInvalidArgument;
constexpr absl::StatusCode kFailedPrecondition =
    absl::StatusCode::kFailedPrecondition;
constexpr absl::StatusCode kNotFound = absl::StatusCode::kNotFound;

const std::vector<std::string> kDefaultStageIds = {
    "NEW",       "PREPARATION",   "PREPAYMENT_INVOICE",
    "EXECUTING", "FINAL_INVOICE", "WON",
    "LOSE",      "APOLOGY"};

std::vector<std::string> Prefixed(const std::string& prefix,
                                  const std::vector<std::string>& ids) {
  std::vector<std::string> result;
  for (const auto& id : ids) result.push_back(prefix + id);
  return result;
}

// Checks the default stage set of `pipeline_id`.
template <typename Stages>
void ExpectDefaultStages(const Stages& stages, int64_t pipeline_id) {
  const std::string prefix =
      pipeline_id == 0 ? std::string() : absl::StrCat("C", pipeline_id, ":");
  const v1::StageSemantics kSemantics[] = {
      v1::STAGE_SEMANTICS_PROCESS, v1::STAGE_SEMANTICS_PROCESS,
      v1::STAGE_SEMANTICS_PROCESS, v1::STAGE_SEMANTICS_PROCESS,
      v1::STAGE_SEMANTICS_PROCESS, v1::STAGE_SEMANTICS_SUCCESS,
      v1::STAGE_SEMANTICS_FAILURE, v1::STAGE_SEMANTICS_FAILURE};
  ASSERT_EQ(static_cast<size_t>(stages.size()), kDefaultStageIds.size());
  int i = 0;
  for (const v1::Stage& stage : stages) {
    SCOPED_TRACE(stage.stage_id());
    EXPECT_EQ(stage.stage_id(), prefix + kDefaultStageIds[i]);
    EXPECT_EQ(stage.pipeline_id(), pipeline_id);
    EXPECT_EQ(stage.sort(), (i + 1) * 10);
    EXPECT_EQ(stage.semantics(), kSemantics[i]);
    EXPECT_FALSE(stage.name().empty());
    EXPECT_THAT(stage.color(), ::testing::MatchesRegex("#[0-9A-Fa-f]{6}"));
    EXPECT_GE(stage.default_probability(), 0);
    EXPECT_LE(stage.default_probability(), 100);
    EXPECT_FALSE(stage.etag().empty());
    EXPECT_TRUE(stage.has_create_time());
    ++i;
  }
}

class PipelinesServiceTest : public PipelineConfigServiceTest {
 protected:
  absl::StatusOr<v1::Pipeline> UpdatePipeline(
      const v1::Pipeline& pipeline, const google::protobuf::FieldMask& mask,
      const std::string& etag = "") {
    v1::UpdatePipelineRequest request;
    *request.mutable_pipeline() = pipeline;
    *request.mutable_update_mask() = mask;
    request.set_etag(etag);
    return Call(&PipelinesStub::UpdatePipeline, request);
  }

  absl::Status DeletePipeline(int64_t pipeline_id,
                              const std::string& etag = "") {
    v1::DeletePipelineRequest request;
    request.set_pipeline_id(pipeline_id);
    request.set_etag(etag);
    return Call(&PipelinesStub::DeletePipeline, request).status();
  }

  absl::StatusOr<v1::Stage> CreateStageFrom(int64_t pipeline_id,
                                            const v1::Stage& stage) {
    v1::CreateStageRequest request;
    request.set_pipeline_id(pipeline_id);
    *request.mutable_stage() = stage;
    return Call(&PipelinesStub::CreateStage, request);
  }

  absl::StatusOr<v1::Stage> GetStage(int64_t pipeline_id,
                                     const std::string& stage_id) {
    v1::GetStageRequest request;
    request.set_pipeline_id(pipeline_id);
    request.set_stage_id(stage_id);
    return Call(&PipelinesStub::GetStage, request);
  }

  absl::StatusOr<v1::Stage> UpdateStage(const v1::Stage& stage,
                                        const google::protobuf::FieldMask& mask,
                                        const std::string& etag = "") {
    v1::UpdateStageRequest request;
    *request.mutable_stage() = stage;
    *request.mutable_update_mask() = mask;
    request.set_etag(etag);
    return Call(&PipelinesStub::UpdateStage, request);
  }

  // Sets the sort of one stage.
  absl::StatusOr<v1::Stage> MoveStage(int64_t pipeline_id,
                                      const std::string& stage_id,
                                      int32_t sort) {
    v1::Stage stage;
    stage.set_pipeline_id(pipeline_id);
    stage.set_stage_id(stage_id);
    stage.set_sort(sort);
    return UpdateStage(stage, Mask({"sort"}));
  }

  absl::Status DeleteStage(int64_t pipeline_id, const std::string& stage_id,
                           const std::string& etag = "") {
    v1::DeleteStageRequest request;
    request.set_pipeline_id(pipeline_id);
    request.set_stage_id(stage_id);
    request.set_etag(etag);
    return Call(&PipelinesStub::DeleteStage, request).status();
  }

  absl::StatusOr<v1::ListStagesResponse> Reorder(
      int64_t pipeline_id, const std::vector<std::string>& ids) {
    v1::ReorderStagesRequest request;
    request.set_pipeline_id(pipeline_id);
    for (const auto& id : ids) request.add_stage_ids(id);
    return Call(&PipelinesStub::ReorderStages, request);
  }

  absl::StatusOr<v1::ListPipelinesResponse> ListPipelines(
      int32_t page_size, const std::string& page_token = "",
      bool include_stages = false) {
    v1::ListPipelinesRequest request;
    request.set_page_size(page_size);
    request.set_page_token(page_token);
    request.set_include_stages(include_stages);
    return Call(&PipelinesStub::ListPipelines, request);
  }

  using Rpc = std::function<absl::Status(const std::string& token)>;
  // Every RPC of the service as a call with a token (the watch reads one
  // message). Requests are valid, so only the identity decides the outcome.
  std::vector<std::pair<std::string, Rpc>> AllRpcs();
  // Runs every mutating RPC as `token` on pipeline `target` (which has a
  // PROCESS stage EXTRA), in an order in which each can succeed.
  std::vector<std::pair<std::string, absl::Status>> MutateEverything(
      const std::string& token, int64_t target);

  // Polls (up to 5 s) until the server has exactly `count` watchers.
  bool WaitForWatchers(size_t count) {
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (notifier().listener_count() != count) {
      if (absl::Now() >= deadline) return false;
      absl::SleepFor(absl::Milliseconds(2));
    }
    return true;
  }

  // A stage that passes validation.
  static v1::Stage NewStage(const std::string& stage_id,
                            v1::StageSemantics semantics, int32_t sort) {
    v1::Stage stage;
    stage.set_stage_id(stage_id);
    stage.set_name("Stage " + stage_id);
    stage.set_semantics(semantics);
    stage.set_sort(sort);
    return stage;
  }
};

// --- Pipeline 0 and the default stage set -----------------------------------

TEST_F(PipelinesServiceTest, DefaultPipelineExistsOnFirstStart) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline pipeline, GetPipeline(0));
  EXPECT_EQ(pipeline.id(), 0);
  EXPECT_TRUE(pipeline.is_default());
  EXPECT_FALSE(pipeline.name().empty());
  EXPECT_FALSE(pipeline.etag().empty());
  EXPECT_TRUE(pipeline.has_create_time());
  ExpectDefaultStages(pipeline.stages(), 0);

  ASSERT_OK_AND_ASSIGN(std::vector<v1::Stage> stages, ListStages(0));
  ExpectDefaultStages(stages, 0);
  EXPECT_GT(ConfigVersion(), 0);
}

TEST_F(PipelinesServiceTest, RestartKeepsConfigurationAndDoesNotReseed) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline created, CreatePipeline("Kept"));
  ASSERT_OK(CreateStage(0, "EXTRA", v1::STAGE_SEMANTICS_PROCESS, 15).status());
  const int64_t version = ConfigVersion();

  Restart();

  EXPECT_EQ(ConfigVersion(), version);
  ASSERT_OK_AND_ASSIGN(v1::Pipeline kept, GetPipeline(created.id()));
  EXPECT_EQ(kept.name(), "Kept");
  EXPECT_THAT(StageIds(0), SizeIs(kDefaultStageIds.size() + 1));
  // Ids keep counting after the restart.
  ASSERT_OK_AND_ASSIGN(v1::Pipeline next, CreatePipeline("Next"));
  EXPECT_GT(next.id(), created.id());
}

TEST_F(PipelinesServiceTest, RequestIdSurvivesRestart) {
  v1::CreatePipelineRequest request;
  request.mutable_pipeline()->set_name("Durable");
  request.set_request_id("durable-1");
  ASSERT_OK_AND_ASSIGN(v1::Pipeline first,
                       Call(&PipelinesStub::CreatePipeline, request));
  Restart();
  ASSERT_OK_AND_ASSIGN(v1::Pipeline replay,
                       Call(&PipelinesStub::CreatePipeline, request));
  EXPECT_EQ(replay.id(), first.id());
  request.mutable_pipeline()->set_name("Other");
  EXPECT_THAT(Call(&PipelinesStub::CreatePipeline, request),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       "request_id: used already for a different request"));
}

// --- CreatePipeline
// -----------------------------------------------------------

TEST_F(PipelinesServiceTest, CreatePipelineSeedsPrefixedDefaultStages) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline first, CreatePipeline("Sales", 5));
  EXPECT_GT(first.id(), 0);
  EXPECT_EQ(first.name(), "Sales");
  EXPECT_EQ(first.sort(), 5);
  EXPECT_FALSE(first.is_default());
  EXPECT_FALSE(first.etag().empty());
  EXPECT_TRUE(first.has_create_time());
  ExpectDefaultStages(first.stages(), first.id());

  ASSERT_OK_AND_ASSIGN(v1::Pipeline second, CreatePipeline("Partners"));
  EXPECT_GT(second.id(), first.id());
  ExpectDefaultStages(second.stages(), second.id());
  EXPECT_THAT(StageIds(second.id()),
              ElementsAreArray(Prefixed(absl::StrCat("C", second.id(), ":"),
                                        kDefaultStageIds)));

  ASSERT_OK_AND_ASSIGN(v1::Pipeline fetched, GetPipeline(first.id()));
  EXPECT_EQ(fetched.SerializeAsString(), first.SerializeAsString());
}

TEST_F(PipelinesServiceTest, CreatePipelineIgnoresOutputOnlyFields) {
  v1::CreatePipelineRequest request;
  request.mutable_pipeline()->set_id(77);
  request.mutable_pipeline()->set_name("Output only");
  request.mutable_pipeline()->set_is_default(true);
  request.mutable_pipeline()->set_etag("\"999\"");
  *request.mutable_pipeline()->add_stages() =
      NewStage("X", v1::STAGE_SEMANTICS_PROCESS, 1);
  ASSERT_OK_AND_ASSIGN(v1::Pipeline created,
                       Call(&PipelinesStub::CreatePipeline, request));
  EXPECT_NE(created.id(), 77);
  EXPECT_FALSE(created.is_default());
  EXPECT_NE(created.etag(), "\"999\"");
  ExpectDefaultStages(created.stages(), created.id());
}

TEST_F(PipelinesServiceTest, CreatePipelineRequestIdIsIdempotent) {
  v1::CreatePipelineRequest request;
  request.mutable_pipeline()->set_name("Once");
  request.mutable_pipeline()->set_sort(3);
  request.set_request_id("req-123");
  ASSERT_OK_AND_ASSIGN(v1::Pipeline first,
                       Call(&PipelinesStub::CreatePipeline, request));
  const int64_t version = ConfigVersion();

  ASSERT_OK_AND_ASSIGN(v1::Pipeline replay,
                       Call(&PipelinesStub::CreatePipeline, request));
  EXPECT_EQ(replay.id(), first.id());
  EXPECT_EQ(replay.SerializeAsString(), first.SerializeAsString());
  EXPECT_EQ(ConfigVersion(), version) << "a replay must not write";
  ASSERT_OK_AND_ASSIGN(v1::ListPipelinesResponse list, ListPipelines(0));
  EXPECT_EQ(list.pipelines_size(), 2);  // pipeline 0 and "Once"

  v1::CreatePipelineRequest other_name = request;
  other_name.mutable_pipeline()->set_name("Twice");
  EXPECT_THAT(
      Call(&PipelinesStub::CreatePipeline, other_name),
      StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("request_id")));
  v1::CreatePipelineRequest other_sort = request;
  other_sort.mutable_pipeline()->set_sort(4);
  EXPECT_THAT(
      Call(&PipelinesStub::CreatePipeline, other_sort),
      StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("request_id")));
  EXPECT_EQ(ConfigVersion(), version);

  // Another request id creates another pipeline.
  v1::CreatePipelineRequest other_id = request;
  other_id.set_request_id("req-124");
  ASSERT_OK_AND_ASSIGN(v1::Pipeline another,
                       Call(&PipelinesStub::CreatePipeline, other_id));
  EXPECT_NE(another.id(), first.id());
}

TEST_F(PipelinesServiceTest, CreatePipelineRejectsBadRequestId) {
  v1::CreatePipelineRequest request;
  request.mutable_pipeline()->set_name("Bad request id");
  request.set_request_id(std::string(129, 'r'));
  EXPECT_THAT(Call(&PipelinesStub::CreatePipeline, request),
              StatusIs(kInvalidArgument, HasSubstr("request_id")));
  request.set_request_id("has space");
  EXPECT_THAT(Call(&PipelinesStub::CreatePipeline, request),
              StatusIs(kInvalidArgument, HasSubstr("request_id")));
  request.set_request_id(std::string(128, 'r'));
  EXPECT_OK(Call(&PipelinesStub::CreatePipeline, request));
}

TEST_F(PipelinesServiceTest, PipelineNameAndSortAreValidated) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline existing, CreatePipeline("Existing"));
  const int64_t version = ConfigVersion();
  struct Case {
    std::string name;
    int32_t sort;
    std::string field;
  };
  const Case cases[] = {
      {"", 0, "pipeline.name"},
      {"   ", 0, "pipeline.name"},
      {" \t ", 0, "pipeline.name"},
      {std::string(256, 'a'), 0, "pipeline.name"},
      {"line\nbreak", 0, "pipeline.name"},
      {"ok name", -1, "pipeline.sort"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat("name \"", c.name, "\" sort ", c.sort));
    EXPECT_THAT(CreatePipeline(c.name, c.sort),
                StatusIs(kInvalidArgument, HasSubstr(c.field)));
    v1::Pipeline update;
    update.set_id(existing.id());
    update.set_name(c.name);
    update.set_sort(c.sort);
    EXPECT_THAT(UpdatePipeline(update, Mask({"name", "sort"})),
                StatusIs(kInvalidArgument, HasSubstr(c.field)));
  }
  EXPECT_EQ(ConfigVersion(), version);

  // Limits count characters, not bytes: 255 two-byte letters are fine.
  std::string cyrillic;
  for (int i = 0; i < 255; ++i) cyrillic += "\xd0\x96";
  EXPECT_OK(CreatePipeline(cyrillic));
  EXPECT_OK(CreatePipeline(std::string(255, 'a')));
  EXPECT_THAT(CreatePipeline(cyrillic + "\xd0\x96"),
              StatusIs(kInvalidArgument, HasSubstr("pipeline.name")));
}

// --- GetPipeline / ListPipelines
// ----------------------------------------------

// Proto3 string fields must hold UTF-8: the gRPC layer refuses to parse such
// a request before the service sees it, so nothing is written.
TEST_F(PipelinesServiceTest, InvalidUtf8NameIsRefusedAndNothingIsWritten) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline existing, CreatePipeline("Existing"));
  const int64_t version = ConfigVersion();
  for (const std::string& name :
       {std::string("bad \xff\xfe utf8"), std::string("cut \xd0")}) {
    EXPECT_THAT(CreatePipeline(name), Not(crm::testing::IsOk()));
    v1::Pipeline update;
    update.set_id(existing.id());
    update.set_name(name);
    EXPECT_THAT(UpdatePipeline(update, Mask({"name"})),
                Not(crm::testing::IsOk()));
  }
  EXPECT_EQ(ConfigVersion(), version);
  ASSERT_OK_AND_ASSIGN(v1::Pipeline unchanged, GetPipeline(existing.id()));
  EXPECT_EQ(unchanged.name(), "Existing");
}

TEST_F(PipelinesServiceTest, GetUnknownPipelineIsNotFound) {
  EXPECT_THAT(GetPipeline(999), StatusIs(kNotFound, HasSubstr("999")));
  EXPECT_THAT(GetPipeline(-1), StatusIs(kNotFound));
}

TEST_F(PipelinesServiceTest, ListPipelinesPagesInSortThenIdOrder) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline a, CreatePipeline("A", 30));
  ASSERT_OK_AND_ASSIGN(v1::Pipeline b, CreatePipeline("B", 10));
  ASSERT_OK_AND_ASSIGN(v1::Pipeline c, CreatePipeline("C", 10));

  std::vector<int64_t> ids;
  std::string token;
  int pages = 0;
  do {
    ASSERT_OK_AND_ASSIGN(v1::ListPipelinesResponse page,
                         ListPipelines(1, token));
    ASSERT_EQ(page.pipelines_size(), 1);
    EXPECT_THAT(page.pipelines(0).stages(), IsEmpty());
    ids.push_back(page.pipelines(0).id());
    token = page.next_page_token();
    ASSERT_LT(++pages, 10) << "paging does not end";
  } while (!token.empty());
  EXPECT_EQ(pages, 4);
  EXPECT_THAT(ids, ElementsAre(0, b.id(), c.id(), a.id()));

  ASSERT_OK_AND_ASSIGN(v1::ListPipelinesResponse all,
                       ListPipelines(0, "", true));
  ASSERT_EQ(all.pipelines_size(), 4);
  EXPECT_TRUE(all.next_page_token().empty());
  for (const auto& pipeline : all.pipelines()) {
    SCOPED_TRACE(pipeline.id());
    ExpectDefaultStages(pipeline.stages(), pipeline.id());
  }

  ASSERT_OK_AND_ASSIGN(v1::ListPipelinesResponse two, ListPipelines(2));
  ASSERT_EQ(two.pipelines_size(), 2);
  ASSERT_FALSE(two.next_page_token().empty());
  ASSERT_OK_AND_ASSIGN(v1::ListPipelinesResponse rest,
                       ListPipelines(2, two.next_page_token()));
  ASSERT_EQ(rest.pipelines_size(), 2);
  EXPECT_EQ(rest.pipelines(0).id(), c.id());
  EXPECT_EQ(rest.pipelines(1).id(), a.id());
  EXPECT_TRUE(rest.next_page_token().empty());
}

TEST_F(PipelinesServiceTest, ListPipelinesRejectsBadPaging) {
  ASSERT_OK(CreatePipeline("One").status());
  ASSERT_OK(CreatePipeline("Two").status());
  EXPECT_THAT(ListPipelines(-1),
              StatusIs(kInvalidArgument, HasSubstr("page_size")));

  ASSERT_OK_AND_ASSIGN(v1::ListPipelinesResponse first, ListPipelines(1));
  const std::string& token = first.next_page_token();
  ASSERT_FALSE(token.empty());

  std::string tampered = token;
  const size_t middle = tampered.size() / 2;
  tampered[middle] = tampered[middle] == 'A' ? 'B' : 'A';
  EXPECT_THAT(ListPipelines(1, tampered),
              StatusIs(kInvalidArgument, HasSubstr("page_token")));
  EXPECT_THAT(ListPipelines(1, "not a token!"),
              StatusIs(kInvalidArgument, HasSubstr("page_token")));
  EXPECT_THAT(ListPipelines(1, token.substr(0, token.size() - 3)),
              StatusIs(kInvalidArgument, HasSubstr("page_token")));

  // A token of another list (another query) is refused.
  v1::ListRolesRequest roles;
  roles.set_page_token(token);
  EXPECT_THAT(Call(&AccessStub::ListRoles, roles),
              StatusIs(kInvalidArgument, HasSubstr("page_token")));
  v1::ListFieldsRequest fields;
  fields.set_page_token(token);
  EXPECT_THAT(Call(&FieldsStub::ListFields, fields),
              StatusIs(kInvalidArgument, HasSubstr("page_token")));

  // The token itself still works.
  EXPECT_OK(ListPipelines(1, token));
}

// --- UpdatePipeline
// -------------------------------------------------------------

TEST_F(PipelinesServiceTest, UpdatePipelineAppliesOnlyMaskedFields) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline created, CreatePipeline("Before", 5));
  const int64_t version = ConfigVersion();

  v1::Pipeline update;
  update.set_id(created.id());
  update.set_name("After");
  update.set_sort(99);
  ASSERT_OK_AND_ASSIGN(v1::Pipeline renamed,
                       UpdatePipeline(update, Mask({"name"})));
  EXPECT_EQ(renamed.name(), "After");
  EXPECT_EQ(renamed.sort(), 5);
  EXPECT_NE(renamed.etag(), created.etag());
  EXPECT_EQ(ConfigVersion(), version + 1);
  ExpectDefaultStages(renamed.stages(), created.id());

  update.set_name("Ignored");
  ASSERT_OK_AND_ASSIGN(v1::Pipeline resorted,
                       UpdatePipeline(update, Mask({"sort"})));
  EXPECT_EQ(resorted.name(), "After");
  EXPECT_EQ(resorted.sort(), 99);

  update.set_name("Both");
  update.set_sort(7);
  ASSERT_OK_AND_ASSIGN(v1::Pipeline both,
                       UpdatePipeline(update, Mask({"name", "sort"})));
  EXPECT_EQ(both.name(), "Both");
  EXPECT_EQ(both.sort(), 7);

  ASSERT_OK_AND_ASSIGN(v1::Pipeline fetched, GetPipeline(created.id()));
  EXPECT_EQ(fetched.name(), "Both");
  EXPECT_EQ(fetched.sort(), 7);
}

TEST_F(PipelinesServiceTest, DefaultPipelineCanBeRenamed) {
  v1::Pipeline update;
  update.set_id(0);
  update.set_name("Main funnel");
  ASSERT_OK_AND_ASSIGN(v1::Pipeline renamed,
                       UpdatePipeline(update, Mask({"name"})));
  EXPECT_EQ(renamed.name(), "Main funnel");
  EXPECT_TRUE(renamed.is_default());
}

TEST_F(PipelinesServiceTest, UpdatePipelineRejectsBadMasks) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline created, CreatePipeline("Masked"));
  const int64_t version = ConfigVersion();
  v1::Pipeline update;
  update.set_id(created.id());
  update.set_name("New");

  EXPECT_THAT(UpdatePipeline(update, Mask({})),
              StatusIs(kInvalidArgument, HasSubstr("update_mask")));
  EXPECT_THAT(UpdatePipeline(update, Mask({"colour"})),
              StatusIs(kInvalidArgument, HasSubstr("colour")));
  EXPECT_THAT(UpdatePipeline(update, Mask({"name", "colour"})),
              StatusIs(kInvalidArgument, HasSubstr("update_mask")));
  for (const char* immutable :
       {"id", "is_default", "stages", "etag", "create_time"}) {
    SCOPED_TRACE(immutable);
    EXPECT_THAT(UpdatePipeline(update, Mask({immutable})),
                StatusIs(kInvalidArgument,
                         HasSubstr(absl::StrCat(immutable, " is immutable"))));
  }
  EXPECT_EQ(ConfigVersion(), version);
  ASSERT_OK_AND_ASSIGN(v1::Pipeline unchanged, GetPipeline(created.id()));
  EXPECT_EQ(unchanged.name(), "Masked");
}

TEST_F(PipelinesServiceTest, UpdatePipelineChecksEtag) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline created, CreatePipeline("Etag"));
  v1::Pipeline update;
  update.set_id(created.id());
  update.set_name("First");
  ASSERT_OK_AND_ASSIGN(v1::Pipeline first,
                       UpdatePipeline(update, Mask({"name"}), created.etag()));

  update.set_name("Stale");
  EXPECT_THAT(UpdatePipeline(update, Mask({"name"}), created.etag()),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("etag")));
  EXPECT_THAT(DeletePipeline(created.id(), created.etag()),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("etag")));
  ASSERT_OK_AND_ASSIGN(v1::Pipeline fetched, GetPipeline(created.id()));
  EXPECT_EQ(fetched.name(), "First");

  EXPECT_OK(UpdatePipeline(update, Mask({"name"}), first.etag()));
}

TEST_F(PipelinesServiceTest, NoOpUpdateDoesNotBumpVersion) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline created, CreatePipeline("Same", 4));
  const int64_t version = ConfigVersion();
  v1::Pipeline update;
  update.set_id(created.id());
  update.set_name("Same");
  update.set_sort(4);
  ASSERT_OK_AND_ASSIGN(v1::Pipeline same,
                       UpdatePipeline(update, Mask({"name", "sort"})));
  EXPECT_EQ(same.etag(), created.etag());
  EXPECT_EQ(ConfigVersion(), version);
}

TEST_F(PipelinesServiceTest, UpdateUnknownPipelineIsNotFound) {
  v1::Pipeline update;
  update.set_id(4242);
  update.set_name("Ghost");
  EXPECT_THAT(UpdatePipeline(update, Mask({"name"})),
              StatusIs(kNotFound, HasSubstr("4242")));
}

// --- DeletePipeline
// -------------------------------------------------------------

TEST_F(PipelinesServiceTest, DefaultPipelineCannotBeDeleted) {
  EXPECT_THAT(DeletePipeline(0),
              StatusIs(kFailedPrecondition, HasSubstr("pipeline 0")));
  EXPECT_OK(GetPipeline(0));
}

TEST_F(PipelinesServiceTest, DeletePipelineRemovesStagesAndRolePermissions) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline doomed, CreatePipeline("Doomed"));
  const std::string won = absl::StrCat("C", doomed.id(), ":WON");
  v1::Role role;
  role.set_name("Two pipelines");
  auto* in_default = role.add_pipelines();
  in_default->set_pipeline_id(0);
  *in_default->mutable_levels() = AllActions(v1::ACCESS_LEVEL_ALL);
  auto* in_doomed = role.add_pipelines();
  in_doomed->set_pipeline_id(doomed.id());
  *in_doomed->mutable_levels() = AllActions(v1::ACCESS_LEVEL_SELF);
  (*in_doomed->mutable_stage_levels())[won] = AllActions(v1::ACCESS_LEVEL_ALL);
  ASSERT_OK_AND_ASSIGN(v1::Role created_role, CreateRole(role));
  const int64_t version = ConfigVersion();

  ASSERT_OK(DeletePipeline(doomed.id(), doomed.etag()));
  EXPECT_EQ(ConfigVersion(), version + 2);  // the `deleting` mark, the delete

  EXPECT_THAT(GetPipeline(doomed.id()), StatusIs(kNotFound));
  EXPECT_THAT(ListStages(doomed.id()), StatusIs(kNotFound));
  EXPECT_THAT(GetStage(doomed.id(), won), StatusIs(kNotFound));
  ASSERT_OK_AND_ASSIGN(v1::ListPipelinesResponse list, ListPipelines(0));
  ASSERT_EQ(list.pipelines_size(), 1);
  EXPECT_EQ(list.pipelines(0).id(), 0);

  v1::GetRoleRequest get_role;
  get_role.set_role_id(created_role.id());
  ASSERT_OK_AND_ASSIGN(v1::Role after, Call(&AccessStub::GetRole, get_role));
  ASSERT_EQ(after.pipelines_size(), 1);
  EXPECT_EQ(after.pipelines(0).pipeline_id(), 0);
  EXPECT_NE(after.etag(), created_role.etag());

  EXPECT_THAT(DeletePipeline(doomed.id()), StatusIs(kNotFound));
  // The id is not reused.
  ASSERT_OK_AND_ASSIGN(v1::Pipeline next, CreatePipeline("Next"));
  EXPECT_GT(next.id(), doomed.id());
}

TEST_F(PipelinesServiceTest, DeletePipelineHoldingDealsIsRefusedWithTheCount) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline busy, CreatePipeline("Busy"));
  const int64_t version = ConfigVersion();
  deal_counter().SetDealsInPipeline(7);
  EXPECT_THAT(DeletePipeline(busy.id()),
              StatusIs(kFailedPrecondition, HasSubstr("7 deals")));
  EXPECT_OK(GetPipeline(busy.id()));
  EXPECT_EQ(ConfigVersion(), version);

  // When the deals service cannot be asked, deletion is refused too.
  deal_counter().SetError(absl::UnavailableError("deals service down"));
  EXPECT_THAT(DeletePipeline(busy.id()),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_OK(GetPipeline(busy.id()));

  deal_counter().SetError(absl::OkStatus());
  deal_counter().SetDealsInPipeline(0);
  EXPECT_OK(DeletePipeline(busy.id()));
}

TEST_F(PipelinesServiceTest, DeleteUnknownPipelineIsNotFound) {
  EXPECT_THAT(DeletePipeline(31337), StatusIs(kNotFound, HasSubstr("31337")));
}

// --- CreateStage
// ------------------------------------------------------------------

TEST_F(PipelinesServiceTest, CreateStageInDefaultPipeline) {
  const int64_t version = ConfigVersion();
  ASSERT_OK_AND_ASSIGN(v1::Stage stage,
                       CreateStage(0, "QUALIFIED", v1::STAGE_SEMANTICS_PROCESS,
                                   15, "Qualified"));
  EXPECT_EQ(stage.stage_id(), "QUALIFIED");
  EXPECT_EQ(stage.pipeline_id(), 0);
  EXPECT_EQ(stage.name(), "Qualified");
  EXPECT_EQ(stage.sort(), 15);
  EXPECT_EQ(stage.semantics(), v1::STAGE_SEMANTICS_PROCESS);
  EXPECT_THAT(stage.color(),
              ::testing::MatchesRegex("#[0-9A-Fa-f]{6}"));  // defaulted
  EXPECT_FALSE(stage.etag().empty());
  EXPECT_EQ(ConfigVersion(), version + 1);

  EXPECT_THAT(
      StageIds(0),
      ElementsAre("NEW", "QUALIFIED", "PREPARATION", "PREPAYMENT_INVOICE",
                  "EXECUTING", "FINAL_INVOICE", "WON", "LOSE", "APOLOGY"));
  ASSERT_OK_AND_ASSIGN(v1::Stage fetched, GetStage(0, "QUALIFIED"));
  EXPECT_EQ(fetched.SerializeAsString(), stage.SerializeAsString());
}

TEST_F(PipelinesServiceTest, CreateStageInOtherPipelineUsesThePrefix) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline pipeline, CreatePipeline("Prefixed"));
  const int64_t id = pipeline.id();
  const std::string prefix = absl::StrCat("C", id, ":");

  ASSERT_OK_AND_ASSIGN(
      v1::Stage bare,
      CreateStage(id, "QUALIFIED", v1::STAGE_SEMANTICS_PROCESS, 15));
  EXPECT_EQ(bare.stage_id(), prefix + "QUALIFIED");
  EXPECT_EQ(bare.pipeline_id(), id);

  ASSERT_OK_AND_ASSIGN(
      v1::Stage prefixed,
      CreateStage(id, prefix + "PROPOSAL", v1::STAGE_SEMANTICS_PROCESS, 16));
  EXPECT_EQ(prefixed.stage_id(), prefix + "PROPOSAL");

  // The pipeline in the stage message does not matter; the request's does.
  v1::Stage elsewhere = NewStage("ELSEWHERE", v1::STAGE_SEMANTICS_PROCESS, 17);
  elsewhere.set_pipeline_id(0);
  ASSERT_OK_AND_ASSIGN(v1::Stage created, CreateStageFrom(id, elsewhere));
  EXPECT_EQ(created.stage_id(), prefix + "ELSEWHERE");
  EXPECT_EQ(created.pipeline_id(), id);
  EXPECT_THAT(GetStage(0, "ELSEWHERE"), StatusIs(kNotFound));

  // Another pipeline's prefix is refused.
  EXPECT_THAT(CreateStage(id, absl::StrCat("C", id + 1, ":WRONG"),
                          v1::STAGE_SEMANTICS_PROCESS, 18),
              StatusIs(kInvalidArgument, HasSubstr("stage_id")));
  EXPECT_THAT(CreateStage(0, prefix + "WRONG", v1::STAGE_SEMANTICS_PROCESS, 18),
              StatusIs(kInvalidArgument, HasSubstr("stage_id")));
  EXPECT_THAT(CreateStage(id, prefix, v1::STAGE_SEMANTICS_PROCESS, 18),
              StatusIs(kInvalidArgument, HasSubstr("stage_id")));

  // The same stage given bare and prefixed is one stage.
  EXPECT_THAT(
      CreateStage(id, "PROPOSAL", v1::STAGE_SEMANTICS_PROCESS, 19),
      StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("PROPOSAL")));
  EXPECT_THAT(CreateStage(id, "NEW", v1::STAGE_SEMANTICS_PROCESS, 19),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("NEW")));

  // 22 characters after the prefix fit, 23 do not.
  EXPECT_OK(
      CreateStage(id, std::string(22, 'L'), v1::STAGE_SEMANTICS_PROCESS, 20));
  EXPECT_OK(CreateStage(id, prefix + std::string(22, 'M'),
                        v1::STAGE_SEMANTICS_PROCESS, 20));
  EXPECT_THAT(
      CreateStage(id, std::string(23, 'N'), v1::STAGE_SEMANTICS_PROCESS, 20),
      StatusIs(kInvalidArgument, HasSubstr("stage_id")));
  EXPECT_THAT(CreateStage(id, prefix + std::string(23, 'N'),
                          v1::STAGE_SEMANTICS_PROCESS, 20),
              StatusIs(kInvalidArgument, HasSubstr("stage_id")));
}

TEST_F(PipelinesServiceTest, CreateStageValidatesStageId) {
  const int64_t version = ConfigVersion();
  for (const std::string& bad : std::vector<std::string>{
           "", "qualified", "Qualified", "NEW STAGE", "A:B", "C1:X", "NEW.",
           "\xc3\x84RGER", std::string(23, 'A')}) {
    SCOPED_TRACE(bad);
    EXPECT_THAT(CreateStage(0, bad, v1::STAGE_SEMANTICS_PROCESS, 15),
                StatusIs(kInvalidArgument, HasSubstr("stage_id")));
  }
  EXPECT_EQ(ConfigVersion(), version);
  EXPECT_OK(CreateStage(0, "A-Z_0-9", v1::STAGE_SEMANTICS_PROCESS, 15));
  EXPECT_OK(
      CreateStage(0, std::string(22, 'A'), v1::STAGE_SEMANTICS_PROCESS, 15));
}

TEST_F(PipelinesServiceTest, CreateStageValidatesFields) {
  const int64_t version = ConfigVersion();
  struct Case {
    std::string what;
    std::function<void(v1::Stage*)> change;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"non-hex color", [](v1::Stage* s) { s->set_color("#GGGGGG"); },
       "stage.color"},
      {"named color", [](v1::Stage* s) { s->set_color("red"); }, "stage.color"},
      {"color without #", [](v1::Stage* s) { s->set_color("39A8EF"); },
       "stage.color"},
      {"short color", [](v1::Stage* s) { s->set_color("#FFF"); },
       "stage.color"},
      {"long color", [](v1::Stage* s) { s->set_color("#39A8EF0"); },
       "stage.color"},
      {"probability 101", [](v1::Stage* s) { s->set_default_probability(101); },
       "stage.default_probability"},
      {"probability -1", [](v1::Stage* s) { s->set_default_probability(-1); },
       "stage.default_probability"},
      {"rotting -1", [](v1::Stage* s) { s->set_rotting_days(-1); },
       "stage.rotting_days"},
      {"rotting 3651", [](v1::Stage* s) { s->set_rotting_days(3651); },
       "stage.rotting_days"},
      {"no semantics",
       [](v1::Stage* s) { s->set_semantics(v1::STAGE_SEMANTICS_UNSPECIFIED); },
       "stage.semantics"},
      {"unknown semantics",
       [](v1::Stage* s) {
         s->set_semantics(static_cast<v1::StageSemantics>(9));
       },
       "stage.semantics"},
      {"no name", [](v1::Stage* s) { s->clear_name(); }, "stage.name"},
      {"blank name", [](v1::Stage* s) { s->set_name("  "); }, "stage.name"},
      {"long name", [](v1::Stage* s) { s->set_name(std::string(256, 'x')); },
       "stage.name"},
      {"negative sort", [](v1::Stage* s) { s->set_sort(-5); }, "stage.sort"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    v1::Stage stage = NewStage("CHECKED", v1::STAGE_SEMANTICS_PROCESS, 15);
    c.change(&stage);
    EXPECT_THAT(CreateStageFrom(0, stage),
                StatusIs(kInvalidArgument, HasSubstr(c.field)));
  }
  EXPECT_EQ(ConfigVersion(), version);
  EXPECT_THAT(GetStage(0, "CHECKED"), StatusIs(kNotFound));

  v1::Stage good = NewStage("CHECKED", v1::STAGE_SEMANTICS_PROCESS, 15);
  good.set_color("#abcdef");
  good.set_default_probability(100);
  good.set_rotting_days(30);
  ASSERT_OK_AND_ASSIGN(v1::Stage created, CreateStageFrom(0, good));
  EXPECT_EQ(created.color(), "#abcdef");
  EXPECT_EQ(created.default_probability(), 100);
  EXPECT_EQ(created.rotting_days(), 30);
}

TEST_F(PipelinesServiceTest, CreateDuplicateStageIsAlreadyExists) {
  EXPECT_THAT(CreateStage(0, "NEW", v1::STAGE_SEMANTICS_PROCESS, 15),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("NEW")));
  ASSERT_OK(CreateStage(0, "EXTRA", v1::STAGE_SEMANTICS_PROCESS, 15).status());
  EXPECT_THAT(CreateStage(0, "EXTRA", v1::STAGE_SEMANTICS_PROCESS, 16),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("EXTRA")));
}

TEST_F(PipelinesServiceTest, CreateStageInUnknownPipelineIsNotFound) {
  EXPECT_THAT(CreateStage(555, "NEW", v1::STAGE_SEMANTICS_PROCESS, 15),
              StatusIs(kNotFound, HasSubstr("555")));
}

// --- The ordering invariant
// -----------------------------------------------------

TEST_F(PipelinesServiceTest, CreateStageKeepsTheOrderingInvariant) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline pipeline, CreatePipeline("Ordered"));
  const int64_t id = pipeline.id();
  const std::string prefix = absl::StrCat("C", id, ":");
  const int64_t version = ConfigVersion();

  // PROCESS after SUCCESS, or after everything.
  EXPECT_THAT(CreateStage(id, "LATE", v1::STAGE_SEMANTICS_PROCESS, 65),
              StatusIs(kFailedPrecondition, HasSubstr("PROCESS")));
  EXPECT_THAT(CreateStage(id, "LAST", v1::STAGE_SEMANTICS_PROCESS, 90),
              StatusIs(kFailedPrecondition, HasSubstr("PROCESS")));
  // A second SUCCESS stage, wherever it goes.
  EXPECT_THAT(CreateStage(id, "WON2", v1::STAGE_SEMANTICS_SUCCESS, 65),
              StatusIs(kFailedPrecondition, HasSubstr("SUCCESS")));
  EXPECT_THAT(CreateStage(id, "WON3", v1::STAGE_SEMANTICS_SUCCESS, 55),
              StatusIs(kFailedPrecondition, HasSubstr("SUCCESS")));
  EXPECT_THAT(CreateStage(id, "WON4", v1::STAGE_SEMANTICS_SUCCESS, 5),
              StatusIs(kFailedPrecondition, HasSubstr("PROCESS")));
  // FAILURE before SUCCESS or before every PROCESS stage.
  EXPECT_THAT(CreateStage(id, "EARLY_LOSS", v1::STAGE_SEMANTICS_FAILURE, 55),
              StatusIs(kFailedPrecondition, HasSubstr("FAILURE")));
  EXPECT_THAT(CreateStage(id, "FIRST_LOSS", v1::STAGE_SEMANTICS_FAILURE, 1),
              StatusIs(kFailedPrecondition, HasSubstr("PROCESS")));
  EXPECT_EQ(ConfigVersion(), version);
  EXPECT_THAT(StageIds(id),
              ElementsAreArray(Prefixed(prefix, kDefaultStageIds)));

  // Valid additions: PROCESS between PROCESS stages, FAILURE among FAILUREs.
  ASSERT_OK(CreateStage(id, "FIRST", v1::STAGE_SEMANTICS_PROCESS, 5).status());
  ASSERT_OK(
      CreateStage(id, "BETWEEN", v1::STAGE_SEMANTICS_PROCESS, 45).status());
  ASSERT_OK(
      CreateStage(id, "REJECTED", v1::STAGE_SEMANTICS_FAILURE, 75).status());
  ASSERT_OK(CreateStage(id, "SPAM", v1::STAGE_SEMANTICS_FAILURE, 100).status());
  EXPECT_THAT(StageIds(id),
              ElementsAreArray(Prefixed(
                  prefix, {"FIRST", "NEW", "PREPARATION", "PREPAYMENT_INVOICE",
                           "EXECUTING", "BETWEEN", "FINAL_INVOICE", "WON",
                           "LOSE", "REJECTED", "APOLOGY", "SPAM"})));
  EXPECT_EQ(ConfigVersion(), version + 4);
}

TEST_F(PipelinesServiceTest, UpdateStageSortKeepsTheOrderingInvariant) {
  const int64_t version = ConfigVersion();
  EXPECT_THAT(MoveStage(0, "LOSE", 55),
              StatusIs(kFailedPrecondition, HasSubstr("FAILURE")));
  EXPECT_THAT(MoveStage(0, "WON", 5),
              StatusIs(kFailedPrecondition, HasSubstr("PROCESS")));
  EXPECT_THAT(MoveStage(0, "WON", 75),
              StatusIs(kFailedPrecondition, HasSubstr("SUCCESS")));
  EXPECT_THAT(MoveStage(0, "NEW", 65),
              StatusIs(kFailedPrecondition, HasSubstr("PROCESS")));
  EXPECT_EQ(ConfigVersion(), version);
  EXPECT_THAT(StageIds(0), ElementsAreArray(kDefaultStageIds));
  ASSERT_OK_AND_ASSIGN(v1::Stage lose, GetStage(0, "LOSE"));
  EXPECT_EQ(lose.sort(), 70);

  // Moving within the rules works and reorders.
  ASSERT_OK_AND_ASSIGN(v1::Stage moved, MoveStage(0, "NEW", 45));
  EXPECT_EQ(moved.sort(), 45);
  ASSERT_OK(MoveStage(0, "APOLOGY", 65).status());
  EXPECT_THAT(StageIds(0),
              ElementsAre("PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING",
                          "NEW", "FINAL_INVOICE", "WON", "APOLOGY", "LOSE"));
}

TEST_F(PipelinesServiceTest, DeleteStageKeepsTheOrderingInvariant) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline pipeline, CreatePipeline("Shrinking"));
  const int64_t id = pipeline.id();
  const std::string prefix = absl::StrCat("C", id, ":");

  EXPECT_THAT(DeleteStage(id, prefix + "WON"),
              StatusIs(kFailedPrecondition, HasSubstr("SUCCESS")));
  ASSERT_OK(DeleteStage(id, prefix + "LOSE"));
  EXPECT_THAT(DeleteStage(id, prefix + "APOLOGY"),
              StatusIs(kFailedPrecondition, HasSubstr("FAILURE")));
  for (const char* process :
       {"NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING"}) {
    ASSERT_OK(DeleteStage(id, prefix + process));
  }
  EXPECT_THAT(DeleteStage(id, prefix + "FINAL_INVOICE"),
              StatusIs(kFailedPrecondition, HasSubstr("PROCESS")));
  EXPECT_THAT(StageIds(id), ElementsAreArray(Prefixed(
                                prefix, {"FINAL_INVOICE", "WON", "APOLOGY"})));
}

// --- UpdateStage
// -------------------------------------------------------------------

TEST_F(PipelinesServiceTest, UpdateStageChangesMaskedFields) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline pipeline, CreatePipeline("Editable"));
  const std::string stage_id = absl::StrCat("C", pipeline.id(), ":EXECUTING");
  ASSERT_OK_AND_ASSIGN(v1::Stage before, GetStage(pipeline.id(), stage_id));
  const int64_t version = ConfigVersion();

  v1::Stage update;
  update.set_pipeline_id(pipeline.id());
  update.set_stage_id(stage_id);
  update.set_name("Working on it");
  update.set_color("#123abc");
  update.set_default_probability(55);
  update.set_rotting_days(14);
  update.set_sort(12345);  // not in the mask
  ASSERT_OK_AND_ASSIGN(v1::Stage after,
                       UpdateStage(update,
                                   Mask({"name", "color", "default_probability",
                                         "rotting_days"}),
                                   before.etag()));
  EXPECT_EQ(after.name(), "Working on it");
  EXPECT_EQ(after.color(), "#123abc");
  EXPECT_EQ(after.default_probability(), 55);
  EXPECT_EQ(after.rotting_days(), 14);
  EXPECT_EQ(after.sort(), before.sort());
  EXPECT_EQ(after.semantics(), before.semantics());
  EXPECT_NE(after.etag(), before.etag());
  EXPECT_EQ(ConfigVersion(), version + 1);
  ASSERT_OK_AND_ASSIGN(v1::Stage fetched, GetStage(pipeline.id(), stage_id));
  EXPECT_EQ(fetched.SerializeAsString(), after.SerializeAsString());

  // Stale etag.
  update.set_name("Stale");
  EXPECT_THAT(UpdateStage(update, Mask({"name"}), before.etag()),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("etag")));
  EXPECT_THAT(DeleteStage(pipeline.id(), stage_id, before.etag()),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("etag")));

  // No-op: same values, no new version.
  const int64_t after_version = ConfigVersion();
  update.set_name("Working on it");
  ASSERT_OK_AND_ASSIGN(v1::Stage same,
                       UpdateStage(update, Mask({"name"}), after.etag()));
  EXPECT_EQ(same.etag(), after.etag());
  EXPECT_EQ(ConfigVersion(), after_version);
}

TEST_F(PipelinesServiceTest, UpdateStageRejectsImmutableAndUnknownPaths) {
  const int64_t version = ConfigVersion();
  v1::Stage update;
  update.set_pipeline_id(0);
  update.set_stage_id("NEW");
  update.set_semantics(v1::STAGE_SEMANTICS_FAILURE);
  update.set_name("Renamed");
  for (const char* immutable : {"stage_id", "semantics", "pipeline_id"}) {
    SCOPED_TRACE(immutable);
    EXPECT_THAT(UpdateStage(update, Mask({"name", immutable})),
                StatusIs(kInvalidArgument,
                         HasSubstr(absl::StrCat(immutable, " is immutable"))));
  }
  EXPECT_THAT(UpdateStage(update, Mask({})),
              StatusIs(kInvalidArgument, HasSubstr("update_mask")));
  EXPECT_THAT(UpdateStage(update, Mask({"probability"})),
              StatusIs(kInvalidArgument, HasSubstr("\"probability\"")));
  EXPECT_EQ(ConfigVersion(), version);
  ASSERT_OK_AND_ASSIGN(v1::Stage unchanged, GetStage(0, "NEW"));
  EXPECT_EQ(unchanged.semantics(), v1::STAGE_SEMANTICS_PROCESS);
  EXPECT_EQ(unchanged.name(), "New");
}

TEST_F(PipelinesServiceTest, UpdateStageValidatesValues) {
  v1::Stage update;
  update.set_pipeline_id(0);
  update.set_stage_id("NEW");
  update.set_color("red");
  EXPECT_THAT(UpdateStage(update, Mask({"color"})),
              StatusIs(kInvalidArgument, HasSubstr("stage.color")));
  update.set_default_probability(101);
  EXPECT_THAT(
      UpdateStage(update, Mask({"default_probability"})),
      StatusIs(kInvalidArgument, HasSubstr("stage.default_probability")));
  update.set_rotting_days(-1);
  EXPECT_THAT(UpdateStage(update, Mask({"rotting_days"})),
              StatusIs(kInvalidArgument, HasSubstr("stage.rotting_days")));
  update.set_name("");
  EXPECT_THAT(UpdateStage(update, Mask({"name"})),
              StatusIs(kInvalidArgument, HasSubstr("stage.name")));
  update.set_sort(-1);
  EXPECT_THAT(UpdateStage(update, Mask({"sort"})),
              StatusIs(kInvalidArgument, HasSubstr("stage.sort")));
}

TEST_F(PipelinesServiceTest, UpdateUnknownStageIsNotFound) {
  v1::Stage update;
  update.set_pipeline_id(0);
  update.set_stage_id("MISSING");
  update.set_name("x");
  EXPECT_THAT(UpdateStage(update, Mask({"name"})),
              StatusIs(kNotFound, HasSubstr("MISSING")));
  update.set_pipeline_id(808);
  update.set_stage_id("NEW");
  EXPECT_THAT(UpdateStage(update, Mask({"name"})),
              StatusIs(kNotFound, HasSubstr("808")));
}

// --- GetStage / ListStages
// ----------------------------------------------------------

TEST_F(PipelinesServiceTest, GetAndListStagesOfUnknownTargetsAreNotFound) {
  ASSERT_OK_AND_ASSIGN(v1::Stage won, GetStage(0, "WON"));
  EXPECT_EQ(won.semantics(), v1::STAGE_SEMANTICS_SUCCESS);
  EXPECT_THAT(GetStage(404, "NEW"),
              StatusIs(kNotFound, HasSubstr("pipeline 404")));
  EXPECT_THAT(GetStage(0, "NOPE"), StatusIs(kNotFound, HasSubstr("NOPE")));
  EXPECT_THAT(ListStages(404), StatusIs(kNotFound, HasSubstr("404")));
}

TEST_F(PipelinesServiceTest, StagesOfOtherPipelinesAreFoundByBareOrPrefixedId) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline pipeline, CreatePipeline("Other"));
  const int64_t id = pipeline.id();
  const std::string prefix = absl::StrCat("C", id, ":");
  ASSERT_OK_AND_ASSIGN(v1::Stage prefixed, GetStage(id, prefix + "NEW"));
  EXPECT_EQ(prefixed.stage_id(), prefix + "NEW");
  EXPECT_EQ(prefixed.pipeline_id(), id);
  // The bare id names this pipeline's stage, never pipeline 0's.
  ASSERT_OK_AND_ASSIGN(v1::Stage bare, GetStage(id, "NEW"));
  EXPECT_EQ(bare.stage_id(), prefix + "NEW");
  EXPECT_EQ(bare.pipeline_id(), id);
  // Another pipeline's prefix is no id of this pipeline.
  EXPECT_THAT(GetStage(id, absl::StrCat("C", id + 1, ":NEW")),
              StatusIs(kInvalidArgument, HasSubstr("stage_id")));
  EXPECT_THAT(GetStage(0, prefix + "NEW"),
              StatusIs(kInvalidArgument, HasSubstr("stage_id")));
  EXPECT_THAT(GetStage(id, "MISSING"),
              StatusIs(kNotFound, HasSubstr("MISSING")));

  // Update and delete take either form too.
  v1::Stage update;
  update.set_pipeline_id(id);
  update.set_stage_id("EXECUTING");
  update.set_name("Bare update");
  ASSERT_OK_AND_ASSIGN(v1::Stage updated, UpdateStage(update, Mask({"name"})));
  EXPECT_EQ(updated.stage_id(), prefix + "EXECUTING");
  EXPECT_EQ(updated.name(), "Bare update");
  ASSERT_OK(DeleteStage(id, "PREPARATION"));
  ASSERT_OK(DeleteStage(id, prefix + "PREPAYMENT_INVOICE"));
  EXPECT_THAT(StageIds(id), ElementsAreArray(Prefixed(
                                prefix, {"NEW", "EXECUTING", "FINAL_INVOICE",
                                         "WON", "LOSE", "APOLOGY"})));
  // Pipeline 0 is untouched.
  EXPECT_THAT(StageIds(0), ElementsAreArray(kDefaultStageIds));
  ASSERT_OK_AND_ASSIGN(v1::Stage executing, GetStage(0, "EXECUTING"));
  EXPECT_EQ(executing.name(), "In progress");
}

// --- DeleteStage
// ---------------------------------------------------------------------

TEST_F(PipelinesServiceTest, DeleteStageRemovesItFromRoles) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline pipeline, CreatePipeline("Roles"));
  const int64_t id = pipeline.id();
  const std::string prefix = absl::StrCat("C", id, ":");
  const std::string extra = prefix + "EXTRA";
  ASSERT_OK(CreateStage(id, "EXTRA", v1::STAGE_SEMANTICS_PROCESS, 15).status());

  v1::Role role;
  role.set_name("Uses EXTRA");
  auto* permissions = role.add_pipelines();
  permissions->set_pipeline_id(id);
  *permissions->mutable_levels() = AllActions(v1::ACCESS_LEVEL_SELF);
  (*permissions->mutable_stage_levels())[extra] =
      AllActions(v1::ACCESS_LEVEL_ALL);
  (*permissions->mutable_stage_levels())[prefix + "NEW"] =
      AllActions(v1::ACCESS_LEVEL_DEPARTMENT);
  auto& from_extra = (*permissions->mutable_transitions())[extra];
  from_extra.set_mode(v1::TransitionRule::MODE_BLOCKED);
  auto& from_new = (*permissions->mutable_transitions())[prefix + "NEW"];
  from_new.set_mode(v1::TransitionRule::MODE_LIST);
  from_new.add_to_stage_ids(extra);
  from_new.add_to_stage_ids(prefix + "WON");
  auto& from_preparation =
      (*permissions->mutable_transitions())[prefix + "PREPARATION"];
  from_preparation.set_mode(v1::TransitionRule::MODE_LIST);
  from_preparation.add_to_stage_ids(extra);
  ASSERT_OK_AND_ASSIGN(v1::Role created, CreateRole(role));
  const int64_t version = ConfigVersion();

  ASSERT_OK(DeleteStage(id, extra));
  EXPECT_EQ(ConfigVersion(), version + 2);  // the `deleting` mark, the delete
  EXPECT_THAT(GetStage(id, extra), StatusIs(kNotFound));
  EXPECT_THAT(StageIds(id),
              ElementsAreArray(Prefixed(prefix, kDefaultStageIds)));

  v1::GetRoleRequest get;
  get.set_role_id(created.id());
  ASSERT_OK_AND_ASSIGN(v1::Role after, Call(&AccessStub::GetRole, get));
  EXPECT_NE(after.etag(), created.etag());
  ASSERT_EQ(after.pipelines_size(), 1);
  const auto& kept = after.pipelines(0);
  EXPECT_EQ(kept.stage_levels().count(extra), 0u);
  EXPECT_EQ(kept.stage_levels().count(prefix + "NEW"), 1u);
  EXPECT_EQ(kept.transitions().count(extra), 0u);
  ASSERT_EQ(kept.transitions().count(prefix + "NEW"), 1u);
  EXPECT_EQ(kept.transitions().at(prefix + "NEW").mode(),
            v1::TransitionRule::MODE_LIST);
  EXPECT_THAT(kept.transitions().at(prefix + "NEW").to_stage_ids(),
              ElementsAre(prefix + "WON"));
  // A list left without targets blocks rather than allowing everything.
  ASSERT_EQ(kept.transitions().count(prefix + "PREPARATION"), 1u);
  EXPECT_THAT(kept.transitions().at(prefix + "PREPARATION").to_stage_ids(),
              IsEmpty());
  EXPECT_EQ(kept.transitions().at(prefix + "PREPARATION").mode(),
            v1::TransitionRule::MODE_BLOCKED);

  // The role stays valid: it can be saved back as it is.
  v1::UpdateRoleRequest resave;
  *resave.mutable_role() = after;
  *resave.mutable_update_mask() = Mask({"pipelines"});
  EXPECT_OK(Call(&AccessStub::UpdateRole, resave));
}

TEST_F(PipelinesServiceTest, DeleteStageHoldingDealsIsRefusedWithTheCount) {
  ASSERT_OK(CreateStage(0, "BUSY", v1::STAGE_SEMANTICS_PROCESS, 15).status());
  const int64_t version = ConfigVersion();
  deal_counter().SetDealsInStage(3);
  EXPECT_THAT(DeleteStage(0, "BUSY"),
              StatusIs(kFailedPrecondition, HasSubstr("3 deals")));
  EXPECT_OK(GetStage(0, "BUSY"));
  EXPECT_EQ(ConfigVersion(), version);
  deal_counter().SetDealsInStage(0);
  EXPECT_OK(DeleteStage(0, "BUSY"));
}

TEST_F(PipelinesServiceTest, DeleteUnknownStageIsNotFound) {
  EXPECT_THAT(DeleteStage(0, "MISSING"),
              StatusIs(kNotFound, HasSubstr("MISSING")));
  EXPECT_THAT(DeleteStage(999, "NEW"), StatusIs(kNotFound, HasSubstr("999")));
}

// --- ReorderStages
// -----------------------------------------------------------------------

TEST_F(PipelinesServiceTest, ReorderStagesAssignsSortsInTheGivenOrder) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline pipeline, CreatePipeline("Reordered"));
  const int64_t id = pipeline.id();
  const std::string prefix = absl::StrCat("C", id, ":");
  ASSERT_OK(CreateStage(id, "EXTRA", v1::STAGE_SEMANTICS_PROCESS, 15).status());
  const std::vector<std::string> order = Prefixed(
      prefix, {"EXECUTING", "EXTRA", "NEW", "PREPARATION", "PREPAYMENT_INVOICE",
               "FINAL_INVOICE", "WON", "APOLOGY", "LOSE"});
  const int64_t version = ConfigVersion();

  ASSERT_OK_AND_ASSIGN(v1::ListStagesResponse response, Reorder(id, order));
  ASSERT_EQ(response.stages_size(), static_cast<int>(order.size()));
  for (int i = 0; i < response.stages_size(); ++i) {
    EXPECT_EQ(response.stages(i).stage_id(), order[i]);
    EXPECT_EQ(response.stages(i).sort(), (i + 1) * 10);
  }
  EXPECT_EQ(ConfigVersion(), version + 1);
  EXPECT_THAT(StageIds(id), ElementsAreArray(order));
  ASSERT_OK_AND_ASSIGN(v1::Stage lose, GetStage(id, prefix + "LOSE"));
  EXPECT_EQ(lose.sort(), 90);

  // The same order again changes nothing.
  ASSERT_OK(Reorder(id, order).status());
  EXPECT_EQ(ConfigVersion(), version + 1);
}

TEST_F(PipelinesServiceTest, ReorderStagesRejectsBadLists) {
  std::vector<std::string> missing = kDefaultStageIds;
  missing.pop_back();
  EXPECT_THAT(Reorder(0, missing),
              StatusIs(kInvalidArgument, HasSubstr("stage_ids")));

  std::vector<std::string> unknown = kDefaultStageIds;
  unknown[3] = "GHOST";
  EXPECT_THAT(Reorder(0, unknown),
              StatusIs(kInvalidArgument, HasSubstr("stage_ids[3]")));

  std::vector<std::string> duplicate = kDefaultStageIds;
  duplicate[7] = "NEW";
  EXPECT_THAT(Reorder(0, duplicate),
              StatusIs(kInvalidArgument, HasSubstr("stage_ids")));

  std::vector<std::string> extra = kDefaultStageIds;
  extra.push_back("NEW");
  EXPECT_THAT(Reorder(0, extra),
              StatusIs(kInvalidArgument, HasSubstr("stage_ids")));

  EXPECT_THAT(Reorder(0, {}),
              StatusIs(kInvalidArgument, HasSubstr("stage_ids")));

  const int64_t version = ConfigVersion();
  EXPECT_THAT(Reorder(0, {"WON", "NEW", "PREPARATION", "PREPAYMENT_INVOICE",
                          "EXECUTING", "FINAL_INVOICE", "LOSE", "APOLOGY"}),
              StatusIs(kFailedPrecondition, HasSubstr("stage order")));
  EXPECT_THAT(
      Reorder(0, {"NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING",
                  "LOSE", "FINAL_INVOICE", "WON", "APOLOGY"}),
      StatusIs(kFailedPrecondition, HasSubstr("stage order")));
  EXPECT_EQ(ConfigVersion(), version);
  EXPECT_THAT(StageIds(0), ElementsAreArray(kDefaultStageIds));

  EXPECT_THAT(Reorder(999, kDefaultStageIds),
              StatusIs(kNotFound, HasSubstr("999")));
}

TEST_F(PipelinesServiceTest, ReorderStagesWithPrefixedIdsInOtherPipeline) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline pipeline,
                       CreatePipeline("Prefixed reorder"));
  const std::string prefix = absl::StrCat("C", pipeline.id(), ":");
  const std::vector<std::string> order =
      Prefixed(prefix, {"PREPARATION", "NEW", "PREPAYMENT_INVOICE", "EXECUTING",
                        "FINAL_INVOICE", "WON", "LOSE", "APOLOGY"});
  ASSERT_OK(Reorder(pipeline.id(), order).status());
  EXPECT_THAT(StageIds(pipeline.id()), ElementsAreArray(order));
  // Pipeline 0 keeps its order.
  EXPECT_THAT(StageIds(0), ElementsAreArray(kDefaultStageIds));
}

// Stage ids of ReorderStages may be bare or prefixed, like everywhere else.
TEST_F(PipelinesServiceTest, ReorderStagesAcceptsBareIds) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline pipeline, CreatePipeline("Bare reorder"));
  const std::string prefix = absl::StrCat("C", pipeline.id(), ":");
  const std::vector<std::string> bare = {
      "PREPARATION", "NEW",           "PREPAYMENT_INVOICE",
      "EXECUTING",   "FINAL_INVOICE", "WON",
      "LOSE",        "APOLOGY"};
  ASSERT_OK_AND_ASSIGN(v1::ListStagesResponse response,
                       Reorder(pipeline.id(), bare));
  EXPECT_THAT(StageIds(pipeline.id()),
              ElementsAreArray(Prefixed(prefix, bare)));
  // The same stage bare and prefixed is listed twice.
  std::vector<std::string> twice = bare;
  twice[1] = prefix + "PREPARATION";
  EXPECT_THAT(Reorder(pipeline.id(), twice),
              StatusIs(kInvalidArgument, HasSubstr("twice")));
}

TEST_F(PipelinesServiceTest, StageLimitIsResourceExhausted) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline pipeline, CreatePipeline("Full"));
  // 8 default stages + 92 = 100, the limit.
  for (int i = 0; i < 92; ++i) {
    ASSERT_OK(CreateStage(pipeline.id(), absl::StrCat("P", i),
                          v1::STAGE_SEMANTICS_PROCESS, 15)
                  .status())
        << i;
  }
  const int64_t version = ConfigVersion();
  EXPECT_THAT(CreateStage(pipeline.id(), "ONE_TOO_MANY",
                          v1::STAGE_SEMANTICS_PROCESS, 15),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("100")));
  EXPECT_EQ(ConfigVersion(), version);
  EXPECT_THAT(StageIds(pipeline.id()), SizeIs(100));
  // Other pipelines are not affected.
  EXPECT_OK(CreateStage(0, "STILL_FITS", v1::STAGE_SEMANTICS_PROCESS, 15));
}

// --- Config version and WatchConfig
// -----------------------------------------------------

// Once, except deleting a stage or a pipeline: twice (the `deleting` mark
// deals honours before counting, then the delete).
TEST_F(PipelinesServiceTest, EveryChangeBumpsTheConfigVersionOnce) {
  int64_t version = ConfigVersion();
  ASSERT_GT(version, 0);
  auto expect_bumps = [&](const absl::Status& status, const char* what,
                          int bumps) {
    SCOPED_TRACE(what);
    EXPECT_OK(status);
    EXPECT_EQ(ConfigVersion(), version + bumps);
    version = ConfigVersion();
  };
  auto expect_bump = [&](const absl::Status& status, const char* what) {
    expect_bumps(status, what, 1);
  };
  absl::StatusOr<v1::Pipeline> pipeline = CreatePipeline("Versioned");
  expect_bump(pipeline.status(), "create pipeline");
  ASSERT_TRUE(pipeline.ok());
  v1::Pipeline update;
  update.set_id(pipeline->id());
  update.set_name("Versioned 2");
  expect_bump(UpdatePipeline(update, Mask({"name"})).status(),
              "update pipeline");
  expect_bump(CreateStage(pipeline->id(), "X", v1::STAGE_SEMANTICS_PROCESS, 15)
                  .status(),
              "create stage");
  expect_bump(
      MoveStage(pipeline->id(), absl::StrCat("C", pipeline->id(), ":X"), 16)
          .status(),
      "update stage");
  expect_bumps(
      DeleteStage(pipeline->id(), absl::StrCat("C", pipeline->id(), ":X")),
      "delete stage", 2);
  expect_bump(CreateField("UF_CRM_VERSIONED", v1::FIELD_TYPE_STRING).status(),
              "create field");
  expect_bump(CreateDepartment("Versioned").status(), "create department");
  v1::Role role;
  role.set_name("Versioned");
  expect_bump(CreateRole(role).status(), "create role");
  expect_bumps(DeletePipeline(pipeline->id()), "delete pipeline", 2);

  // Failures change nothing.
  EXPECT_THAT(CreatePipeline(""), StatusIs(kInvalidArgument));
  EXPECT_THAT(DeletePipeline(0), StatusIs(kFailedPrecondition));
  EXPECT_EQ(ConfigVersion(), version);

  // Effective permissions say which version they come from.
  ASSERT_OK_AND_ASSIGN(v1::EffectivePermissions permissions,
                       EffectivePermissionsOf(5));
  EXPECT_EQ(permissions.config_version(), version);
}

TEST_F(PipelinesServiceTest, GetConfigVersionIsReadableByAnyIdentity) {
  const int64_t version = ConfigVersion();
  for (const std::string& token : {UserToken(42), ServiceToken("automation")}) {
    ASSERT_OK_AND_ASSIGN(v1::ConfigVersion got,
                         CallAs(token, &PipelinesStub::GetConfigVersion,
                                v1::GetConfigVersionRequest()));
    EXPECT_EQ(got.version(), version);
  }
}

TEST_F(PipelinesServiceTest, WatchConfigSendsCurrentVersionThenChanges) {
  const int64_t version = ConfigVersion();
  auto context = MakeContext(UserToken(42));  // any identity may watch
  v1::WatchConfigRequest request;
  request.set_known_version(0);
  auto reader = pipelines().WatchConfig(context.get(), request);
  v1::ConfigVersion message;

  auto start = absl::Now();
  ASSERT_TRUE(reader->Read(&message));
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  EXPECT_EQ(message.version(), version);

  start = absl::Now();
  ASSERT_OK(CreatePipeline("Watched").status());
  ASSERT_TRUE(reader->Read(&message));
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  EXPECT_EQ(message.version(), version + 1);

  // Rapid changes may be coalesced, but the last one always arrives, and
  // versions only go up.
  for (int i = 0; i < 5; ++i)
    ASSERT_OK(CreatePipeline(absl::StrCat("Burst ", i)).status());
  const int64_t last = ConfigVersion();
  int64_t seen = message.version();
  while (seen < last) {
    ASSERT_TRUE(reader->Read(&message));
    EXPECT_GT(message.version(), seen);
    seen = message.version();
  }
  EXPECT_EQ(seen, last);

  context->TryCancel();
  EXPECT_FALSE(reader->Read(&message));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(PipelinesServiceTest, WatchConfigWithCurrentVersionWaitsForAChange) {
  const int64_t version = ConfigVersion();
  auto context = MakeContext(ServiceToken("deals"));
  v1::WatchConfigRequest request;
  request.set_known_version(version);
  auto reader = pipelines().WatchConfig(context.get(), request);

  std::atomic<int64_t> received{-1};
  std::thread thread([&] {
    v1::ConfigVersion message;
    if (reader->Read(&message)) received = message.version();
  });
  // The watcher is subscribed once the server counts it.
  const bool subscribed = WaitForWatchers(1);
  EXPECT_TRUE(subscribed);
  EXPECT_EQ(received.load(), -1)
      << "nothing is sent while the caller is up to date";

  const absl::Time start = absl::Now();
  const absl::Status changed = CreateDepartment("Changes the version").status();
  if (!subscribed || !changed.ok()) context->TryCancel();
  thread.join();
  ASSERT_OK(changed);
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  EXPECT_EQ(received.load(), version + 1);
  context->TryCancel();
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

// known_version only decides the first message: a caller that believed it
// was ahead (e.g. the store was restored from an older backup) still hears of
// every change.
TEST_F(PipelinesServiceTest, WatchConfigStreamsChangesWhenKnownVersionIsAhead) {
  const int64_t version = ConfigVersion();
  auto context = MakeContext(ServiceToken("deals"));
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(3));
  v1::WatchConfigRequest request;
  request.set_known_version(version + 100);
  auto reader = pipelines().WatchConfig(context.get(), request);
  std::atomic<int64_t> received{-1};
  std::thread thread([&] {
    v1::ConfigVersion message;
    if (reader->Read(&message)) received = message.version();
  });
  EXPECT_TRUE(WaitForWatchers(1));
  const absl::Status changed = CreatePipeline("A change").status();
  thread.join();  // the context deadline bounds the wait
  ASSERT_OK(changed);
  EXPECT_GE(received.load(), version + 1);
  context->TryCancel();
  reader->Finish();
}

TEST_F(PipelinesServiceTest, CancellingTheWatchEndsTheStream) {
  auto context = MakeContext(AdminToken());
  v1::WatchConfigRequest request;
  auto reader = pipelines().WatchConfig(context.get(), request);
  v1::ConfigVersion first;
  ASSERT_TRUE(reader->Read(&first));
  ASSERT_EQ(notifier().listener_count(), 1u);

  std::atomic<bool> ended{false};
  std::thread thread([&] {
    v1::ConfigVersion message;
    while (reader->Read(&message)) {
    }
    ended = true;
  });
  context->TryCancel();
  thread.join();
  EXPECT_TRUE(ended.load());
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);

  // The server lets go of the watcher.
  EXPECT_TRUE(WaitForWatchers(0));
  // And keeps serving.
  EXPECT_OK(CreatePipeline("After cancel"));
}

TEST_F(PipelinesServiceTest, ClosingTheNotifierEndsWatchesWithUnavailable) {
  auto context = MakeContext(AdminToken());
  auto reader =
      pipelines().WatchConfig(context.get(), v1::WatchConfigRequest());
  v1::ConfigVersion message;
  ASSERT_TRUE(reader->Read(&message));
  notifier().Close();
  EXPECT_FALSE(reader->Read(&message));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(PipelinesServiceTest, WatchConfigRejectsBadTokensAndArguments) {
  struct Case {
    std::string what;
    std::string token;
    grpc::StatusCode code;
  };
  const Case cases[] = {
      {"no token", "", grpc::StatusCode::UNAUTHENTICATED},
      {"garbage", "garbage", grpc::StatusCode::UNAUTHENTICATED},
      {"expired", ExpiredToken(42), grpc::StatusCode::UNAUTHENTICATED},
      {"wrong signature", WrongSignatureToken(42),
       grpc::StatusCode::UNAUTHENTICATED},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    auto context = MakeContext(c.token);
    auto reader =
        pipelines().WatchConfig(context.get(), v1::WatchConfigRequest());
    v1::ConfigVersion message;
    EXPECT_FALSE(reader->Read(&message));
    EXPECT_EQ(reader->Finish().error_code(), c.code);
  }
  auto context = MakeContext(AdminToken());
  v1::WatchConfigRequest negative;
  negative.set_known_version(-1);
  auto reader = pipelines().WatchConfig(context.get(), negative);
  v1::ConfigVersion message;
  EXPECT_FALSE(reader->Read(&message));
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("known_version"));
  EXPECT_EQ(notifier().listener_count(), 0u);
}

// --- Authentication and the CONFIG permission
// ----------------------------------------------

std::vector<std::pair<std::string, PipelinesServiceTest::Rpc>>
PipelinesServiceTest::AllRpcs() {
  return {
      {"CreatePipeline",
       [this](const std::string& token) {
         v1::CreatePipelineRequest request;
         request.mutable_pipeline()->set_name("Auth");
         return CallAs(token, &PipelinesStub::CreatePipeline, request).status();
       }},
      {"GetPipeline",
       [this](const std::string& token) {
         return CallAs(token, &PipelinesStub::GetPipeline,
                       v1::GetPipelineRequest())
             .status();
       }},
      {"ListPipelines",
       [this](const std::string& token) {
         return CallAs(token, &PipelinesStub::ListPipelines,
                       v1::ListPipelinesRequest())
             .status();
       }},
      {"UpdatePipeline",
       [this](const std::string& token) {
         v1::UpdatePipelineRequest request;
         request.mutable_pipeline()->set_name("Auth");
         *request.mutable_update_mask() = Mask({"name"});
         return CallAs(token, &PipelinesStub::UpdatePipeline, request).status();
       }},
      {"DeletePipeline",
       [this](const std::string& token) {
         v1::DeletePipelineRequest request;
         request.set_pipeline_id(1);
         return CallAs(token, &PipelinesStub::DeletePipeline, request).status();
       }},
      {"CreateStage",
       [this](const std::string& token) {
         v1::CreateStageRequest request;
         *request.mutable_stage() = PipelinesServiceTest::NewStage(
             "AUTH", v1::STAGE_SEMANTICS_PROCESS, 15);
         return CallAs(token, &PipelinesStub::CreateStage, request).status();
       }},
      {"GetStage",
       [this](const std::string& token) {
         v1::GetStageRequest request;
         request.set_stage_id("NEW");
         return CallAs(token, &PipelinesStub::GetStage, request).status();
       }},
      {"ListStages",
       [this](const std::string& token) {
         return CallAs(token, &PipelinesStub::ListStages,
                       v1::ListStagesRequest())
             .status();
       }},
      {"UpdateStage",
       [this](const std::string& token) {
         v1::UpdateStageRequest request;
         request.mutable_stage()->set_stage_id("NEW");
         request.mutable_stage()->set_name("Auth");
         *request.mutable_update_mask() = Mask({"name"});
         return CallAs(token, &PipelinesStub::UpdateStage, request).status();
       }},
      {"DeleteStage",
       [this](const std::string& token) {
         v1::DeleteStageRequest request;
         request.set_stage_id("APOLOGY");
         return CallAs(token, &PipelinesStub::DeleteStage, request).status();
       }},
      {"ReorderStages",
       [this](const std::string& token) {
         v1::ReorderStagesRequest request;
         for (const auto& id : kDefaultStageIds) request.add_stage_ids(id);
         return CallAs(token, &PipelinesStub::ReorderStages, request).status();
       }},
      {"GetConfigVersion",
       [this](const std::string& token) {
         return CallAs(token, &PipelinesStub::GetConfigVersion,
                       v1::GetConfigVersionRequest())
             .status();
       }},
      {"WatchConfig",
       [this](const std::string& token) {
         auto context = PipelinesServiceTest::MakeContext(token);
         auto reader =
             pipelines().WatchConfig(context.get(), v1::WatchConfigRequest());
         v1::ConfigVersion message;
         if (reader->Read(&message)) {
           context->TryCancel();
           const grpc::Status cancelled = reader->Finish();
           return cancelled.error_code() == grpc::StatusCode::CANCELLED
                      ? absl::OkStatus()
                      : FromGrpc(cancelled);
         }
         return FromGrpc(reader->Finish());
       }},
  };
}

const std::set<std::string> kMutating = {
    "CreatePipeline", "UpdatePipeline", "DeletePipeline", "CreateStage",
    "UpdateStage",    "DeleteStage",    "ReorderStages"};

TEST_F(PipelinesServiceTest, EveryRpcNeedsAValidToken) {
  ASSERT_OK(CreatePipeline("Target").status());
  const int64_t version = ConfigVersion();
  const auto rpcs = AllRpcs();
  ASSERT_EQ(rpcs.size(), 13u);
  ExpectBadTokensRefused(rpcs);
  EXPECT_EQ(ConfigVersion(), version);

  // A valid token under another scheme is not accepted either.
  v1::GetPipelineRequest get;
  EXPECT_THAT(CallWithHeader(absl::StrCat("Basic ", AdminToken()),
                             &PipelinesStub::GetPipeline, get),
              StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_OK(CallWithHeader(absl::StrCat("bearer ", AdminToken()),
                           &PipelinesStub::GetPipeline, get));
}

TEST_F(PipelinesServiceTest, UserWithoutConfigCanReadButNotChange) {
  ASSERT_OK(CreatePipeline("Target").status());
  const int64_t version = ConfigVersion();
  const std::string reader = UserToken(7);
  for (const auto& [name, rpc] : AllRpcs()) {
    SCOPED_TRACE(name);
    if (kMutating.count(name) > 0) {
      EXPECT_THAT(rpc(reader), StatusIs(absl::StatusCode::kPermissionDenied,
                                        HasSubstr("CONFIG")));
    } else {
      EXPECT_OK(rpc(reader));
    }
  }
  EXPECT_EQ(ConfigVersion(), version);
  EXPECT_THAT(StageIds(0), ElementsAreArray(kDefaultStageIds));
  ASSERT_OK_AND_ASSIGN(v1::Pipeline pipeline, GetPipeline(0));
  EXPECT_NE(pipeline.name(), "Auth");
}

std::vector<std::pair<std::string, absl::Status>>
PipelinesServiceTest::MutateEverything(const std::string& token,
                                       int64_t target) {
  const std::string prefix = absl::StrCat("C", target, ":");
  std::vector<std::pair<std::string, absl::Status>> results;
  {
    v1::CreatePipelineRequest request;
    request.mutable_pipeline()->set_name("By caller");
    results.emplace_back(
        "CreatePipeline",
        CallAs(token, &PipelinesStub::CreatePipeline, request).status());
  }
  {
    v1::UpdatePipelineRequest request;
    request.mutable_pipeline()->set_id(target);
    request.mutable_pipeline()->set_name("Renamed by caller");
    *request.mutable_update_mask() = Mask({"name"});
    results.emplace_back(
        "UpdatePipeline",
        CallAs(token, &PipelinesStub::UpdatePipeline, request).status());
  }
  {
    v1::CreateStageRequest request;
    request.set_pipeline_id(target);
    *request.mutable_stage() =
        PipelinesServiceTest::NewStage("MORE", v1::STAGE_SEMANTICS_PROCESS, 16);
    results.emplace_back(
        "CreateStage",
        CallAs(token, &PipelinesStub::CreateStage, request).status());
  }
  {
    v1::UpdateStageRequest request;
    request.mutable_stage()->set_pipeline_id(target);
    request.mutable_stage()->set_stage_id(prefix + "EXTRA");
    request.mutable_stage()->set_name("Renamed by caller");
    *request.mutable_update_mask() = Mask({"name"});
    results.emplace_back(
        "UpdateStage",
        CallAs(token, &PipelinesStub::UpdateStage, request).status());
  }
  {
    v1::ReorderStagesRequest request;
    request.set_pipeline_id(target);
    std::vector<std::string> ids = StageIds(target);
    std::swap(ids[0], ids[1]);  // two PROCESS stages
    for (const auto& id : ids) request.add_stage_ids(id);
    results.emplace_back(
        "ReorderStages",
        CallAs(token, &PipelinesStub::ReorderStages, request).status());
  }
  {
    v1::DeleteStageRequest request;
    request.set_pipeline_id(target);
    request.set_stage_id(prefix + "EXTRA");
    results.emplace_back(
        "DeleteStage",
        CallAs(token, &PipelinesStub::DeleteStage, request).status());
  }
  {
    v1::DeletePipelineRequest request;
    request.set_pipeline_id(target);
    results.emplace_back(
        "DeletePipeline",
        CallAs(token, &PipelinesStub::DeletePipeline, request).status());
  }
  return results;
}

TEST_F(PipelinesServiceTest, MutationsAreDeniedWithoutConfig) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline target, CreatePipeline("Target"));
  ASSERT_OK(CreateStage(target.id(), "EXTRA", v1::STAGE_SEMANTICS_PROCESS, 15)
                .status());
  // A role without CONFIG does not help.
  v1::Role reader_role;
  reader_role.set_name("Reader");
  auto* permissions = reader_role.add_pipelines();
  permissions->set_pipeline_id(target.id());
  *permissions->mutable_levels() = AllActions(v1::ACCESS_LEVEL_ALL);
  ASSERT_OK_AND_ASSIGN(v1::Role role, CreateRole(reader_role));
  ASSERT_OK(AssignToUser(role.id(), 7).status());
  const int64_t version = ConfigVersion();

  const auto results = MutateEverything(UserToken(7), target.id());
  ASSERT_EQ(results.size(), kMutating.size());
  for (const auto& [name, status] : results) {
    SCOPED_TRACE(name);
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kPermissionDenied,
                                 HasSubstr("CONFIG")));
  }
  EXPECT_EQ(ConfigVersion(), version);
  ASSERT_OK_AND_ASSIGN(v1::Pipeline unchanged, GetPipeline(target.id()));
  EXPECT_EQ(unchanged.name(), "Target");
  EXPECT_EQ(unchanged.stages_size(), 9);
}

TEST_F(PipelinesServiceTest, MutationsAreAllowedWithConfigRole) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline target, CreatePipeline("Target"));
  ASSERT_OK(CreateStage(target.id(), "EXTRA", v1::STAGE_SEMANTICS_PROCESS, 15)
                .status());
  ASSERT_NE(GrantConfig(8), 0);
  for (const auto& [name, status] :
       MutateEverything(UserToken(8), target.id())) {
    SCOPED_TRACE(name);
    EXPECT_OK(status);
  }
  EXPECT_THAT(GetPipeline(target.id()), StatusIs(kNotFound));
}

TEST_F(PipelinesServiceTest, MutationsAreAllowedForServicesAndAdmins) {
  for (const std::string& token :
       {ServiceToken("automation"), UserToken(99, /*admin=*/true),
        AdminToken()}) {
    ASSERT_OK_AND_ASSIGN(v1::Pipeline target, CreatePipeline("Target"));
    ASSERT_OK(CreateStage(target.id(), "EXTRA", v1::STAGE_SEMANTICS_PROCESS, 15)
                  .status());
    for (const auto& [name, status] : MutateEverything(token, target.id())) {
      SCOPED_TRACE(name);
      EXPECT_OK(status);
    }
    EXPECT_THAT(GetPipeline(target.id()), StatusIs(kNotFound));
  }
}

}  // namespace
}  // namespace crm::pipeline_config

namespace crm::pipeline_config {
namespace {

// GetPipeline and ListStages are served from bytes serialized per config
// version: a change must show in them at once, and unparsable request bytes
// (which typed methods never see) must be INVALID_ARGUMENT.
class RawReadsTest : public PipelineConfigServiceTest {};

TEST_F(RawReadsTest, ReadsReflectEveryChange) {
  v1::CreatePipelineRequest create;
  create.mutable_pipeline()->set_name("Raw");
  ASSERT_OK_AND_ASSIGN(
      v1::Pipeline created,
      CallAs(AdminToken(), &PipelinesStub::CreatePipeline, create));
  v1::UpdatePipelineRequest rename;
  rename.mutable_pipeline()->set_id(created.id());
  rename.mutable_pipeline()->set_name("Renamed");
  rename.mutable_update_mask()->add_paths("name");
  ASSERT_OK(
      CallAs(AdminToken(), &PipelinesStub::UpdatePipeline, rename).status());
  v1::CreateStageRequest stage;
  stage.set_pipeline_id(created.id());
  stage.mutable_stage()->set_stage_id("TALKS");
  stage.mutable_stage()->set_name("Talks");
  stage.mutable_stage()->set_sort(15);
  stage.mutable_stage()->set_semantics(v1::STAGE_SEMANTICS_PROCESS);
  ASSERT_OK(CallAs(AdminToken(), &PipelinesStub::CreateStage, stage).status());

  v1::GetPipelineRequest get;
  get.set_pipeline_id(created.id());
  ASSERT_OK_AND_ASSIGN(v1::Pipeline read,
                       CallAs(UserToken(7), &PipelinesStub::GetPipeline, get));
  EXPECT_EQ(read.name(), "Renamed");
  ASSERT_EQ(read.stages_size(), 9);
  EXPECT_EQ(read.stages(1).stage_id(),
            absl::StrCat("C", created.id(), ":TALKS"));
  v1::ListStagesRequest list;
  list.set_pipeline_id(created.id());
  ASSERT_OK_AND_ASSIGN(v1::ListStagesResponse stages,
                       CallAs(UserToken(7), &PipelinesStub::ListStages, list));
  ASSERT_EQ(stages.stages_size(), 9);
  EXPECT_EQ(stages.stages(1).name(), "Talks");
}

TEST_F(RawReadsTest, UnparsableRequestIsInvalidArgument) {
  grpc::GenericStub generic(channel());
  for (const char* method : {"/crm.pipelines.v1.PipelinesService/GetPipeline",
                             "/crm.pipelines.v1.PipelinesService/ListStages"}) {
    SCOPED_TRACE(method);
    const std::string garbage("\xff\xff\xff\xff", 4);
    grpc::Slice slice(garbage);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    auto context = MakeContext(AdminToken());
    absl::Notification done;
    grpc::Status status;
    generic.UnaryCall(context.get(), method, grpc::StubOptions(), &request,
                      &response, [&](grpc::Status s) {
                        status = std::move(s);
                        done.Notify();
                      });
    done.WaitForNotification();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("request"));
  }
}

}  // namespace
}  // namespace crm::pipeline_config
