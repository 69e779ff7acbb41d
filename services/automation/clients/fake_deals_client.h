// In-memory DealsClient for unit tests of the engine: a map of deals that the
// calls read and change, request ids honoured like deals honours them (a
// repeated request id answers the first result and changes nothing), every
// call recorded, and failures injected per method. Thread-safe.
//
//   FakeDealsClient deals;
//   deals.Put(deal);
//   deals.FailNext(FakeDealsClient::kMoveStage,
//                  absl::UnavailableError("deals is away"));
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

#include "services/automation/clients/deals_client.h"

namespace crm::automation {

class FakeDealsClient final : public DealsClient {
 public:
  enum Method { kGetDeal, kMoveStage, kUpdateDeal, kMoveToPipeline };

  // One call as the engine made it.
  struct Call {
    Method method = kGetDeal;
    int64_t deal_id = 0;
    std::string stage_id;     // kMoveStage, kMoveToPipeline
    int64_t pipeline_id = 0;  // kMoveToPipeline
    std::string request_id;
    crm::deals::v1::Channel channel = crm::deals::v1::CHANNEL_UNSPECIFIED;
    std::vector<std::string> paths;  // kUpdateDeal
  };

  // Adds or replaces a deal; its etag is set from a version counter.
  void Put(crm::deals::v1::Deal deal);
  std::optional<crm::deals::v1::Deal> Find(int64_t deal_id) const;
  void Erase(int64_t deal_id);

  // The next call of `method` answers `status` (queued, in order) and
  // changes nothing.
  void FailNext(Method method, absl::Status status);
  // The next change by `method` is made, and then answered with `status`:
  // an answer lost on the way back (the caller cannot tell it was made).
  void LoseNextAnswer(Method method, absl::Status status);

  std::vector<Call> calls() const;
  // How many calls of `method` changed a deal (request-id repeats and
  // failures excluded).
  int applied(Method method) const;

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
  // Records `call`; answers an injected failure or a remembered result of
  // its request id, if any.
  std::optional<absl::StatusOr<crm::deals::v1::Deal>> Begin(Call call)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The stored deal, or NOT_FOUND as deals answers.
  absl::StatusOr<crm::deals::v1::Deal> Stored(int64_t deal_id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stores the changed deal, counts it and remembers the answer (or answers
  // a lost one).
  absl::StatusOr<crm::deals::v1::Deal> Commit(Method method,
                                              const std::string& request_id,
                                              crm::deals::v1::Deal deal)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<int64_t, crm::deals::v1::Deal> deals_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, crm::deals::v1::Deal> answers_ ABSL_GUARDED_BY(mu_);
  std::map<Method, std::deque<absl::Status>> failures_ ABSL_GUARDED_BY(mu_);
  std::map<Method, std::deque<absl::Status>> lost_ ABSL_GUARDED_BY(mu_);
  std::map<Method, int> applied_ ABSL_GUARDED_BY(mu_);
  std::vector<Call> calls_ ABSL_GUARDED_BY(mu_);
  int64_t version_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace crm::automation
