// GrpcDealsClient against the generated mock stub (what it sends: the
// automation token, the deadline, the request fields; how it converts
// deals' answers), and FakeDealsClient's own contract, which the engine's
// unit tests rely on.
#include "services/automation/clients/deals_client.h"

#include <chrono>
#include <string>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/test/client_context_test_peer.h"
#include "gtest/gtest.h"

#include "crm/deals/v1/deals_service_mock.grpc.pb.h"

#include "common/auth/auth.h"
#include "common/status/status_matchers.h"
#include "services/automation/clients/fake_deals_client.h"

namespace crm::automation {
namespace {

namespace dv1 = ::crm::deals::v1;
using ::crm::testing::StatusIs;
using ::testing::_;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Invoke;
using ::testing::Return;

constexpr char kSecret[] = "deals-client-test-secret";

// Checks the call carries an automation service token and a deadline of
// about `timeout`.
void ExpectAutomationCall(grpc::ClientContext* context,
                          std::chrono::milliseconds timeout) {
  const auto metadata =
      grpc::testing::ClientContextTestPeer(context).GetSendInitialMetadata();
  auto it = metadata.find("authorization");
  ASSERT_NE(it, metadata.end());
  ASSERT_EQ(it->second.rfind("Bearer ", 0), 0u);
  absl::StatusOr<common::Principal> principal =
      common::JwtVerifier(kSecret).Verify(it->second.substr(7), absl::Now());
  ASSERT_TRUE(principal.ok()) << principal.status();
  EXPECT_EQ(principal->service, "automation");
  const auto left = context->deadline() - std::chrono::system_clock::now();
  EXPECT_GT(left, timeout - std::chrono::milliseconds(500));
  EXPECT_LE(left, timeout);
}

class GrpcDealsClientTest : public ::testing::Test {
 protected:
  dv1::MockDealsServiceStub stub_;
  common::ServiceTokenSource tokens_{kSecret, "automation"};
  GrpcDealsClient client_{stub_, tokens_, {absl::Seconds(3)}};
};

TEST_F(GrpcDealsClientTest, GetDealSendsTheServiceTokenAndDeadline) {
  EXPECT_CALL(stub_, GetDeal(_, _, _))
      .WillOnce(Invoke([](grpc::ClientContext* context,
                          const dv1::GetDealRequest& request, dv1::Deal* deal) {
        ExpectAutomationCall(context, std::chrono::seconds(3));
        EXPECT_EQ(request.deal_id(), 42);
        deal->set_id(42);
        deal->set_title("Roof");
        return grpc::Status::OK;
      }));
  ASSERT_OK_AND_ASSIGN(dv1::Deal deal, client_.GetDeal(42));
  EXPECT_EQ(deal.title(), "Roof");
}

TEST_F(GrpcDealsClientTest, MovesCarryTheRequestIdAndChannel) {
  EXPECT_CALL(stub_, MoveDealStage(_, _, _))
      .WillOnce(
          Invoke([](grpc::ClientContext* context,
                    const dv1::MoveDealStageRequest& request, dv1::Deal* deal) {
            ExpectAutomationCall(context, std::chrono::seconds(3));
            EXPECT_EQ(request.deal_id(), 7);
            EXPECT_EQ(request.stage_id(), "WON");
            EXPECT_EQ(request.request_id(), "run-1");
            EXPECT_EQ(request.channel(), dv1::CHANNEL_TRIGGER);
            deal->set_stage_id("WON");
            return grpc::Status::OK;
          }));
  EXPECT_CALL(stub_, MoveDealToPipeline(_, _, _))
      .WillOnce(Invoke([](grpc::ClientContext* context,
                          const dv1::MoveDealToPipelineRequest& request,
                          dv1::Deal* deal) {
        ExpectAutomationCall(context, std::chrono::seconds(3));
        EXPECT_EQ(request.pipeline_id(), 2);
        EXPECT_EQ(request.stage_id(), "C2:NEW");
        EXPECT_EQ(request.request_id(), "run-2");
        EXPECT_EQ(request.channel(), dv1::CHANNEL_AUTOMATION);
        deal->set_pipeline_id(2);
        return grpc::Status::OK;
      }));
  ASSERT_OK_AND_ASSIGN(
      dv1::Deal moved,
      client_.MoveStage(7, "WON", "run-1", dv1::CHANNEL_TRIGGER));
  EXPECT_EQ(moved.stage_id(), "WON");
  ASSERT_OK_AND_ASSIGN(dv1::Deal other,
                       client_.MoveToPipeline(7, 2, "C2:NEW", "run-2"));
  EXPECT_EQ(other.pipeline_id(), 2);
}

TEST_F(GrpcDealsClientTest, UpdateSendsTheMaskEtagAndAutomationChannel) {
  EXPECT_CALL(stub_, UpdateDeal(_, _, _))
      .WillOnce(
          Invoke([](grpc::ClientContext* context,
                    const dv1::UpdateDealRequest& request, dv1::Deal* deal) {
            ExpectAutomationCall(context, std::chrono::seconds(3));
            EXPECT_EQ(request.deal().id(), 9);
            EXPECT_THAT(request.update_mask().paths(), ElementsAre("title"));
            EXPECT_EQ(request.etag(), "\"4\"");
            EXPECT_EQ(request.request_id(), "run-3");
            EXPECT_EQ(request.channel(), dv1::CHANNEL_AUTOMATION);
            *deal = request.deal();
            return grpc::Status::OK;
          }));
  dv1::Deal change;
  change.set_id(9);
  change.set_title("New title");
  google::protobuf::FieldMask mask;
  mask.add_paths("title");
  ASSERT_OK_AND_ASSIGN(dv1::Deal deal,
                       client_.UpdateDeal(change, mask, "run-3", "\"4\""));
  EXPECT_EQ(deal.title(), "New title");
}

TEST_F(GrpcDealsClientTest, DealsAnswersAboutTheDealPassThrough) {
  EXPECT_CALL(stub_, GetDeal(_, _, _))
      .WillOnce(
          Return(grpc::Status(grpc::StatusCode::NOT_FOUND, "deal 5 not found")))
      .WillOnce(Return(
          grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection refused")));
  EXPECT_THAT(client_.GetDeal(5),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("deal 5")));
  EXPECT_THAT(client_.GetDeal(5), StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(GrpcDealsClientTest, RefusalsOfOurIdentityAreInternalAndNameDeals) {
  EXPECT_CALL(stub_, MoveDealStage(_, _, _))
      .WillOnce(Return(
          grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "bad signature")))
      .WillOnce(Return(grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                                    "service automation may not move")));
  EXPECT_THAT(client_.MoveStage(1, "WON", "r", dv1::CHANNEL_AUTOMATION),
              StatusIs(absl::StatusCode::kInternal,
                       HasSubstr("deals refused this service's credentials")));
  EXPECT_THAT(client_.MoveStage(1, "WON", "r", dv1::CHANNEL_AUTOMATION),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("deals")));
}

dv1::Deal ADeal(int64_t id) {
  dv1::Deal deal;
  deal.set_id(id);
  deal.set_title("Deal");
  deal.set_pipeline_id(1);
  deal.set_stage_id("NEW");
  return deal;
}

TEST(FakeDealsClientTest, MovesAndUpdatesChangeTheStoredDealAndItsEtag) {
  FakeDealsClient deals;
  deals.Put(ADeal(1));
  const std::string first_etag = deals.Find(1)->etag();
  ASSERT_OK_AND_ASSIGN(
      dv1::Deal moved,
      deals.MoveStage(1, "WON", "r1", dv1::CHANNEL_AUTOMATION));
  EXPECT_EQ(moved.stage_id(), "WON");
  EXPECT_NE(moved.etag(), first_etag);
  dv1::Deal change;
  change.set_id(1);
  change.set_title("Renamed");
  change.set_stage_id("IGNORED: not in the mask");
  google::protobuf::FieldMask mask;
  mask.add_paths("title");
  EXPECT_THAT(deals.UpdateDeal(change, mask, "r2", first_etag),
              StatusIs(absl::StatusCode::kAborted));
  ASSERT_OK_AND_ASSIGN(dv1::Deal updated,
                       deals.UpdateDeal(change, mask, "r2", moved.etag()));
  EXPECT_EQ(updated.title(), "Renamed");
  EXPECT_EQ(updated.stage_id(), "WON");
  ASSERT_OK_AND_ASSIGN(dv1::Deal other,
                       deals.MoveToPipeline(1, 3, "C3:NEW", "r3"));
  EXPECT_EQ(other.pipeline_id(), 3);
  EXPECT_EQ(deals.Find(1)->stage_id(), "C3:NEW");
  EXPECT_THAT(deals.GetDeal(2), StatusIs(absl::StatusCode::kNotFound));
}

TEST(FakeDealsClientTest, ARepeatedRequestIdAnswersTheFirstResultOnly) {
  FakeDealsClient deals;
  deals.Put(ADeal(1));
  ASSERT_OK(deals.MoveStage(1, "WON", "run-1", dv1::CHANNEL_AUTOMATION));
  deals.Put(ADeal(1));  // someone moved it back to NEW
  ASSERT_OK_AND_ASSIGN(
      dv1::Deal again,
      deals.MoveStage(1, "WON", "run-1", dv1::CHANNEL_AUTOMATION));
  EXPECT_EQ(again.stage_id(), "WON");
  EXPECT_EQ(deals.Find(1)->stage_id(), "NEW");
  EXPECT_EQ(deals.applied(FakeDealsClient::kMoveStage), 1);
  EXPECT_EQ(deals.calls().size(), 2u);
}

TEST(FakeDealsClientTest, InjectedFailuresAnswerInOrderAndChangeNothing) {
  FakeDealsClient deals;
  deals.Put(ADeal(1));
  deals.FailNext(FakeDealsClient::kMoveStage, absl::UnavailableError("away"));
  deals.FailNext(FakeDealsClient::kMoveStage,
                 absl::FailedPreconditionError("stage gone"));
  EXPECT_THAT(deals.MoveStage(1, "WON", "r", dv1::CHANNEL_AUTOMATION),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(deals.MoveStage(1, "WON", "r", dv1::CHANNEL_AUTOMATION),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(deals.Find(1)->stage_id(), "NEW");
  ASSERT_OK(deals.MoveStage(1, "WON", "r", dv1::CHANNEL_AUTOMATION));
  EXPECT_EQ(deals.applied(FakeDealsClient::kMoveStage), 1);
  EXPECT_EQ(deals.calls().size(), 3u);
  EXPECT_OK(deals.GetDeal(1));  // other methods are unaffected
}

TEST(FakeDealsClientTest, ALostAnswerStillMadeTheChange) {
  FakeDealsClient deals;
  deals.Put(ADeal(1));
  deals.LoseNextAnswer(FakeDealsClient::kMoveStage,
                       absl::UnavailableError("connection reset"));
  EXPECT_THAT(deals.MoveStage(1, "WON", "r", dv1::CHANNEL_AUTOMATION),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(deals.Find(1)->stage_id(), "WON");
  // The repeat with the same request id gets the remembered answer.
  ASSERT_OK_AND_ASSIGN(dv1::Deal again,
                       deals.MoveStage(1, "WON", "r", dv1::CHANNEL_AUTOMATION));
  EXPECT_EQ(again.stage_id(), "WON");
  EXPECT_EQ(deals.applied(FakeDealsClient::kMoveStage), 1);
}

}  // namespace
}  // namespace crm::automation
