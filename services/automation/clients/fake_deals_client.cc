#include "services/automation/clients/fake_deals_client.h"

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/field_mask_util.h"

#include "common/status/status_macros.h"
#include "common/text/etag.h"

namespace crm::automation {

namespace dv1 = ::crm::deals::v1;

void FakeDealsClient::Put(dv1::Deal deal) {
  absl::MutexLock lock(&mu_);
  deal.set_etag(crm::common::EtagOf(++version_));
  const int64_t id = deal.id();
  deals_[id] = std::move(deal);
}

std::optional<dv1::Deal> FakeDealsClient::Find(int64_t deal_id) const {
  absl::MutexLock lock(&mu_);
  auto it = deals_.find(deal_id);
  if (it == deals_.end()) return std::nullopt;
  return it->second;
}

void FakeDealsClient::Erase(int64_t deal_id) {
  absl::MutexLock lock(&mu_);
  deals_.erase(deal_id);
}

void FakeDealsClient::FailNext(Method method, absl::Status status) {
  absl::MutexLock lock(&mu_);
  failures_[method].push_back(std::move(status));
}

void FakeDealsClient::LoseNextAnswer(Method method, absl::Status status) {
  absl::MutexLock lock(&mu_);
  lost_[method].push_back(std::move(status));
}

std::vector<FakeDealsClient::Call> FakeDealsClient::calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

int FakeDealsClient::applied(Method method) const {
  absl::MutexLock lock(&mu_);
  auto it = applied_.find(method);
  return it == applied_.end() ? 0 : it->second;
}

std::optional<absl::StatusOr<dv1::Deal>> FakeDealsClient::Begin(Call call) {
  const Method method = call.method;
  const std::string request_id = call.request_id;
  calls_.push_back(std::move(call));
  auto& failures = failures_[method];
  if (!failures.empty()) {
    absl::Status status = std::move(failures.front());
    failures.pop_front();
    return absl::StatusOr<dv1::Deal>(std::move(status));
  }
  if (!request_id.empty()) {
    auto it = answers_.find(request_id);
    if (it != answers_.end()) return absl::StatusOr<dv1::Deal>(it->second);
  }
  return std::nullopt;
}

absl::StatusOr<dv1::Deal> FakeDealsClient::Commit(Method method,
                                                  const std::string& request_id,
                                                  dv1::Deal deal) {
  deal.set_etag(crm::common::EtagOf(++version_));
  deals_[deal.id()] = deal;
  ++applied_[method];
  if (!request_id.empty()) answers_[request_id] = deal;
  auto& lost = lost_[method];
  if (!lost.empty()) {
    absl::Status status = std::move(lost.front());
    lost.pop_front();
    return status;
  }
  return deal;
}

absl::StatusOr<dv1::Deal> FakeDealsClient::Stored(int64_t deal_id) const {
  auto it = deals_.find(deal_id);
  if (it == deals_.end())
    return absl::NotFoundError(absl::StrCat("deal ", deal_id, " not found"));
  return it->second;
}

absl::StatusOr<dv1::Deal> FakeDealsClient::GetDeal(int64_t deal_id) {
  absl::MutexLock lock(&mu_);
  Call call;
  call.method = kGetDeal;
  call.deal_id = deal_id;
  if (auto early = Begin(std::move(call))) return *std::move(early);
  return Stored(deal_id);
}

absl::StatusOr<dv1::Deal> FakeDealsClient::MoveStage(
    int64_t deal_id, const std::string& stage_id, const std::string& request_id,
    dv1::Channel channel) {
  absl::MutexLock lock(&mu_);
  Call call;
  call.method = kMoveStage;
  call.deal_id = deal_id;
  call.stage_id = stage_id;
  call.request_id = request_id;
  call.channel = channel;
  if (auto early = Begin(std::move(call))) return *std::move(early);
  CRM_ASSIGN_OR_RETURN(dv1::Deal deal, Stored(deal_id));
  deal.set_stage_id(stage_id);
  return Commit(kMoveStage, request_id, std::move(deal));
}

absl::StatusOr<dv1::Deal> FakeDealsClient::UpdateDeal(
    const dv1::Deal& change, const google::protobuf::FieldMask& mask,
    const std::string& request_id, const std::string& etag) {
  absl::MutexLock lock(&mu_);
  Call call;
  call.method = kUpdateDeal;
  call.deal_id = change.id();
  call.request_id = request_id;
  call.paths.assign(mask.paths().begin(), mask.paths().end());
  if (auto early = Begin(std::move(call))) return *std::move(early);
  CRM_ASSIGN_OR_RETURN(dv1::Deal deal, Stored(change.id()));
  if (!etag.empty() && etag != deal.etag())
    return absl::AbortedError(
        absl::StrCat("etag: deal ", change.id(), " changed since ", etag));
  google::protobuf::util::FieldMaskUtil::MergeOptions options;
  options.set_replace_repeated_fields(true);
  google::protobuf::util::FieldMaskUtil::MergeMessageTo(change, mask, options,
                                                        &deal);
  return Commit(kUpdateDeal, request_id, std::move(deal));
}

absl::StatusOr<dv1::Deal> FakeDealsClient::MoveToPipeline(
    int64_t deal_id, int64_t pipeline_id, const std::string& stage_id,
    const std::string& request_id) {
  absl::MutexLock lock(&mu_);
  Call call;
  call.method = kMoveToPipeline;
  call.deal_id = deal_id;
  call.pipeline_id = pipeline_id;
  call.stage_id = stage_id;
  call.request_id = request_id;
  if (auto early = Begin(std::move(call))) return *std::move(early);
  CRM_ASSIGN_OR_RETURN(dv1::Deal deal, Stored(deal_id));
  deal.set_pipeline_id(pipeline_id);
  deal.set_stage_id(stage_id);
  return Commit(kMoveToPipeline, request_id, std::move(deal));
}

}  // namespace crm::automation
