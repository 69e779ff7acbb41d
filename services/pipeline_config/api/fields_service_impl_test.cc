// In-process gRPC tests of crm.pipelines.v1.DealFieldsService: custom deal
// field definitions, their enumeration options, paging, authentication and
// the CONFIG permission.
#include "services/pipeline_config/api/fields_service_impl.h"

#include <functional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/status/status_matchers.h"
#include "services/pipeline_config/api/service_test_fixture.h"

namespace crm::pipeline_config {
namespace {

using ::crm::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr absl::StatusCode kInvalidArgument =
    absl::StatusCode::kInvalidArgument;
constexpr absl::StatusCode kNotFound = absl::StatusCode::kNotFound;

class FieldsServiceTest : public PipelineConfigServiceTest {
 protected:
  absl::StatusOr<v1::FieldDefinition> Create(const v1::FieldDefinition& field) {
    v1::CreateFieldRequest request;
    *request.mutable_field() = field;
    return Call(&FieldsStub::CreateField, request);
  }

  absl::StatusOr<v1::FieldDefinition> Get(const std::string& code) {
    v1::GetFieldRequest request;
    request.set_code(code);
    return Call(&FieldsStub::GetField, request);
  }

  absl::StatusOr<v1::FieldDefinition> Update(
      const v1::FieldDefinition& field, const google::protobuf::FieldMask& mask,
      const std::string& etag = "") {
    v1::UpdateFieldRequest request;
    *request.mutable_field() = field;
    *request.mutable_update_mask() = mask;
    request.set_etag(etag);
    return Call(&FieldsStub::UpdateField, request);
  }

  absl::Status Delete(const std::string& code, const std::string& etag = "") {
    v1::DeleteFieldRequest request;
    request.set_code(code);
    request.set_etag(etag);
    return Call(&FieldsStub::DeleteField, request).status();
  }

  absl::StatusOr<v1::ListFieldsResponse> List(
      int32_t page_size, const std::string& page_token = "") {
    v1::ListFieldsRequest request;
    request.set_page_size(page_size);
    request.set_page_token(page_token);
    return Call(&FieldsStub::ListFields, request);
  }

  // A valid definition.
  static v1::FieldDefinition Field(const std::string& code,
                                   v1::FieldType type = v1::FIELD_TYPE_STRING) {
    v1::FieldDefinition field;
    field.set_code(code);
    field.set_type(type);
    field.set_label("Label");
    return field;
  }

  static v1::FieldDefinition Enumeration(
      const std::string& code, const std::vector<std::string>& values) {
    v1::FieldDefinition field = Field(code, v1::FIELD_TYPE_ENUMERATION);
    for (size_t i = 0; i < values.size(); ++i) {
      auto* option = field.add_options();
      option->set_value(values[i]);
      option->set_sort(static_cast<int32_t>((i + 1) * 10));
    }
    return field;
  }

  static std::vector<std::string> Values(const v1::FieldDefinition& field) {
    std::vector<std::string> values;
    for (const auto& option : field.options()) values.push_back(option.value());
    return values;
  }

