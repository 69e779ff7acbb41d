// The one way a service builds its channel to a peer service: message size
// limits, reconnect backoff bounded for services that retry on their own, and
// optionally a retry policy. Credentials live here too (plaintext today), so
// a transport change touches one place.
//
//   PeerChannelOptions options;
//   options.max_reconnect_backoff = absl::Seconds(1);
//   std::shared_ptr<grpc::Channel> channel = CreatePeerChannel(address,
//   options);
#pragma once

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/support/channel_arguments.h"

namespace crm::common {

struct PeerChannelOptions {
  // gRPC's own backoff between connection attempts once the peer is gone.
  // Its defaults (1 s growing to 120 s) would keep calls failing fast for
  // minutes after a peer returns; the callers retry on their own schedule.
  absl::Duration initial_reconnect_backoff = absl::Milliseconds(100);
  absl::Duration max_reconnect_backoff = absl::Seconds(1);
  // gRPC's GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, which is also the least time
  // a connection attempt is given; zero keeps gRPC's default (20 s).
  absl::Duration min_connect_timeout = absl::ZeroDuration();
  // A gRPC service config (JSON) with retry policies; empty for none.
  std::string service_config_json;
};

// The arguments CreatePeerChannel uses (for callers that add their own).
grpc::ChannelArguments PeerChannelArguments(const PeerChannelOptions& options);

// A channel to `address` ("host:port" or any gRPC target such as
// "dns:///deals:50051"). Connects lazily: never fails, never blocks.
std::shared_ptr<grpc::Channel> CreatePeerChannel(
    const std::string& address, const PeerChannelOptions& options = {});

}  // namespace crm::common
