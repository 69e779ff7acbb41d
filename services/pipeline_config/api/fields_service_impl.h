// gRPC handler of crm.pipelines.v1.DealFieldsService (custom deal fields).
#pragma once

#include "crm/pipelines/v1/pipelines_service.grpc.pb.h"

#include "services/pipeline_config/api/call_context.h"

namespace crm::pipeline_config {

class FieldsServiceImpl final : public v1::DealFieldsService::CallbackService {
 public:
  explicit FieldsServiceImpl(const ServiceDeps& deps) : deps_(deps) {}

  // crm::pipelines::v1::DealFieldsService::CallbackService
  grpc::ServerUnaryReactor* CreateField(grpc::CallbackServerContext* context,
                                        const v1::CreateFieldRequest* request,
                                        v1::FieldDefinition* response) override;
  grpc::ServerUnaryReactor* GetField(grpc::CallbackServerContext* context,
                                     const v1::GetFieldRequest* request,
                                     v1::FieldDefinition* response) override;
  grpc::ServerUnaryReactor* ListFields(
      grpc::CallbackServerContext* context,
      const v1::ListFieldsRequest* request,
      v1::ListFieldsResponse* response) override;
  grpc::ServerUnaryReactor* UpdateField(grpc::CallbackServerContext* context,
                                        const v1::UpdateFieldRequest* request,
                                        v1::FieldDefinition* response) override;
  grpc::ServerUnaryReactor* DeleteField(
      grpc::CallbackServerContext* context,
      const v1::DeleteFieldRequest* request,
      google::protobuf::Empty* response) override;

 private:
  const ServiceDeps& deps_;
};

}  // namespace crm::pipeline_config
