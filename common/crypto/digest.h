// SHA-256 and HMAC-SHA256 over OpenSSL, for every signature and fingerprint
// of the project (service tokens, page tokens, webhook signatures, request
// fingerprints): one implementation, one failure policy.
//
//   Sha256Digest mac = HmacSha256(secret, signing_input);
//   if (!ConstantTimeEquals(AsBytes(mac), presented)) ...
//
// A failure inside OpenSSL aborts the process: continuing with an unset
// digest would accept forged tokens or send unsigned webhooks.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

namespace crm::common {

using Sha256Digest = std::array<unsigned char, 32>;

Sha256Digest Sha256(std::string_view data);
Sha256Digest HmacSha256(std::string_view key, std::string_view data);

// The first `size` bytes (at most 32) of a digest, as characters.
inline std::string_view AsBytes(const Sha256Digest& digest,
                                size_t size = sizeof(Sha256Digest)) {
  return std::string_view(reinterpret_cast<const char*>(digest.data()),
                          size < digest.size() ? size : digest.size());
}

// Lower-case hex of the digest (64 characters).
std::string ToHex(const Sha256Digest& digest);

// Equal sizes and bytes, in time that depends only on the size.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace crm::common
