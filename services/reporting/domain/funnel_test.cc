#include "services/reporting/domain/funnel.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/money/decimal.h"
#include "services/reporting/domain/percent.h"

namespace crm::reporting {
namespace {

using ::testing::ElementsAre;
using ::testing::Optional;

// NEW, PREPARATION, NEGOTIATION, WON, LOSE, APOLOGY.
std::vector<StageInfo> Stages() {
  return {{"NEW", StageKind::kProcess},
          {"PREPARATION", StageKind::kProcess},
          {"NEGOTIATION", StageKind::kProcess},
          {"WON", StageKind::kWon},
          {"LOSE", StageKind::kLost},
          {"APOLOGY", StageKind::kLost}};
}

Tally Deals(int64_t n, const std::string& amount = "0") {
  Tally tally;
  tally.deals = n;
  for (int64_t i = 0; i < n; ++i)
    tally.amount.Add(*common::Decimal::Parse(amount, "amount"));
  return tally;
}

std::vector<int64_t> Counts(const std::vector<FunnelRow>& rows) {
  std::vector<int64_t> counts;
  for (const FunnelRow& row : rows) counts.push_back(row.tally.deals);
  return counts;
}

TEST(PercentTest, RoundsHalfUpToTwoPlaces) {
  EXPECT_THAT(Percent(1, 3), Optional(std::string("33.33")));
  EXPECT_THAT(Percent(2, 3), Optional(std::string("66.67")));
  EXPECT_THAT(Percent(1, 8), Optional(std::string("12.50")));
  EXPECT_THAT(Percent(1, 80000), Optional(std::string("0.00")));  // 0.00125
  EXPECT_THAT(Percent(1, 40000), Optional(std::string("0.00")));  // 0.0025
  EXPECT_THAT(Percent(1, 20000), Optional(std::string("0.01")));  // 0.005
  EXPECT_THAT(Percent(5, 5), Optional(std::string("100.00")));
  EXPECT_THAT(Percent(0, 7), Optional(std::string("0.00")));
  EXPECT_THAT(Percent(3, 2), Optional(std::string("150.00")));
  EXPECT_THAT(Percent(-1, 4), Optional(std::string("-25.00")));
  EXPECT_EQ(Percent(3, 0), std::nullopt);
  // Counts near the top of int64 do not overflow.
  EXPECT_THAT(Percent(INT64_MAX / 2, INT64_MAX),
              Optional(std::string("50.00")));
}

TEST(FunnelTest, ClassicCountsTheDealsNowInEachStage) {
  const std::vector<FunnelRow> rows =
      ClassicFunnel(Stages(), {Deals(4, "10"), Deals(3), Deals(1),
                               Deals(2, "1.5"), Deals(0), Deals(0)});
  EXPECT_THAT(Counts(rows), ElementsAre(4, 3, 1, 2, 0, 0));
  EXPECT_EQ(rows[0].tally.amount.ToString(2), "40.00");
  EXPECT_EQ(rows[3].tally.amount.ToString(2), "3.00");
  EXPECT_THAT(rows[0].percent, Optional(std::string("40.00")));
  EXPECT_THAT(rows[2].percent, Optional(std::string("10.00")));
  // An empty funnel has no shares.
  EXPECT_EQ(ClassicFunnel(Stages(), {})[0].percent, std::nullopt);
}

TEST(FunnelTest, ConversionCountsEveryProcessStageReached) {
  std::vector<Reach> reached;
  // 5 deals still in NEW, 3 got to NEGOTIATION and are there.
  reached.push_back({0, -1, Deals(5)});
  reached.push_back({2, -1, Deals(3)});
  // 2 won straight from NEW: they count in every process stage and WON.
  reached.push_back({0, 3, Deals(2, "100")});
  // 4 lost after PREPARATION (LOSE), 1 apologised from NEW.
  reached.push_back({1, 4, Deals(4)});
  reached.push_back({0, 5, Deals(1)});
  const std::vector<FunnelRow> rows = ConversionFunnel(Stages(), reached);
  // NEW: everyone (15); PREPARATION: 3 + 2 + 4; NEGOTIATION: 3 + 2;
  // WON 2; LOSE 4; APOLOGY 1.
  EXPECT_THAT(Counts(rows), ElementsAre(15, 9, 5, 2, 4, 1));
  EXPECT_THAT(rows[0].percent, Optional(std::string("100.00")));
  EXPECT_THAT(rows[1].percent, Optional(std::string("60.00")));
  EXPECT_THAT(rows[3].percent, Optional(std::string("13.33")));
  EXPECT_EQ(rows[2].tally.amount.ToString(2), "200.00");  // the won deals
  EXPECT_EQ(rows[3].tally.amount.ToString(2), "200.00");
}

TEST(FunnelTest, ADealThatReachedNoStageCountsOnlyWhereItEnded) {
  // A deal created straight into LOSE reached no process stage.
  const std::vector<FunnelRow> rows =
      ConversionFunnel(Stages(), {{-1, 4, Deals(1)}});
  EXPECT_THAT(Counts(rows), ElementsAre(0, 0, 0, 0, 1, 0));
  EXPECT_EQ(rows[4].percent, std::nullopt);  // the base (NEW) is zero
}

}  // namespace
}  // namespace crm::reporting
