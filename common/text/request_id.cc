#include "common/text/request_id.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace crm::common {

absl::Status ValidateRequestId(std::string_view request_id, size_t reserved,
                               std::string_view field) {
  const size_t limit =
      reserved < kMaxRequestIdChars ? kMaxRequestIdChars - reserved : 0;
  if (request_id.size() > limit) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(field), ": at most ", limit, " characters"));
  }
  for (char c : request_id) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(absl::StrCat(
          std::string(field), ": printable ASCII without spaces only"));
    }
  }
  return absl::OkStatus();
}

}  // namespace crm::common
