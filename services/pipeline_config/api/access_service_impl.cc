#include "services/pipeline_config/api/access_service_impl.h"

#include "absl/strings/str_cat.h"

#include "common/grpc/unary_call.h"
#include "common/rocks/key_codec.h"
#include "common/status/status_macros.h"
#include "services/pipeline_config/domain/permissions.h"

namespace crm::pipeline_config {
namespace {

// Pages over a std::map keyed by id, in id order.
template <typename Map, typename Emit>
absl::Status PageById(
    const Map& items,
    const std::function<bool(const typename Map::mapped_type&)>& keep,
    int32_t page_size, const std::string& page_token, const std::string& query,
    const common::PageTokenCodec& codec, Emit emit, std::string* next) {
  std::vector<std::string> keys;
  std::vector<const typename Map::mapped_type*> values;
  for (const auto& [id, item] : items) {
    if (!keep(item)) continue;
    keys.push_back(common::EncodeInt64(id));
    values.push_back(&item);
  }
  return Paginate(
      keys, page_size, page_token, query, codec,
      [&](size_t i) {
        emit(*values[i]);
        return values[i]->ByteSizeLong();
      },
      next);
}

}  // namespace

grpc::ServerUnaryReactor* AccessServiceImpl::CreateDepartment(
    grpc::CallbackServerContext* context,
    const v1::CreateDepartmentRequest* request, v1::Department* response) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps_, *context));
        CRM_RETURN_IF_ERROR(RequireConfig(caller, *deps_.manager.Snapshot()));
        CRM_ASSIGN_OR_RETURN(
            *response, deps_.manager.CreateDepartment(request->department()));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AccessServiceImpl::GetDepartment(
    grpc::CallbackServerContext* context,
    const v1::GetDepartmentRequest* request, v1::Department* response) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        CRM_RETURN_IF_ERROR(Authenticate(deps_, *context).status());
        const auto snapshot = deps_.manager.Snapshot();
        auto it = snapshot->departments.find(request->department_id());
        if (it == snapshot->departments.end()) {
          return absl::NotFoundError(absl::StrCat(
              "department ", request->department_id(), " not found"));
        }
        *response = it->second;
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AccessServiceImpl::ListDepartments(
    grpc::CallbackServerContext* context,
    const v1::ListDepartmentsRequest* request,
    v1::ListDepartmentsResponse* response) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        CRM_RETURN_IF_ERROR(Authenticate(deps_, *context).status());
        const auto snapshot = deps_.manager.Snapshot();
        const bool filter = request->parent_filter();
        const int64_t parent = request->parent_id();
        return PageById(
            snapshot->departments,
            [&](const v1::Department& d) {
              return !filter || d.parent_id() == parent;
            },
            request->page_size(), request->page_token(),
            absl::StrCat("departments|", filter ? absl::StrCat(parent) : "*"),
            deps_.page_tokens,
            [&](const v1::Department& d) { *response->add_departments() = d; },
            response->mutable_next_page_token());
      });
}

grpc::ServerUnaryReactor* AccessServiceImpl::UpdateDepartment(
    grpc::CallbackServerContext* context,
    const v1::UpdateDepartmentRequest* request, v1::Department* response) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps_, *context));
        CRM_RETURN_IF_ERROR(RequireConfig(caller, *deps_.manager.Snapshot()));
        CRM_ASSIGN_OR_RETURN(
            *response, deps_.manager.UpdateDepartment(request->department(),
                                                      request->update_mask(),
                                                      request->etag()));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AccessServiceImpl::DeleteDepartment(
    grpc::CallbackServerContext* context,
    const v1::DeleteDepartmentRequest* request,
    google::protobuf::Empty* /*response*/) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps_, *context));
        CRM_RETURN_IF_ERROR(RequireConfig(caller, *deps_.manager.Snapshot()));
        return deps_.manager.DeleteDepartment(request->department_id(),
                                              request->etag());
      });
}

grpc::ServerUnaryReactor* AccessServiceImpl::CreateRole(
    grpc::CallbackServerContext* context, const v1::CreateRoleRequest* request,
    v1::Role* response) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps_, *context));
        CRM_RETURN_IF_ERROR(RequireConfig(caller, *deps_.manager.Snapshot()));
        CRM_ASSIGN_OR_RETURN(*response,
                             deps_.manager.CreateRole(request->role()));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AccessServiceImpl::GetRole(
    grpc::CallbackServerContext* context, const v1::GetRoleRequest* request,
    v1::Role* response) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        CRM_RETURN_IF_ERROR(Authenticate(deps_, *context).status());
        const auto snapshot = deps_.manager.Snapshot();
        auto it = snapshot->roles.find(request->role_id());
        if (it == snapshot->roles.end()) {
          return absl::NotFoundError(
              absl::StrCat("role ", request->role_id(), " not found"));
        }
        *response = it->second;
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AccessServiceImpl::ListRoles(
    grpc::CallbackServerContext* context, const v1::ListRolesRequest* request,
    v1::ListRolesResponse* response) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        CRM_RETURN_IF_ERROR(Authenticate(deps_, *context).status());
        const auto snapshot = deps_.manager.Snapshot();
        return PageById(
            snapshot->roles, [](const v1::Role&) { return true; },
            request->page_size(), request->page_token(), "roles",
            deps_.page_tokens,
            [&](const v1::Role& r) { *response->add_roles() = r; },
            response->mutable_next_page_token());
      });
}