  using Rpc = std::function<absl::Status(const std::string& token)>;
  // Every RPC of the service with valid requests; UF_CRM_TARGET must exist.
  std::vector<std::pair<std::string, Rpc>> AllRpcs();
};

// --- CreateField / GetField
// -------------------------------------------------------

TEST_F(FieldsServiceTest, CreateAndGetField) {
  const int64_t version = ConfigVersion();
  v1::FieldDefinition field = Field("UF_CRM_CONTRACT_NO");
  field.set_label("Contract number");
  field.set_mandatory(true);
  field.set_multiple(true);
  field.set_sort(40);
  field.set_etag("\"ignored\"");
  ASSERT_OK_AND_ASSIGN(v1::FieldDefinition created, Create(field));
  EXPECT_EQ(created.code(), "UF_CRM_CONTRACT_NO");
  EXPECT_EQ(created.type(), v1::FIELD_TYPE_STRING);
  EXPECT_EQ(created.label(), "Contract number");
  EXPECT_TRUE(created.mandatory());
  EXPECT_TRUE(created.multiple());
  EXPECT_EQ(created.sort(), 40);
  EXPECT_TRUE(created.has_create_time());
  EXPECT_FALSE(created.etag().empty());
  EXPECT_NE(created.etag(), "\"ignored\"");
  EXPECT_EQ(ConfigVersion(), version + 1);

  ASSERT_OK_AND_ASSIGN(v1::FieldDefinition fetched, Get("UF_CRM_CONTRACT_NO"));
  EXPECT_EQ(fetched.SerializeAsString(), created.SerializeAsString());

  // Every type can be created.
  for (int type = v1::FIELD_TYPE_STRING; type <= v1::FIELD_TYPE_URL; ++type) {
    SCOPED_TRACE(type);
    const auto field_type = static_cast<v1::FieldType>(type);
    v1::FieldDefinition typed =
        field_type == v1::FIELD_TYPE_ENUMERATION
            ? Enumeration(absl::StrCat("UF_CRM_TYPE_", type), {"a"})
            : Field(absl::StrCat("UF_CRM_TYPE_", type), field_type);
    ASSERT_OK_AND_ASSIGN(v1::FieldDefinition made, Create(typed));
    EXPECT_EQ(made.type(), field_type);
  }
}

TEST_F(FieldsServiceTest, CodeIsValidated) {
  const int64_t version = ConfigVersion();
  for (const std::string& code : std::vector<std::string>{
           "", "UF_CRM_", "UF_CRM_note", "UF_CRM_Note", "uf_crm_NOTE",
           "CRM_NOTE", "UF_NOTE", "UF_CRM_NO-TE", "UF_CRM_NO TE",
           "UF_CRM_NOTE:", "XUF_CRM_NOTE", "UF_CRM_" + std::string(44, 'A')}) {
    SCOPED_TRACE(code);
    EXPECT_THAT(Create(Field(code)),
                StatusIs(kInvalidArgument, HasSubstr("field.code")));
  }
  EXPECT_EQ(ConfigVersion(), version);
  EXPECT_OK(Create(Field("UF_CRM_" + std::string(43, 'A'))));
  EXPECT_OK(Create(Field("UF_CRM_1")));
  EXPECT_OK(Create(Field("UF_CRM_A_1_B")));
}

TEST_F(FieldsServiceTest, DefinitionIsValidated) {
  const int64_t version = ConfigVersion();
  struct Case {
    std::string what;
    std::function<void(v1::FieldDefinition*)> change;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"no type",
       [](v1::FieldDefinition* f) { f->set_type(v1::FIELD_TYPE_UNSPECIFIED); },
       "field.type"},
      {"unknown type",
       [](v1::FieldDefinition* f) {
         f->set_type(static_cast<v1::FieldType>(42));
       },
       "field.type"},
      {"no label", [](v1::FieldDefinition* f) { f->clear_label(); },
       "field.label"},
      {"blank label", [](v1::FieldDefinition* f) { f->set_label("   "); },
       "field.label"},
      {"long label",
       [](v1::FieldDefinition* f) { f->set_label(std::string(256, 'l')); },
       "field.label"},
      {"negative sort", [](v1::FieldDefinition* f) { f->set_sort(-1); },
       "field.sort"},
      {"options on a string field",
       [](v1::FieldDefinition* f) { f->add_options()->set_value("x"); },
       "field.options"},
      {"enumeration without options",
       [](v1::FieldDefinition* f) { f->set_type(v1::FIELD_TYPE_ENUMERATION); },
       "field.options"},
      {"duplicate option values",
       [](v1::FieldDefinition* f) {
         *f = Enumeration(f->code(), {"Gold", "Silver", "Gold"});
       },
       "field.options[2].value"},
      {"empty option value",
       [](v1::FieldDefinition* f) {
         *f = Enumeration(f->code(), {"Gold", ""});
       },
       "field.options[1].value"},
      {"negative option sort",
       [](v1::FieldDefinition* f) {
         *f = Enumeration(f->code(), {"Gold"});
         f->mutable_options(0)->set_sort(-3);
       },
       "field.options[0].sort"},
      {"two defaults in a single-value enumeration",
       [](v1::FieldDefinition* f) {
         *f = Enumeration(f->code(), {"Gold", "Silver"});
         f->mutable_options(0)->set_is_default(true);
         f->mutable_options(1)->set_is_default(true);
       },
       "field.options"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    v1::FieldDefinition field = Field("UF_CRM_CHECKED");
    c.change(&field);
    EXPECT_THAT(Create(field), StatusIs(kInvalidArgument, HasSubstr(c.field)));
  }
  EXPECT_EQ(ConfigVersion(), version);
  EXPECT_THAT(Get("UF_CRM_CHECKED"), StatusIs(kNotFound));

  // A multiple enumeration may have several defaults.
  v1::FieldDefinition multiple =
      Enumeration("UF_CRM_CHECKED", {"Gold", "Silver"});
  multiple.set_multiple(true);
  multiple.mutable_options(0)->set_is_default(true);
  multiple.mutable_options(1)->set_is_default(true);
  EXPECT_OK(Create(multiple));
}

TEST_F(FieldsServiceTest, OptionIdsAreAssignedByTheServer) {
  v1::FieldDefinition field =
      Enumeration("UF_CRM_LEVEL", {"Gold", "Silver", "Bronze"});
  field.mutable_options(0)->set_id(999);  // output only on create
  ASSERT_OK_AND_ASSIGN(v1::FieldDefinition created, Create(field));
  ASSERT_EQ(created.options_size(), 3);
  EXPECT_THAT(Values(created), ElementsAre("Gold", "Silver", "Bronze"));
  std::set<int64_t> ids;
  for (const auto& option : created.options()) {
    EXPECT_GT(option.id(), 0);
    ids.insert(option.id());
  }
  EXPECT_EQ(ids.size(), 3u);
  EXPECT_NE(created.options(0).id(), 999);

  // Ids are unique across fields too.
  ASSERT_OK_AND_ASSIGN(v1::FieldDefinition other,
                       Create(Enumeration("UF_CRM_SIZE", {"S", "M"})));
  for (const auto& option : other.options())
    EXPECT_EQ(ids.count(option.id()), 0u);
}

TEST_F(FieldsServiceTest, DuplicateCodeIsAlreadyExists) {
  ASSERT_OK(Create(Field("UF_CRM_DUP")).status());
  const int64_t version = ConfigVersion();
  EXPECT_THAT(
      Create(Field("UF_CRM_DUP", v1::FIELD_TYPE_INTEGER)),
      StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("UF_CRM_DUP")));
  EXPECT_EQ(ConfigVersion(), version);
  ASSERT_OK_AND_ASSIGN(v1::FieldDefinition kept, Get("UF_CRM_DUP"));
  EXPECT_EQ(kept.type(), v1::FIELD_TYPE_STRING);
}

TEST_F(FieldsServiceTest, UnknownFieldIsNotFound) {
  EXPECT_THAT(Get("UF_CRM_GHOST"),
              StatusIs(kNotFound, HasSubstr("UF_CRM_GHOST")));
  v1::FieldDefinition ghost = Field("UF_CRM_GHOST");
  EXPECT_THAT(Update(ghost, Mask({"label"})),
              StatusIs(kNotFound, HasSubstr("UF_CRM_GHOST")));
  EXPECT_THAT(Delete("UF_CRM_GHOST"),
              StatusIs(kNotFound, HasSubstr("UF_CRM_GHOST")));
}

// --- UpdateField
// -------------------------------------------------------------------

TEST_F(FieldsServiceTest, UpdateChangesMaskedFields) {
  v1::FieldDefinition field = Field("UF_CRM_NOTE");
  field.set_sort(5);
  ASSERT_OK_AND_ASSIGN(v1::FieldDefinition created, Create(field));
  const int64_t version = ConfigVersion();

  v1::FieldDefinition update = created;
  update.set_label("Note");
  update.set_sort(50);
  update.set_mandatory(true);
  ASSERT_OK_AND_ASSIGN(v1::FieldDefinition labelled,
                       Update(update, Mask({"label"})));
  EXPECT_EQ(labelled.label(), "Note");
  EXPECT_EQ(labelled.sort(), 5);
  EXPECT_FALSE(labelled.mandatory());
  EXPECT_NE(labelled.etag(), created.etag());
  EXPECT_EQ(ConfigVersion(), version + 1);

  ASSERT_OK_AND_ASSIGN(
      v1::FieldDefinition all,
      Update(update, Mask({"sort", "mandatory"}), labelled.etag()));
  EXPECT_EQ(all.sort(), 50);
  EXPECT_TRUE(all.mandatory());
  EXPECT_EQ(all.create_time().SerializeAsString(),
            created.create_time().SerializeAsString());

  // Stale etag.
  EXPECT_THAT(Update(update, Mask({"label"}), created.etag()),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("etag")));
  EXPECT_THAT(Delete("UF_CRM_NOTE", created.etag()),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("etag")));

  // No-op.
  const int64_t before_noop = ConfigVersion();
  ASSERT_OK_AND_ASSIGN(v1::FieldDefinition same,
                       Update(update, Mask({"label", "sort", "mandatory"})));
  EXPECT_EQ(same.etag(), all.etag());
  EXPECT_EQ(ConfigVersion(), before_noop);

  // Values are validated.
  update.set_label("");
  EXPECT_THAT(Update(update, Mask({"label"})),
              StatusIs(kInvalidArgument, HasSubstr("field.label")));
  update.set_sort(-1);
  EXPECT_THAT(Update(update, Mask({"sort"})),
              StatusIs(kInvalidArgument, HasSubstr("field.sort")));
}

