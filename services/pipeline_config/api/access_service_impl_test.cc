// In-process gRPC tests of crm.pipelines.v1.AccessService: departments, roles,
// role assignments, effective permissions, authentication
// and the CONFIG permission.
#include "services/pipeline_config/api/access_service_impl.h"

#include <functional>
#include <map>
#include <optional>
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
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

constexpr absl::StatusCode kInvalidArgument =
    absl::StatusCode::kInvalidArgument;
constexpr absl::StatusCode kFailedPrecondition =
    absl::StatusCode::kFailedPrecondition;
constexpr absl::StatusCode kNotFound = absl::StatusCode::kNotFound;

const char* const kDefaultStageIds[] = {
    "NEW",       "PREPARATION",   "PREPAYMENT_INVOICE",
    "EXECUTING", "FINAL_INVOICE", "WON",
    "LOSE",      "APOLOGY"};

std::vector<int64_t> Ids(const google::protobuf::RepeatedField<int64_t>& ids) {
  return {ids.begin(), ids.end()};
}

// The six levels of `levels`, in proto order.
std::vector<v1::AccessLevel> LevelsOf(const v1::ActionLevels& levels) {
  return {levels.read(),    levels.add(),     levels.write(),
          levels.delete_(), levels.export_(), levels.import()};
}

v1::ActionLevels Levels(v1::AccessLevel read, v1::AccessLevel add,
                        v1::AccessLevel write, v1::AccessLevel remove,
                        v1::AccessLevel export_level,
                        v1::AccessLevel import_level) {
  v1::ActionLevels levels;
  levels.set_read(read);
  levels.set_add(add);
  levels.set_write(write);
  levels.set_delete_(remove);
  levels.set_export_(export_level);
  levels.set_import(import_level);
  return levels;
}

v1::TransitionRule Rule(v1::TransitionRule::Mode mode,
                        const std::vector<std::string>& targets = {}) {
  v1::TransitionRule rule;
  rule.set_mode(mode);
  for (const auto& target : targets) rule.add_to_stage_ids(target);
  return rule;
}

class AccessServiceTest : public PipelineConfigServiceTest {
 protected:
  absl::StatusOr<v1::Department> GetDepartment(int64_t id) {
    v1::GetDepartmentRequest request;
    request.set_department_id(id);
    return Call(&AccessStub::GetDepartment, request);
  }

  absl::StatusOr<v1::Department> UpdateDepartment(
      const v1::Department& department, const google::protobuf::FieldMask& mask,
      const std::string& etag = "") {
    v1::UpdateDepartmentRequest request;
    *request.mutable_department() = department;
    *request.mutable_update_mask() = mask;
    request.set_etag(etag);
    return Call(&AccessStub::UpdateDepartment, request);
  }

  absl::StatusOr<v1::Department> MoveDepartment(int64_t id, int64_t parent_id) {
    v1::Department department;
    department.set_id(id);
    department.set_parent_id(parent_id);
    return UpdateDepartment(department, Mask({"parent_id"}));
  }

  absl::Status DeleteDepartment(int64_t id, const std::string& etag = "") {
    v1::DeleteDepartmentRequest request;
    request.set_department_id(id);
    request.set_etag(etag);
    return Call(&AccessStub::DeleteDepartment, request).status();
  }

  absl::StatusOr<v1::ListDepartmentsResponse> ListDepartments(
      int32_t page_size, const std::string& token = "",
      std::optional<int64_t> parent = {}) {
    v1::ListDepartmentsRequest request;
    request.set_page_size(page_size);
    request.set_page_token(token);
    if (parent.has_value()) {
      request.set_parent_filter(true);
      request.set_parent_id(*parent);
    }
    return Call(&AccessStub::ListDepartments, request);
  }

  absl::StatusOr<v1::Role> GetRole(int64_t id) {
    v1::GetRoleRequest request;
    request.set_role_id(id);
    return Call(&AccessStub::GetRole, request);
  }

  absl::StatusOr<v1::Role> UpdateRole(const v1::Role& role,
                                      const google::protobuf::FieldMask& mask,
                                      const std::string& etag = "") {
    v1::UpdateRoleRequest request;
    *request.mutable_role() = role;
    *request.mutable_update_mask() = mask;
    request.set_etag(etag);
    return Call(&AccessStub::UpdateRole, request);
  }

  absl::Status DeleteRole(int64_t id, const std::string& etag = "") {
    v1::DeleteRoleRequest request;
    request.set_role_id(id);
    request.set_etag(etag);
    return Call(&AccessStub::DeleteRole, request).status();
  }

  absl::StatusOr<v1::RoleAssignment> Assign(
      const v1::RoleAssignment& assignment) {
    v1::CreateRoleAssignmentRequest request;
    *request.mutable_assignment() = assignment;
    return Call(&AccessStub::CreateRoleAssignment, request);
  }

  absl::StatusOr<v1::ListRoleAssignmentsResponse> ListAssignments(
      int64_t role_id, int64_t user_id, int64_t department_id,
      int32_t page_size = 0, const std::string& token = "") {
    v1::ListRoleAssignmentsRequest request;
    request.set_role_id(role_id);
    request.set_user_id(user_id);
    request.set_department_id(department_id);
    request.set_page_size(page_size);
    request.set_page_token(token);
    return Call(&AccessStub::ListRoleAssignments, request);
  }

  // Ids of the assignments matching the filters.
  std::vector<int64_t> AssignmentIds(int64_t role_id, int64_t user_id,
                                     int64_t department_id) {
    std::vector<int64_t> ids;
    absl::StatusOr<v1::ListRoleAssignmentsResponse> list =
        ListAssignments(role_id, user_id, department_id);
    EXPECT_TRUE(list.ok()) << list.status();
    if (!list.ok()) return ids;
    for (const auto& assignment : list->assignments())
      ids.push_back(assignment.id());
    return ids;
  }

  // A role granting `levels` in pipeline 0; `edit` may change the entry.
  absl::StatusOr<v1::Role> RoleInDefaultPipeline(
      const std::string& name, const v1::ActionLevels& levels,
      const std::function<void(v1::PipelinePermissions*)>& edit = nullptr) {
    v1::Role role;
    role.set_name(name);
    auto* permissions = role.add_pipelines();
    permissions->set_pipeline_id(0);
    *permissions->mutable_levels() = levels;
    if (edit) edit(permissions);
    return CreateRole(role);
  }

  // Creates a role as above and assigns it to each user.
  int64_t GiveRole(
      const std::string& name, const v1::ActionLevels& levels,
      const std::vector<int64_t>& users,
      const std::function<void(v1::PipelinePermissions*)>& edit = nullptr) {
    absl::StatusOr<v1::Role> role = RoleInDefaultPipeline(name, levels, edit);
    EXPECT_TRUE(role.ok()) << role.status();
    if (!role.ok()) return 0;
    for (int64_t user : users) {
      absl::StatusOr<v1::RoleAssignment> assigned =
          AssignToUser(role->id(), user);
      EXPECT_TRUE(assigned.ok()) << assigned.status();
    }
    return role->id();
  }

  // The effective permissions of `user_id` in pipeline 0; fails the test when
  // there are none.
  v1::EffectivePipelinePermissions InDefaultPipeline(int64_t user_id) {
    absl::StatusOr<v1::EffectivePermissions> permissions =
        EffectivePermissionsOf(user_id);
    EXPECT_TRUE(permissions.ok()) << permissions.status();
    if (permissions.ok()) {
      for (const auto& pipeline : permissions->pipelines()) {
        if (pipeline.pipeline_id() == 0) return pipeline;
      }
    }
    ADD_FAILURE() << "user " << user_id << " has no permissions in pipeline 0";
    return {};
  }

  using Rpc = std::function<absl::Status(const std::string& token)>;
  // Every RPC of the service with valid requests.
  std::vector<std::pair<std::string, Rpc>> AllRpcs();
  // Runs every mutating RPC as `token`, in an order in which each can
  // succeed, on resources made by MakeTargets().
  std::vector<std::pair<std::string, absl::Status>> MutateEverything(
      const std::string& token);
  struct Targets {
    int64_t department = 0;
    int64_t role = 0;
    int64_t assignment = 0;
  };
  Targets MakeTargets();
  Targets targets_;
};

// --- Departments
// --------------------------------------------------------------------------

