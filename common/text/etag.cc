#include "common/text/etag.h"

#include "absl/strings/str_cat.h"

namespace crm::common {

std::string EtagOf(int64_t revision) {
  return absl::StrCat("\"", revision, "\"");
}

absl::Status CheckEtag(std::string_view given, std::string_view current,
                       std::string_view what) {
  if (given.empty() || given == current) return absl::OkStatus();
  return absl::AbortedError(
      absl::StrCat("etag: ", std::string(what), " has changed (current etag ",
                   std::string(current), ", given ", std::string(given), ")"));
}

}  // namespace crm::common
