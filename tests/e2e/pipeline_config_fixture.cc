#include "tests/e2e/pipeline_config_fixture.h"

#include <chrono>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

#include "common/auth/auth.h"

#ifndef CRM_PIPELINE_CONFIG_BINARY
#error "CRM_PIPELINE_CONFIG_BINARY must name the crm-pipeline-config binary"
#endif

namespace crm::testing {

std::string UserToken(int64_t user_id, bool admin) {
  return common::MakeUserToken(kE2eJwtSecret, user_id, admin, absl::Hours(1),
                               absl::Now());
}

::testing::AssertionResult IsOk(const grpc::Status& status) {
  if (status.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "gRPC status " << status.error_code()
                                       << ": " << status.error_message();
}

int64_t EtagVersion(const std::string& etag) {
  int64_t version = 0;
  if (etag.size() < 3 || etag.front() != '"' || etag.back() != '"' ||
      !absl::SimpleAtoi(etag.substr(1, etag.size() - 2), &version)) {
    return 0;
  }
  return version;
}

Client::Client(const std::shared_ptr<grpc::Channel>& channel, std::string token)
    : token_(std::move(token)),
      pipelines_(v1::PipelinesService::NewStub(channel)),
      fields_(v1::DealFieldsService::NewStub(channel)),
      access_(v1::AccessService::NewStub(channel)) {}

void Client::Prepare(grpc::ClientContext* context,
                     absl::Duration timeout) const {
  context->AddMetadata("authorization", "Bearer " + token_);
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoMilliseconds(timeout));
}

grpc::Status Client::ListAllPipelines(bool include_stages,
                                      std::vector<v1::Pipeline>* out) const {
  out->clear();
  v1::ListPipelinesRequest request;
  request.set_page_size(500);
  request.set_include_stages(include_stages);
  do {
    v1::ListPipelinesResponse response;
    grpc::Status status =
        Call(&v1::PipelinesService::Stub::ListPipelines, request, &response);
    if (!status.ok()) return status;
    out->insert(out->end(), response.pipelines().begin(),
                response.pipelines().end());
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  return grpc::Status::OK;
}

grpc::Status Client::ListAllFields(
    std::vector<v1::FieldDefinition>* out) const {
  out->clear();
  v1::ListFieldsRequest request;
  request.set_page_size(500);
  do {
    v1::ListFieldsResponse response;
    grpc::Status status =
        Call(&v1::DealFieldsService::Stub::ListFields, request, &response);
    if (!status.ok()) return status;
    out->insert(out->end(), response.fields().begin(), response.fields().end());
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  return grpc::Status::OK;
}

grpc::Status Client::ListAllAssignments(
    std::vector<v1::RoleAssignment>* out) const {
  out->clear();
  v1::ListRoleAssignmentsRequest request;
  request.set_page_size(500);
  do {
    v1::ListRoleAssignmentsResponse response;
    grpc::Status status =
        Call(&v1::AccessService::Stub::ListRoleAssignments, request, &response);
    if (!status.ok()) return status;
    out->insert(out->end(), response.assignments().begin(),
                response.assignments().end());
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  return grpc::Status::OK;
}

grpc::Status Client::ConfigVersion(int64_t* version) const {
  v1::ConfigVersion response;
  grpc::Status status = Call(&v1::PipelinesService::Stub::GetConfigVersion,
                             v1::GetConfigVersionRequest(), &response);
  *version = response.version();
  return status;
}

std::vector<std::string> PipelineConfigTest::ServerArgs(
    const std::string& data_dir) const {
  // Explicit values for every flag whose CRM_* environment fallback could
  // change what the tests see (later flags, e.g. --sync_writes=true from a
  // test, win). The default shutdown grace (10 s) stays: the shutdown tests
  // require an exit well before it.
  return {
      "--data_dir=" + data_dir,    absl::StrCat("--jwt_secret=", kE2eJwtSecret),
      "--listen_host=127.0.0.1",   "--admin_users=1",
      "--insecure_dev_auth=false", "--seed_demo=false",
      "--sync_writes=false",       "--shutdown_grace_seconds=10",
      "--log_level=info"};
}

std::unique_ptr<ServiceProcess> PipelineConfigTest::StartServer(
    std::vector<std::string> extra_args, const std::string& data_dir) {
  ServiceOptions options;
  options.binary = CRM_PIPELINE_CONFIG_BINARY;
  options.work_dir = work_dir();
  options.args = ServerArgs(data_dir.empty() ? data_dir_ : data_dir);
  options.args.insert(options.args.end(), extra_args.begin(), extra_args.end());
  options.start_timeout = kStartTimeout;
  absl::StatusOr<std::unique_ptr<ServiceProcess>> service =
      ServiceProcess::Start(options);
  if (!service.ok()) {
    ADD_FAILURE() << "cannot start " << options.binary << ": "
                  << service.status();
    return nullptr;
  }
  return std::move(service).value();
}

}  // namespace crm::testing