TEST_F(AccessServiceTest, CreateGetAndListDepartments) {
  const int64_t version = ConfigVersion();
  ASSERT_OK_AND_ASSIGN(v1::Department sales,
                       CreateDepartment("Sales", 0, 30, {31, 32}));
  EXPECT_GT(sales.id(), 0);
  EXPECT_EQ(sales.name(), "Sales");
  EXPECT_EQ(sales.parent_id(), 0);
  EXPECT_EQ(sales.head_user_id(), 30);
  EXPECT_THAT(Ids(sales.member_user_ids()), ElementsAre(31, 32));
  EXPECT_FALSE(sales.etag().empty());
  EXPECT_TRUE(sales.has_create_time());
  EXPECT_EQ(ConfigVersion(), version + 1);
  ASSERT_OK_AND_ASSIGN(v1::Department fetched, GetDepartment(sales.id()));
  EXPECT_EQ(fetched.SerializeAsString(), sales.SerializeAsString());

  ASSERT_OK_AND_ASSIGN(v1::Department east,
                       CreateDepartment("East", sales.id()));
  ASSERT_OK_AND_ASSIGN(v1::Department west,
                       CreateDepartment("West", sales.id()));
  ASSERT_OK_AND_ASSIGN(v1::Department support, CreateDepartment("Support"));

  std::vector<int64_t> ids;
  std::string token;
  int pages = 0;
  do {
    ASSERT_OK_AND_ASSIGN(v1::ListDepartmentsResponse page,
                         ListDepartments(1, token));
    ASSERT_EQ(page.departments_size(), 1);
    ids.push_back(page.departments(0).id());
    token = page.next_page_token();
    ASSERT_LT(++pages, 10);
  } while (!token.empty());
  EXPECT_THAT(ids, ElementsAre(sales.id(), east.id(), west.id(), support.id()));

  ASSERT_OK_AND_ASSIGN(v1::ListDepartmentsResponse roots,
                       ListDepartments(0, "", 0));
  ASSERT_EQ(roots.departments_size(), 2);
  EXPECT_EQ(roots.departments(0).id(), sales.id());
  EXPECT_EQ(roots.departments(1).id(), support.id());
  ASSERT_OK_AND_ASSIGN(v1::ListDepartmentsResponse children,
                       ListDepartments(1, "", sales.id()));
  ASSERT_EQ(children.departments_size(), 1);
  EXPECT_EQ(children.departments(0).id(), east.id());
  // A token is bound to its filter.
  EXPECT_THAT(ListDepartments(1, children.next_page_token()),
              StatusIs(kInvalidArgument, HasSubstr("page_token")));
  EXPECT_THAT(ListDepartments(1, children.next_page_token(), 0),
              StatusIs(kInvalidArgument, HasSubstr("page_token")));
  ASSERT_OK_AND_ASSIGN(
      v1::ListDepartmentsResponse rest,
      ListDepartments(1, children.next_page_token(), sales.id()));
  ASSERT_EQ(rest.departments_size(), 1);
  EXPECT_EQ(rest.departments(0).id(), west.id());
  EXPECT_THAT(ListDepartments(-1),
              StatusIs(kInvalidArgument, HasSubstr("page_size")));

  EXPECT_THAT(GetDepartment(999), StatusIs(kNotFound, HasSubstr("999")));
}

TEST_F(AccessServiceTest, CreateDepartmentValidates) {
  const int64_t version = ConfigVersion();
  EXPECT_THAT(CreateDepartment("Orphan", 42),
              StatusIs(kInvalidArgument, HasSubstr("department.parent_id")));
  EXPECT_THAT(CreateDepartment(""),
              StatusIs(kInvalidArgument, HasSubstr("department.name")));
  EXPECT_THAT(CreateDepartment("  "),
              StatusIs(kInvalidArgument, HasSubstr("department.name")));
  EXPECT_THAT(CreateDepartment(std::string(256, 'd')),
              StatusIs(kInvalidArgument, HasSubstr("department.name")));
  EXPECT_THAT(CreateDepartment("Bad head", 0, -1),
              StatusIs(kInvalidArgument, HasSubstr("department.head_user_id")));
  EXPECT_THAT(
      CreateDepartment("Zero member", 0, 0, {5, 0}),
      StatusIs(kInvalidArgument, HasSubstr("department.member_user_ids")));
  EXPECT_THAT(
      CreateDepartment("Negative member", 0, 0, {-5}),
      StatusIs(kInvalidArgument, HasSubstr("department.member_user_ids")));
  EXPECT_EQ(ConfigVersion(), version);

  ASSERT_OK_AND_ASSIGN(v1::Department deduplicated,
                       CreateDepartment("Duplicates", 0, 0, {5, 6, 5, 7, 6}));
  EXPECT_THAT(Ids(deduplicated.member_user_ids()), ElementsAre(5, 6, 7));
}

TEST_F(AccessServiceTest, UpdateDepartment) {
  ASSERT_OK_AND_ASSIGN(v1::Department a, CreateDepartment("A", 0, 1, {2}));
  ASSERT_OK_AND_ASSIGN(v1::Department b, CreateDepartment("B"));
  const int64_t version = ConfigVersion();

  v1::Department update;
  update.set_id(a.id());
  update.set_name("A renamed");
  update.set_head_user_id(9);
  update.add_member_user_ids(4);
  update.add_member_user_ids(3);
  update.add_member_user_ids(4);
  update.set_parent_id(b.id());
  ASSERT_OK_AND_ASSIGN(v1::Department renamed,
                       UpdateDepartment(update, Mask({"name"}), a.etag()));
  EXPECT_EQ(renamed.name(), "A renamed");
  EXPECT_EQ(renamed.head_user_id(), 1);
  EXPECT_THAT(Ids(renamed.member_user_ids()), ElementsAre(2));
  EXPECT_EQ(renamed.parent_id(), 0);
  EXPECT_NE(renamed.etag(), a.etag());
  EXPECT_EQ(ConfigVersion(), version + 1);

  ASSERT_OK_AND_ASSIGN(
      v1::Department moved,
      UpdateDepartment(update,
                       Mask({"head_user_id", "member_user_ids", "parent_id"})));
  EXPECT_EQ(moved.head_user_id(), 9);
  EXPECT_THAT(Ids(moved.member_user_ids()),
              ElementsAre(4, 3));  // duplicates collapsed
  EXPECT_EQ(moved.parent_id(), b.id());

  // Stale etag, bad masks, bad values, unknown ids.
  EXPECT_THAT(UpdateDepartment(update, Mask({"name"}), a.etag()),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("etag")));
  EXPECT_THAT(UpdateDepartment(update, Mask({})),
              StatusIs(kInvalidArgument, HasSubstr("update_mask")));
  EXPECT_THAT(UpdateDepartment(update, Mask({"id"})),
              StatusIs(kInvalidArgument, HasSubstr("id is immutable")));
  EXPECT_THAT(UpdateDepartment(update, Mask({"members"})),
              StatusIs(kInvalidArgument, HasSubstr("\"members\"")));
  update.add_member_user_ids(0);
  EXPECT_THAT(
      UpdateDepartment(update, Mask({"member_user_ids"})),
      StatusIs(kInvalidArgument, HasSubstr("department.member_user_ids")));
  update.set_name(" ");
  EXPECT_THAT(UpdateDepartment(update, Mask({"name"})),
              StatusIs(kInvalidArgument, HasSubstr("department.name")));
  update.set_parent_id(777);
  EXPECT_THAT(UpdateDepartment(update, Mask({"parent_id"})),
              StatusIs(kInvalidArgument, HasSubstr("department.parent_id")));
  update.set_id(888);
  EXPECT_THAT(UpdateDepartment(update, Mask({"head_user_id"})),
              StatusIs(kNotFound, HasSubstr("888")));
  EXPECT_THAT(DeleteDepartment(888), StatusIs(kNotFound, HasSubstr("888")));

  // No-op.
  const int64_t before_noop = ConfigVersion();
  ASSERT_OK_AND_ASSIGN(v1::Department same, MoveDepartment(a.id(), b.id()));
  EXPECT_EQ(same.etag(), moved.etag());
  EXPECT_EQ(ConfigVersion(), before_noop);
}

TEST_F(AccessServiceTest, DepartmentTreeCannotGetACycle) {
  ASSERT_OK_AND_ASSIGN(v1::Department top, CreateDepartment("Top"));
  ASSERT_OK_AND_ASSIGN(v1::Department middle,
                       CreateDepartment("Middle", top.id()));
  ASSERT_OK_AND_ASSIGN(v1::Department bottom,
                       CreateDepartment("Bottom", middle.id()));
  const int64_t version = ConfigVersion();

  EXPECT_THAT(MoveDepartment(top.id(), bottom.id()),
              StatusIs(kFailedPrecondition, HasSubstr("cycle")));
  EXPECT_THAT(MoveDepartment(top.id(), middle.id()),
              StatusIs(kFailedPrecondition, HasSubstr("cycle")));
  EXPECT_THAT(MoveDepartment(middle.id(), middle.id()),
              StatusIs(kFailedPrecondition, HasSubstr("cycle")));
  EXPECT_EQ(ConfigVersion(), version);
  ASSERT_OK_AND_ASSIGN(v1::Department unchanged, GetDepartment(top.id()));
  EXPECT_EQ(unchanged.parent_id(), 0);

  // Moving a subtree elsewhere, or to the root, is fine.
  ASSERT_OK_AND_ASSIGN(v1::Department rooted, MoveDepartment(bottom.id(), 0));
  EXPECT_EQ(rooted.parent_id(), 0);
  ASSERT_OK_AND_ASSIGN(v1::Department under,
                       MoveDepartment(top.id(), bottom.id()));
  EXPECT_EQ(under.parent_id(), bottom.id());
}

