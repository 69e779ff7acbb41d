#include "common/pipelines_client/config_view.h"

#include <string>
#include <tuple>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "crm/pipelines/v1/pipeline.pb.h"

#include "common/pipelines_client/fake_pipeline_client.h"

namespace crm::common {
namespace {

namespace pipelines_v1 = ::crm::pipelines::v1;
using ::testing::ElementsAre;

std::vector<std::string> StageIds(const PipelineView& pipeline) {
  std::vector<std::string> ids;
  for (const StageView& stage : pipeline.stages) ids.push_back(stage.stage_id);
  return ids;
}

pipelines_v1::FieldDefinition Field(const std::string& code, int32_t sort) {
  pipelines_v1::FieldDefinition field;
  field.set_code(code);
  field.set_sort(sort);
  field.set_type(pipelines_v1::FIELD_TYPE_STRING);
  return field;
}

TEST(ConfigViewTest, EmptyViewFindsNothing) {
  const ConfigView view;
  EXPECT_EQ(view.version(), 0);
  EXPECT_TRUE(view.pipelines().empty());
  EXPECT_EQ(view.FindPipeline(0), nullptr);
  EXPECT_EQ(view.FindStage(0, "NEW"), nullptr);
  EXPECT_EQ(view.FirstStage(0), nullptr);
  EXPECT_EQ(
      view.FirstStageWithSemantics(0, pipelines_v1::STAGE_SEMANTICS_PROCESS),
      nullptr);
  EXPECT_EQ(view.StageIndex(0, "NEW"), std::nullopt);
  EXPECT_EQ(view.FindField("UF_CRM_X"), nullptr);
}

TEST(ConfigViewTest, OrdersPipelinesStagesAndFields) {
  pipelines_v1::Pipeline zero = DefaultPipelineProto(0);
  pipelines_v1::Pipeline partners = DefaultPipelineProto(3, "Partners");
  partners.set_sort(5);  // last
  pipelines_v1::Pipeline first = DefaultPipelineProto(7, "First");
  first.set_sort(0);  // same sort as pipeline 0: the id breaks the tie.
  // Stages arrive shuffled; equal sorts order by id.
  pipelines_v1::Pipeline shuffled;
  shuffled.set_id(9);
  shuffled.set_sort(1);
  for (auto [id, sort, semantics] :
       std::vector<std::tuple<const char*, int, pipelines_v1::StageSemantics>>{
           {"C9:WON", 30, pipelines_v1::STAGE_SEMANTICS_SUCCESS},
           {"C9:B", 10, pipelines_v1::STAGE_SEMANTICS_PROCESS},
           {"C9:LOSE", 40, pipelines_v1::STAGE_SEMANTICS_FAILURE},
           {"C9:A", 10, pipelines_v1::STAGE_SEMANTICS_PROCESS}}) {
    pipelines_v1::Stage* stage = shuffled.add_stages();
    stage->set_stage_id(id);
    stage->set_sort(sort);
    stage->set_semantics(semantics);
  }

  const ConfigView view = ConfigView::FromProtos(
      12, {partners, shuffled, first, zero},
      {Field("UF_CRM_B", 20), Field("UF_CRM_C", 10), Field("UF_CRM_A", 20)});

  EXPECT_EQ(view.version(), 12);
  std::vector<int64_t> ids;
  for (const PipelineView& p : view.pipelines()) ids.push_back(p.id);
  EXPECT_THAT(ids, ElementsAre(0, 7, 9, 3));
  EXPECT_THAT(StageIds(*view.FindPipeline(9)),
              ElementsAre("C9:A", "C9:B", "C9:WON", "C9:LOSE"));
  std::vector<std::string> codes;
  for (const auto& field : view.fields()) codes.push_back(field.code());
  EXPECT_THAT(codes, ElementsAre("UF_CRM_C", "UF_CRM_A", "UF_CRM_B"));
}

TEST(ConfigViewTest, ResolvesBareStageIdsInTheirPipeline) {
  const ConfigView view = ConfigView::FromProtos(
      3, {DefaultPipelineProto(0), DefaultPipelineProto(3, "Partners")}, {});
  for (const char* id : {"C3:EXECUTING", "EXECUTING"}) {
    SCOPED_TRACE(id);
    const StageView* stage = view.ResolveStage(3, id);
    ASSERT_NE(stage, nullptr);
    EXPECT_EQ(stage->stage_id, "C3:EXECUTING");
  }
  ASSERT_NE(view.ResolveStage(0, "EXECUTING"), nullptr);
  EXPECT_EQ(view.ResolveStage(0, "EXECUTING")->pipeline_id, 0);
  EXPECT_EQ(view.ResolveStage(0, "C3:EXECUTING"), nullptr);
  EXPECT_EQ(view.ResolveStage(3, "C4:EXECUTING"), nullptr);
  EXPECT_EQ(view.ResolveStage(3, "NOPE"), nullptr);
  EXPECT_EQ(view.ResolveStage(3, ""), nullptr);
  EXPECT_EQ(view.ResolveStage(4, "EXECUTING"), nullptr);
}

TEST(ConfigViewTest, FindsStagesOnlyInTheirPipeline) {
  const ConfigView view = ConfigView::FromProtos(
      3, {DefaultPipelineProto(0), DefaultPipelineProto(3, "Partners")}, {});

  const StageView* stage = view.FindStage(3, "C3:EXECUTING");
  ASSERT_NE(stage, nullptr);
  EXPECT_EQ(stage->pipeline_id, 3);
  EXPECT_EQ(stage->sort, 40);
  EXPECT_EQ(stage->semantics, pipelines_v1::STAGE_SEMANTICS_PROCESS);
  EXPECT_EQ(view.FindStage(0, "C3:EXECUTING"), nullptr);
  EXPECT_EQ(view.FindStage(3, "EXECUTING"), nullptr);
  EXPECT_EQ(view.FindStage(4, "C3:EXECUTING"), nullptr);
  ASSERT_NE(view.FindPipeline(3), nullptr);
  EXPECT_EQ(view.FindPipeline(3)->name, "Partners");
  EXPECT_TRUE(view.FindPipeline(0)->is_default);
  EXPECT_EQ(view.FindPipeline(1), nullptr);
}

TEST(ConfigViewTest, FirstStageAndFirstStageWithSemantics) {
  const ConfigView view = ConfigView::FromProtos(
      3, {DefaultPipelineProto(0), DefaultPipelineProto(3, "Partners")}, {});

  ASSERT_NE(view.FirstStage(3), nullptr);
  EXPECT_EQ(view.FirstStage(3)->stage_id, "C3:NEW");
  EXPECT_EQ(
      view.FirstStageWithSemantics(3, pipelines_v1::STAGE_SEMANTICS_PROCESS)
          ->stage_id,
      "C3:NEW");
  EXPECT_EQ(
      view.FirstStageWithSemantics(3, pipelines_v1::STAGE_SEMANTICS_SUCCESS)
          ->stage_id,
      "C3:WON");
  EXPECT_EQ(
      view.FirstStageWithSemantics(0, pipelines_v1::STAGE_SEMANTICS_FAILURE)
          ->stage_id,
      "LOSE");
  EXPECT_EQ(view.FirstStageWithSemantics(
                0, pipelines_v1::STAGE_SEMANTICS_UNSPECIFIED),
            nullptr);
  EXPECT_EQ(
      view.FirstStageWithSemantics(5, pipelines_v1::STAGE_SEMANTICS_PROCESS),
      nullptr);
}

TEST(ConfigViewTest, StageIndexIsThePositionInOrder) {
  const ConfigView view =
      ConfigView::FromProtos(1, {DefaultPipelineProto(0)}, {});
  EXPECT_EQ(view.StageIndex(0, "NEW"), 0);
  EXPECT_EQ(view.StageIndex(0, "EXECUTING"), 3);
  EXPECT_EQ(view.StageIndex(0, "APOLOGY"), 7);
  EXPECT_EQ(view.StageIndex(0, "C1:NEW"), std::nullopt);
  EXPECT_LT(*view.StageIndex(0, "FINAL_INVOICE"), *view.StageIndex(0, "WON"));
}

TEST(ConfigViewTest, FindsFieldsByCode) {
  pipelines_v1::FieldDefinition channel = Field("UF_CRM_CHANNEL", 10);
  channel.set_type(pipelines_v1::FIELD_TYPE_ENUMERATION);
  channel.add_options()->set_value("Web");
  const ConfigView view = ConfigView::FromProtos(1, {}, {channel});
  const pipelines_v1::FieldDefinition* found = view.FindField("UF_CRM_CHANNEL");
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->type(), pipelines_v1::FIELD_TYPE_ENUMERATION);
  ASSERT_EQ(found->options_size(), 1);
  EXPECT_EQ(found->options(0).value(), "Web");
  EXPECT_EQ(view.FindField("UF_CRM_OTHER"), nullptr);
}

TEST(ConfigViewTest, DuplicateIdsKeepTheFirst) {
  pipelines_v1::Pipeline again = DefaultPipelineProto(0, "Again");
  const ConfigView view =
      ConfigView::FromProtos(1, {DefaultPipelineProto(0), again},
                             {Field("UF_CRM_A", 1), Field("UF_CRM_A", 2)});
  ASSERT_EQ(view.pipelines().size(), 1u);
  EXPECT_EQ(view.pipelines()[0].name, "General");
  ASSERT_EQ(view.fields().size(), 1u);
  EXPECT_EQ(view.fields()[0].sort(), 1);
}

}  // namespace
}  // namespace crm::common