TEST_F(FieldsServiceTest, UpdateRejectsImmutableAndUnknownPaths) {
  ASSERT_OK_AND_ASSIGN(v1::FieldDefinition created,
                       Create(Field("UF_CRM_FIXED")));
  const int64_t version = ConfigVersion();
  v1::FieldDefinition update = created;
  update.set_type(v1::FIELD_TYPE_INTEGER);
  update.set_multiple(true);
  for (const char* immutable : {"code", "type", "multiple"}) {
    SCOPED_TRACE(immutable);
    EXPECT_THAT(Update(update, Mask({"label", immutable})),
                StatusIs(kInvalidArgument,
                         HasSubstr(absl::StrCat(immutable, " is immutable"))));
  }
  EXPECT_THAT(Update(update, Mask({})),
              StatusIs(kInvalidArgument, HasSubstr("update_mask")));
  EXPECT_THAT(Update(update, Mask({"lable"})),
              StatusIs(kInvalidArgument, HasSubstr("\"lable\"")));
  EXPECT_EQ(ConfigVersion(), version);
  ASSERT_OK_AND_ASSIGN(v1::FieldDefinition unchanged, Get("UF_CRM_FIXED"));
  EXPECT_EQ(unchanged.type(), v1::FIELD_TYPE_STRING);
  EXPECT_FALSE(unchanged.multiple());
}

