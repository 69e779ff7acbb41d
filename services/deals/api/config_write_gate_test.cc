#include "services/deals/api/config_write_gate.h"

#include <thread>
#include <utility>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/pipelines_client/fake_pipeline_client.h"
#include "common/status/status_matchers.h"

namespace crm::deals {
namespace {

using ::crm::testing::IsOk;
using ::crm::testing::StatusIs;
using ::testing::HasSubstr;

void SetVersion(common::FakePipelineClient& pipelines, int64_t version) {
  pipelines.SetConfig(common::ConfigView::FromProtos(
      version, {common::DefaultPipelineProto(0)}, {}));
}

TEST(ConfigWriteGateTest, APassCarriesTheConfigurationItWasTakenWith) {
  common::FakePipelineClient pipelines;
  SetVersion(pipelines, 4);
  ConfigWriteGate gate;
  {
    ConfigWriteGate::Pass pass = gate.Enter(pipelines);
    EXPECT_EQ(pass.config()->version(), 4);
    EXPECT_EQ(gate.in_flight(), 1);
    ConfigWriteGate::Pass moved = std::move(pass);
    EXPECT_EQ(gate.in_flight(), 1);
    moved = ConfigWriteGate::Pass();
    EXPECT_EQ(gate.in_flight(), 0);
    ConfigWriteGate::Pass again = gate.Enter(pipelines);
    EXPECT_EQ(gate.in_flight(), 1);
  }
  EXPECT_EQ(gate.in_flight(), 0);
}

TEST(ConfigWriteGateTest, AwaitVersionWaitsForTheVersionAndOlderWrites) {
  common::FakePipelineClient pipelines;
  SetVersion(pipelines, 4);
  ConfigWriteGate gate;
  auto old_write =
      std::make_unique<ConfigWriteGate::Pass>(gate.Enter(pipelines));

  // Not at version 5 yet: UNAVAILABLE once the deadline passes.
  EXPECT_THAT(
      gate.AwaitVersion(pipelines, 5, absl::Now() + absl::Milliseconds(30)),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("version 5")));

  SetVersion(pipelines, 5);
  ConfigWriteGate::Pass new_write = gate.Enter(pipelines);
  EXPECT_EQ(new_write.config()->version(), 5);
  // At version 5, but a write checked against 4 still runs.
  EXPECT_THAT(
      gate.AwaitVersion(pipelines, 5, absl::Now() + absl::Milliseconds(30)),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("still running")));
  // Older versions are not held up by it.
  EXPECT_THAT(gate.AwaitVersion(pipelines, 4, absl::Now()), IsOk());

  // It returns as soon as the old write finishes; writes on version 5 do
  // not hold it up.
  absl::Notification waiting;
  absl::Status awaited = absl::UnknownError("not run");
  std::thread waiter([&] {
    waiting.Notify();
    awaited = gate.AwaitVersion(pipelines, 5, absl::Now() + absl::Seconds(30));
  });
  waiting.WaitForNotification();
  absl::SleepFor(absl::Milliseconds(20));
  const absl::Time released = absl::Now();
  old_write.reset();
  waiter.join();
  EXPECT_THAT(awaited, IsOk());
  EXPECT_LT(absl::Now() - released, absl::Seconds(10));
}

TEST(ConfigWriteGateTest, AwaitVersionFollowsANewSnapshot) {
  common::FakePipelineClient pipelines;
  SetVersion(pipelines, 1);
  ConfigWriteGate gate;
  std::thread later([&] {
    absl::SleepFor(absl::Milliseconds(20));
    SetVersion(pipelines, 3);
  });
  EXPECT_THAT(gate.AwaitVersion(pipelines, 2, absl::Now() + absl::Seconds(30)),
              IsOk());
  later.join();
}

}  // namespace
}  // namespace crm::deals
