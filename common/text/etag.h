// Entity tags: one format and one check for every resource of every service.
//
// An etag is opaque to clients; the services write the revision (or config
// version) that last changed the resource, quoted as in HTTP: "\"42\"".
// A request that names an etag applies only while it is current:
//
//   CRM_RETURN_IF_ERROR(CheckEtag(request.etag(), stored.etag(), "deal 7"));
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace crm::common {

std::string EtagOf(int64_t revision);

// OK when `given` is empty (no condition) or equals `current`; otherwise
// ABORTED "etag: <what> has changed (current etag X, given Y)", so the
// caller can re-read and retry.
[[nodiscard]] absl::Status CheckEtag(std::string_view given,
                                     std::string_view current,
                                     std::string_view what);

}  // namespace crm::common