TEST_F(AccessServiceTest, DeleteDepartment) {
  ASSERT_OK_AND_ASSIGN(v1::Department parent, CreateDepartment("Parent"));
  ASSERT_OK_AND_ASSIGN(v1::Department child,
                       CreateDepartment("Child", parent.id(), 0, {50}));
  v1::Role role;
  role.set_name("Role");
  ASSERT_OK_AND_ASSIGN(v1::Role created_role, CreateRole(role));
  ASSERT_OK(AssignToDepartment(created_role.id(), child.id(), false).status());
  ASSERT_OK(AssignToDepartment(created_role.id(), child.id(), true).status());
  ASSERT_OK_AND_ASSIGN(
      v1::RoleAssignment to_parent,
      AssignToDepartment(created_role.id(), parent.id(), true));
  ASSERT_OK_AND_ASSIGN(v1::RoleAssignment to_user,
                       AssignToUser(created_role.id(), 50));
  const int64_t version = ConfigVersion();

  EXPECT_THAT(DeleteDepartment(parent.id()),
              StatusIs(kFailedPrecondition, HasSubstr("subdepartments")));
  EXPECT_THAT(DeleteDepartment(child.id(), parent.etag()),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("etag")));
  EXPECT_EQ(ConfigVersion(), version);

  ASSERT_OK(DeleteDepartment(child.id(), child.etag()));
  EXPECT_EQ(ConfigVersion(), version + 1);
  EXPECT_THAT(GetDepartment(child.id()), StatusIs(kNotFound));
  EXPECT_THAT(DeleteDepartment(child.id()), StatusIs(kNotFound));
  // Its assignments went with it; the others stay.
  EXPECT_THAT(AssignmentIds(0, 0, child.id()), IsEmpty());
  EXPECT_THAT(AssignmentIds(0, 0, 0),
              ElementsAre(to_parent.id(), to_user.id()));

  ASSERT_OK(DeleteDepartment(parent.id()));
  EXPECT_THAT(AssignmentIds(0, 0, 0), ElementsAre(to_user.id()));
}

// --- Roles
// -----------------------------------------------------------------------------------

TEST_F(AccessServiceTest, CreateGetListAndDeleteRoles) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline other, CreatePipeline("Other"));
  const std::string won = absl::StrCat("C", other.id(), ":WON");
  const std::string lose = absl::StrCat("C", other.id(), ":LOSE");
  v1::Role role;
  role.set_name("Manager");
  role.set_config(true);
  auto* in_default = role.add_pipelines();
  in_default->set_pipeline_id(0);
  *in_default->mutable_levels() = AllActions(v1::ACCESS_LEVEL_DEPARTMENT);
  (*in_default->mutable_stage_levels())["WON"] =
      AllActions(v1::ACCESS_LEVEL_ALL);
  (*in_default->mutable_transitions())["NEW"] =
      Rule(v1::TransitionRule::MODE_LIST, {"PREPARATION", "LOSE"});
  (*in_default->mutable_transitions())["WON"] =
      Rule(v1::TransitionRule::MODE_BLOCKED);
  in_default->set_hide_sum(true);
  in_default->set_automation(v1::AUTOMATION_ACCESS_EDIT);
  auto* in_other = role.add_pipelines();
  in_other->set_pipeline_id(other.id());
  (*in_other->mutable_transitions())[won] =
      Rule(v1::TransitionRule::MODE_LIST, {lose});
  const int64_t version = ConfigVersion();

  ASSERT_OK_AND_ASSIGN(v1::Role created, CreateRole(role));
  EXPECT_GT(created.id(), 0);
  EXPECT_FALSE(created.etag().empty());
  EXPECT_EQ(ConfigVersion(), version + 1);
  v1::Role expected = role;
  expected.set_id(created.id());
  *expected.mutable_create_time() = created.create_time();
  *expected.mutable_update_time() = created.update_time();
  expected.set_etag(created.etag());
  EXPECT_EQ(created.DebugString(), expected.DebugString());
  ASSERT_OK_AND_ASSIGN(v1::Role fetched, GetRole(created.id()));
  EXPECT_EQ(fetched.DebugString(), created.DebugString());

  v1::Role second_role;
  second_role.set_name("Second");
  ASSERT_OK_AND_ASSIGN(v1::Role second, CreateRole(second_role));
  v1::ListRolesRequest list;
  list.set_page_size(1);
  ASSERT_OK_AND_ASSIGN(v1::ListRolesResponse page,
                       Call(&AccessStub::ListRoles, list));
  ASSERT_EQ(page.roles_size(), 1);
  EXPECT_EQ(page.roles(0).id(), created.id());
  list.set_page_token(page.next_page_token());
  ASSERT_OK_AND_ASSIGN(page, Call(&AccessStub::ListRoles, list));
  ASSERT_EQ(page.roles_size(), 1);
  EXPECT_EQ(page.roles(0).id(), second.id());
  EXPECT_TRUE(page.next_page_token().empty());
  list.set_page_size(-2);
  EXPECT_THAT(Call(&AccessStub::ListRoles, list),
              StatusIs(kInvalidArgument, HasSubstr("page_size")));

  // Deleting a role removes its assignments.
  ASSERT_OK(AssignToUser(created.id(), 60).status());
  ASSERT_OK(AssignToUser(second.id(), 60).status());
  EXPECT_THAT(DeleteRole(created.id(), "\"1\""),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("etag")));
  ASSERT_OK(DeleteRole(created.id(), created.etag()));
  EXPECT_THAT(GetRole(created.id()),
              StatusIs(kNotFound, HasSubstr(absl::StrCat(created.id()))));
  EXPECT_THAT(DeleteRole(created.id()), StatusIs(kNotFound));
  EXPECT_THAT(AssignmentIds(created.id(), 0, 0), IsEmpty());
  EXPECT_THAT(AssignmentIds(0, 60, 0), ::testing::SizeIs(1));
}

