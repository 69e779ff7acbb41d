// crm-test-event-sink on its own: the deals end-to-end tests trust what it
// records, so its ordering, dedupe and durability rules are tested here by
// calling DealEventSink directly.
#include <chrono>
#include <csignal>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"

#include "crm/deals/v1/deal_events.grpc.pb.h"

#include "common/auth/auth.h"
#include "common/testing/temp_dir.h"
#include "tests/e2e/event_sink_fixture.h"

#ifndef CRM_EVENT_SINK_BINARY
#error "CRM_EVENT_SINK_BINARY must name the crm-test-event-sink binary"
#endif

namespace crm::testing {
namespace {

namespace v1 = ::crm::deals::v1;

constexpr char kSecret[] = "e2e-sink-secret-0123456789";

v1::DealEvent Event(int32_t shard, int64_t sequence,
                    v1::DealEventType type = v1::DEAL_EVENT_TYPE_CREATED,
                    const std::string& to_stage = "") {
  v1::DealEvent event;
  event.set_shard(shard);
  event.set_sequence(sequence);
  event.set_event_id(absl::StrCat(shard, "-", sequence));
  event.set_type(type);
  event.set_deal_id((sequence << 10) | shard);
  event.set_to_stage_id(to_stage);
  return event;
}

// Consecutive events [from, to] of one shard.
std::vector<v1::DealEvent> Events(int32_t shard, int64_t from, int64_t to) {
  std::vector<v1::DealEvent> events;
  for (int64_t s = from; s <= to; ++s) events.push_back(Event(shard, s));
  return events;
}

class EventSinkTest : public ::testing::Test {
 protected:
  void Start(SinkOptions options = {}) {
    sink_.reset();
    absl::StatusOr<std::unique_ptr<ServiceProcess>> sink =
        StartEventSink(CRM_EVENT_SINK_BINARY, files_, options);
    ASSERT_TRUE(sink.ok()) << sink.status() << "\n"
                           << ReadFileOrEmpty(files_.log_file);
    sink_ = std::move(sink).value();
    stub_ = v1::DealEventSink::NewStub(sink_->NewChannel());
  }

  grpc::Status Deliver(const std::vector<v1::DealEvent>& events,
                       int64_t* applied = nullptr,
                       const std::string& token = "") {
    v1::DeliverEventsRequest request;
    for (const auto& event : events) *request.add_events() = event;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
    if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
    v1::DeliverEventsResponse response;
    grpc::Status status = stub_->DeliverEvents(&context, request, &response);
    if (applied != nullptr) *applied = response.applied_sequence();
    return status;
  }

  std::vector<SinkEvent> Applied() {
    absl::StatusOr<std::vector<SinkEvent>> events =
        ReadSinkEvents(files_.out_file);
    EXPECT_TRUE(events.ok()) << events.status();
    return events.ok() ? *events : std::vector<SinkEvent>{};
  }

  std::vector<std::string> AppliedIds() {
    std::vector<std::string> ids;
    for (const SinkEvent& event : Applied()) ids.push_back(event.event_id);
    return ids;
  }

  TempDir temp_;
  SinkFiles files_{temp_.path()};
  std::unique_ptr<ServiceProcess> sink_;
  std::unique_ptr<v1::DealEventSink::Stub> stub_;
};

TEST_F(EventSinkTest, AppliesInOrderAndRecordsEachEvent) {
  Start();
  grpc::ClientContext ping_context;
  google::protobuf::Empty empty;
  ASSERT_TRUE(stub_->Ping(&ping_context, empty, &empty).ok());

  int64_t applied = 0;
  ASSERT_TRUE(Deliver({Event(0, 1)}, &applied).ok());
  EXPECT_EQ(applied, 1);
  ASSERT_TRUE(
      Deliver({Event(0, 2, v1::DEAL_EVENT_TYPE_STAGE_CHANGED, "PREPARATION"),
               Event(0, 3, v1::DEAL_EVENT_TYPE_UPDATED)},
              &applied)
          .ok());
  EXPECT_EQ(applied, 3);

  const std::vector<SinkEvent> events = Applied();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].event_id, "0-1");
  EXPECT_EQ(events[0].sequence, 1);
  EXPECT_EQ(events[0].type, "CREATED");
  EXPECT_EQ(events[0].deal_id, 1 << 10);
  EXPECT_EQ(events[0].to_stage_id, "");
  EXPECT_EQ(events[1].type, "STAGE_CHANGED");
  EXPECT_EQ(events[1].to_stage_id, "PREPARATION");
  EXPECT_EQ(events[2].event_id, "0-3");
  EXPECT_EQ(events[2].type, "UPDATED");
  EXPECT_TRUE(ReadLines(files_.dup_file).empty());
  EXPECT_TRUE(ReadLines(files_.reject_file).empty());
}

TEST_F(EventSinkTest, RedeliveredEventsAreDuplicatesNotAppliedTwice) {
  Start();
  ASSERT_TRUE(Deliver(Events(0, 1, 3)).ok());
  // What a relay sends again after losing its cursor write: an overlap.
  int64_t applied = 0;
  ASSERT_TRUE(Deliver(Events(0, 2, 5), &applied).ok());
  EXPECT_EQ(applied, 5);
  ASSERT_TRUE(Deliver(Events(0, 5, 5), &applied).ok());
  EXPECT_EQ(applied, 5);
  EXPECT_EQ(AppliedIds(),
            (std::vector<std::string>{"0-1", "0-2", "0-3", "0-4", "0-5"}));
  EXPECT_EQ(ReadSinkDuplicates(files_.dup_file),
            (std::vector<std::string>{"0-2", "0-3", "0-5"}));
}

