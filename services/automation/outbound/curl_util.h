// libcurl helpers shared by the senders (internal to this folder).
#pragma once

#include <curl/curl.h>

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace crm::automation {

// curl_global_init, once per process.
void InitCurlOnce();

// An easy handle with its error buffer; cleaned up on destruction.
class CurlEasy {
 public:
  CurlEasy();
  ~CurlEasy();
  CurlEasy(const CurlEasy&) = delete;
  CurlEasy& operator=(const CurlEasy&) = delete;

  CURL* get() const { return handle_; }
  const char* error() const { return error_; }

 private:
  CURL* handle_ = nullptr;
  char error_[CURL_ERROR_SIZE] = {};
};

// A curl_slist of "Name: value" lines.
class CurlHeaders {
 public:
  CurlHeaders() = default;
  ~CurlHeaders();
  CurlHeaders(const CurlHeaders&) = delete;
  CurlHeaders& operator=(const CurlHeaders&) = delete;

  // INVALID_ARGUMENT for CR/LF anywhere, or an empty name or one with ':'.
  // An empty value removes a header curl would add itself.
  [[nodiscard]] absl::Status Add(std::string_view name, std::string_view value);
  curl_slist* get() const { return list_; }

 private:
  curl_slist* list_ = nullptr;
};

// Timeouts (whole transfer and connect), no signals, no progress output.
void SetCommonOptions(CURL* handle, absl::Duration timeout);

// DEADLINE_EXCEEDED for a timeout, INVALID_ARGUMENT for a malformed URL,
// UNAVAILABLE for everything else; the message names `target`.
absl::Status CurlError(CURLcode code, const char* detail,
                       std::string_view target);

}  // namespace crm::automation
