#include "services/pipeline_config/api/fields_service_impl.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

#include "common/grpc/unary_call.h"
#include "common/rocks/key_codec.h"
#include "common/status/status_macros.h"

namespace crm::pipeline_config {

grpc::ServerUnaryReactor* FieldsServiceImpl::CreateField(
    grpc::CallbackServerContext* context, const v1::CreateFieldRequest* request,
    v1::FieldDefinition* response) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps_, *context));
        CRM_RETURN_IF_ERROR(RequireConfig(caller, *deps_.manager.Snapshot()));
        CRM_ASSIGN_OR_RETURN(*response,
                             deps_.manager.CreateField(request->field()));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* FieldsServiceImpl::GetField(
    grpc::CallbackServerContext* context, const v1::GetFieldRequest* request,
    v1::FieldDefinition* response) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        CRM_RETURN_IF_ERROR(Authenticate(deps_, *context).status());
        const auto snapshot = deps_.manager.Snapshot();
        auto it = snapshot->fields.find(request->code());
        if (it == snapshot->fields.end()) {
          return absl::NotFoundError(
              absl::StrCat("field ", request->code(), " not found"));
        }
        *response = it->second;
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* FieldsServiceImpl::ListFields(
    grpc::CallbackServerContext* context, const v1::ListFieldsRequest* request,
    v1::ListFieldsResponse* response) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        CRM_RETURN_IF_ERROR(Authenticate(deps_, *context).status());
        const auto snapshot = deps_.manager.Snapshot();
        // Ordered by (sort, code).
        std::vector<std::pair<std::string, const v1::FieldDefinition*>> ordered;
        for (const auto& [code, field] : snapshot->fields) {
          std::string key;
          common::AppendInt64(&key, field.sort());
          common::AppendString(&key, code);
          ordered.emplace_back(std::move(key), &field);
        }
        std::sort(ordered.begin(), ordered.end());
        std::vector<std::string> keys;
        for (const auto& item : ordered) keys.push_back(item.first);
        return Paginate(
            keys, request->page_size(), request->page_token(), "fields",
            deps_.page_tokens,
            [&](size_t i) {
              *response->add_fields() = *ordered[i].second;
              return ordered[i].second->ByteSizeLong();
            },
            response->mutable_next_page_token());
      });
}

grpc::ServerUnaryReactor* FieldsServiceImpl::UpdateField(
    grpc::CallbackServerContext* context, const v1::UpdateFieldRequest* request,
    v1::FieldDefinition* response) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps_, *context));
        CRM_RETURN_IF_ERROR(RequireConfig(caller, *deps_.manager.Snapshot()));
        CRM_ASSIGN_OR_RETURN(
            *response,
            deps_.manager.UpdateField(request->field(), request->update_mask(),
                                      request->etag()));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* FieldsServiceImpl::DeleteField(
    grpc::CallbackServerContext* context, const v1::DeleteFieldRequest* request,
    google::protobuf::Empty* /*response*/) {
  return common::RunUnary(
      context, /*pool=*/nullptr, "pipeline-config", [&]() -> absl::Status {
        CRM_ASSIGN_OR_RETURN(Caller caller, Authenticate(deps_, *context));
        CRM_RETURN_IF_ERROR(RequireConfig(caller, *deps_.manager.Snapshot()));
        return deps_.manager.DeleteField(request->code(), request->etag());
      });
}

}  // namespace crm::pipeline_config
