// The gRPC channel deals uses to reach pipeline-config: plaintext (TLS is a
// later option), fast reconnects, and retries of UNAVAILABLE for the
// read-only RPCs the client makes, through the channel's service config
// (no hand-written retry loops around unary calls).
//
//   std::shared_ptr<grpc::Channel> channel =
//       CreatePipelineConfigChannel(env_address);   // "pipeline-config:50052"
//   auto client = GrpcPipelineClient::Create(channel, options);
#pragma once

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/support/channel_arguments.h"

namespace crm::common {

struct PipelineChannelOptions {
  // gRPC's own reconnect backoff between connection attempts once the peer
  // is gone. gRPC's defaults (1 s growing to 120 s) would leave deals
  // without a watch stream for minutes after a long pipeline-config outage;
  // keeping the maximum at 1 s bounds staleness after the peer returns.
  absl::Duration initial_reconnect_backoff = absl::Milliseconds(100);
  absl::Duration max_reconnect_backoff = absl::Seconds(1);
  // Attempts (first try included) of an idempotent read that failed with
  // UNAVAILABLE. 1 disables retries.
  int max_attempts = 3;
};

// The channel arguments CreatePipelineConfigChannel uses (exposed for tests
// and for callers that add their own arguments).
grpc::ChannelArguments PipelineConfigChannelArguments(
    const PipelineChannelOptions& options = {});

// An insecure channel to `address` ("host:port", or any gRPC target such as
// "dns:///pipeline-config:50052"). Connects lazily: creating it never fails
// and never blocks.
std::shared_ptr<grpc::Channel> CreatePipelineConfigChannel(
    const std::string& address, const PipelineChannelOptions& options = {});

}  // namespace crm::common
