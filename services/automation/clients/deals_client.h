// What automation needs of the deals service, as one interface: read a deal,
// move it, change its fields, move it to another pipeline. Every call is
// made as the automation service identity (a service token), within a
// deadline, and answers in absl::Status terms with deals' refusals of that
// identity turned into an internal error naming deals (FromPeerStatus):
// they are an operator's problem, never the end user's.
//
//   auto stub = crm::deals::v1::DealsService::NewStub(channel);
//   GrpcDealsClient deals(*stub, tokens, {.timeout = absl::Seconds(5)});
//   absl::StatusOr<Deal> deal = deals.GetDeal(42);
//
// FakeDealsClient (fake_deals_client.h) is the in-memory stand-in for unit
// tests of the engine.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/field_mask.pb.h"

#include "crm/deals/v1/deals_service.grpc.pb.h"

#include "common/auth/service_token.h"

namespace crm::automation {

class DealsClient {
 public:
  virtual ~DealsClient() = default;

  virtual absl::StatusOr<crm::deals::v1::Deal> GetDeal(int64_t deal_id) = 0;
  // MoveDealStage with the caller's channel (automation or trigger).
  virtual absl::StatusOr<crm::deals::v1::Deal> MoveStage(
      int64_t deal_id, const std::string& stage_id,
      const std::string& request_id, crm::deals::v1::Channel channel) = 0;
  // UpdateDeal of the masked fields of `change` (its id names the deal);
  // an empty etag updates whatever version is current.
  virtual absl::StatusOr<crm::deals::v1::Deal> UpdateDeal(
      const crm::deals::v1::Deal& change,
      const google::protobuf::FieldMask& mask, const std::string& request_id,
      const std::string& etag) = 0;
  virtual absl::StatusOr<crm::deals::v1::Deal> MoveToPipeline(
      int64_t deal_id, int64_t pipeline_id, const std::string& stage_id,
      const std::string& request_id) = 0;
};

struct GrpcDealsClientOptions {
  // Deadline of each call.
  absl::Duration timeout = absl::Seconds(5);
};

class GrpcDealsClient final : public DealsClient {
 public:
  using Stub = crm::deals::v1::DealsService::StubInterface;

  // `stub` and `tokens` must outlive the client.
  GrpcDealsClient(Stub& stub, crm::common::ServiceTokenSource& tokens,
                  GrpcDealsClientOptions options = {});

  absl::StatusOr<crm::deals::v1::Deal> GetDeal(int64_t deal_id) override;
  absl::StatusOr<crm::deals::v1::Deal> MoveStage(
      int64_t deal_id, const std::string& stage_id,
      const std::string& request_id, crm::deals::v1::Channel channel) override;
  absl::StatusOr<crm::deals::v1::Deal> UpdateDeal(
      const crm::deals::v1::Deal& change,
      const google::protobuf::FieldMask& mask, const std::string& request_id,
      const std::string& etag) override;
  absl::StatusOr<crm::deals::v1::Deal> MoveToPipeline(
      int64_t deal_id, int64_t pipeline_id, const std::string& stage_id,
      const std::string& request_id) override;

 private:
  // Calls `method` of the stub with the token and deadline set.
  template <typename Request>
  absl::StatusOr<crm::deals::v1::Deal> Call(
      grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                   crm::deals::v1::Deal*),
      const Request& request);

  Stub& stub_;
  crm::common::ServiceTokenSource& tokens_;
  const GrpcDealsClientOptions options_;
};

}  // namespace crm::automation