TEST_F(AccessServiceTest, RoleIsValidated) {
  ASSERT_OK_AND_ASSIGN(v1::Pipeline other, CreatePipeline("Other"));
  const int64_t version = ConfigVersion();
  struct Case {
    std::string what;
    std::function<void(v1::Role*)> change;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"no name", [](v1::Role* r) { r->clear_name(); }, "role.name"},
      {"blank name", [](v1::Role* r) { r->set_name("\t "); }, "role.name"},
      {"unknown pipeline",
       [](v1::Role* r) { r->mutable_pipelines(0)->set_pipeline_id(404); },
       "role.pipelines[0].pipeline_id"},
      {"pipeline listed twice",
       [](v1::Role* r) { r->add_pipelines()->set_pipeline_id(0); },
       "role.pipelines[1].pipeline_id"},
      {"unknown stage in stage_levels",
       [](v1::Role* r) {
         (*r->mutable_pipelines(0)->mutable_stage_levels())["GHOST"] =
             AllActions(v1::ACCESS_LEVEL_ALL);
       },
       "role.pipelines[0].stage_levels"},
      {"another pipeline's stage in stage_levels",
       [&other](v1::Role* r) {
         (*r->mutable_pipelines(0)->mutable_stage_levels())[absl::StrCat(
             "C", other.id(), ":NEW")] = AllActions(v1::ACCESS_LEVEL_ALL);
       },
       "role.pipelines[0].stage_levels"},
      {"unknown stage as transition source",
       [](v1::Role* r) {
         (*r->mutable_pipelines(0)->mutable_transitions())["GHOST"] =
             Rule(v1::TransitionRule::MODE_BLOCKED);
       },
       "role.pipelines[0].transitions[GHOST]"},
      {"unknown transition target",
       [](v1::Role* r) {
         (*r->mutable_pipelines(0)->mutable_transitions())["NEW"] =
             Rule(v1::TransitionRule::MODE_LIST, {"WON", "GHOST"});
       },
       "role.pipelines[0].transitions[NEW].to_stage_ids"},
      {"LIST without targets",
       [](v1::Role* r) {
         (*r->mutable_pipelines(0)->mutable_transitions())["NEW"] =
             Rule(v1::TransitionRule::MODE_LIST);
       },
       "role.pipelines[0].transitions[NEW].to_stage_ids"},
      {"BLOCKED with targets",
       [](v1::Role* r) {
         (*r->mutable_pipelines(0)->mutable_transitions())["NEW"] =
             Rule(v1::TransitionRule::MODE_BLOCKED, {"WON"});
       },
       "role.pipelines[0].transitions[NEW].to_stage_ids"},
      {"unknown transition mode",
       [](v1::Role* r) {
         (*r->mutable_pipelines(0)->mutable_transitions())["NEW"] =
             Rule(static_cast<v1::TransitionRule::Mode>(9));
       },
       "role.pipelines[0].transitions[NEW].mode"},
      {"unknown access level",
       [](v1::Role* r) {
         r->mutable_pipelines(0)->mutable_levels()->set_write(
             static_cast<v1::AccessLevel>(42));
       },
       "role.pipelines[0].levels"},
      {"unknown access level in a stage override",
       [](v1::Role* r) {
         (*r->mutable_pipelines(0)->mutable_stage_levels())["WON"].set_import(
             static_cast<v1::AccessLevel>(-3));
       },
       "role.pipelines[0].stage_levels[WON]"},
      {"unknown automation access",
       [](v1::Role* r) {
         r->mutable_pipelines(0)->set_automation(
             static_cast<v1::AutomationAccess>(7));
       },
       "role.pipelines[0].automation"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    v1::Role role;
    role.set_name("Checked");
    auto* permissions = role.add_pipelines();
    permissions->set_pipeline_id(0);
    *permissions->mutable_levels() = AllActions(v1::ACCESS_LEVEL_SELF);
    c.change(&role);
    EXPECT_THAT(CreateRole(role),
                StatusIs(kInvalidArgument, HasSubstr(c.field)));
  }
  EXPECT_EQ(ConfigVersion(), version);
  v1::ListRolesRequest list;
  ASSERT_OK_AND_ASSIGN(v1::ListRolesResponse roles,
                       Call(&AccessStub::ListRoles, list));
  EXPECT_EQ(roles.roles_size(), 0);
}

TEST_F(AccessServiceTest, UpdateRole) {
  ASSERT_OK_AND_ASSIGN(
      v1::Role created,
      RoleInDefaultPipeline("Before", AllActions(v1::ACCESS_LEVEL_SELF)));
  const int64_t version = ConfigVersion();

  v1::Role update = created;
  update.set_name("After");
  update.set_config(true);
  update.mutable_pipelines(0)->mutable_levels()->set_read(v1::ACCESS_LEVEL_ALL);
  ASSERT_OK_AND_ASSIGN(v1::Role renamed,
                       UpdateRole(update, Mask({"name"}), created.etag()));
  EXPECT_EQ(renamed.name(), "After");
  EXPECT_FALSE(renamed.config());
  EXPECT_EQ(renamed.pipelines(0).levels().read(), v1::ACCESS_LEVEL_SELF);
  EXPECT_EQ(ConfigVersion(), version + 1);

  ASSERT_OK_AND_ASSIGN(v1::Role all,
                       UpdateRole(update, Mask({"config", "pipelines"})));
  EXPECT_TRUE(all.config());
  EXPECT_EQ(all.pipelines(0).levels().read(), v1::ACCESS_LEVEL_ALL);

  EXPECT_THAT(UpdateRole(update, Mask({"name"}), created.etag()),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("etag")));
  EXPECT_THAT(UpdateRole(update, Mask({})),
              StatusIs(kInvalidArgument, HasSubstr("update_mask")));
  EXPECT_THAT(UpdateRole(update, Mask({"id"})),
              StatusIs(kInvalidArgument, HasSubstr("id is immutable")));
  EXPECT_THAT(UpdateRole(update, Mask({"permissions"})),
              StatusIs(kInvalidArgument, HasSubstr("\"permissions\"")));
  v1::Role bad = update;
  bad.mutable_pipelines(0)->set_pipeline_id(404);
  EXPECT_THAT(
      UpdateRole(bad, Mask({"pipelines"})),
      StatusIs(kInvalidArgument, HasSubstr("role.pipelines[0].pipeline_id")));
  bad = update;
  bad.set_name("");
  EXPECT_THAT(UpdateRole(bad, Mask({"name"})),
              StatusIs(kInvalidArgument, HasSubstr("role.name")));
  bad = update;
  bad.set_id(999);
  EXPECT_THAT(UpdateRole(bad, Mask({"name"})),
              StatusIs(kNotFound, HasSubstr("999")));

  // No-op.
  const int64_t before_noop = ConfigVersion();
  ASSERT_OK_AND_ASSIGN(
      v1::Role same, UpdateRole(update, Mask({"name", "config", "pipelines"})));
  EXPECT_EQ(same.etag(), all.etag());
  EXPECT_EQ(ConfigVersion(), before_noop);
}

// --- Role assignments
// ----------------------------------------------------------------------

TEST_F(AccessServiceTest, CreateRoleAssignmentValidates) {
  v1::Role role_message;
  role_message.set_name("Role");
  ASSERT_OK_AND_ASSIGN(v1::Role role, CreateRole(role_message));
  ASSERT_OK_AND_ASSIGN(v1::Department department,
                       CreateDepartment("Department"));
  const int64_t version = ConfigVersion();

  v1::RoleAssignment assignment;
  assignment.set_role_id(role.id());
  EXPECT_THAT(Assign(assignment),
              StatusIs(kInvalidArgument, HasSubstr("assignment.subject")));
  assignment.set_user_id(0);
  EXPECT_THAT(Assign(assignment),
              StatusIs(kInvalidArgument, HasSubstr("assignment.user_id")));
  assignment.set_user_id(-4);
  EXPECT_THAT(Assign(assignment),
              StatusIs(kInvalidArgument, HasSubstr("assignment.user_id")));
  assignment.set_user_id(70);
  assignment.set_include_subdepartments(true);
  EXPECT_THAT(Assign(assignment),
              StatusIs(kInvalidArgument,
                       HasSubstr("assignment.include_subdepartments")));
  assignment.set_include_subdepartments(false);
  assignment.set_role_id(404);
  EXPECT_THAT(Assign(assignment),
              StatusIs(kInvalidArgument, HasSubstr("assignment.role_id")));
  assignment.set_role_id(role.id());
  assignment.set_department_id(405);
  EXPECT_THAT(
      Assign(assignment),
      StatusIs(kInvalidArgument, HasSubstr("assignment.department_id")));
  EXPECT_EQ(ConfigVersion(), version);

  assignment.set_user_id(70);
  ASSERT_OK_AND_ASSIGN(v1::RoleAssignment to_user, Assign(assignment));
  EXPECT_GT(to_user.id(), 0);
  EXPECT_EQ(to_user.user_id(), 70);
  EXPECT_TRUE(to_user.has_create_time());
  EXPECT_THAT(Assign(assignment),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       HasSubstr(absl::StrCat(to_user.id()))));

  assignment.set_department_id(department.id());
  ASSERT_OK_AND_ASSIGN(v1::RoleAssignment to_department, Assign(assignment));
  EXPECT_EQ(to_department.department_id(), department.id());
  EXPECT_THAT(Assign(assignment), StatusIs(absl::StatusCode::kAlreadyExists));
  assignment.set_include_subdepartments(true);
  ASSERT_OK_AND_ASSIGN(v1::RoleAssignment deep, Assign(assignment));
  EXPECT_TRUE(deep.include_subdepartments());
  EXPECT_THAT(Assign(assignment), StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_EQ(ConfigVersion(), version + 3);
}

