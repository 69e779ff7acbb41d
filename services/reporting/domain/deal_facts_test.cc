#include "services/reporting/domain/deal_facts.h"

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/status/status_matchers.h"
#include "common/time/proto_time.h"
#include "services/reporting/domain/period.h"

namespace crm::reporting {
namespace {

namespace dv1 = ::crm::deals::v1;
using ::crm::testing::StatusIs;
using ::testing::SizeIs;

// Pipeline 1: NEW, PREPARATION, NEGOTIATION (process), WON, LOSE.
// Pipeline 2: C2:NEW (process), C2:WON.
StagePlace PlaceOf(const std::string& stage) {
  if (stage == "NEW" || stage == "C2:NEW") return {StageKind::kProcess, 0};
  if (stage == "PREPARATION") return {StageKind::kProcess, 1};
  if (stage == "NEGOTIATION") return {StageKind::kProcess, 2};
  if (stage == "WON") return {StageKind::kWon, 3};
  if (stage == "C2:WON") return {StageKind::kWon, 1};
  return {StageKind::kLost, 4};
}

const absl::Time kStart = absl::FromCivil(
    absl::CivilSecond(2026, 3, 2, 9, 0, 0), absl::UTCTimeZone());

// Applies events to one deal, keeping the cells the way the store will:
// the old contribution out, the new one in.
class Ledger {
 public:
  absl::Status Apply(dv1::DealEvent event, absl::Time at) {
    *event.mutable_occur_time() = common::ToTimestamp(at);
    event.set_deal_id(7);
    event.mutable_deal()->set_id(7);
    absl::StatusOr<std::optional<DealFacts>> after =
        ApplyEvent(facts_, event, PlaceOf(event.deal().stage_id()), zone_);
    if (!after.ok()) return after.status();
    if (facts_.has_value()) Move(Contribution(*facts_, zone_), -1);
    if (after->has_value()) Move(Contribution(**after, zone_), +1);
    facts_ = *std::move(after);
    return absl::OkStatus();
  }

  // Every cell not zero, exactly the current facts' contribution.
  void ExpectCellsAreTheContribution() const {
    std::map<CellKey, int64_t> expected;
    if (facts_.has_value()) {
      for (const auto& [key, value] : Contribution(*facts_, zone_))
        expected[key] += value.deals;
    }
    std::map<CellKey, int64_t> got;
    for (const auto& [key, value] : cells_) {
      if (!value.IsZero()) got[key] = value.deals;
    }
    EXPECT_EQ(got, expected);
  }

  const std::optional<DealFacts>& facts() const { return facts_; }
  const std::map<CellKey, CellValue>& cells() const { return cells_; }

 private:
  void Move(const std::vector<std::pair<CellKey, CellValue>>& cells, int sign) {
    for (const auto& [key, value] : cells) cells_[key].Add(value, sign);
  }

