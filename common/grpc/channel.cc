#include "common/grpc/channel.h"

#include <algorithm>

#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

#include "common/grpc/message_limits.h"

namespace crm::common {
namespace {

int Millis(absl::Duration d) {
  return static_cast<int>(
      std::clamp<int64_t>(absl::ToInt64Milliseconds(d), 1, 3600 * 1000));
}

}  // namespace

grpc::ChannelArguments PeerChannelArguments(const PeerChannelOptions& options) {
  grpc::ChannelArguments args;
  const int initial = Millis(options.initial_reconnect_backoff);
  const int max = std::max(initial, Millis(options.max_reconnect_backoff));
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, initial);
  if (options.min_connect_timeout > absl::ZeroDuration()) {
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
                Millis(options.min_connect_timeout));
  }
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, max);
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  if (!options.service_config_json.empty()) {
    args.SetInt(GRPC_ARG_ENABLE_RETRIES, 1);
    args.SetServiceConfigJSON(options.service_config_json);
  } else {
    args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  }
  return args;
}

std::shared_ptr<grpc::Channel> CreatePeerChannel(
    const std::string& address, const PeerChannelOptions& options) {
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(),
                                   PeerChannelArguments(options));
}

}  // namespace crm::common