TEST_F(FieldsServiceTest, UpdateOptionsKeepsAddsAndRemoves) {
  ASSERT_OK_AND_ASSIGN(
      v1::FieldDefinition created,
      Create(Enumeration("UF_CRM_TIER", {"Gold", "Silver", "Bronze"})));
  const int64_t gold = created.options(0).id();
  const int64_t silver = created.options(1).id();

  // Keep Gold (renamed) and Silver by id, drop Bronze, add Platinum.
  v1::FieldDefinition update = created;
  update.clear_options();
  auto* platinum = update.add_options();
  platinum->set_value("Platinum");
  platinum->set_sort(5);
  auto* kept_silver = update.add_options();
  kept_silver->set_id(silver);
  kept_silver->set_value("Silver");
  kept_silver->set_sort(20);
  auto* renamed_gold = update.add_options();
  renamed_gold->set_id(gold);
  renamed_gold->set_value("Golden");
  renamed_gold->set_sort(10);
  renamed_gold->set_is_default(true);
  ASSERT_OK_AND_ASSIGN(v1::FieldDefinition updated,
                       Update(update, Mask({"options"})));
  ASSERT_EQ(updated.options_size(), 3);
  EXPECT_THAT(Values(updated), ElementsAre("Platinum", "Silver", "Golden"));
  const int64_t platinum_id = updated.options(0).id();
  EXPECT_GT(platinum_id, 0);
  EXPECT_NE(platinum_id, gold);
  EXPECT_NE(platinum_id, silver);
  EXPECT_NE(platinum_id, created.options(2).id())
      << "a removed option's id is not reused";
  EXPECT_EQ(updated.options(1).id(), silver);
  EXPECT_EQ(updated.options(2).id(), gold);
  EXPECT_TRUE(updated.options(2).is_default());

  ASSERT_OK_AND_ASSIGN(v1::FieldDefinition fetched, Get("UF_CRM_TIER"));
  EXPECT_EQ(fetched.SerializeAsString(), updated.SerializeAsString());
}