  absl::TimeZone zone_ = absl::UTCTimeZone();
  std::optional<DealFacts> facts_;
  std::map<CellKey, CellValue> cells_;
};

dv1::DealEvent Event(dv1::DealEventType type, int64_t pipeline,
                     const std::string& stage, int64_t assignee = 5,
                     const std::string& amount = "100") {
  dv1::DealEvent event;
  event.set_type(type);
  event.set_to_pipeline_id(pipeline);
  event.set_to_stage_id(stage);
  dv1::Deal& deal = *event.mutable_deal();
  deal.set_pipeline_id(pipeline);
  deal.set_stage_id(stage);
  deal.set_assignee_id(assignee);
  deal.set_amount(amount);
  deal.set_currency("EUR");
  *deal.mutable_create_time() = common::ToTimestamp(kStart);
  return event;
}

TEST(DealFactsTest, ANewDealCountsOncePerCubeAndDayKind) {
  Ledger ledger;
  ASSERT_OK(
      ledger.Apply(Event(dv1::DEAL_EVENT_TYPE_CREATED, 1, "NEW"), kStart));
  const DealFacts& facts = *ledger.facts();
  EXPECT_EQ(facts.stage_id, "NEW");
  EXPECT_EQ(facts.furthest_process_stage, "NEW");
  EXPECT_FALSE(facts.closed.has_value());
  // Stage and reach cubes, created and moved days; no closed day yet.
  const auto cells = Contribution(facts, absl::UTCTimeZone());
  EXPECT_THAT(cells, SizeIs(4));
  for (const auto& [key, value] : cells) {
    EXPECT_NE(key.day_kind, DayKind::kClosed);
    EXPECT_EQ(key.day, DayNumber(absl::CivilDay(2026, 3, 2)));
    EXPECT_EQ(value.deals, 1);
    EXPECT_EQ(value.amount.ToString(2), "100.00");
  }
}

TEST(DealFactsTest, EveryChangeMovesTheContributionAndNothingCountsTwice) {
  Ledger ledger;
  absl::Time t = kStart - absl::Hours(30);  // the first step: kStart
  auto step = [&](dv1::DealEvent event) {
    t += absl::Hours(30);
    ASSERT_OK(ledger.Apply(std::move(event), t));
    ledger.ExpectCellsAreTheContribution();
  };
  step(Event(dv1::DEAL_EVENT_TYPE_CREATED, 1, "NEW"));
  step(Event(dv1::DEAL_EVENT_TYPE_STAGE_CHANGED, 1, "NEGOTIATION"));
  step(Event(dv1::DEAL_EVENT_TYPE_UPDATED, 1, "NEGOTIATION", 5, "250.5"));
  step(Event(dv1::DEAL_EVENT_TYPE_ASSIGNEE_CHANGED, 1, "NEGOTIATION", 9,
             "250.5"));
  // Back to PREPARATION: the furthest reached stays NEGOTIATION.
  step(Event(dv1::DEAL_EVENT_TYPE_STAGE_CHANGED, 1, "PREPARATION", 9, "250.5"));
  EXPECT_EQ(ledger.facts()->furthest_process_stage, "NEGOTIATION");
  step(Event(dv1::DEAL_EVENT_TYPE_STAGE_CHANGED, 1, "WON", 9, "250.5"));
  EXPECT_TRUE(ledger.facts()->closed.has_value());
  // Reopened, then moved to another pipeline: the furthest starts again.
  step(Event(dv1::DEAL_EVENT_TYPE_STAGE_CHANGED, 1, "NEW", 9, "250.5"));
  EXPECT_FALSE(ledger.facts()->closed.has_value());
  step(Event(dv1::DEAL_EVENT_TYPE_PIPELINE_CHANGED, 2, "C2:NEW", 9, "250.5"));
  EXPECT_EQ(ledger.facts()->pipeline_id, 2);
  EXPECT_EQ(ledger.facts()->furthest_process_stage, "C2:NEW");
  step(Event(dv1::DEAL_EVENT_TYPE_STAGE_CHANGED, 2, "C2:WON", 9, "250.5"));
  // Six stage changes, six finished stays, each 30 hours long.
  ASSERT_THAT(ledger.facts()->stays, SizeIs(6));
  EXPECT_EQ(ledger.facts()->stays[0].stage_id, "NEW");
  EXPECT_EQ(ledger.facts()->stays[0].duration, absl::Hours(30));
  EXPECT_EQ(ledger.facts()->stays[1].assignee_id, 9);  // had it on leaving
  // Deleted: every cell back to zero.
  step(Event(dv1::DEAL_EVENT_TYPE_DELETED, 2, "C2:WON", 9, "250.5"));
  EXPECT_FALSE(ledger.facts().has_value());
  for (const auto& [key, value] : ledger.cells()) EXPECT_TRUE(value.IsZero());
}

TEST(DealFactsTest, AWonDealCarriesItsTimeToWinAndItsEndStage) {
  Ledger ledger;
  ASSERT_OK(
      ledger.Apply(Event(dv1::DEAL_EVENT_TYPE_CREATED, 1, "NEW"), kStart));
  ASSERT_OK(ledger.Apply(Event(dv1::DEAL_EVENT_TYPE_STAGE_CHANGED, 1, "WON"),
                         kStart + absl::Hours(50)));
  int closed_cells = 0;
  for (const auto& [key, value] :
       Contribution(*ledger.facts(), absl::UTCTimeZone())) {
    EXPECT_EQ(value.seconds_to_win, 50 * 3600);
    if (key.cube == CellKey::Cube::kReach) {
      EXPECT_EQ(key.stage_id, "NEW");  // the furthest process stage
      EXPECT_EQ(key.end_stage_id, "WON");
    }
    if (key.day_kind == DayKind::kClosed) {
      ++closed_cells;
      EXPECT_EQ(key.day, DayNumber(absl::CivilDay(2026, 3, 4)));
    }
  }
  EXPECT_EQ(closed_cells, 2);
}

TEST(DealFactsTest, DaysAreTheZonesCalendarDays) {
  absl::TimeZone tokyo;
  ASSERT_TRUE(absl::LoadTimeZone("Asia/Tokyo", &tokyo));
  dv1::DealEvent event = Event(dv1::DEAL_EVENT_TYPE_CREATED, 1, "NEW");
  // 20:00 UTC on March 2nd is March 3rd in Tokyo.
  const absl::Time evening = kStart + absl::Hours(11);
  *event.mutable_deal()->mutable_create_time() = common::ToTimestamp(evening);
  ASSERT_OK_AND_ASSIGN(std::optional<DealFacts> facts,
                       ApplyEvent(std::nullopt, event, PlaceOf("NEW"), tokyo));
  for (const auto& [key, value] : Contribution(*facts, tokyo))
    EXPECT_EQ(key.day, DayNumber(absl::CivilDay(2026, 3, 3)));
}

TEST(DealFactsTest, ADealFirstSeenByALaterEventIsTakenAsShown) {
  dv1::DealEvent event = Event(dv1::DEAL_EVENT_TYPE_STAGE_CHANGED, 1, "LOSE");
  event.set_deal_id(7);
  *event.mutable_occur_time() = common::ToTimestamp(kStart + absl::Hours(5));
  *event.mutable_deal()->mutable_move_time() = event.occur_time();
  ASSERT_OK_AND_ASSIGN(
      std::optional<DealFacts> facts,
      ApplyEvent(std::nullopt, event, PlaceOf("LOSE"), absl::UTCTimeZone()));
  EXPECT_EQ(facts->stage_id, "LOSE");
  EXPECT_EQ(facts->created, kStart);
  EXPECT_EQ(facts->closed, kStart + absl::Hours(5));
  EXPECT_EQ(facts->furthest_process, -1);  // it reached no process stage
  EXPECT_TRUE(facts->stays.empty());
}

TEST(DealFactsTest, AMalformedAmountIsRefused) {
  EXPECT_THAT(
      ApplyEvent(std::nullopt,
                 Event(dv1::DEAL_EVENT_TYPE_CREATED, 1, "NEW", 5, "12,5"),
                 PlaceOf("NEW"), absl::UTCTimeZone()),
      StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace crm::reporting
