// The one mapping between absl::Status (used everywhere inside a service) and
// grpc::Status (at the edge). Codes map one to one. On the way out, messages
// of INTERNAL, DATA_LOSS and UNKNOWN are replaced by a generic text with an
// error reference, and the real message is logged under that reference.
//
//   reactor->Finish(crm::common::ToGrpcStatus(DoGetDeal(request, &response)));
#pragma once

#include <string_view>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace crm::common {

// Converts an internal status for sending to a caller.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Converts a status received from a peer; `peer` prefixes the message so the
// origin stays visible while the code is kept.
absl::Status FromGrpcStatus(const grpc::Status& status,
                            std::string_view peer = {});

// A peer's answer to a call this service made under its own service
// identity, as the status to pass on: like FromGrpcStatus with the peer
// named, except that UNAUTHENTICATED and PERMISSION_DENIED, which can only
// be about this service's own credentials (a wrong secret, a missing
// grant), become INTERNAL "<peer> refused this service's credentials
// (<CODE>: <message>)": they must not reach an end user as if they were
// about the user. Such refusals are logged at error level (rate-limited)
// with the peer and its message, for the operator to fix.
absl::Status FromPeerStatus(const grpc::Status& status, std::string_view peer);

}  // namespace crm::common
