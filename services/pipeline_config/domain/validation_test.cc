#include "services/pipeline_config/domain/validation.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/status/status_matchers.h"
#include "common/text/request_id.h"

namespace crm::pipeline_config {
namespace {

namespace v1 = ::crm::pipelines::v1;

using ::crm::testing::IsOk;
using ::crm::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
constexpr absl::StatusCode kPrecondition =
    absl::StatusCode::kFailedPrecondition;

MATCHER_P(IsOkAndHolds, expected,
          "is OK and holds " + ::testing::PrintToString(expected)) {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status();
    return false;
  }
  *result_listener << "holds " << ::testing::PrintToString(*arg);
  return *arg == expected;
}

std::string Repeat(const std::string& piece, int times) {
  std::string result;
  for (int i = 0; i < times; ++i) result += piece;
  return result;
}

// --- ValidateName ------------------------------------------------------------

TEST(ValidateNameTest, AcceptsOrdinaryNames) {
  EXPECT_THAT(ValidateName("pipeline.name", "Sales"), IsOk());
  EXPECT_THAT(ValidateName("pipeline.name", "x"), IsOk());
  EXPECT_THAT(ValidateName("pipeline.name", "  padded  "), IsOk());
  EXPECT_THAT(ValidateName("pipeline.name", "Negócio €100 🚀"), IsOk());
}

TEST(ValidateNameTest, RejectsEmptyNamingTheField) {
  EXPECT_THAT(ValidateName("pipeline.name", ""),
              StatusIs(kInvalid, HasSubstr("pipeline.name: required")));
}

TEST(ValidateNameTest, RejectsBlank) {
  EXPECT_THAT(ValidateName("stage.name", " "),
              StatusIs(kInvalid, HasSubstr("stage.name: blank")));
  EXPECT_THAT(ValidateName("stage.name", "     "),
              StatusIs(kInvalid, HasSubstr("stage.name: blank")));
  EXPECT_THAT(ValidateName("stage.name", " \t\n "),
              StatusIs(kInvalid, HasSubstr("stage.name")));
}

TEST(ValidateNameTest, CountsAsciiCharacters) {
  EXPECT_THAT(ValidateName("n", std::string(255, 'a')), IsOk());
  EXPECT_THAT(ValidateName("n", std::string(256, 'a')),
              StatusIs(kInvalid, HasSubstr("n: longer than 255 characters")));
}

TEST(ValidateNameTest, CountsCodePointsNotBytes) {
  // "é" is 2 bytes, "€" 3 bytes, "🚀" 4 bytes: 255 of them are far more than
  // 255 bytes but exactly 255 characters.
  for (const std::string piece : {"é", "€", "🚀"}) {
    SCOPED_TRACE(piece);
    EXPECT_THAT(ValidateName("n", Repeat(piece, 255)), IsOk());
    EXPECT_THAT(ValidateName("n", Repeat(piece, 256)),
                StatusIs(kInvalid, HasSubstr("longer than 255")));
  }
  // Mixed widths: 254 ASCII + one 4-byte character = 255 characters.
  EXPECT_THAT(ValidateName("n", std::string(254, 'a') + "🚀"), IsOk());
  EXPECT_THAT(ValidateName("n", std::string(255, 'a') + "é"),
              StatusIs(kInvalid, HasSubstr("longer than 255")));
}

TEST(ValidateNameTest, RejectsInvalidUtf8) {
  const std::vector<std::string> invalid = {
      "\x80",                  // lone continuation byte
      "ab\xbf",                // lone continuation byte after ASCII
      "abc\xc3",               // truncated 2-byte sequence at the end
      "abc\xe2\x82",           // truncated 3-byte sequence at the end ("€")
      "abc\xf0\x9f\x9a",       // truncated 4-byte sequence at the end ("🚀")
      "\xc3(",                 // lead byte followed by a non-continuation
      "\xc0\x80",              // overlong encoding of NUL
      "\xc1\xbf",              // overlong 2-byte encoding
      "\xe0\x80\xaf",          // overlong 3-byte encoding of "/"
      "\xf0\x80\x80\xaf",      // overlong 4-byte encoding of "/"
      "\xed\xa0\x80",          // UTF-16 surrogate U+D800
      "\xed\xbf\xbf",          // UTF-16 surrogate U+DFFF
      "\xf4\x90\x80\x80",      // past U+10FFFF
      "\xf8\x88\x80\x80\x80",  // 5-byte form
      "\xff",                  // never valid
  };
  for (const std::string& value : invalid) {
    SCOPED_TRACE(::testing::PrintToString(value));
    EXPECT_THAT(
        ValidateName("pipeline.name", value),
        StatusIs(kInvalid, HasSubstr("pipeline.name: not valid UTF-8")));
  }
  // The boundaries next to the invalid ranges are fine.
  EXPECT_THAT(ValidateName("n", "\xed\x9f\xbf"), IsOk());      // U+D7FF
  EXPECT_THAT(ValidateName("n", "\xee\x80\x80"), IsOk());      // U+E000
  EXPECT_THAT(ValidateName("n", "\xf4\x8f\xbf\xbf"), IsOk());  // U+10FFFF
  EXPECT_THAT(ValidateName("n", "\xc2\xa0x"), IsOk());  // U+00A0 then ASCII
}

TEST(ValidateNameTest, RejectsControlCharacters) {
  for (const std::string& value :
       {std::string("a\x01"
                    "b"),
        std::string("line\nbreak"), std::string("tab\there"),
        std::string("a\x1f"), std::string("nul\0inside", 10),
        std::string("cr\r")}) {
    SCOPED_TRACE(::testing::PrintToString(value));
    EXPECT_THAT(ValidateName("role.name", value),
                StatusIs(kInvalid, HasSubstr("role.name: control characters")));
  }
}

// DEL (0x7f) and the C1 controls (U+0080..U+009F) are control characters as
// much as 0x01 is.
TEST(ValidateNameTest, RejectsDelAndC1ControlCharacters) {
  EXPECT_THAT(ValidateName("role.name",
                           "a\x7f"
                           "b"),
              StatusIs(kInvalid, HasSubstr("control characters")));
  EXPECT_THAT(ValidateName("role.name",
                           "a\xc2\x85"
                           "b"),  // U+0085 NEXT LINE
              StatusIs(kInvalid, HasSubstr("control characters")));
}

// A name made only of NO-BREAK SPACE (U+00A0) or IDEOGRAPHIC SPACE (U+3000)
// shows as nothing: blank ("not blank").
TEST(ValidateNameTest, RejectsUnicodeWhitespaceOnlyAsBlank) {
  EXPECT_THAT(ValidateName("pipeline.name", "\xc2\xa0\xc2\xa0"),
              StatusIs(kInvalid, HasSubstr("blank")));
  EXPECT_THAT(ValidateName("pipeline.name", " \xe3\x80\x80 "),
              StatusIs(kInvalid, HasSubstr("blank")));
}

// --- ValidateSort / ValidateColor / ValidateRequestId -----------------------

TEST(ValidateSortTest, Bounds) {
  EXPECT_THAT(ValidateSort("pipeline.sort", 0), IsOk());
  EXPECT_THAT(ValidateSort("pipeline.sort", 500), IsOk());
  EXPECT_THAT(ValidateSort("pipeline.sort", kMaxSort), IsOk());
  EXPECT_THAT(
      ValidateSort("pipeline.sort", -1),
      StatusIs(kInvalid, HasSubstr("pipeline.sort: must be between 0 and")));
  EXPECT_THAT(ValidateSort("stage.sort", int64_t{kMaxSort} + 1),
              StatusIs(kInvalid, HasSubstr("stage.sort")));
  EXPECT_THAT(ValidateSort("stage.sort", INT64_MIN), StatusIs(kInvalid));
}

TEST(ValidateColorTest, AcceptsHexInAnyCase) {
  EXPECT_THAT(ValidateColor("stage.color", "#39A8EF"), IsOk());
  EXPECT_THAT(ValidateColor("stage.color", "#39a8ef"), IsOk());
  EXPECT_THAT(ValidateColor("stage.color", "#aBcDeF"), IsOk());
  EXPECT_THAT(ValidateColor("stage.color", "#000000"), IsOk());
}

TEST(ValidateColorTest, RejectsOtherShapes) {
  for (const std::string color :
       {"", "#", "39A8EF", "#39A8E", "#39A8EF0", "#39A8EG", "#FFF", "##39A8E",
        " #39A8E", "#39A8E ", "red"}) {
    SCOPED_TRACE(color);
    EXPECT_THAT(
        ValidateColor("stage.color", color),
        StatusIs(kInvalid, HasSubstr("stage.color: must look like #RRGGBB")));
  }
  EXPECT_THAT(ValidateColor("stage.color", "nope"),
              StatusIs(kInvalid, HasSubstr("\"nope\"")));
}

TEST(ValidateRequestIdTest, EmptyAndPrintableAsciiAreFine) {
  EXPECT_THAT(ValidateRequestId(""), IsOk());
  EXPECT_THAT(ValidateRequestId("req-123_ABC.x:y/z~!"), IsOk());
  EXPECT_THAT(ValidateRequestId(std::string(common::kMaxRequestIdChars, 'r')),
              IsOk());
}

TEST(ValidateRequestIdTest, RejectsTooLongAndOddCharacters) {
  EXPECT_THAT(
      ValidateRequestId(std::string(common::kMaxRequestIdChars + 1, 'r')),
      StatusIs(kInvalid, HasSubstr("request_id: at most 128 characters")));
  for (const std::string& id :
       {std::string("a b"), std::string("tab\t"), std::string("nl\n"),
        std::string("del\x7f"), std::string("caf\xc3\xa9"),
        std::string("nul\0", 4)}) {
    SCOPED_TRACE(::testing::PrintToString(id));
    EXPECT_THAT(
        ValidateRequestId(id),
        StatusIs(kInvalid,
                 HasSubstr("request_id: printable ASCII without spaces only")));
  }
}

// --- NormalizeStageId --------------------------------------------------------

TEST(NormalizeStageIdTest, DefaultPipelineHasNoPrefix) {
  EXPECT_EQ(StagePrefix(0), "");
  EXPECT_THAT(NormalizeStageId(0, "NEW"), IsOkAndHolds(std::string("NEW")));
  EXPECT_THAT(NormalizeStageId(0, "A-1_Z9"),
              IsOkAndHolds(std::string("A-1_Z9")));
  // A prefix is foreign to pipeline 0.
  EXPECT_THAT(NormalizeStageId(0, "C3:NEW"),
              StatusIs(kInvalid, HasSubstr("stage_id")));
}

TEST(NormalizeStageIdTest, OtherPipelinesGetTheirPrefix) {
  EXPECT_EQ(StagePrefix(3), "C3:");
  EXPECT_EQ(StagePrefix(1234), "C1234:");
  EXPECT_THAT(NormalizeStageId(3, "NEW"), IsOkAndHolds(std::string("C3:NEW")));
  EXPECT_THAT(NormalizeStageId(3, "C3:NEW"),
              IsOkAndHolds(std::string("C3:NEW")));
}

TEST(NormalizeStageIdTest, RejectsAnotherPipelinesPrefix) {
  EXPECT_THAT(
      NormalizeStageId(3, "C4:NEW"),
      StatusIs(kInvalid,
               HasSubstr("has a prefix that is not \"C3:\" of pipeline 3")));
  EXPECT_THAT(NormalizeStageId(3, "C33:NEW"),
              StatusIs(kInvalid, HasSubstr("C3:")));
  EXPECT_THAT(NormalizeStageId(33, "C3:NEW"),
              StatusIs(kInvalid, HasSubstr("C33:")));
  EXPECT_THAT(NormalizeStageId(3, "C3:C3:NEW"), StatusIs(kInvalid));
}

TEST(NormalizeStageIdTest, LengthIsCountedWithoutThePrefix) {
  const std::string id22(kMaxStageIdChars, 'A');
  const std::string id23(kMaxStageIdChars + 1, 'A');
  EXPECT_THAT(NormalizeStageId(0, id22), IsOkAndHolds(id22));
  EXPECT_THAT(NormalizeStageId(3, id22), IsOkAndHolds("C3:" + id22));
  EXPECT_THAT(NormalizeStageId(3, "C3:" + id22), IsOkAndHolds("C3:" + id22));
  EXPECT_THAT(
      NormalizeStageId(0, id23),
      StatusIs(kInvalid, HasSubstr("stage_id: longer than 22 characters")));
  EXPECT_THAT(NormalizeStageId(3, id23),
              StatusIs(kInvalid, HasSubstr("longer than 22")));
  EXPECT_THAT(NormalizeStageId(3, "C3:" + id23),
              StatusIs(kInvalid, HasSubstr("longer than 22")));
}

TEST(NormalizeStageIdTest, RejectsBadCharacters) {
  for (const std::string id :
       {"new", "New", "NE W", "NEW ", "A:B", "NEW.1", "NÉW", "NEW!"}) {
    SCOPED_TRACE(id);
    EXPECT_THAT(NormalizeStageId(0, id),
                StatusIs(kInvalid, HasSubstr("stage_id")));
    EXPECT_THAT(NormalizeStageId(3, id),
                StatusIs(kInvalid, HasSubstr("stage_id")));
  }
  EXPECT_THAT(NormalizeStageId(3, "new"),
              StatusIs(kInvalid, HasSubstr("may only hold A-Z, 0-9, _ and -")));
}

TEST(NormalizeStageIdTest, RejectsEmpty) {
  EXPECT_THAT(NormalizeStageId(0, ""),
              StatusIs(kInvalid, HasSubstr("stage_id: required")));
  EXPECT_THAT(NormalizeStageId(3, ""),
              StatusIs(kInvalid, HasSubstr("stage_id: required")));
  EXPECT_THAT(NormalizeStageId(3, "C3:"),
              StatusIs(kInvalid, HasSubstr("stage_id: required")));
}

// --- CheckStageOrder ---------------------------------------------------------

v1::Stage MakeStage(const std::string& id, v1::StageSemantics semantics) {
  v1::Stage stage;
  stage.set_stage_id(id);
  stage.set_semantics(semantics);
  return stage;
}

constexpr v1::StageSemantics P = v1::STAGE_SEMANTICS_PROCESS;
constexpr v1::StageSemantics S = v1::STAGE_SEMANTICS_SUCCESS;
constexpr v1::StageSemantics F = v1::STAGE_SEMANTICS_FAILURE;

std::vector<v1::Stage> Stages(
    const std::vector<std::pair<std::string, v1::StageSemantics>>& spec) {
  std::vector<v1::Stage> stages;
  for (const auto& [id, semantics] : spec)
    stages.push_back(MakeStage(id, semantics));
  return stages;
}

TEST(CheckStageOrderTest, AcceptsValidSets) {
  EXPECT_THAT(CheckStageOrder(Stages({{"A", P}, {"W", S}, {"L", F}})), IsOk());
  EXPECT_THAT(CheckStageOrder(
                  Stages({{"A", P}, {"B", P}, {"W", S}, {"L", F}, {"M", F}})),
              IsOk());
  EXPECT_THAT(CheckStageOrder(DefaultStages(0)), IsOk());
  EXPECT_THAT(CheckStageOrder(DefaultStages(7)), IsOk());
}

TEST(CheckStageOrderTest, NeedsAProcessStage) {
  EXPECT_THAT(CheckStageOrder({}),
              StatusIs(kPrecondition, HasSubstr("at least one PROCESS stage")));
  EXPECT_THAT(
      CheckStageOrder(Stages({{"W", S}, {"L", F}})),
      StatusIs(kPrecondition,
               HasSubstr("must start with at least one PROCESS stage")));
  EXPECT_THAT(CheckStageOrder(Stages({{"L", F}})),
              StatusIs(kPrecondition, HasSubstr("at least one PROCESS stage")));
}

TEST(CheckStageOrderTest, ProcessAfterSuccess) {
  EXPECT_THAT(
      CheckStageOrder(Stages({{"A", P}, {"W", S}, {"LATE", P}, {"L", F}})),
      StatusIs(kPrecondition, HasSubstr("PROCESS stage LATE must come before "
                                        "the SUCCESS and FAILURE stages")));
}

TEST(CheckStageOrderTest, ProcessAfterFailure) {
  EXPECT_THAT(
      CheckStageOrder(Stages({{"A", P}, {"W", S}, {"L", F}, {"LATE", P}})),
      StatusIs(kPrecondition,
               HasSubstr("PROCESS stage LATE must come before")));
}

TEST(CheckStageOrderTest, ExactlyOneSuccess) {
  EXPECT_THAT(
      CheckStageOrder(Stages({{"A", P}, {"L", F}})),
      StatusIs(kPrecondition,
               HasSubstr("exactly one SUCCESS stage is required, found 0")));
  EXPECT_THAT(
      CheckStageOrder(Stages({{"A", P}, {"W1", S}, {"W2", S}, {"L", F}})),
      StatusIs(kPrecondition,
               HasSubstr("exactly one SUCCESS stage is required, found 2")));
}

TEST(CheckStageOrderTest, FailureBeforeSuccess) {
  EXPECT_THAT(
      CheckStageOrder(Stages({{"A", P}, {"L", F}, {"W", S}})),
      StatusIs(
          kPrecondition,
          HasSubstr("SUCCESS stage W must come before every FAILURE stage")));
}

TEST(CheckStageOrderTest, NeedsAFailureStage) {
  EXPECT_THAT(CheckStageOrder(Stages({{"A", P}, {"W", S}})),
              StatusIs(kPrecondition,
                       HasSubstr("at least one FAILURE stage is required")));
}

TEST(CheckStageOrderTest, StageWithoutSemantics) {
  EXPECT_THAT(
      CheckStageOrder(
          Stages({{"A", P}, {"X", v1::STAGE_SEMANTICS_UNSPECIFIED}, {"W", S}})),
      StatusIs(kPrecondition, HasSubstr("stage X has no semantics")));
}

// --- ValidateStageFields -----------------------------------------------------

v1::Stage GoodStage() {
  v1::Stage stage;
  stage.set_stage_id("NEW");
  stage.set_name("New");
  stage.set_sort(10);
  stage.set_color("#39A8EF");
  stage.set_semantics(v1::STAGE_SEMANTICS_PROCESS);
  stage.set_default_probability(10);
  stage.set_rotting_days(0);
  return stage;
}

TEST(ValidateStageFieldsTest, AcceptsAGoodStageAndBounds) {
  EXPECT_THAT(ValidateStageFields(GoodStage()), IsOk());
  v1::Stage stage = GoodStage();
  stage.set_default_probability(0);
  stage.set_rotting_days(kMaxRottingDays);
  EXPECT_THAT(ValidateStageFields(stage), IsOk());
  stage.set_default_probability(100);
  stage.set_semantics(v1::STAGE_SEMANTICS_FAILURE);
  EXPECT_THAT(ValidateStageFields(stage), IsOk());
}

TEST(ValidateStageFieldsTest, RejectsEachBadField) {
  struct Case {
    const char* what;
    void (*edit)(v1::Stage*);
    const char* field;
  };
  const Case cases[] = {
      {"no semantics",
       [](v1::Stage* s) { s->set_semantics(v1::STAGE_SEMANTICS_UNSPECIFIED); },
       "stage.semantics"},
      {"unknown semantics",
       [](v1::Stage* s) {
         s->set_semantics(static_cast<v1::StageSemantics>(42));
       },
       "stage.semantics"},
      {"empty name", [](v1::Stage* s) { s->set_name(""); }, "stage.name"},
      {"blank name", [](v1::Stage* s) { s->set_name("   "); }, "stage.name"},
      {"long name", [](v1::Stage* s) { s->set_name(std::string(256, 'n')); },
       "stage.name"},
      {"negative sort", [](v1::Stage* s) { s->set_sort(-1); }, "stage.sort"},
      {"no color", [](v1::Stage* s) { s->set_color(""); }, "stage.color"},
      {"bad color", [](v1::Stage* s) { s->set_color("blue"); }, "stage.color"},
      {"probability -1", [](v1::Stage* s) { s->set_default_probability(-1); },
       "stage.default_probability"},
      {"probability 101", [](v1::Stage* s) { s->set_default_probability(101); },
       "stage.default_probability"},
      {"rotting -1", [](v1::Stage* s) { s->set_rotting_days(-1); },
       "stage.rotting_days"},
      {"rotting too long",
       [](v1::Stage* s) { s->set_rotting_days(kMaxRottingDays + 1); },
       "stage.rotting_days"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    v1::Stage stage = GoodStage();
    c.edit(&stage);
    EXPECT_THAT(ValidateStageFields(stage),
                StatusIs(kInvalid, HasSubstr(c.field)));
  }
}

// --- DefaultStages -----------------------------------------------------------

TEST(DefaultStagesTest, MatchesTheSpecTable) {
  const std::vector<v1::Stage> stages = DefaultStages(0);
  std::vector<std::string> ids;
  std::vector<int> sorts;
  std::vector<v1::StageSemantics> semantics;
  for (const auto& stage : stages) {
    ids.push_back(stage.stage_id());
    sorts.push_back(stage.sort());
    semantics.push_back(stage.semantics());
    EXPECT_EQ(stage.pipeline_id(), 0);
    EXPECT_THAT(ValidateStageFields(stage), IsOk()) << stage.stage_id();
  }
  EXPECT_THAT(
      ids, ElementsAre("NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING",
                       "FINAL_INVOICE", "WON", "LOSE", "APOLOGY"));
  EXPECT_THAT(sorts, ElementsAre(10, 20, 30, 40, 50, 60, 70, 80));
  EXPECT_THAT(semantics, ElementsAre(P, P, P, P, P, S, F, F));
}

TEST(DefaultStagesTest, IdsCarryThePipelinePrefix) {
  const std::vector<v1::Stage> stages = DefaultStages(3);
  ASSERT_EQ(stages.size(), 8u);
  std::vector<std::string> ids;
  for (const auto& stage : stages) {
    ids.push_back(stage.stage_id());
    EXPECT_EQ(stage.pipeline_id(), 3);
    // Every default id is itself a valid id of that pipeline.
    EXPECT_THAT(NormalizeStageId(3, stage.stage_id()),
                IsOkAndHolds(stage.stage_id()));
  }
  EXPECT_THAT(
      ids, ElementsAre("C3:NEW", "C3:PREPARATION", "C3:PREPAYMENT_INVOICE",
                       "C3:EXECUTING", "C3:FINAL_INVOICE", "C3:WON", "C3:LOSE",
                       "C3:APOLOGY"));
}

TEST(DefaultStagesTest, ColorsPerSemantics) {
  EXPECT_THAT(ValidateColor("c", DefaultStageColor(P)), IsOk());
  EXPECT_THAT(ValidateColor("c", DefaultStageColor(S)), IsOk());
  EXPECT_THAT(ValidateColor("c", DefaultStageColor(F)), IsOk());
  for (const auto& stage : DefaultStages(0)) {
    if (stage.semantics() != P) {
      EXPECT_EQ(stage.color(), DefaultStageColor(stage.semantics()))
          << stage.stage_id();
    }
  }
}

TEST(SortStagesTest, OrdersBySortThenId) {
  std::vector<v1::Stage> stages = Stages({{"B", P}, {"A", P}, {"C", P}});
  stages[0].set_sort(10);
  stages[1].set_sort(10);
  stages[2].set_sort(5);
  SortStages(&stages);
  EXPECT_EQ(stages[0].stage_id(), "C");
  EXPECT_EQ(stages[1].stage_id(), "A");
  EXPECT_EQ(stages[2].stage_id(), "B");
}

// --- Fields ------------------------------------------------------------------

TEST(ValidateFieldCodeTest, LengthBounds) {
  EXPECT_THAT(ValidateFieldCode("UF_CRM_A"), IsOk());
  EXPECT_THAT(ValidateFieldCode("UF_CRM_" + std::string(43, 'X')), IsOk());
  EXPECT_THAT(
      ValidateFieldCode("UF_CRM_" + std::string(44, 'X')),
      StatusIs(kInvalid,
               HasSubstr("field.code: must match UF_CRM_[A-Z0-9_]{1,43}")));
  EXPECT_THAT(ValidateFieldCode("UF_CRM_"),
              StatusIs(kInvalid, HasSubstr("field.code")));
}

TEST(ValidateFieldCodeTest, Characters) {
  EXPECT_THAT(ValidateFieldCode("UF_CRM_1_ABC_9"), IsOk());
  EXPECT_THAT(ValidateFieldCode("UF_CRM____"), IsOk());
  for (const std::string code :
       {"", "UF_CRM", "uf_crm_X", "UF_CRM_x", "UF_CRM_A-B", "UF_CRM_A B",
        "XUF_CRM_A", "UF_CR_A", "CRM_A", "UF_CRM_É"}) {
    SCOPED_TRACE(code);
    EXPECT_THAT(ValidateFieldCode(code),
                StatusIs(kInvalid, HasSubstr("field.code")));
  }
}

v1::FieldDefinition StringField() {
  v1::FieldDefinition field;
  field.set_code("UF_CRM_NOTE");
  field.set_type(v1::FIELD_TYPE_STRING);
  field.set_label("Note");
  field.set_sort(100);
  return field;
}

v1::FieldDefinition EnumField() {
  v1::FieldDefinition field;
  field.set_code("UF_CRM_SIZE");
  field.set_type(v1::FIELD_TYPE_ENUMERATION);
  field.set_label("Size");
  for (const char* value : {"S", "M", "L"}) {
    auto* option = field.add_options();
    option->set_value(value);
    option->set_sort(10);
  }
  return field;
}

TEST(ValidateFieldDefinitionTest, AcceptsGoodFields) {
  EXPECT_THAT(ValidateFieldDefinition(StringField()), IsOk());
  EXPECT_THAT(ValidateFieldDefinition(EnumField()), IsOk());
  v1::FieldDefinition one_default = EnumField();
  one_default.mutable_options(1)->set_is_default(true);
  EXPECT_THAT(ValidateFieldDefinition(one_default), IsOk());
  for (int type = v1::FIELD_TYPE_STRING; type <= v1::FIELD_TYPE_URL; ++type) {
    if (type == v1::FIELD_TYPE_ENUMERATION) continue;
    v1::FieldDefinition field = StringField();
    field.set_type(static_cast<v1::FieldType>(type));
    EXPECT_THAT(ValidateFieldDefinition(field), IsOk()) << type;
  }
}

TEST(ValidateFieldDefinitionTest, RejectsEachBadPart) {
  struct Case {
    const char* what;
    v1::FieldDefinition field;
    const char* message;
  };
  std::vector<Case> cases;
  {
    v1::FieldDefinition f = StringField();
    f.set_code("UF_NOTE");
    cases.push_back({"bad code", f, "field.code"});
  }
  {
    v1::FieldDefinition f = StringField();
    f.set_type(v1::FIELD_TYPE_UNSPECIFIED);
    cases.push_back({"no type", f, "field.type"});
  }
  {
    v1::FieldDefinition f = StringField();
    f.set_type(static_cast<v1::FieldType>(77));
    cases.push_back({"unknown type", f, "field.type"});
  }
  {
    v1::FieldDefinition f = StringField();
    f.set_label("");
    cases.push_back({"no label", f, "field.label"});
  }
  {
    v1::FieldDefinition f = StringField();
    f.set_label(" ");
    cases.push_back({"blank label", f, "field.label"});
  }
  {
    v1::FieldDefinition f = StringField();
    f.set_sort(-5);
    cases.push_back({"negative sort", f, "field.sort"});
  }
  {
    v1::FieldDefinition f = StringField();
    f.add_options()->set_value("x");
    cases.push_back(
        {"options on a string", f, "field.options: only enumeration"});
  }
  {
    v1::FieldDefinition f = EnumField();
    f.clear_options();
    cases.push_back({"enum without options", f, "at least one option"});
  }
  {
    v1::FieldDefinition f = EnumField();
    f.clear_options();
    for (int i = 0; i <= kMaxEnumOptions; ++i)
      f.add_options()->set_value(std::to_string(i));
    cases.push_back({"too many options", f, "at most 1000 options"});
  }
  {
    v1::FieldDefinition f = EnumField();
    f.mutable_options(1)->set_value("");
    cases.push_back({"empty option", f, "field.options[1].value"});
  }
  {
    v1::FieldDefinition f = EnumField();
    f.mutable_options(2)->set_value("S");
    cases.push_back(
        {"duplicate option", f, "field.options[2].value: \"S\" appears twice"});
  }
  {
    v1::FieldDefinition f = EnumField();
    f.mutable_options(0)->set_sort(-1);
    cases.push_back({"negative option sort", f, "field.options[0].sort"});
  }
  {
    v1::FieldDefinition f = EnumField();
    f.mutable_options(0)->set_is_default(true);
    f.mutable_options(2)->set_is_default(true);
    cases.push_back({"two defaults", f, "at most one default"});
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    EXPECT_THAT(ValidateFieldDefinition(c.field),
                StatusIs(kInvalid, HasSubstr(c.message)));
  }
}

TEST(ValidateFieldDefinitionTest, ExactlyMaxOptionsIsFine) {
  v1::FieldDefinition f = EnumField();
  f.clear_options();
  for (int i = 0; i < kMaxEnumOptions; ++i)
    f.add_options()->set_value(std::to_string(i));
  EXPECT_THAT(ValidateFieldDefinition(f), IsOk());
}

}  // namespace
}  // namespace crm::pipeline_config
