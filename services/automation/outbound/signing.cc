#include "services/automation/outbound/signing.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace crm::automation {
namespace {

// OpenSSL may reject null pointers even with a zero length.
const unsigned char* NonNullData(std::string_view s) {
  static const unsigned char kEmpty = 0;
  return s.empty() ? &kEmpty : reinterpret_cast<const unsigned char*>(s.data());
}

std::string HexLower(const unsigned char* data, size_t size) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (size_t i = 0; i < size; ++i) {
    out.push_back(kDigits[data[i] >> 4]);
    out.push_back(kDigits[data[i] & 0xf]);
  }
  return out;
}

}  // namespace

std::string SignWebhook(std::string_view secret, std::string_view timestamp,
                        std::string_view body) {
  std::string message;
  message.reserve(timestamp.size() + 1 + body.size());
  message.append(timestamp).append(".").append(body);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  if (HMAC(EVP_sha256(), NonNullData(secret), static_cast<int>(secret.size()),
           NonNullData(message), message.size(), mac, &mac_len) == nullptr ||
      mac_len != 32) {
    // An unsigned or wrongly signed webhook must never go out.
    std::fputs("FATAL: OpenSSL HMAC-SHA256 failed\n", stderr);
    std::abort();
  }
  return HexLower(mac, mac_len);
}

bool VerifyWebhookSignature(std::string_view secret, std::string_view timestamp,
                            std::string_view body, std::string_view signature) {
  const std::string expected = SignWebhook(secret, timestamp, body);
  if (signature.size() != expected.size()) return false;
  std::string lower(signature);
  for (char& c : lower) {
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
  }
  return CRYPTO_memcmp(lower.data(), expected.data(), expected.size()) == 0;
}

}  // namespace crm::automation
