#include "common/pagination/page_token.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

#include "common/crypto/digest.h"

namespace crm::common {
namespace {

constexpr unsigned char kVersion = 1;
constexpr size_t kQueryHashSize = 8;
constexpr size_t kMacSize = 16;
constexpr size_t kMinTokenSize = 1 + kQueryHashSize + kMacSize;
// Domain separation: the codec key is usually the JWT secret.
constexpr std::string_view kKeyLabel = "crm page token mac key v1";

absl::string_view AbslView(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

// Strict base64url without padding: only [A-Za-z0-9_-], and the encoding
// must be canonical (no stray bits in the last character), so every change
// to the token text changes the decoded bytes or is rejected.
bool Base64UrlDecode(std::string_view encoded, std::string* raw) {
  for (char c : encoded) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' &&
        c != '_') {
      return false;
    }
  }
  if (!absl::WebSafeBase64Unescape(AbslView(encoded), raw)) return false;
  return absl::WebSafeBase64Escape(*raw) == encoded;
}

absl::Status Malformed() {
  return absl::InvalidArgumentError("page_token: malformed");
}

}  // namespace

PageTokenCodec::PageTokenCodec(std::string key)
    : mac_key_(AsBytes(HmacSha256(key, kKeyLabel))) {}

std::string PageTokenCodec::Encode(std::string_view query,
                                   std::string_view cursor) const {
  std::string raw;
  raw.reserve(kMinTokenSize + cursor.size());
  raw.push_back(static_cast<char>(kVersion));
  raw.append(AsBytes(Sha256(query), kQueryHashSize));
  raw.append(cursor);
  raw.append(AsBytes(HmacSha256(mac_key_, raw), kMacSize));
  return absl::WebSafeBase64Escape(raw);
}

absl::StatusOr<std::string> PageTokenCodec::Decode(
    std::string_view token, std::string_view query) const {
  std::string raw;
  if (!Base64UrlDecode(token, &raw) || raw.size() < kMinTokenSize) {
    return Malformed();
  }
  const std::string_view signed_part =
      std::string_view(raw).substr(0, raw.size() - kMacSize);
  if (!ConstantTimeEquals(AsBytes(HmacSha256(mac_key_, signed_part), kMacSize),
                          std::string_view(raw).substr(signed_part.size()))) {
    return absl::InvalidArgumentError("page_token: was tampered with");
  }
  // Authentic from here on: a version we do not know is a format problem.
  if (static_cast<unsigned char>(raw[0]) != kVersion) return Malformed();
  if (!ConstantTimeEquals(AsBytes(Sha256(query), kQueryHashSize),
                          std::string_view(raw).substr(1, kQueryHashSize))) {
    return absl::InvalidArgumentError(
        "page_token: belongs to a different query");
  }
  return std::string(signed_part.substr(1 + kQueryHashSize));
}

absl::StatusOr<int> ResolvePageSize(int requested, int default_size,
                                    int max_size) {
  if (default_size < 1 || max_size < 1) {
    return absl::InternalError(
        absl::StrCat("ResolvePageSize: bad limits default_size=", default_size,
                     " max_size=", max_size));
  }
  if (requested < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size must not be negative, got ", requested));
  }
  if (requested == 0) return std::min(default_size, max_size);
  return std::min(requested, max_size);
}

}  // namespace crm::common