grpc::ServerUnaryReactor* AccessServiceImpl::UpdateRole(
    grpc::CallbackServerContext* context, const v1::UpdateRoleRequest* request,
    v1::Role* response) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps_, *context));
        CRM_RETURN_IF_ERROR(RequireConfig(caller, *deps_.manager.Snapshot()));
        CRM_ASSIGN_OR_RETURN(
            *response,
            deps_.manager.UpdateRole(request->role(), request->update_mask(),
                                     request->etag()));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AccessServiceImpl::DeleteRole(
    grpc::CallbackServerContext* context, const v1::DeleteRoleRequest* request,
    google::protobuf::Empty* /*response*/) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps_, *context));
        CRM_RETURN_IF_ERROR(RequireConfig(caller, *deps_.manager.Snapshot()));
        return deps_.manager.DeleteRole(request->role_id(), request->etag());
      });
}

grpc::ServerUnaryReactor* AccessServiceImpl::CreateRoleAssignment(
    grpc::CallbackServerContext* context,
    const v1::CreateRoleAssignmentRequest* request,
    v1::RoleAssignment* response) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps_, *context));
        CRM_RETURN_IF_ERROR(RequireConfig(caller, *deps_.manager.Snapshot()));
        CRM_ASSIGN_OR_RETURN(*response, deps_.manager.CreateRoleAssignment(
                                            request->assignment()));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* AccessServiceImpl::ListRoleAssignments(
    grpc::CallbackServerContext* context,
    const v1::ListRoleAssignmentsRequest* request,
    v1::ListRoleAssignmentsResponse* response) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        CRM_RETURN_IF_ERROR(Authenticate(deps_, *context).status());
        const auto snapshot = deps_.manager.Snapshot();
        return PageById(
            snapshot->assignments,
            [&](const v1::RoleAssignment& a) {
              return (request->role_id() == 0 ||
                      a.role_id() == request->role_id()) &&
                     (request->user_id() == 0 ||
                      (a.subject_case() == v1::RoleAssignment::kUserId &&
                       a.user_id() == request->user_id())) &&
                     (request->department_id() == 0 ||
                      (a.subject_case() == v1::RoleAssignment::kDepartmentId &&
                       a.department_id() == request->department_id()));
            },
            request->page_size(), request->page_token(),
            absl::StrCat("assignments|", request->role_id(), "|",
                         request->user_id(), "|", request->department_id()),
            deps_.page_tokens,
            [&](const v1::RoleAssignment& a) {
              *response->add_assignments() = a;
            },
            response->mutable_next_page_token());
      });
}

grpc::ServerUnaryReactor* AccessServiceImpl::DeleteRoleAssignment(
    grpc::CallbackServerContext* context,
    const v1::DeleteRoleAssignmentRequest* request,
    google::protobuf::Empty* /*response*/) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps_, *context));
        CRM_RETURN_IF_ERROR(RequireConfig(caller, *deps_.manager.Snapshot()));
        return deps_.manager.DeleteRoleAssignment(request->assignment_id());
      });
}

grpc::ServerUnaryReactor* AccessServiceImpl::GetEffectivePermissions(
    grpc::CallbackServerContext* context,
    const v1::GetEffectivePermissionsRequest* request,
    v1::EffectivePermissions* response) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps_, *context));
        if (request->user_id() < 0) {
          return absl::InvalidArgumentError(
              "user_id: must be >= 0 (0 = the caller)");
        }
        const auto snapshot = deps_.manager.Snapshot();
        int64_t user_id = request->user_id();
        if (user_id == 0) {
          if (caller.principal.IsService()) {
            return absl::InvalidArgumentError(
                "user_id: required for a service identity");
          }
          user_id = caller.principal.user_id;
        }
        if (user_id != caller.principal.user_id) {
          CRM_RETURN_IF_ERROR(RequireConfig(caller, *snapshot));
        }
        const bool is_admin =
            deps_.admin_user_ids.count(user_id) > 0 ||
            (user_id == caller.principal.user_id && caller.principal.is_admin);
        *response = ComputeEffectivePermissions(*snapshot, user_id, is_admin);
        return absl::OkStatus();
      });
}

}  // namespace crm::pipeline_config
