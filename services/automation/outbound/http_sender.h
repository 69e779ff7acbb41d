// Outbound HTTP POST for webhooks and SMS gateways, over libcurl.
//
//   HttpPost post;
//   post.url = "https://hooks.example.com/crm";
//   post.body = json;
//   post.headers = {{kTimestampHeader, ts},
//                   {kSignatureHeader, SignWebhook(secret, ts, json)},
//                   {kIdempotencyKeyHeader, run_key}};
//   CRM_ASSIGN_OR_RETURN(HttpResult result, SendHttpPost(post));
//
// Only http and https URLs; redirects are not followed (a 3xx is returned as
// is); proxies from the environment are ignored.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace crm::automation {

inline constexpr char kJsonContentType[] = "application/json";
inline constexpr char kFormContentType[] = "application/x-www-form-urlencoded";

struct HttpPost {
  std::string url;
  std::string body;
  std::string content_type = kJsonContentType;
  // Extra request headers, sent in order. Names and values must not contain
  // CR or LF; names must not contain ':'.
  std::vector<std::pair<std::string, std::string>> headers;
  // Whole request, connection included.
  absl::Duration timeout = absl::Seconds(10);
  // Refuse to connect to loopback, private, link-local, carrier-grade NAT,
  // multicast and unspecified addresses (checked on the resolved address,
  // so a public name pointing inside is refused too): FAILED_PRECONDITION.
  // For URLs that users write (webhooks), not for operator-set ones.
  bool public_addresses_only = false;
};

// True for the address ranges public_addresses_only refuses.
bool IsNonPublicAddress(const struct sockaddr* address);

struct HttpResult {
  int status_code = 0;
  // At most kMaxResponseBytes; the rest is dropped.
  std::string body;
};

inline constexpr size_t kMaxResponseBytes = 64 * 1024;

// "a=1&b=x%20y": keys and values percent-encoded for kFormContentType.
std::string FormEncode(
    const std::vector<std::pair<std::string, std::string>>& fields);

// Sends the POST and returns the response for status codes below 500.
//   INVALID_ARGUMENT   url not http(s)://host..., bad header, timeout <= 0
//   DEADLINE_EXCEEDED  no full response within `timeout`
//   UNAVAILABLE        connection or TLS failure, or a 5xx response (the
//                      message carries the status code); worth retrying
[[nodiscard]] absl::StatusOr<HttpResult> SendHttpPost(const HttpPost& post);

}  // namespace crm::automation
