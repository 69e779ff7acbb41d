#include "common/crypto/digest.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstdio>
#include <cstdlib>

namespace crm::common {
namespace {

[[noreturn]] void CryptoFailure(const char* what) {
  std::fprintf(stderr, "FATAL: OpenSSL %s failed\n", what);
  std::abort();
}

// OpenSSL may reject null pointers even with a zero length.
const unsigned char* NonNullData(std::string_view s) {
  static const unsigned char kEmpty = 0;
  return s.empty() ? &kEmpty : reinterpret_cast<const unsigned char*>(s.data());
}

}  // namespace

Sha256Digest Sha256(std::string_view data) {
  Sha256Digest digest{};
  unsigned int length = 0;
  if (EVP_Digest(NonNullData(data), data.size(), digest.data(), &length,
                 EVP_sha256(), nullptr) != 1 ||
      length != digest.size()) {
    CryptoFailure("SHA-256");
  }
  return digest;
}

Sha256Digest HmacSha256(std::string_view key, std::string_view data) {
  Sha256Digest mac{};
  unsigned int length = 0;
  if (HMAC(EVP_sha256(), NonNullData(key), static_cast<int>(key.size()),
           NonNullData(data), data.size(), mac.data(), &length) == nullptr ||
      length != mac.size()) {
    CryptoFailure("HMAC-SHA256");
  }
  return mac;
}

std::string ToHex(const Sha256Digest& digest) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(digest.size() * 2);
  for (unsigned char byte : digest) {
    out.push_back(kDigits[byte >> 4]);
    out.push_back(kDigits[byte & 0xf]);
  }
  return out;
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(NonNullData(a), NonNullData(b), a.size()) == 0;
}

}  // namespace crm::common