TEST_F(AccessServiceTest, ListAndDeleteRoleAssignments) {
  v1::Role role_message;
  role_message.set_name("One");
  ASSERT_OK_AND_ASSIGN(v1::Role one, CreateRole(role_message));
  role_message.set_name("Two");
  ASSERT_OK_AND_ASSIGN(v1::Role two, CreateRole(role_message));
  ASSERT_OK_AND_ASSIGN(v1::Department department,
                       CreateDepartment("Department"));
  ASSERT_OK_AND_ASSIGN(v1::RoleAssignment a, AssignToUser(one.id(), 70));
  ASSERT_OK_AND_ASSIGN(v1::RoleAssignment b, AssignToUser(two.id(), 70));
  ASSERT_OK_AND_ASSIGN(v1::RoleAssignment c, AssignToUser(one.id(), 71));
  ASSERT_OK_AND_ASSIGN(v1::RoleAssignment d,
                       AssignToDepartment(one.id(), department.id(), false));
  ASSERT_OK_AND_ASSIGN(v1::RoleAssignment e,
                       AssignToDepartment(two.id(), department.id(), true));

  EXPECT_THAT(AssignmentIds(0, 0, 0),
              ElementsAre(a.id(), b.id(), c.id(), d.id(), e.id()));
  EXPECT_THAT(AssignmentIds(one.id(), 0, 0),
              ElementsAre(a.id(), c.id(), d.id()));
  EXPECT_THAT(AssignmentIds(0, 70, 0), ElementsAre(a.id(), b.id()));
  EXPECT_THAT(AssignmentIds(0, 0, department.id()),
              ElementsAre(d.id(), e.id()));
  EXPECT_THAT(AssignmentIds(two.id(), 70, 0), ElementsAre(b.id()));
  EXPECT_THAT(AssignmentIds(two.id(), 71, 0), IsEmpty());
  EXPECT_THAT(AssignmentIds(0, 70, department.id()), IsEmpty());

  // Paging with a filter, and the token bound to that filter.
  ASSERT_OK_AND_ASSIGN(v1::ListRoleAssignmentsResponse first,
                       ListAssignments(one.id(), 0, 0, 1));
  ASSERT_EQ(first.assignments_size(), 1);
  EXPECT_EQ(first.assignments(0).id(), a.id());
  const std::string& token = first.next_page_token();
  ASSERT_FALSE(token.empty());
  EXPECT_THAT(ListAssignments(two.id(), 0, 0, 1, token),
              StatusIs(kInvalidArgument, HasSubstr("page_token")));
  EXPECT_THAT(ListAssignments(one.id(), 70, 0, 1, token),
              StatusIs(kInvalidArgument, HasSubstr("page_token")));
  ASSERT_OK_AND_ASSIGN(v1::ListRoleAssignmentsResponse second,
                       ListAssignments(one.id(), 0, 0, 1, token));
  ASSERT_EQ(second.assignments_size(), 1);
  EXPECT_EQ(second.assignments(0).id(), c.id());
  ASSERT_OK_AND_ASSIGN(
      v1::ListRoleAssignmentsResponse third,
      ListAssignments(one.id(), 0, 0, 1, second.next_page_token()));
  ASSERT_EQ(third.assignments_size(), 1);
  EXPECT_EQ(third.assignments(0).id(), d.id());
  EXPECT_TRUE(third.next_page_token().empty());
  std::string tampered = token;
  tampered[tampered.size() / 2] =
      tampered[tampered.size() / 2] == 'Q' ? 'R' : 'Q';
  EXPECT_THAT(ListAssignments(one.id(), 0, 0, 1, tampered),
              StatusIs(kInvalidArgument, HasSubstr("page_token")));
  EXPECT_THAT(ListAssignments(0, 0, 0, -1),
              StatusIs(kInvalidArgument, HasSubstr("page_size")));

  const int64_t version = ConfigVersion();
  v1::DeleteRoleAssignmentRequest remove;
  remove.set_assignment_id(b.id());
  ASSERT_OK(Call(&AccessStub::DeleteRoleAssignment, remove).status());
  EXPECT_EQ(ConfigVersion(), version + 1);
  EXPECT_THAT(AssignmentIds(0, 70, 0), ElementsAre(a.id()));
  EXPECT_THAT(Call(&AccessStub::DeleteRoleAssignment, remove),
              StatusIs(kNotFound, HasSubstr(absl::StrCat(b.id()))));
}

// --- Effective permissions
// -------------------------------------------------------------------

TEST_F(AccessServiceTest, HighestLevelAcrossRolesWins) {
  GiveRole("A",
           Levels(v1::ACCESS_LEVEL_SELF, v1::ACCESS_LEVEL_ALL,
                  v1::ACCESS_LEVEL_DEPARTMENT, v1::ACCESS_LEVEL_NONE,
                  v1::ACCESS_LEVEL_OPEN, v1::ACCESS_LEVEL_NONE),
           {10});
  GiveRole("B",
           Levels(v1::ACCESS_LEVEL_DEPARTMENT, v1::ACCESS_LEVEL_SELF,
                  v1::ACCESS_LEVEL_NONE, v1::ACCESS_LEVEL_SUBDEPARTMENTS,
                  v1::ACCESS_LEVEL_UNSPECIFIED, v1::ACCESS_LEVEL_UNSPECIFIED),
           {10});
  ASSERT_OK(CreatePipeline("Not granted").status());

  ASSERT_OK_AND_ASSIGN(v1::EffectivePermissions permissions,
                       EffectivePermissionsOf(10));
  EXPECT_EQ(permissions.user_id(), 10);
  EXPECT_FALSE(permissions.is_admin());
  EXPECT_FALSE(permissions.config());
  EXPECT_EQ(permissions.config_version(), ConfigVersion());
  ASSERT_EQ(permissions.pipelines_size(), 1)
      << "a pipeline without a grant is left out";
  const auto& pipeline = permissions.pipelines(0);
  EXPECT_EQ(pipeline.pipeline_id(), 0);
  ASSERT_EQ(pipeline.stage_levels_size(), 8);
  for (const char* stage : kDefaultStageIds) {
    SCOPED_TRACE(stage);
    ASSERT_EQ(pipeline.stage_levels().count(stage), 1u);
    EXPECT_THAT(LevelsOf(pipeline.stage_levels().at(stage)),
                ElementsAre(v1::ACCESS_LEVEL_DEPARTMENT, v1::ACCESS_LEVEL_ALL,
                            v1::ACCESS_LEVEL_DEPARTMENT,
                            v1::ACCESS_LEVEL_SUBDEPARTMENTS,
                            v1::ACCESS_LEVEL_OPEN, v1::ACCESS_LEVEL_NONE));
  }

  // A user without roles has no pipelines and only themselves in scope.
  ASSERT_OK_AND_ASSIGN(v1::EffectivePermissions nobody,
                       EffectivePermissionsOf(11));
  EXPECT_EQ(nobody.pipelines_size(), 0);
  EXPECT_FALSE(nobody.config());
  EXPECT_THAT(Ids(nobody.department_ids()), IsEmpty());
  EXPECT_THAT(Ids(nobody.department_user_ids()), ElementsAre(11));
  EXPECT_THAT(Ids(nobody.subdepartment_user_ids()), ElementsAre(11));
}

TEST_F(AccessServiceTest, StageOverrideWinsForThatStageOnly) {
  GiveRole("Override", AllActions(v1::ACCESS_LEVEL_ALL), {12},
           [](v1::PipelinePermissions* p) {
             (*p->mutable_stage_levels())["NEW"] =
                 AllActions(v1::ACCESS_LEVEL_SELF);
           });
  v1::EffectivePipelinePermissions one_role = InDefaultPipeline(12);
  for (const char* stage : kDefaultStageIds) {
    SCOPED_TRACE(stage);
    const v1::AccessLevel expected = std::string(stage) == "NEW"
                                         ? v1::ACCESS_LEVEL_SELF
                                         : v1::ACCESS_LEVEL_ALL;
    EXPECT_EQ(one_role.stage_levels().at(stage).read(), expected);
    EXPECT_EQ(one_role.stage_levels().at(stage).import(), expected);
  }

  // Another role that raises one stage only.
  GiveRole("Raise WON", AllActions(v1::ACCESS_LEVEL_NONE), {13},
           [](v1::PipelinePermissions* p) {
             (*p->mutable_stage_levels())["WON"] =
                 AllActions(v1::ACCESS_LEVEL_OPEN);
           });
  GiveRole("Base", AllActions(v1::ACCESS_LEVEL_SELF), {13});
  v1::EffectivePipelinePermissions two_roles = InDefaultPipeline(13);
  for (const char* stage : kDefaultStageIds) {
    SCOPED_TRACE(stage);
    const v1::AccessLevel expected = std::string(stage) == "WON"
                                         ? v1::ACCESS_LEVEL_OPEN
                                         : v1::ACCESS_LEVEL_SELF;
    EXPECT_EQ(two_roles.stage_levels().at(stage).write(), expected);
  }
}