TEST_F(EventSinkTest, RefusesAGapOrAReorderingAndAppliesNothingOfIt) {
  Start();
  ASSERT_TRUE(Deliver(Events(0, 1, 2)).ok());
  // 3 is missing: nothing of the request is applied.
  grpc::Status gap = Deliver(Events(0, 4, 5));
  EXPECT_EQ(gap.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(gap.error_message().find("next to apply is 3"), std::string::npos)
      << gap.error_message();
  // Duplicates first, then the gap: still refused as a whole.
  EXPECT_EQ(Deliver(Events(0, 2, 2)).error_code(), grpc::StatusCode::OK);
  EXPECT_EQ(AppliedIds(), (std::vector<std::string>{"0-1", "0-2"}));
  EXPECT_EQ(ReadLines(files_.reject_file).size(), 1u);

  // The first event of a shard must be sequence 1.
  EXPECT_EQ(Deliver(Events(1, 2, 3)).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  int64_t applied = 0;
  ASSERT_TRUE(Deliver(Events(0, 3, 5), &applied).ok());
  EXPECT_EQ(applied, 5);
  EXPECT_EQ(ReadLines(files_.reject_file).size(), 2u);
}

TEST_F(EventSinkTest, RefusesMalformedRequests) {
  Start();
  // Two shards in one request.
  EXPECT_EQ(Deliver({Event(0, 1), Event(1, 2)}).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // Not consecutive within the request.
  EXPECT_EQ(Deliver({Event(0, 1), Event(0, 3)}).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Deliver({Event(0, 2), Event(0, 1)}).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // An event id that does not match shard and sequence.
  v1::DealEvent wrong_id = Event(0, 1);
  wrong_id.set_event_id("0-7");
  EXPECT_EQ(Deliver({wrong_id}).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(Applied().empty());
  EXPECT_EQ(ReadLines(files_.reject_file).size(), 4u);
}

TEST_F(EventSinkTest, ShardsAreOrderedIndependently) {
  Start();
  ASSERT_TRUE(Deliver(Events(0, 1, 2)).ok());
  int64_t applied = 0;
  ASSERT_TRUE(Deliver(Events(3, 1, 1), &applied).ok());
  EXPECT_EQ(applied, 1);
  ASSERT_TRUE(Deliver(Events(0, 3, 3), &applied).ok());
  EXPECT_EQ(applied, 3);
  EXPECT_EQ(AppliedIds(),
            (std::vector<std::string>{"0-1", "0-2", "3-1", "0-3"}));
}

TEST_F(EventSinkTest, RestartAfterSigkillRemembersWhatWasApplied) {
  const absl::StatusOr<int> port = PickFreePort();
  ASSERT_TRUE(port.ok()) << port.status();
  SinkOptions options;
  options.port = *port;
  Start(options);
  ASSERT_EQ(sink_->grpc_port(), *port);
  ASSERT_TRUE(Deliver(Events(0, 1, 3)).ok());
  stub_.reset();
  absl::StatusOr<ExitInfo> killed = sink_->process().Kill();
  ASSERT_TRUE(killed.ok()) << killed.status();
  // A write cut by a crash: never acknowledged, so it must not count.
  {
    std::ofstream out(files_.out_file, std::ios::app);
    out << "0-4\t4\tCREA";
  }

  // Same port, same files.
  Start(options);
  int64_t applied = 0;
  ASSERT_TRUE(Deliver(Events(0, 1, 5), &applied).ok());
  EXPECT_EQ(applied, 5);
  EXPECT_EQ(AppliedIds(),
            (std::vector<std::string>{"0-1", "0-2", "0-3", "0-4", "0-5"}));
  EXPECT_EQ(ReadSinkDuplicates(files_.dup_file),
            (std::vector<std::string>{"0-1", "0-2", "0-3"}));
  // The restarted sink still refuses a gap after what it reloaded.
  EXPECT_EQ(Deliver(Events(0, 7, 7)).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  stub_.reset();
  absl::StatusOr<ExitInfo> exit = sink_->Terminate(SIGTERM, absl::Seconds(10));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->Success()) << exit->ToString();
}

TEST_F(EventSinkTest, WithASecretOnlyServiceIdentitiesMayDeliver) {
  SinkOptions options;
  options.jwt_secret = kSecret;
  Start(options);
  EXPECT_EQ(Deliver(Events(0, 1, 1)).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(
      Deliver(Events(0, 1, 1), nullptr,
              common::MakeServiceToken("another-secret-0123456789", "deals",
                                       absl::Minutes(5), absl::Now()))
          .error_code(),
      grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Deliver(Events(0, 1, 1), nullptr,
                    common::MakeUserToken(kSecret, 1, /*admin=*/true,
                                          absl::Minutes(5), absl::Now()))
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(Applied().empty());
  int64_t applied = 0;
  ASSERT_TRUE(Deliver(Events(0, 1, 1), &applied,
                      common::MakeServiceToken(kSecret, "deals",
                                               absl::Minutes(5), absl::Now()))
                  .ok());
  EXPECT_EQ(applied, 1);
}

}  // namespace
}  // namespace crm::testing
