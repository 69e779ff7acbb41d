#include "common/crypto/digest.h"

#include <string>

#include "gtest/gtest.h"

namespace crm::common {
namespace {

// RFC 4231 test case 2 and the SHA-256 of "abc" (FIPS 180-2).
TEST(DigestTest, MatchesPublishedVectors) {
  EXPECT_EQ(ToHex(HmacSha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(ToHex(Sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(ToHex(Sha256("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(DigestTest, ConstantTimeEqualsComparesSizeAndBytes) {
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "ab"));
  const Sha256Digest mac = HmacSha256("k", "m");
  EXPECT_EQ(AsBytes(mac).size(), 32u);
  EXPECT_EQ(AsBytes(mac, 12).size(), 12u);
  EXPECT_TRUE(ConstantTimeEquals(AsBytes(mac), AsBytes(HmacSha256("k", "m"))));
}

}  // namespace
}  // namespace crm::common