TEST_F(AccessServiceTest, TransitionsAreMerged) {
  GiveRole("T1", AllActions(v1::ACCESS_LEVEL_ALL), {14, 15},
           [](v1::PipelinePermissions* p) {
             auto& t = *p->mutable_transitions();
             t["NEW"] = Rule(v1::TransitionRule::MODE_LIST, {"PREPARATION"});
             t["PREPARATION"] = Rule(v1::TransitionRule::MODE_BLOCKED);
             t["EXECUTING"] = Rule(v1::TransitionRule::MODE_BLOCKED);
             t["WON"] = Rule(v1::TransitionRule::MODE_LIST, {"LOSE"});
           });
  GiveRole(
      "T2", AllActions(v1::ACCESS_LEVEL_SELF), {15},
      [](v1::PipelinePermissions* p) {
        auto& t = *p->mutable_transitions();
        t["NEW"] = Rule(v1::TransitionRule::MODE_LIST, {"WON", "EXECUTING"});
        t["PREPARATION"] = Rule(v1::TransitionRule::MODE_BLOCKED);
        t["EXECUTING"] = Rule(v1::TransitionRule::MODE_ANY);
        t["FINAL_INVOICE"] = Rule(v1::TransitionRule::MODE_BLOCKED);
      });

  // One role: its rules as they are, ANY for unlisted stages.
  v1::EffectivePipelinePermissions single = InDefaultPipeline(14);
  ASSERT_EQ(single.transitions_size(), 8);
  EXPECT_EQ(single.transitions().at("NEW").mode(),
            v1::TransitionRule::MODE_LIST);
  EXPECT_THAT(single.transitions().at("NEW").to_stage_ids(),
              ElementsAre("PREPARATION"));
  EXPECT_EQ(single.transitions().at("PREPARATION").mode(),
            v1::TransitionRule::MODE_BLOCKED);
  EXPECT_EQ(single.transitions().at("LOSE").mode(),
            v1::TransitionRule::MODE_ANY);

  v1::EffectivePipelinePermissions merged = InDefaultPipeline(15);
  ASSERT_EQ(merged.transitions_size(), 8);
  for (const char* stage : kDefaultStageIds) {
    EXPECT_EQ(merged.transitions().count(stage), 1u) << stage;
  }
  // LIST + LIST: the union, in stage order.
  EXPECT_EQ(merged.transitions().at("NEW").mode(),
            v1::TransitionRule::MODE_LIST);
  EXPECT_THAT(merged.transitions().at("NEW").to_stage_ids(),
              ElementsAre("PREPARATION", "EXECUTING", "WON"));
  // BLOCKED only when every role blocks.
  EXPECT_EQ(merged.transitions().at("PREPARATION").mode(),
            v1::TransitionRule::MODE_BLOCKED);
  EXPECT_THAT(merged.transitions().at("PREPARATION").to_stage_ids(), IsEmpty());
  // ANY beats BLOCKED, explicit or by default.
  EXPECT_EQ(merged.transitions().at("EXECUTING").mode(),
            v1::TransitionRule::MODE_ANY);
  EXPECT_EQ(merged.transitions().at("FINAL_INVOICE").mode(),
            v1::TransitionRule::MODE_ANY);
  // ANY (a role not listing the stage) beats LIST.
  EXPECT_EQ(merged.transitions().at("WON").mode(),
            v1::TransitionRule::MODE_ANY);
  EXPECT_THAT(merged.transitions().at("WON").to_stage_ids(), IsEmpty());
  EXPECT_EQ(merged.transitions().at("APOLOGY").mode(),
            v1::TransitionRule::MODE_ANY);

  // BLOCKED + LIST is the LIST.
  GiveRole("T3", AllActions(v1::ACCESS_LEVEL_SELF), {16},
           [](v1::PipelinePermissions* p) {
             (*p->mutable_transitions())["LOSE"] =
                 Rule(v1::TransitionRule::MODE_BLOCKED);
           });
  GiveRole("T4", AllActions(v1::ACCESS_LEVEL_SELF), {16},
           [](v1::PipelinePermissions* p) {
             (*p->mutable_transitions())["LOSE"] =
                 Rule(v1::TransitionRule::MODE_LIST, {"APOLOGY"});
           });
  v1::EffectivePipelinePermissions blocked_and_list = InDefaultPipeline(16);
  EXPECT_EQ(blocked_and_list.transitions().at("LOSE").mode(),
            v1::TransitionRule::MODE_LIST);
  EXPECT_THAT(blocked_and_list.transitions().at("LOSE").to_stage_ids(),
              ElementsAre("APOLOGY"));
}

TEST_F(AccessServiceTest, HideSumOnlyWhenEveryContributingRoleHides) {
  auto hide = [](v1::PipelinePermissions* p) { p->set_hide_sum(true); };
  const int64_t hides_a =
      GiveRole("Hides A", AllActions(v1::ACCESS_LEVEL_SELF), {}, hide);
  const int64_t hides_b =
      GiveRole("Hides B", AllActions(v1::ACCESS_LEVEL_ALL), {},
               [](v1::PipelinePermissions* p) {
                 p->set_hide_sum(true);
                 p->set_automation(v1::AUTOMATION_ACCESS_EDIT);
               });
  const int64_t shows =
      GiveRole("Shows", AllActions(v1::ACCESS_LEVEL_SELF), {},
               [](v1::PipelinePermissions* p) {
                 p->set_automation(v1::AUTOMATION_ACCESS_READ);
               });
  // Grants nothing, so its hide_sum does not count.
  const int64_t grants_nothing =
      GiveRole("Nothing", AllActions(v1::ACCESS_LEVEL_NONE), {});
  // Grants only through a stage override, so it counts.
  const int64_t override_only = GiveRole(
      "Override only", AllActions(v1::ACCESS_LEVEL_NONE), {},
      [](v1::PipelinePermissions* p) {
        (*p->mutable_stage_levels())["WON"] = AllActions(v1::ACCESS_LEVEL_SELF);
      });
  const std::map<int64_t, std::vector<int64_t>> roles_of = {
      {20, {hides_a, hides_b}},        {21, {hides_a, shows}},
      {22, {hides_a, grants_nothing}}, {23, {grants_nothing}},
      {24, {hides_a, override_only}},  {25, {hides_a}}};
  for (const auto& [user, roles] : roles_of) {
    for (int64_t role : roles) ASSERT_OK(AssignToUser(role, user).status());
  }
  EXPECT_TRUE(InDefaultPipeline(20).hide_sum());
  EXPECT_FALSE(InDefaultPipeline(21).hide_sum());
  EXPECT_TRUE(InDefaultPipeline(22).hide_sum());
  EXPECT_FALSE(InDefaultPipeline(23).hide_sum());
  EXPECT_FALSE(InDefaultPipeline(24).hide_sum());
  EXPECT_TRUE(InDefaultPipeline(25).hide_sum());

  // Automation: the highest wins.
  EXPECT_EQ(InDefaultPipeline(20).automation(), v1::AUTOMATION_ACCESS_EDIT);
  EXPECT_EQ(InDefaultPipeline(21).automation(), v1::AUTOMATION_ACCESS_READ);
  EXPECT_EQ(InDefaultPipeline(25).automation(), v1::AUTOMATION_ACCESS_NONE);
}

class DepartmentPermissionsTest : public AccessServiceTest {
 protected:
  // Sales (head 30; 31, 32)
  //   East (head 37; 33)
  //     Team (head 35; 34)
  // Support (38)
  void SetUp() override {
    AccessServiceTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_OK_AND_ASSIGN(sales_, CreateDepartment("Sales", 0, 30, {31, 32}));
    ASSERT_OK_AND_ASSIGN(east_,
                         CreateDepartment("East", sales_.id(), 37, {33}));
    ASSERT_OK_AND_ASSIGN(team_, CreateDepartment("Team", east_.id(), 35, {34}));
    ASSERT_OK_AND_ASSIGN(support_, CreateDepartment("Support", 0, 0, {38}));
  }

  v1::Department sales_;
  v1::Department east_;
  v1::Department team_;
  v1::Department support_;
};