TEST_F(FieldsServiceTest, UpdateOptionsRejectsUnknownIds) {
  ASSERT_OK_AND_ASSIGN(v1::FieldDefinition tier,
                       Create(Enumeration("UF_CRM_TIER", {"Gold", "Silver"})));
  ASSERT_OK_AND_ASSIGN(v1::FieldDefinition size,
                       Create(Enumeration("UF_CRM_SIZE", {"S", "M"})));
  const int64_t version = ConfigVersion();

  v1::FieldDefinition update = tier;
  update.mutable_options(1)->set_id(987654);
  EXPECT_THAT(Update(update, Mask({"options"})),
              StatusIs(kInvalidArgument, HasSubstr("field.options[1].id")));
  // An option of another field is no option of this one.
  update = tier;
  update.mutable_options(0)->set_id(size.options(0).id());
  EXPECT_THAT(Update(update, Mask({"options"})),
              StatusIs(kInvalidArgument, HasSubstr("field.options[0].id")));
  // One option cannot be kept twice.
  update = tier;
  update.mutable_options(1)->set_id(tier.options(0).id());
  EXPECT_THAT(Update(update, Mask({"options"})),
              StatusIs(kInvalidArgument, HasSubstr("field.options[1].id")));
  // The new list is validated like on create.
  update = tier;
  update.mutable_options(1)->set_value("Gold");
  EXPECT_THAT(Update(update, Mask({"options"})),
              StatusIs(kInvalidArgument, HasSubstr("field.options[1].value")));
  update = tier;
  update.clear_options();
  EXPECT_THAT(Update(update, Mask({"options"})),
              StatusIs(kInvalidArgument, HasSubstr("field.options")));
  EXPECT_EQ(ConfigVersion(), version);

  // Options on a non-enumeration stay refused on update.
  ASSERT_OK_AND_ASSIGN(v1::FieldDefinition text, Create(Field("UF_CRM_TEXT")));
  text.add_options()->set_value("x");
  EXPECT_THAT(Update(text, Mask({"options"})),
              StatusIs(kInvalidArgument, HasSubstr("field.options")));
}

// --- ListFields / DeleteField
// ---------------------------------------------------------

