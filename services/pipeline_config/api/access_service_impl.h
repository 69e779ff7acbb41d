// gRPC handler of crm.pipelines.v1.AccessService: departments, roles, role
// assignments and effective permissions.
#pragma once

#include "crm/pipelines/v1/pipelines_service.grpc.pb.h"

#include "services/pipeline_config/api/call_context.h"

namespace crm::pipeline_config {

class AccessServiceImpl final : public v1::AccessService::CallbackService {
 public:
  explicit AccessServiceImpl(const ServiceDeps& deps) : deps_(deps) {}

  // crm::pipelines::v1::AccessService::CallbackService
  grpc::ServerUnaryReactor* CreateDepartment(
      grpc::CallbackServerContext* context,
      const v1::CreateDepartmentRequest* request,
      v1::Department* response) override;
  grpc::ServerUnaryReactor* GetDepartment(
      grpc::CallbackServerContext* context,
      const v1::GetDepartmentRequest* request,
      v1::Department* response) override;
  grpc::ServerUnaryReactor* ListDepartments(
      grpc::CallbackServerContext* context,
      const v1::ListDepartmentsRequest* request,
      v1::ListDepartmentsResponse* response) override;
  grpc::ServerUnaryReactor* UpdateDepartment(
      grpc::CallbackServerContext* context,
      const v1::UpdateDepartmentRequest* request,
      v1::Department* response) override;
  grpc::ServerUnaryReactor* DeleteDepartment(
      grpc::CallbackServerContext* context,
      const v1::DeleteDepartmentRequest* request,
      google::protobuf::Empty* response) override;
  grpc::ServerUnaryReactor* CreateRole(grpc::CallbackServerContext* context,
                                       const v1::CreateRoleRequest* request,
                                       v1::Role* response) override;
  grpc::ServerUnaryReactor* GetRole(grpc::CallbackServerContext* context,
                                    const v1::GetRoleRequest* request,
                                    v1::Role* response) override;
  grpc::ServerUnaryReactor* ListRoles(grpc::CallbackServerContext* context,
                                      const v1::ListRolesRequest* request,
                                      v1::ListRolesResponse* response) override;
  grpc::ServerUnaryReactor* UpdateRole(grpc::CallbackServerContext* context,
                                       const v1::UpdateRoleRequest* request,
                                       v1::Role* response) override;
  grpc::ServerUnaryReactor* DeleteRole(
      grpc::CallbackServerContext* context,
      const v1::DeleteRoleRequest* request,
      google::protobuf::Empty* response) override;
  grpc::ServerUnaryReactor* CreateRoleAssignment(
      grpc::CallbackServerContext* context,
      const v1::CreateRoleAssignmentRequest* request,
      v1::RoleAssignment* response) override;
  grpc::ServerUnaryReactor* ListRoleAssignments(
      grpc::CallbackServerContext* context,
      const v1::ListRoleAssignmentsRequest* request,
      v1::ListRoleAssignmentsResponse* response) override;
  grpc::ServerUnaryReactor* DeleteRoleAssignment(
      grpc::CallbackServerContext* context,
      const v1::DeleteRoleAssignmentRequest* request,
      google::protobuf::Empty* response) override;
  grpc::ServerUnaryReactor* GetEffectivePermissions(
      grpc::CallbackServerContext* context,
      const v1::GetEffectivePermissionsRequest* request,
      v1::EffectivePermissions* response) override;

 private:
  const ServiceDeps& deps_;
};

}  // namespace crm::pipeline_config
