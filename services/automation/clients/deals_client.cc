#include "services/automation/clients/deals_client.h"

#include <chrono>

#include "grpcpp/client_context.h"

#include "common/status/grpc_status.h"

namespace crm::automation {

namespace dv1 = ::crm::deals::v1;

GrpcDealsClient::GrpcDealsClient(Stub& stub,
                                 crm::common::ServiceTokenSource& tokens,
                                 GrpcDealsClientOptions options)
    : stub_(stub), tokens_(tokens), options_(options) {}

template <typename Request>
absl::StatusOr<dv1::Deal> GrpcDealsClient::Call(
    grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                 dv1::Deal*),
    const Request& request) {
  grpc::ClientContext context;
  context.AddMetadata("authorization", tokens_.AuthorizationHeader());
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoMilliseconds(options_.timeout));
  dv1::Deal deal;
  absl::Status status = crm::common::FromPeerStatus(
      (stub_.*method)(&context, request, &deal), "deals");
  if (!status.ok()) return status;
  return deal;
}

absl::StatusOr<dv1::Deal> GrpcDealsClient::GetDeal(int64_t deal_id) {
  dv1::GetDealRequest request;
  request.set_deal_id(deal_id);
  return Call(&Stub::GetDeal, request);
}

absl::StatusOr<dv1::Deal> GrpcDealsClient::MoveStage(
    int64_t deal_id, const std::string& stage_id, const std::string& request_id,
    dv1::Channel channel) {
  dv1::MoveDealStageRequest request;
  request.set_deal_id(deal_id);
  request.set_stage_id(stage_id);
  request.set_request_id(request_id);
  request.set_channel(channel);
  return Call(&Stub::MoveDealStage, request);
}

absl::StatusOr<dv1::Deal> GrpcDealsClient::UpdateDeal(
    const dv1::Deal& change, const google::protobuf::FieldMask& mask,
    const std::string& request_id, const std::string& etag) {
  dv1::UpdateDealRequest request;
  *request.mutable_deal() = change;
  *request.mutable_update_mask() = mask;
  request.set_request_id(request_id);
  request.set_etag(etag);
  request.set_channel(dv1::CHANNEL_AUTOMATION);
  return Call(&Stub::UpdateDeal, request);
}

absl::StatusOr<dv1::Deal> GrpcDealsClient::MoveToPipeline(
    int64_t deal_id, int64_t pipeline_id, const std::string& stage_id,
    const std::string& request_id) {
  dv1::MoveDealToPipelineRequest request;
  request.set_deal_id(deal_id);
  request.set_pipeline_id(pipeline_id);
  request.set_stage_id(stage_id);
  request.set_request_id(request_id);
  request.set_channel(dv1::CHANNEL_AUTOMATION);
  return Call(&Stub::MoveDealToPipeline, request);
}

}  // namespace crm::automation