TEST_F(DepartmentPermissionsTest,
       DepartmentAssignmentsReachMembersHeadsAndSubdepartments) {
  // READ through a plain assignment to Sales, WRITE through one that
  // includes the subdepartments.
  ASSERT_OK_AND_ASSIGN(
      v1::Role plain,
      RoleInDefaultPipeline(
          "Plain", Levels(v1::ACCESS_LEVEL_DEPARTMENT, v1::ACCESS_LEVEL_NONE,
                          v1::ACCESS_LEVEL_NONE, v1::ACCESS_LEVEL_NONE,
                          v1::ACCESS_LEVEL_NONE, v1::ACCESS_LEVEL_NONE)));
  ASSERT_OK_AND_ASSIGN(
      v1::Role deep,
      RoleInDefaultPipeline(
          "Deep", Levels(v1::ACCESS_LEVEL_NONE, v1::ACCESS_LEVEL_NONE,
                         v1::ACCESS_LEVEL_SUBDEPARTMENTS, v1::ACCESS_LEVEL_NONE,
                         v1::ACCESS_LEVEL_NONE, v1::ACCESS_LEVEL_NONE)));
  ASSERT_OK(AssignToDepartment(plain.id(), sales_.id(), false).status());
  ASSERT_OK(AssignToDepartment(deep.id(), sales_.id(), true).status());

  struct Expectation {
    int64_t user;
    v1::AccessLevel read;
    v1::AccessLevel write;
  };
  const Expectation expectations[] = {
      {31, v1::ACCESS_LEVEL_DEPARTMENT,
       v1::ACCESS_LEVEL_SUBDEPARTMENTS},  // member
      {30, v1::ACCESS_LEVEL_DEPARTMENT,
       v1::ACCESS_LEVEL_SUBDEPARTMENTS},  // head
      {33, v1::ACCESS_LEVEL_NONE,
       v1::ACCESS_LEVEL_SUBDEPARTMENTS},  // East member
      {37, v1::ACCESS_LEVEL_NONE,
       v1::ACCESS_LEVEL_SUBDEPARTMENTS},  // East head
      {34, v1::ACCESS_LEVEL_NONE,
       v1::ACCESS_LEVEL_SUBDEPARTMENTS},  // Team member
      {35, v1::ACCESS_LEVEL_NONE,
       v1::ACCESS_LEVEL_SUBDEPARTMENTS},  // Team head
  };
  for (const Expectation& e : expectations) {
    SCOPED_TRACE(e.user);
    v1::EffectivePipelinePermissions permissions = InDefaultPipeline(e.user);
    ASSERT_EQ(permissions.stage_levels().count("NEW"), 1u);
    EXPECT_EQ(permissions.stage_levels().at("NEW").read(), e.read);
    EXPECT_EQ(permissions.stage_levels().at("NEW").write(), e.write);
  }
  // Outside the tree: nothing.
  for (int64_t outsider : {38, 39}) {
    ASSERT_OK_AND_ASSIGN(v1::EffectivePermissions permissions,
                         EffectivePermissionsOf(outsider));
    EXPECT_EQ(permissions.pipelines_size(), 0) << outsider;
  }

  // An assignment to East with subdepartments reaches Team but not Sales.
  v1::Role east_config;
  east_config.set_name("East config");
  east_config.set_config(true);
  ASSERT_OK_AND_ASSIGN(v1::Role config, CreateRole(east_config));
  ASSERT_OK(AssignToDepartment(config.id(), east_.id(), true).status());
  for (const auto& [user, expected] : std::vector<std::pair<int64_t, bool>>{
           {34, true}, {33, true}, {31, false}, {30, false}}) {
    ASSERT_OK_AND_ASSIGN(v1::EffectivePermissions permissions,
                         EffectivePermissionsOf(user));
    EXPECT_EQ(permissions.config(), expected) << user;
  }
}

TEST_F(DepartmentPermissionsTest, DepartmentScopesAreClosedOverTheTree) {
  ASSERT_OK_AND_ASSIGN(v1::EffectivePermissions member,
                       EffectivePermissionsOf(31));
  EXPECT_THAT(Ids(member.department_ids()), ElementsAre(sales_.id()));
  EXPECT_THAT(Ids(member.subdepartment_ids()),
              UnorderedElementsAre(sales_.id(), east_.id(), team_.id()));
  EXPECT_THAT(Ids(member.department_user_ids()),
              UnorderedElementsAre(30, 31, 32));
  EXPECT_THAT(Ids(member.subdepartment_user_ids()),
              UnorderedElementsAre(30, 31, 32, 33, 34, 35, 37));

  ASSERT_OK_AND_ASSIGN(v1::EffectivePermissions middle,
                       EffectivePermissionsOf(33));
  EXPECT_THAT(Ids(middle.department_ids()), ElementsAre(east_.id()));
  EXPECT_THAT(Ids(middle.subdepartment_ids()),
              UnorderedElementsAre(east_.id(), team_.id()));
  EXPECT_THAT(Ids(middle.department_user_ids()), UnorderedElementsAre(33, 37));
  EXPECT_THAT(Ids(middle.subdepartment_user_ids()),
              UnorderedElementsAre(33, 34, 35, 37));

  // A head belongs to the department they lead.
  ASSERT_OK_AND_ASSIGN(v1::EffectivePermissions head,
                       EffectivePermissionsOf(35));
  EXPECT_THAT(Ids(head.department_ids()), ElementsAre(team_.id()));
  EXPECT_THAT(Ids(head.subdepartment_ids()), ElementsAre(team_.id()));
  EXPECT_THAT(Ids(head.department_user_ids()), UnorderedElementsAre(34, 35));

  // A user in two departments gets both.
  v1::Department update = support_;
  update.add_member_user_ids(34);
  ASSERT_OK(UpdateDepartment(update, Mask({"member_user_ids"})).status());
  ASSERT_OK_AND_ASSIGN(v1::EffectivePermissions twice,
                       EffectivePermissionsOf(34));
  EXPECT_THAT(Ids(twice.department_ids()),
              UnorderedElementsAre(team_.id(), support_.id()));
  EXPECT_THAT(Ids(twice.department_user_ids()),
              UnorderedElementsAre(34, 35, 38));

  // Moving Team under Support changes the closure of Sales.
  ASSERT_OK(MoveDepartment(team_.id(), support_.id()).status());
  ASSERT_OK_AND_ASSIGN(v1::EffectivePermissions after_move,
                       EffectivePermissionsOf(31));
  EXPECT_THAT(Ids(after_move.subdepartment_ids()),
              UnorderedElementsAre(sales_.id(), east_.id()));
  EXPECT_THAT(Ids(after_move.subdepartment_user_ids()),
              UnorderedElementsAre(30, 31, 32, 33, 37));
}

TEST_F(AccessServiceTest, AdministratorsAreAdmins) {
  ASSERT_OK_AND_ASSIGN(v1::EffectivePermissions admin,
                       EffectivePermissionsOf(kAdminUserId));
  EXPECT_EQ(admin.user_id(), kAdminUserId);
  EXPECT_TRUE(admin.is_admin());
  EXPECT_TRUE(admin.config());
  EXPECT_EQ(admin.pipelines_size(), 0);

  // Own permissions (user_id 0 = the caller) with the admin claim.
  ASSERT_OK_AND_ASSIGN(v1::EffectivePermissions claimed,
                       CallAs(UserToken(99, /*admin=*/true),
                              &AccessStub::GetEffectivePermissions,
                              v1::GetEffectivePermissionsRequest()));
  EXPECT_EQ(claimed.user_id(), 99);
  EXPECT_TRUE(claimed.is_admin());

  // An administrator by configuration is one whoever asks.
  v1::GetEffectivePermissionsRequest request;
  request.set_user_id(kAdminUserId);
  ASSERT_OK_AND_ASSIGN(
      v1::EffectivePermissions by_service,
      CallAs(ServiceToken(), &AccessStub::GetEffectivePermissions, request));
  EXPECT_TRUE(by_service.is_admin());
}

TEST_F(AccessServiceTest, AskingForAnotherUserNeedsConfig) {
  GiveRole("Reader", AllActions(v1::ACCESS_LEVEL_SELF), {40, 41});
  v1::GetEffectivePermissionsRequest own;
  ASSERT_OK_AND_ASSIGN(
      v1::EffectivePermissions mine,
      CallAs(UserToken(40), &AccessStub::GetEffectivePermissions, own));
  EXPECT_EQ(mine.user_id(), 40);
  EXPECT_FALSE(mine.is_admin());
  EXPECT_EQ(mine.pipelines_size(), 1);
  own.set_user_id(40);
  EXPECT_OK(CallAs(UserToken(40), &AccessStub::GetEffectivePermissions, own));

  v1::GetEffectivePermissionsRequest other;
  other.set_user_id(41);
  EXPECT_THAT(
      CallAs(UserToken(40), &AccessStub::GetEffectivePermissions, other),
      StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("CONFIG")));

  ASSERT_NE(GrantConfig(42), 0);
  ASSERT_OK_AND_ASSIGN(
      v1::EffectivePermissions by_config,
      CallAs(UserToken(42), &AccessStub::GetEffectivePermissions, other));
  EXPECT_EQ(by_config.user_id(), 41);
  EXPECT_EQ(by_config.pipelines_size(), 1);
  ASSERT_OK_AND_ASSIGN(v1::EffectivePermissions by_service,
                       CallAs(ServiceToken("deals"),
                              &AccessStub::GetEffectivePermissions, other));
  EXPECT_EQ(by_service.user_id(), 41);
  EXPECT_FALSE(by_service.is_admin());

  // A service has no own permissions; negative ids are refused.
  EXPECT_THAT(
      CallAs(ServiceToken("deals"), &AccessStub::GetEffectivePermissions,
             v1::GetEffectivePermissionsRequest()),
      StatusIs(kInvalidArgument, HasSubstr("user_id")));
  other.set_user_id(-1);
  EXPECT_THAT(
      CallAs(UserToken(42), &AccessStub::GetEffectivePermissions, other),
      StatusIs(kInvalidArgument, HasSubstr("user_id")));
}

