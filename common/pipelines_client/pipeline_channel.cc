#include "common/pipelines_client/pipeline_channel.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

#include "common/grpc/message_limits.h"

namespace crm::common {
namespace {

// Read-only (hence idempotent) RPCs of pipeline-config that the client
// makes. WatchConfig is not listed: a broken stream is reopened by the
// client's watch loop, which also re-reads what it missed.
constexpr const char* kRetriedMethods[][2] = {
    {"crm.pipelines.v1.PipelinesService", "GetConfigVersion"},
    {"crm.pipelines.v1.PipelinesService", "ListPipelines"},
    {"crm.pipelines.v1.PipelinesService", "GetPipeline"},
    {"crm.pipelines.v1.PipelinesService", "ListStages"},
    {"crm.pipelines.v1.DealFieldsService", "ListFields"},
    {"crm.pipelines.v1.DealFieldsService", "GetField"},
    {"crm.pipelines.v1.AccessService", "GetEffectivePermissions"},
};

std::string ServiceConfigJson(int max_attempts) {
  std::string names;
  for (const auto& method : kRetriedMethods) {
    absl::StrAppend(&names, names.empty() ? "" : ",", R"({"service":")",
                    method[0], R"(","method":")", method[1], R"("})");
  }
  // gRPC requires maxAttempts >= 2 in a retry policy; 1 means no policy.
  if (max_attempts < 2) return "{}";
  return absl::StrCat(R"({"methodConfig":[{"name":[)", names,
                      R"(],"retryPolicy":{"maxAttempts":)",
                      std::min(max_attempts, 5),
                      R"(,"initialBackoff":"0.05s","maxBackoff":"0.5s",)",
                      R"("backoffMultiplier":2,)",
                      R"("retryableStatusCodes":["UNAVAILABLE"]}}]})");
}

}  // namespace

grpc::ChannelArguments PipelineConfigChannelArguments(
    const PipelineChannelOptions& options) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(
                  options.initial_reconnect_backoff)));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(
                  absl::ToInt64Milliseconds(options.max_reconnect_backoff)));
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, options.max_attempts >= 2 ? 1 : 0);
  args.SetServiceConfigJSON(ServiceConfigJson(options.max_attempts));
  args.SetMaxReceiveMessageSize(common::kMaxMessageBytes);
  return args;
}

std::shared_ptr<grpc::Channel> CreatePipelineConfigChannel(
    const std::string& address, const PipelineChannelOptions& options) {
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(),
                                   PipelineConfigChannelArguments(options));
}

}  // namespace crm::common
