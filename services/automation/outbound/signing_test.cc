#include "services/automation/outbound/signing.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "gtest/gtest.h"

namespace crm::automation {
namespace {

TEST(SignWebhookTest, MatchesDirectHmacOverTimestampDotBody) {
  const std::string secret = "whsec_test";
  const std::string ts = "1700000000";
  const std::string body = R"({"deal_id":1025,"event":"stage_entered"})";
  const std::string message = ts + "." + body;
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  ASSERT_NE(HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
                 reinterpret_cast<const unsigned char*>(message.data()),
                 message.size(), mac, &len),
            nullptr);
  const std::string expected = absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(mac), len));
  EXPECT_EQ(SignWebhook(secret, ts, body), expected);
  EXPECT_EQ(SignWebhook(secret, ts, body).size(), 64u);
}

TEST(SignWebhookTest, KnownVectors) {
  // Reference values from `openssl dgst -sha256 -hmac key` over
  // "1700000000.The quick brown fox jumps over the lazy dog", and from
  // Python's hmac module over "." with an empty key.
  EXPECT_EQ(SignWebhook("key", "1700000000",
                        "The quick brown fox jumps over the lazy dog"),
            "2f658d6aef4f246e91cd741bbcded7479e9605f9d41c9e248122a117e0e1765b");
  EXPECT_EQ(SignWebhook("", "", ""),
            "0d0ab78babcce47b6860946aad720dcc13630f70074364b65665c4caefb81ecf");
}

TEST(VerifyWebhookSignatureTest, AcceptsOwnSignatureInEitherCase) {
  const std::string sig = SignWebhook("s3cret", "1700000000", "{}");
  EXPECT_TRUE(VerifyWebhookSignature("s3cret", "1700000000", "{}", sig));
  EXPECT_TRUE(VerifyWebhookSignature("s3cret", "1700000000", "{}",
                                     absl::AsciiStrToUpper(sig)));
}

TEST(VerifyWebhookSignatureTest, RejectsAnyChange) {
  const std::string sig = SignWebhook("s3cret", "1700000000", "{}");
  EXPECT_FALSE(VerifyWebhookSignature("other", "1700000000", "{}", sig));
  EXPECT_FALSE(VerifyWebhookSignature("s3cret", "1700000001", "{}", sig));
  EXPECT_FALSE(VerifyWebhookSignature("s3cret", "1700000000", "{ }", sig));
  EXPECT_FALSE(
      VerifyWebhookSignature("s3cret", "1700000000", "{}", sig.substr(1)));
  EXPECT_FALSE(VerifyWebhookSignature("s3cret", "1700000000", "{}", ""));
  std::string flipped = sig;
  flipped[10] = flipped[10] == '0' ? '1' : '0';
  EXPECT_FALSE(VerifyWebhookSignature("s3cret", "1700000000", "{}", flipped));
}

TEST(VerifyWebhookSignatureTest, TimestampAndBodyBoundaryMatters) {
  // "12" + "." + "3" and "1" + "." + "23" differ because of the separator.
  EXPECT_NE(SignWebhook("k", "12", "3"), SignWebhook("k", "1", "23"));
}

}  // namespace
}  // namespace crm::automation
