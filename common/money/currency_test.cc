#include "common/money/currency.h"

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/status/status_matchers.h"

namespace crm::common {
namespace {

using ::crm::testing::IsOk;
using ::crm::testing::StatusIs;
using ::testing::HasSubstr;

const absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

TEST(CurrencyTableTest, CodesAreThreeUppercaseLettersUniqueAndSorted) {
  const auto table = AllCurrencies();
  EXPECT_GE(table.size(), 150u);
  EXPECT_LE(table.size(), 200u);
  std::set<std::string_view> seen;
  std::string_view previous;
  for (const CurrencyInfo& info : table) {
    ASSERT_EQ(info.code.size(), 3u) << info.code;
    for (char c : info.code) {
      EXPECT_TRUE(c >= 'A' && c <= 'Z') << info.code;
    }
    EXPECT_TRUE(seen.insert(info.code).second) << "duplicate " << info.code;
    EXPECT_LT(previous, info.code) << "table not sorted at " << info.code;
    previous = info.code;
    EXPECT_GE(info.minor_units, 0) << info.code;
    EXPECT_LE(info.minor_units, 4) << info.code;
    // Every table entry is accepted and reports its own minor units.
    EXPECT_THAT(ValidateCurrency(info.code, "currency"), IsOk());
    ASSERT_OK_AND_ASSIGN(int minor, MinorUnits(info.code, "currency"));
    EXPECT_EQ(minor, info.minor_units) << info.code;
  }
}

TEST(CurrencyTest, KnownMinorUnits) {
  const struct {
    const char* code;
    int minor;
  } cases[] = {
      {"USD", 2}, {"EUR", 2}, {"JPY", 0}, {"BHD", 3}, {"KWD", 3}, {"CLF", 4},
      {"BRL", 2}, {"RUB", 2}, {"UAH", 2}, {"KZT", 2}, {"GBP", 2}, {"CHF", 2},
      {"CNY", 2}, {"INR", 2}, {"KRW", 0}, {"VND", 0}, {"ISK", 0}, {"CLP", 0},
      {"JOD", 3}, {"OMR", 3}, {"TND", 3}, {"IQD", 3}, {"LYD", 3}, {"UYW", 4},
      {"XOF", 0}, {"XAF", 0}, {"XPF", 0}, {"XCD", 2}, {"XCG", 2}, {"ZWG", 2},
      {"SLE", 2}, {"VES", 2}, {"MRU", 2}, {"STN", 2}, {"BYN", 2}, {"PLN", 2},
  };
  for (const auto& c : cases) {
    ASSERT_OK_AND_ASSIGN(int minor, MinorUnits(c.code, "currency"));
    EXPECT_EQ(minor, c.minor) << c.code;
  }
}

TEST(CurrencyTest, RejectsMalformedCodesNamingTheField) {
  for (const std::string& code :
       std::vector<std::string>{"", "usd", "Usd", "US", "USDD", "US1", " USD",
                                "USD ", "U$D", std::string("US\0", 3)}) {
    EXPECT_THAT(ValidateCurrency(code, "deal.currency"),
                StatusIs(kInvalid, HasSubstr("deal.currency: must be a "
                                             "3-letter uppercase ISO 4217")))
        << "'" << code << "'";
    EXPECT_THAT(MinorUnits(code, "deal.currency"), StatusIs(kInvalid));
  }
}

TEST(CurrencyTest, RejectsUnknownWithdrawnAndNonMoneyCodes) {
  for (const std::string& code : std::vector<std::string>{
           "ABC", "ZZZ", "AAA", "HRK", "DEM", "FRF", "RUR", "BYR", "VEF",
           "MRO", "STD", "ZWL", "ANG", "BGN", "SLL", "CUC", "XAU", "XAG",
           "XPT", "XPD", "XDR", "XTS", "XXX", "XBA", "XSU", "XUA", "BTC"}) {
    EXPECT_THAT(
        ValidateCurrency(code, "currency"),
        StatusIs(kInvalid,
                 HasSubstr("currency: unknown ISO 4217 currency code \"" +
                           code + "\"")))
        << code;
  }
}

}  // namespace
}  // namespace crm::common