TEST_F(FieldsServiceTest, ListPagesInSortThenCodeOrder) {
  for (const auto& [code, sort] :
       std::vector<std::pair<std::string, int>>{{"UF_CRM_A", 20},
                                                {"UF_CRM_C", 10},
                                                {"UF_CRM_B", 10},
                                                {"UF_CRM_D", 0}}) {
    v1::FieldDefinition field = Field(code);
    field.set_sort(sort);
    ASSERT_OK(Create(field).status());
  }
  std::vector<std::string> codes;
  std::string token;
  int pages = 0;
  do {
    ASSERT_OK_AND_ASSIGN(v1::ListFieldsResponse page, List(1, token));
    ASSERT_EQ(page.fields_size(), 1);
    codes.push_back(page.fields(0).code());
    token = page.next_page_token();
    ASSERT_LT(++pages, 10) << "paging does not end";
  } while (!token.empty());
  EXPECT_THAT(codes,
              ElementsAre("UF_CRM_D", "UF_CRM_B", "UF_CRM_C", "UF_CRM_A"));
  EXPECT_EQ(pages, 4);

  ASSERT_OK_AND_ASSIGN(v1::ListFieldsResponse all, List(0));
  EXPECT_EQ(all.fields_size(), 4);
  EXPECT_TRUE(all.next_page_token().empty());
  ASSERT_OK_AND_ASSIGN(v1::ListFieldsResponse capped, List(100000));
  EXPECT_EQ(capped.fields_size(), 4);

  EXPECT_THAT(List(-1), StatusIs(kInvalidArgument, HasSubstr("page_size")));
  ASSERT_OK_AND_ASSIGN(v1::ListFieldsResponse first, List(1));
  std::string tampered = first.next_page_token();
  ASSERT_FALSE(tampered.empty());
  tampered[tampered.size() / 2] =
      tampered[tampered.size() / 2] == 'x' ? 'y' : 'x';
  EXPECT_THAT(List(1, tampered),
              StatusIs(kInvalidArgument, HasSubstr("page_token")));
  v1::ListPipelinesRequest pipelines;
  pipelines.set_page_token(first.next_page_token());
  EXPECT_THAT(Call(&PipelinesStub::ListPipelines, pipelines),
              StatusIs(kInvalidArgument, HasSubstr("page_token")));
}

TEST_F(FieldsServiceTest, ListOfNoFieldsIsEmpty) {
  ASSERT_OK_AND_ASSIGN(v1::ListFieldsResponse empty, List(0));
  EXPECT_EQ(empty.fields_size(), 0);
  EXPECT_TRUE(empty.next_page_token().empty());
}

TEST_F(FieldsServiceTest, DeleteRemovesTheField) {
  ASSERT_OK_AND_ASSIGN(v1::FieldDefinition created,
                       Create(Enumeration("UF_CRM_GONE", {"a"})));
  ASSERT_OK(Create(Field("UF_CRM_STAYS")).status());
  const int64_t version = ConfigVersion();
  ASSERT_OK(Delete("UF_CRM_GONE", created.etag()));
  EXPECT_EQ(ConfigVersion(), version + 1);
  EXPECT_THAT(Get("UF_CRM_GONE"), StatusIs(kNotFound));
  EXPECT_THAT(Delete("UF_CRM_GONE"), StatusIs(kNotFound));
  ASSERT_OK_AND_ASSIGN(v1::ListFieldsResponse list, List(0));
  ASSERT_EQ(list.fields_size(), 1);
  EXPECT_EQ(list.fields(0).code(), "UF_CRM_STAYS");

  // The code can be used again, with another type.
  ASSERT_OK_AND_ASSIGN(v1::FieldDefinition again,
                       Create(Field("UF_CRM_GONE", v1::FIELD_TYPE_MONEY)));
  EXPECT_EQ(again.type(), v1::FIELD_TYPE_MONEY);
}

TEST_F(FieldsServiceTest, FieldLimitIsResourceExhausted) {
  for (int i = 0; i < 500; ++i) {
    ASSERT_OK(Create(Field(absl::StrCat("UF_CRM_F", i))).status()) << i;
  }
  const int64_t version = ConfigVersion();
  EXPECT_THAT(Create(Field("UF_CRM_ONE_TOO_MANY")),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("500")));
  EXPECT_EQ(ConfigVersion(), version);
  // Paging reaches every field.
  int count = 0;
  std::string token;
  do {
    ASSERT_OK_AND_ASSIGN(v1::ListFieldsResponse page, List(0, token));
    count += page.fields_size();
    token = page.next_page_token();
  } while (!token.empty());
  EXPECT_EQ(count, 500);
  // Deleting one makes room again.
  ASSERT_OK(Delete("UF_CRM_F0"));
  EXPECT_OK(Create(Field("UF_CRM_ONE_TOO_MANY")));
}

