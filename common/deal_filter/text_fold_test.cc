#include "common/deal_filter/text_fold.h"

#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace crm::common {
namespace {

using ::testing::HasSubstr;

bool FoldedContains(const std::string& haystack, const std::string& needle) {
  return FoldForSearch(haystack).find(FoldForSearch(needle)) !=
         std::string::npos;
}

TEST(FoldForSearchTest, RemovesAccentsAndCase) {
  EXPECT_EQ(FoldForSearch("Negócio"), "negocio");
  EXPECT_EQ(FoldForSearch("NEGOCIO"), "negocio");
  EXPECT_EQ(FoldForSearch("ÉCOLE"), "ecole");
  EXPECT_EQ(FoldForSearch("École"), FoldForSearch("ecole"));
  EXPECT_EQ(FoldForSearch("Ångström"), "angstrom");
  EXPECT_EQ(FoldForSearch("Crème Brûlée"), "creme brulee");
  EXPECT_EQ(FoldForSearch("Łódź"), "łodz");  // Ł is a letter, not L + mark
}

TEST(FoldForSearchTest, FindsAccentedTextWithPlainNeedle) {
  EXPECT_TRUE(FoldedContains("Grande Negócio SA", "negocio"));
  EXPECT_TRUE(FoldedContains("Grande Negócio SA", "NEGÓCIO"));
  EXPECT_TRUE(FoldedContains("l'École normale", "ecole"));
  EXPECT_FALSE(FoldedContains("Grande Negócio SA", "negocios"));
}

TEST(FoldForSearchTest, FullCaseFolding) {
  EXPECT_EQ(FoldForSearch("Straße"), "strasse");
  EXPECT_THAT(FoldForSearch("Hauptstraße 5"), HasSubstr("strasse"));
  EXPECT_EQ(FoldForSearch("STRASSE"), FoldForSearch("Straße"));
  EXPECT_EQ(FoldForSearch("\u1E9E"), "ss");  // capital sharp s
}

TEST(FoldForSearchTest, CyrillicAndGreek) {
  EXPECT_EQ(FoldForSearch("ПРИВЕТ"), "привет");
  EXPECT_EQ(FoldForSearch("Привет"), FoldForSearch("пРИВЕТ"));
  // Ё is Е with a diaeresis: it loses the mark like any accent.
  EXPECT_EQ(FoldForSearch("Ёлка"), "елка");
  EXPECT_EQ(FoldForSearch("ΣΟΦΙΑ"), FoldForSearch("σοφία"));
  // Final sigma folds to sigma.
  EXPECT_EQ(FoldForSearch("ΟΔΟΣ"), FoldForSearch("οδός"));
  EXPECT_EQ(FoldForSearch("οδός"), "οδοσ");
}

TEST(FoldForSearchTest, DecomposedAndComposedInputFoldAlike) {
  EXPECT_EQ(FoldForSearch("e\u0301cole"), "ecole");
  EXPECT_EQ(FoldForSearch("E\u0301COLE"), FoldForSearch("\u00C9cole"));
}

TEST(FoldForSearchTest, LeavesOtherScriptsComposed) {
  // Hangul syllables decompose to jamo under NFD; NFC puts them back.
  EXPECT_EQ(FoldForSearch("한국어"), "한국어");
  EXPECT_EQ(FoldForSearch("日本語"), "日本語");
}

TEST(FoldForSearchTest, AsciiIsLowerCased) {
  EXPECT_EQ(FoldForSearch(""), "");
  EXPECT_EQ(FoldForSearch("Hello, World! 123 [_]"), "hello, world! 123 [_]");
  EXPECT_EQ(FoldForSearch(std::string("a\0B", 3)), std::string("a\0b", 3));
}

TEST(FoldForSearchTest, InvalidUtf8IsReplacedNotFatal) {
  const std::string replacement = "\xEF\xBF\xBD";  // U+FFFD
  for (const std::string& input :
       {std::string("\xff\xfe"), std::string("abc\xc3"),
        std::string("\xc0\xaf"), std::string("\xed\xa0\x80"),
        std::string("caf\xc3\xa9\xe2\x82"), std::string("\x80Neg\xc3\xb3")}) {
    const std::string folded = FoldForSearch(input);
    EXPECT_THAT(folded, HasSubstr(replacement)) << input;
  }
  EXPECT_THAT(FoldForSearch("ABC\xff"), HasSubstr("abc"));
  EXPECT_THAT(FoldForSearch("\x80Neg\xc3\xb3"), HasSubstr("nego"));
}

TEST(FoldForSearchTest, IsIdempotent) {
  for (const char* text : {"Negócio", "Straße", "ΟΔΟΣ", "Ёлка", "한국어",
                           "İstanbul", "ǅemal", "ﬁle", "Ωmega"}) {
    const std::string once = FoldForSearch(text);
    EXPECT_EQ(FoldForSearch(once), once) << text;
  }
}

TEST(FoldForSearchTest, SafeFromManyThreads) {
  const std::vector<std::string> inputs = {"Negócio", "Straße", "ΟΔΟΣ", "ÉCOLE",
                                           "Привет"};
  std::vector<std::string> expected;
  for (const std::string& input : inputs) {
    expected.push_back(FoldForSearch(input));
  }
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 500; ++round) {
        for (size_t i = 0; i < inputs.size(); ++i) {
          if (FoldForSearch(inputs[i]) != expected[i]) ++mismatches[t];
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_THAT(mismatches, ::testing::Each(0));
}

}  // namespace
}  // namespace crm::common