// --- Authentication and the CONFIG permission
// ----------------------------------------------

AccessServiceTest::Targets AccessServiceTest::MakeTargets() {
  Targets targets;
  absl::StatusOr<v1::Department> department = CreateDepartment("Target");
  EXPECT_TRUE(department.ok()) << department.status();
  v1::Role role;
  role.set_name("Target");
  absl::StatusOr<v1::Role> created = CreateRole(role);
  EXPECT_TRUE(created.ok()) << created.status();
  if (!department.ok() || !created.ok()) return targets;
  absl::StatusOr<v1::RoleAssignment> assignment =
      AssignToUser(created->id(), 500);
  EXPECT_TRUE(assignment.ok()) << assignment.status();
  targets.department = department->id();
  targets.role = created->id();
  targets.assignment = assignment.ok() ? assignment->id() : 0;
  return targets;
}

std::vector<std::pair<std::string, AccessServiceTest::Rpc>>
AccessServiceTest::AllRpcs() {
  return {
      {"CreateDepartment",
       [this](const std::string& token) {
         v1::CreateDepartmentRequest request;
         request.mutable_department()->set_name("By caller");
         return CallAs(token, &AccessStub::CreateDepartment, request).status();
       }},
      {"GetDepartment",
       [this](const std::string& token) {
         v1::GetDepartmentRequest request;
         request.set_department_id(targets_.department);
         return CallAs(token, &AccessStub::GetDepartment, request).status();
       }},
      {"ListDepartments",
       [this](const std::string& token) {
         return CallAs(token, &AccessStub::ListDepartments,
                       v1::ListDepartmentsRequest())
             .status();
       }},
      {"UpdateDepartment",
       [this](const std::string& token) {
         v1::UpdateDepartmentRequest request;
         request.mutable_department()->set_id(targets_.department);
         request.mutable_department()->set_name("Renamed by caller");
         *request.mutable_update_mask() = Mask({"name"});
         return CallAs(token, &AccessStub::UpdateDepartment, request).status();
       }},
      {"DeleteDepartment",
       [this](const std::string& token) {
         v1::DeleteDepartmentRequest request;
         request.set_department_id(targets_.department);
         return CallAs(token, &AccessStub::DeleteDepartment, request).status();
       }},
      {"CreateRole",
       [this](const std::string& token) {
         v1::CreateRoleRequest request;
         request.mutable_role()->set_name("By caller");
         return CallAs(token, &AccessStub::CreateRole, request).status();
       }},
      {"GetRole",
       [this](const std::string& token) {
         v1::GetRoleRequest request;
         request.set_role_id(targets_.role);
         return CallAs(token, &AccessStub::GetRole, request).status();
       }},
      {"ListRoles",
       [this](const std::string& token) {
         return CallAs(token, &AccessStub::ListRoles, v1::ListRolesRequest())
             .status();
       }},
      {"UpdateRole",
       [this](const std::string& token) {
         v1::UpdateRoleRequest request;
         request.mutable_role()->set_id(targets_.role);
         request.mutable_role()->set_name("Renamed by caller");
         *request.mutable_update_mask() = Mask({"name"});
         return CallAs(token, &AccessStub::UpdateRole, request).status();
       }},
      {"CreateRoleAssignment",
       [this](const std::string& token) {
         v1::CreateRoleAssignmentRequest request;
         request.mutable_assignment()->set_role_id(targets_.role);
         request.mutable_assignment()->set_department_id(targets_.department);
         return CallAs(token, &AccessStub::CreateRoleAssignment, request)
             .status();
       }},
      {"ListRoleAssignments",
       [this](const std::string& token) {
         return CallAs(token, &AccessStub::ListRoleAssignments,
                       v1::ListRoleAssignmentsRequest())
             .status();
       }},
      {"DeleteRoleAssignment",
       [this](const std::string& token) {
         v1::DeleteRoleAssignmentRequest request;
         request.set_assignment_id(targets_.assignment);
         return CallAs(token, &AccessStub::DeleteRoleAssignment, request)
             .status();
       }},
      {"GetEffectivePermissions",
       [this](const std::string& token) {
         return CallAs(token, &AccessStub::GetEffectivePermissions,
                       v1::GetEffectivePermissionsRequest())
             .status();
       }},
  };
}

std::vector<std::pair<std::string, absl::Status>>
AccessServiceTest::MutateEverything(const std::string& token) {
  // Mutations in an order in which each can succeed; DeleteRole last (it
  // would remove the assignments) and DeleteDepartment after the assignment
  // to it was made.
  const std::vector<std::string> order = {
      "CreateDepartment",     "UpdateDepartment",
      "CreateRole",           "UpdateRole",
      "CreateRoleAssignment", "DeleteRoleAssignment",
      "DeleteDepartment",     "DeleteRole"};
  std::map<std::string, Rpc> rpcs;
  for (auto& [name, rpc] : AllRpcs()) rpcs[name] = rpc;
  rpcs["DeleteRole"] = [this](const std::string& caller) {
    v1::DeleteRoleRequest request;
    request.set_role_id(targets_.role);
    return CallAs(caller, &AccessStub::DeleteRole, request).status();
  };
  std::vector<std::pair<std::string, absl::Status>> results;
  for (const auto& name : order)
    results.emplace_back(name, rpcs.at(name)(token));
  return results;
}

const std::set<std::string> kReads = {
    "GetDepartment", "ListDepartments",     "GetRole",
    "ListRoles",     "ListRoleAssignments", "GetEffectivePermissions"};

TEST_F(AccessServiceTest, EveryRpcNeedsAValidToken) {
  targets_ = MakeTargets();
  const int64_t version = ConfigVersion();
  auto rpcs = AllRpcs();
  rpcs.emplace_back("DeleteRole", [this](const std::string& token) {
    v1::DeleteRoleRequest request;
    request.set_role_id(targets_.role);
    return CallAs(token, &AccessStub::DeleteRole, request).status();
  });
  ASSERT_EQ(rpcs.size(), 14u);
  ExpectBadTokensRefused(rpcs);
  EXPECT_EQ(ConfigVersion(), version);
}

TEST_F(AccessServiceTest, UserWithoutConfigCanReadButNotChange) {
  targets_ = MakeTargets();
  const int64_t version = ConfigVersion();
  for (const auto& [name, rpc] : AllRpcs()) {
    SCOPED_TRACE(name);
    if (kReads.count(name) > 0) {
      EXPECT_OK(rpc(UserToken(7)));
    }
  }
  const auto results = MutateEverything(UserToken(7));
  ASSERT_EQ(results.size(), 8u);
  for (const auto& [name, status] : results) {
    SCOPED_TRACE(name);
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kPermissionDenied,
                                 HasSubstr("CONFIG")));
  }
  EXPECT_EQ(ConfigVersion(), version);
  EXPECT_OK(GetDepartment(targets_.department));
  ASSERT_OK_AND_ASSIGN(v1::Role role, GetRole(targets_.role));
  EXPECT_EQ(role.name(), "Target");
  EXPECT_THAT(AssignmentIds(0, 0, 0), ElementsAre(targets_.assignment));
}

TEST_F(AccessServiceTest, ConfigRoleServiceAndAdminCanChange) {
  // CONFIG through a direct assignment and through a department.
  ASSERT_NE(GrantConfig(8), 0);
  v1::Role config_role;
  config_role.set_name("Department config");
  config_role.set_config(true);
  ASSERT_OK_AND_ASSIGN(v1::Role department_config, CreateRole(config_role));
  ASSERT_OK_AND_ASSIGN(v1::Department admins,
                       CreateDepartment("Admins", 0, 0, {9}));
  ASSERT_OK(
      AssignToDepartment(department_config.id(), admins.id(), false).status());

  for (const std::string& token :
       {UserToken(8), UserToken(9), ServiceToken("automation"),
        UserToken(99, /*admin=*/true), AdminToken()}) {
    targets_ = MakeTargets();
    for (const auto& [name, status] : MutateEverything(token)) {
      SCOPED_TRACE(name);
      EXPECT_OK(status);
    }
    EXPECT_THAT(GetDepartment(targets_.department), StatusIs(kNotFound));
    EXPECT_THAT(GetRole(targets_.role), StatusIs(kNotFound));
  }
}

}  // namespace
}  // namespace crm::pipeline_config