// --- Authentication and the CONFIG permission
// ------------------------------------------

std::vector<std::pair<std::string, FieldsServiceTest::Rpc>>
FieldsServiceTest::AllRpcs() {
  return {
      {"CreateField",
       [this](const std::string& token) {
         v1::CreateFieldRequest request;
         *request.mutable_field() = Field("UF_CRM_BY_CALLER");
         return CallAs(token, &FieldsStub::CreateField, request).status();
       }},
      {"GetField",
       [this](const std::string& token) {
         v1::GetFieldRequest request;
         request.set_code("UF_CRM_TARGET");
         return CallAs(token, &FieldsStub::GetField, request).status();
       }},
      {"ListFields",
       [this](const std::string& token) {
         return CallAs(token, &FieldsStub::ListFields, v1::ListFieldsRequest())
             .status();
       }},
      {"UpdateField",
       [this](const std::string& token) {
         v1::UpdateFieldRequest request;
         *request.mutable_field() = Field("UF_CRM_TARGET");
         request.mutable_field()->set_label("Changed by caller");
         *request.mutable_update_mask() = Mask({"label"});
         return CallAs(token, &FieldsStub::UpdateField, request).status();
       }},
      {"DeleteField",
       [this](const std::string& token) {
         v1::DeleteFieldRequest request;
         request.set_code("UF_CRM_TARGET");
         return CallAs(token, &FieldsStub::DeleteField, request).status();
       }},
  };
}

const std::set<std::string> kMutating = {"CreateField", "UpdateField",
                                         "DeleteField"};

TEST_F(FieldsServiceTest, EveryRpcNeedsAValidToken) {
  ASSERT_OK(Create(Field("UF_CRM_TARGET")).status());
  const int64_t version = ConfigVersion();
  const auto rpcs = AllRpcs();
  ASSERT_EQ(rpcs.size(), 5u);
  ExpectBadTokensRefused(rpcs);
  EXPECT_EQ(ConfigVersion(), version);
}

TEST_F(FieldsServiceTest, UserWithoutConfigCanReadButNotChange) {
  ASSERT_OK(Create(Field("UF_CRM_TARGET")).status());
  const int64_t version = ConfigVersion();
  for (const auto& [name, rpc] : AllRpcs()) {
    SCOPED_TRACE(name);
    if (kMutating.count(name) > 0) {
      EXPECT_THAT(
          rpc(UserToken(7)),
          StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("CONFIG")));
    } else {
      EXPECT_OK(rpc(UserToken(7)));
    }
  }
  EXPECT_EQ(ConfigVersion(), version);
  ASSERT_OK_AND_ASSIGN(v1::FieldDefinition unchanged, Get("UF_CRM_TARGET"));
  EXPECT_EQ(unchanged.label(), "Label");
  EXPECT_THAT(Get("UF_CRM_BY_CALLER"), StatusIs(kNotFound));
}

TEST_F(FieldsServiceTest, ConfigRoleServiceAndAdminCanChange) {
  ASSERT_NE(GrantConfig(8), 0);
  for (const std::string& token :
       {UserToken(8), ServiceToken("deals"), UserToken(99, /*admin=*/true),
        AdminToken()}) {
    ASSERT_OK(Create(Field("UF_CRM_TARGET")).status());
    for (const auto& [name, rpc] : AllRpcs()) {
      SCOPED_TRACE(name);
      EXPECT_OK(rpc(token));
    }
    EXPECT_THAT(Get("UF_CRM_TARGET"), StatusIs(kNotFound));
    ASSERT_OK(Delete("UF_CRM_BY_CALLER"));
  }
}

}  // namespace
}  // namespace crm::pipeline_config
