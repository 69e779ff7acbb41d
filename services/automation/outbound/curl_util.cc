#include "services/automation/outbound/curl_util.h"

#include <algorithm>
#include <mutex>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace crm::automation {
namespace {

absl::string_view AbslView(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

}  // namespace

void InitCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

CurlEasy::CurlEasy() {
  InitCurlOnce();
  handle_ = curl_easy_init();
  if (handle_ != nullptr)
    curl_easy_setopt(handle_, CURLOPT_ERRORBUFFER, error_);
}

CurlEasy::~CurlEasy() {
  if (handle_ != nullptr) curl_easy_cleanup(handle_);
}

CurlHeaders::~CurlHeaders() { curl_slist_free_all(list_); }

absl::Status CurlHeaders::Add(std::string_view name, std::string_view value) {
  const auto bad = [](std::string_view s) {
    return s.find_first_of("\r\n") != std::string_view::npos ||
           s.find('\0') != std::string_view::npos;
  };
  if (name.empty() || bad(name) || bad(value) ||
      name.find(':') != std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("headers: invalid header \"", AbslView(name), "\""));
  }
  // "Name;" sends an empty header, "Name:" removes it; we want removal.
  const std::string line = absl::StrCat(
      AbslView(name), ":", value.empty() ? "" : " ", AbslView(value));
  curl_slist* next = curl_slist_append(list_, line.c_str());
  if (next == nullptr) return absl::ResourceExhaustedError("out of memory");
  list_ = next;
  return absl::OkStatus();
}

void SetCommonOptions(CURL* handle, absl::Duration timeout) {
  const long ms = static_cast<long>(
      std::max<int64_t>(1, absl::ToInt64Milliseconds(timeout)));
  curl_easy_setopt(handle, CURLOPT_TIMEOUT_MS, ms);
  curl_easy_setopt(handle, CURLOPT_CONNECTTIMEOUT_MS, ms);
  curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(handle, CURLOPT_NOPROGRESS, 1L);
}

absl::Status CurlError(CURLcode code, const char* detail,
                       std::string_view target) {
  const std::string message =
      absl::StrCat(AbslView(target), ": ", curl_easy_strerror(code),
                   detail != nullptr && detail[0] != '\0' ? " (" : "",
                   detail != nullptr ? detail : "",
                   detail != nullptr && detail[0] != '\0' ? ")" : "");
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
      return absl::DeadlineExceededError(message);
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      return absl::InvalidArgumentError(message);
    default:
      return absl::UnavailableError(message);
  }
}

}  // namespace crm::automation
