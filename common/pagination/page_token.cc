#include "common/pagination/page_token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

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

namespace crm::common {
namespace {

constexpr unsigned char kVersion = 1;
constexpr size_t kQueryHashSize = 8;
constexpr size_t kMacSize = 16;
constexpr size_t kMinTokenSize = 1 + kQueryHashSize + kMacSize;
// Domain separation: the codec key is usually the JWT secret.
constexpr std::string_view kKeyLabel = "crm page token mac key v1";

using Digest = std::array<unsigned char, 32>;

absl::string_view AbslView(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

[[noreturn]] void CryptoFailure() {
  std::fputs("FATAL: OpenSSL SHA-256 failed\n", stderr);
  std::abort();
}

// OpenSSL may reject null pointers even with a zero length.
const unsigned char* NonNullData(std::string_view s) {
  static const unsigned char kEmpty = 0;
  return s.empty() ? &kEmpty : reinterpret_cast<const unsigned char*>(s.data());
}

Digest HmacSha256(std::string_view key, std::string_view data) {
  Digest mac{};
  unsigned int mac_len = 0;
  if (HMAC(EVP_sha256(), NonNullData(key), static_cast<int>(key.size()),
           NonNullData(data), data.size(), mac.data(), &mac_len) == nullptr ||
      mac_len != mac.size()) {
    CryptoFailure();
  }
  return mac;
}

Digest Sha256(std::string_view data) {
  Digest digest{};
  unsigned int digest_len = 0;
  if (EVP_Digest(NonNullData(data), data.size(), digest.data(), &digest_len,
                 EVP_sha256(), nullptr) != 1 ||
      digest_len != digest.size()) {
    CryptoFailure();
  }
  return digest;
}

std::string_view AsChars(const Digest& digest, size_t size) {
  return std::string_view(reinterpret_cast<const char*>(digest.data()), size);
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
    : mac_key_(AsChars(HmacSha256(key, kKeyLabel), sizeof(Digest))) {}

std::string PageTokenCodec::Encode(std::string_view query,
                                   std::string_view cursor) const {
  std::string raw;
  raw.reserve(kMinTokenSize + cursor.size());
  raw.push_back(static_cast<char>(kVersion));
  raw.append(AsChars(Sha256(query), kQueryHashSize));
  raw.append(cursor);
  raw.append(AsChars(HmacSha256(mac_key_, raw), kMacSize));
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
  const Digest mac = HmacSha256(mac_key_, signed_part);
  if (CRYPTO_memcmp(mac.data(), raw.data() + signed_part.size(), kMacSize) !=
      0) {
    return absl::InvalidArgumentError("page_token: was tampered with");
  }
  // Authentic from here on: a version we do not know is a format problem.
  if (static_cast<unsigned char>(raw[0]) != kVersion) return Malformed();
  const Digest query_hash = Sha256(query);
  if (CRYPTO_memcmp(query_hash.data(), raw.data() + 1, kQueryHashSize) != 0) {
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
