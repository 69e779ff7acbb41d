#include "common/rocks/key_codec.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace crm::common {
namespace {

TEST(KeyCodecTest, SignedIntegersSortInNumericOrder) {
  const std::vector<int64_t> values = {
      std::numeric_limits<int64_t>::min(), -1000, -1, 0, 1, 255, 256, 1 << 20,
      std::numeric_limits<int64_t>::max()};
  std::vector<std::string> keys;
  for (int64_t v : values) keys.push_back(EncodeInt64(v));
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
  for (size_t i = 0; i < values.size(); ++i) {
    KeyReader reader(keys[i]);
    int64_t decoded = 0;
    ASSERT_TRUE(reader.ReadInt64(&decoded));
    EXPECT_EQ(decoded, values[i]);
    EXPECT_TRUE(reader.done());
  }
}

TEST(KeyCodecTest, UnsignedIntegersAreBigEndian) {
  EXPECT_EQ(EncodeUint64(1), std::string("\0\0\0\0\0\0\0\1", 8));
  EXPECT_LT(EncodeUint64(255), EncodeUint64(256));
}

TEST(KeyCodecTest, CompositeKeysRoundTripAndSortByParts) {
  std::string a;
  AppendInt64(&a, 3);
  AppendString(&a, "C3:NEW");
  std::string b;
  AppendInt64(&b, 3);
  AppendString(&b, "C3:NEWER");
  std::string c;
  AppendInt64(&c, 4);
  AppendString(&c, "A");
  EXPECT_LT(
      a, b);  // "C3:NEW\0" < "C3:NEWER\0": the terminator keeps prefixes first.
  EXPECT_LT(b, c);

  KeyReader reader(b);
  int64_t id = 0;
  std::string stage;
  ASSERT_TRUE(reader.ReadInt64(&id));
  ASSERT_TRUE(reader.ReadString(&stage));
  EXPECT_EQ(id, 3);
  EXPECT_EQ(stage, "C3:NEWER");
  EXPECT_TRUE(reader.done());
}

TEST(KeyCodecTest, ShortOrMalformedKeysAreRejected) {
  KeyReader short_reader(std::string_view("\0\0\1", 3));
  uint64_t value = 7;
  EXPECT_FALSE(short_reader.ReadUint64(&value));
  EXPECT_EQ(value, 7u);
  KeyReader unterminated("abc");
  std::string text = "x";
  EXPECT_FALSE(unterminated.ReadString(&text));
  EXPECT_EQ(text, "x");
}

TEST(KeyCodecTest, PrefixSuccessor) {
  EXPECT_EQ(PrefixSuccessor("ab"), "ac");
  EXPECT_EQ(PrefixSuccessor(std::string("a\xff", 2)), "b");
  EXPECT_EQ(PrefixSuccessor(std::string("\xff\xff", 2)), "");
}

}  // namespace
}  // namespace crm::common
