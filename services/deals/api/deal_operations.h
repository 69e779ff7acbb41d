// The deal operations of the deals service, independent of gRPC: each one
// loads what it needs, checks the caller's permissions (domain/access.h),
// applies the field rules (domain/deal_rules.h) and commits one atomic
// change with its history entries and event (storage/deal_store.h). The
// gRPC handlers and the batch action both call these, so a batch item is
// checked exactly like the single call.
//
// Concurrency: a change reads the deal, computes the new state and commits
// it with an optimistic revision check. Without an etag from the caller a
// lost race is retried (a few times) on the fresh state; with an etag the
// caller asked for exactly that version, so a mismatch is ABORTED.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/field_mask.pb.h"

#include "crm/deals/v1/deal.pb.h"
#include "crm/deals/v1/deal_events.pb.h"
#include "crm/deals/v1/deals_service.pb.h"

#include "common/pipelines_client/config_view.h"
#include "services/deals/domain/access.h"
#include "services/deals/storage/deal_store.h"

namespace crm::deals {

// Who asks, how, and against which configuration snapshot. One per call.
struct OperationContext {
  Caller caller;
  // The user (0 for a service identity) and the service name, for the
  // created_by / updated_by fields, history and events.
  int64_t actor_id = 0;
  std::string actor_service;
  v1::Channel channel = v1::CHANNEL_API;
  // Binds the call to its payload (idempotency, see RequestFingerprint)
  // and is copied into events.
  std::string request_id;
  std::shared_ptr<const common::ConfigView> config;
};

struct DealOperationsOptions {
  // Calendar days (begin, close and close-on-win dates) are in this zone.
  absl::TimeZone zone = absl::UTCTimeZone();
  // Time source; absl::Now when empty.
  std::function<absl::Time()> clock;
  // Called after every commit that wrote an event (wakes the relays).
  std::function<void()> on_event;
};

class DealOperations {
 public:
  DealOperations(DealStore& store, DealOperationsOptions options);

  [[nodiscard]] absl::StatusOr<v1::Deal> Create(const OperationContext& ctx,
                                                const v1::Deal& input);
  // NOT_FOUND unless readable.
  [[nodiscard]] absl::StatusOr<v1::Deal> Get(const OperationContext& ctx,
                                             int64_t deal_id);
  [[nodiscard]] absl::StatusOr<v1::Deal> Update(
      const OperationContext& ctx, const v1::Deal& input,
      const google::protobuf::FieldMask& mask, const std::string& etag);
  [[nodiscard]] absl::Status Delete(const OperationContext& ctx,
                                    int64_t deal_id, const std::string& etag);
  // `stage_id` is resolved in the deal's pipeline by
  // common::ConfigView::ResolveStage (bare "WON" for "C3:WON") unless
  // `exact_stage_id` (a batch resolved its one target stage already and
  // passes its full id: a bare id must not move deals of every pipeline).
  [[nodiscard]] absl::StatusOr<v1::Deal> MoveStage(const OperationContext& ctx,
                                                   int64_t deal_id,
                                                   const std::string& stage_id,
                                                   const std::string& etag,
                                                   bool exact_stage_id = false);
  // `stage_id` (resolved in the target pipeline) empty: the first stage of
  // the new pipeline with the deal's current semantics (else the first
  // stage).
  [[nodiscard]] absl::StatusOr<v1::Deal> MoveToPipeline(
      const OperationContext& ctx, int64_t deal_id, int64_t pipeline_id,
      const std::string& stage_id, const std::string& etag);
  [[nodiscard]] absl::StatusOr<v1::Deal> SetProductRows(
      const OperationContext& ctx, int64_t deal_id,
      const google::protobuf::RepeatedPtrField<v1::ProductRow>& rows,
      const std::string& etag);

