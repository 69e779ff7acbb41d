#include "common/pipelines_client/pipeline_channel.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"

#include "common/grpc/channel.h"

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

PeerChannelOptions PeerOptions(const PipelineChannelOptions& options) {
  PeerChannelOptions peer;
  peer.initial_reconnect_backoff = options.initial_reconnect_backoff;
  peer.max_reconnect_backoff = options.max_reconnect_backoff;
  if (options.max_attempts >= 2)
    peer.service_config_json = ServiceConfigJson(options.max_attempts);
  return peer;
}

grpc::ChannelArguments PipelineConfigChannelArguments(
    const PipelineChannelOptions& options) {
  return PeerChannelArguments(PeerOptions(options));
}

std::shared_ptr<grpc::Channel> CreatePipelineConfigChannel(
    const std::string& address, const PipelineChannelOptions& options) {
  return CreatePeerChannel(address, PeerOptions(options));
}

}  // namespace crm::common
