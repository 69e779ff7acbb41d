#include "common/pagination/page_token.h"

#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/status/status_matchers.h"

namespace crm::common {
namespace {

using ::crm::testing::StatusIs;
using ::testing::AnyOf;
using ::testing::HasSubstr;

constexpr char kQuery[] = "deals:pipeline=3;stage=*;order=updated_desc";
const absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

std::string Raw(const std::string& token) {
  std::string raw;
  EXPECT_TRUE(absl::WebSafeBase64Unescape(token, &raw)) << token;
  return raw;
}

class PageTokenCodecTest : public ::testing::Test {
 protected:
  PageTokenCodec codec_{"page-token-test-key"};
};

TEST_F(PageTokenCodecTest, RoundTripBinaryCursor) {
  const std::string cursor("deal\0\x01\xff\x80key", 11);
  ASSERT_EQ(cursor.size(), 11u);
  const std::string token = codec_.Encode(kQuery, cursor);
  ASSERT_OK_AND_ASSIGN(std::string decoded, codec_.Decode(token, kQuery));
  EXPECT_EQ(decoded, cursor);
  // URL-safe, unpadded.
  EXPECT_EQ(token.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                    "abcdefghijklmnopqrstuvwxyz0123456789-_"),
            std::string::npos);
  // version + query hash + cursor + MAC
  EXPECT_EQ(Raw(token).size(), 1 + 8 + cursor.size() + 16);
}

TEST_F(PageTokenCodecTest, DeterministicAndCursorDependent) {
  EXPECT_EQ(codec_.Encode(kQuery, "k1"), codec_.Encode(kQuery, "k1"));
  EXPECT_NE(codec_.Encode(kQuery, "k1"), codec_.Encode(kQuery, "k2"));
  EXPECT_NE(codec_.Encode(kQuery, "k1"), codec_.Encode("other", "k1"));
}

TEST_F(PageTokenCodecTest, EmptyCursorAndEmptyQuery) {
  const std::string token = codec_.Encode("", "");
  ASSERT_OK_AND_ASSIGN(std::string decoded, codec_.Decode(token, ""));
  EXPECT_EQ(decoded, "");
  EXPECT_THAT(codec_.Decode(token, kQuery),
              StatusIs(kInvalid, "page_token: belongs to a different query"));
}

TEST_F(PageTokenCodecTest, LongCursor) {
  const std::string cursor(5000, '\x7f');
  ASSERT_OK_AND_ASSIGN(std::string decoded,
                       codec_.Decode(codec_.Encode(kQuery, cursor), kQuery));
  EXPECT_EQ(decoded, cursor);
}

TEST_F(PageTokenCodecTest, EveryRawByteChangeIsTampering) {
  const std::string raw = Raw(codec_.Encode(kQuery, std::string("a\0b", 3)));
  for (size_t i = 0; i < raw.size(); ++i) {
    for (unsigned char flip : {0x01, 0x80, 0xff}) {
      std::string changed = raw;
      changed[i] = static_cast<char>(changed[i] ^ flip);
      EXPECT_THAT(codec_.Decode(absl::WebSafeBase64Escape(changed), kQuery),
                  StatusIs(kInvalid, "page_token: was tampered with"))
          << "byte " << i << " flip " << static_cast<int>(flip);
    }
  }
}

TEST_F(PageTokenCodecTest, EveryTokenCharacterChangeIsRejected) {
  const std::string token = codec_.Encode(kQuery, "cursor-42");
  const std::string alphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/.";
  for (size_t i = 0; i < token.size(); ++i) {
    for (char c : alphabet) {
      if (c == token[i]) continue;
      std::string changed = token;
      changed[i] = c;
      EXPECT_THAT(codec_.Decode(changed, kQuery),
                  StatusIs(kInvalid, AnyOf("page_token: was tampered with",
                                           "page_token: malformed")))
          << "position " << i << " char " << c;
    }
  }
}

TEST_F(PageTokenCodecTest, TokenFromAnotherQuery) {
  const std::string token = codec_.Encode(kQuery, "k");
  EXPECT_THAT(
      codec_.Decode(token, "deals:pipeline=4;stage=*;order=updated_desc"),
      StatusIs(kInvalid, "page_token: belongs to a different query"));
}

TEST_F(PageTokenCodecTest, TokenFromAnotherKeyIsTampered) {
  PageTokenCodec other("another-key");
  EXPECT_THAT(other.Decode(codec_.Encode(kQuery, "k"), kQuery),
              StatusIs(kInvalid, "page_token: was tampered with"));
}

TEST_F(PageTokenCodecTest, EmptyKeyWorksButDiffers) {
  PageTokenCodec empty("");
  ASSERT_OK_AND_ASSIGN(std::string decoded,
                       empty.Decode(empty.Encode(kQuery, "k"), kQuery));
  EXPECT_EQ(decoded, "k");
  EXPECT_THAT(codec_.Decode(empty.Encode(kQuery, "k"), kQuery),
              StatusIs(kInvalid, HasSubstr("tampered")));
}

TEST_F(PageTokenCodecTest, TruncatedToken) {
  const std::string token = codec_.Encode(kQuery, "some-cursor");
  for (size_t len = 0; len < token.size(); ++len) {
    EXPECT_THAT(codec_.Decode(token.substr(0, len), kQuery),
                StatusIs(kInvalid, AnyOf("page_token: malformed",
                                         "page_token: was tampered with")))
        << "length " << len;
  }
  // Too short to hold version, query hash and MAC.
  const std::string raw = Raw(token);
  EXPECT_THAT(
      codec_.Decode(absl::WebSafeBase64Escape(raw.substr(0, 24)), kQuery),
      StatusIs(kInvalid, "page_token: malformed"));
}

TEST_F(PageTokenCodecTest, Garbage) {
  const std::string token = codec_.Encode(kQuery, "k");
  for (const std::string& garbage :
       {std::string(""), std::string("!!!!"), std::string("abc"),
        std::string("AAAA"), std::string(64, 'A'), token + "=",
        token + "==", " " + token, token + "\n",
        std::string(token).insert(5, "."), std::string("a+b/c=")}) {
    EXPECT_THAT(codec_.Decode(garbage, kQuery),
                StatusIs(kInvalid, AnyOf("page_token: malformed",
                                         "page_token: was tampered with")))
        << garbage;
  }
  EXPECT_THAT(codec_.Decode(std::string(64, 'A'), kQuery),
              StatusIs(kInvalid, "page_token: was tampered with"));
  EXPECT_THAT(codec_.Decode("!!!!", kQuery),
              StatusIs(kInvalid, "page_token: malformed"));
}

TEST(ResolvePageSizeTest, Rules) {
  ASSERT_OK_AND_ASSIGN(int size, ResolvePageSize(0));
  EXPECT_EQ(size, 50);
  ASSERT_OK_AND_ASSIGN(size, ResolvePageSize(1));
  EXPECT_EQ(size, 1);
  ASSERT_OK_AND_ASSIGN(size, ResolvePageSize(123));
  EXPECT_EQ(size, 123);
  ASSERT_OK_AND_ASSIGN(size, ResolvePageSize(500));
  EXPECT_EQ(size, 500);
  ASSERT_OK_AND_ASSIGN(size, ResolvePageSize(501));
  EXPECT_EQ(size, 500);
  ASSERT_OK_AND_ASSIGN(size, ResolvePageSize(2147483647));
  EXPECT_EQ(size, 500);
  EXPECT_THAT(ResolvePageSize(-1), StatusIs(kInvalid, HasSubstr("page_size")));
  EXPECT_THAT(ResolvePageSize(-2147483647 - 1),
              StatusIs(kInvalid, HasSubstr("page_size")));
}

TEST(ResolvePageSizeTest, CustomLimits) {
  ASSERT_OK_AND_ASSIGN(int size, ResolvePageSize(0, 10, 20));
  EXPECT_EQ(size, 10);
  ASSERT_OK_AND_ASSIGN(size, ResolvePageSize(25, 10, 20));
  EXPECT_EQ(size, 20);
  ASSERT_OK_AND_ASSIGN(size, ResolvePageSize(0, 100, 20));  // default capped
  EXPECT_EQ(size, 20);
  EXPECT_THAT(ResolvePageSize(5, 0, 20), StatusIs(absl::StatusCode::kInternal));
  EXPECT_THAT(ResolvePageSize(5, 10, 0), StatusIs(absl::StatusCode::kInternal));
}

}  // namespace
}  // namespace crm::common