  // The deals a batch works on. Without a request id, `targets()`. With
  // one, the first call remembers its fingerprint and `targets()`; a retry
  // with the same payload gets the deals remembered then (a filter is not
  // evaluated again over deals the batch itself changed, so each item is
  // applied once); another payload under the id is ALREADY_EXISTS.
  [[nodiscard]] absl::StatusOr<std::vector<int64_t>> BatchTargets(
      const OperationContext& ctx, const v1::BatchUpdateDealsRequest& request,
      const std::function<absl::StatusOr<std::vector<int64_t>>()>& targets);

  // Readable history entries of a readable deal, after `after_seq`.
  [[nodiscard]] absl::StatusOr<
      std::vector<std::pair<uint64_t, v1::StageHistoryEntry>>>
  History(const OperationContext& ctx, int64_t deal_id, uint64_t after_seq,
          int limit);
  [[nodiscard]] absl::StatusOr<v1::GetTimeInStageResponse> TimeInStage(
      const OperationContext& ctx, int64_t deal_id);

  absl::Time Now() const;
  DealStore& store() { return store_; }

 private:
  // A stored deal the caller may read; NOT_FOUND otherwise.
  absl::StatusOr<storage::DealRecord> LoadReadable(const OperationContext& ctx,
                                                   int64_t deal_id);
  // Runs read-modify-commit, retrying lost races when `etag` is empty.
  // `change` gets the fresh record and returns the write (or nullopt for a
  // no-op, whose result is the stored deal). With a request id,
  // `fingerprint` is the call's RequestFingerprint: a retry of the same
  // request answers with the deal as it is now (nothing for a delete whose
  // deal is gone) and changes nothing; another request under the id is
  // ALREADY_EXISTS. The id is remembered with the commit, or on its own for
  // a no-op (a retry after the deal changed must not apply it then).
  absl::StatusOr<CommitResult> Mutate(
      const OperationContext& ctx, int64_t deal_id, const std::string& etag,
      const std::string& fingerprint, bool deletes,
      const std::function<absl::StatusOr<std::optional<DealWrite>>(
          const storage::DealRecord&)>& change);
  v1::DealEvent NewEvent(const OperationContext& ctx, v1::DealEventType type,
                         absl::Time now) const;
  // A stage or pipeline change: from/to stage and semantics and the changed
  // fields.
  v1::DealEvent MoveEvent(const OperationContext& ctx, v1::DealEventType type,
                          const v1::Deal& before, const v1::Deal& after,
                          absl::Time now) const;
  // The write of a stage or pipeline move to `after`: moved/updated
  // stamps, the history entry and the event.
  DealWrite MoveWrite(const OperationContext& ctx,
                      v1::StageHistoryEntry::Kind kind, v1::DealEventType type,
                      const v1::Deal& before, v1::Deal after,
                      absl::Time now) const;
  v1::StageHistoryEntry NewHistory(const OperationContext& ctx,
                                   v1::StageHistoryEntry::Kind kind,
                                   const v1::Deal& from, const v1::Deal& to,
                                   absl::Time now) const;
  void Stamp(const OperationContext& ctx, v1::Deal* deal, absl::Time now) const;

  DealStore& store_;
  const DealOperationsOptions options_;
};

// The fingerprint of a request, to tell a retry (same payload) from a reuse
// of the request id for something else: SHA-256 of the caller, the channel,
// the request's message type and its deterministic serialization (the
// request id itself left out by the caller).
std::string RequestFingerprint(const OperationContext& ctx,
                               const google::protobuf::Message& request);
// The same for a create, over the deal alone and without the message type
// (the form create fingerprints were stored in first).
std::string CreateFingerprint(const OperationContext& ctx,
                              const v1::Deal& input);

// The answer to a request id used before for another payload, the same for
// every call that takes a request id.
absl::Status RequestIdReused();

// "deal_id: must be a positive deal id" unless > 0.
[[nodiscard]] absl::Status ValidateDealId(int64_t deal_id,
                                          const char* field = "deal_id");

}  // namespace crm::deals
