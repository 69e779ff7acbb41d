// The HTTP status that answers a failed operation on the HTTP port (inbound
// webhooks, exports), mapped from its canonical status code the way gRPC's
// HTTP/JSON transcoding does (google.rpc.Code's documented mapping).
#pragma once

#include "absl/status/status.h"

namespace crm::common {

// 200 for OK; 400 (INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE), 401,
// 403, 404, 409 (ABORTED, ALREADY_EXISTS), 429, 499, 501, 503, 504, and 500
// for the rest, as google.rpc.Code documents them.
int HttpStatusFor(const absl::Status& status);

}  // namespace crm::common
