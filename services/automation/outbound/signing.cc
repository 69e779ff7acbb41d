#include "services/automation/outbound/signing.h"

#include <string>
#include <string_view>

#include "common/crypto/digest.h"

namespace crm::automation {

std::string SignWebhook(std::string_view secret, std::string_view timestamp,
                        std::string_view body) {
  std::string message;
  message.reserve(timestamp.size() + 1 + body.size());
  message.append(timestamp).append(".").append(body);
  return common::ToHex(common::HmacSha256(secret, message));
}

bool VerifyWebhookSignature(std::string_view secret, std::string_view timestamp,
                            std::string_view body, std::string_view signature) {
  const std::string expected = SignWebhook(secret, timestamp, body);
  if (signature.size() != expected.size()) return false;
  std::string lower(signature);
  for (char& c : lower) {
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
  }
  return common::ConstantTimeEquals(lower, expected);
}

}  // namespace crm::automation
