// HMAC-SHA256 signatures of outbound webhooks, so that receivers can check
// that a call came from this CRM and is recent.
//
// A signed request carries:
//   X-Crm-Timestamp: <unix seconds, decimal>
//   X-Crm-Signature: <lower-case hex HMAC-SHA256(secret, timestamp "." body)>
//   Idempotency-Key: <stable per rule run; a redelivery repeats it>
//
//   std::string ts = absl::StrCat(absl::ToUnixSeconds(absl::Now()));
//   headers[kSignatureHeader] = SignWebhook(secret, ts, body);
//
// Receivers should also reject timestamps too far from their clock.
#pragma once

#include <string>
#include <string_view>

namespace crm::automation {

inline constexpr char kSignatureHeader[] = "X-Crm-Signature";
inline constexpr char kTimestampHeader[] = "X-Crm-Timestamp";
inline constexpr char kIdempotencyKeyHeader[] = "Idempotency-Key";

// Lower-case hex (64 characters) of HMAC-SHA256 keyed with `secret` over
// "<timestamp>.<body>".
std::string SignWebhook(std::string_view secret, std::string_view timestamp,
                        std::string_view body);

// True when `signature` (hex, either case) is SignWebhook(secret, timestamp,
// body). The comparison takes the same time wherever the first difference is.
bool VerifyWebhookSignature(std::string_view secret, std::string_view timestamp,
                            std::string_view body, std::string_view signature);

}  // namespace crm::automation
