// Lists, kanban boards and filter scans over the deals of one shard, with
// only readable deals in every answer, count and sum.
//
// How a list is read (see the service README for the table):
//   1. A candidate stream of deal ids from the most selective index the
//      filter allows: its stage ids (deals_by_stage), else its assignee ids
//      (deals_by_assignee), else its pipeline (every stage of it), else —
//      for a caller who can read only the deals of some users — those
//      users' assignee index, else its close date range, else every deal.
//   2. Each candidate deal is read and kept when the caller may read it and
//      the filter matches.
//   3. Ordered by id (the default), ids come out of the index in order, so
//      a page stops after page_size + 1 matches; any other order keeps the
//      best page_size + 1 sort keys after the cursor while scanning every
//      candidate.
// Page tokens carry the last id (or sort key) and are bound to the filter
// and order they came from.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

#include "crm/deals/v1/deals_service.pb.h"

#include "common/deal_filter/deal_query.h"
#include "common/pagination/page_token.h"
#include "services/deals/api/deal_operations.h"
#include "services/deals/storage/deal_store.h"

namespace crm::deals {

inline constexpr int kMaxBatchItems = 5000;

class DealLister {
 public:
  DealLister(DealStore& store, const common::PageTokenCodec& page_tokens)
      : store_(store), page_tokens_(page_tokens) {}

  [[nodiscard]] absl::StatusOr<v1::ListDealsResponse> List(
      const OperationContext& ctx, const v1::ListDealsRequest& request);
  // The board, serialized (a KanbanBoard message): boards are sent as bytes
  // so that a cached one is not copied and serialized again per call.
  [[nodiscard]] absl::StatusOr<std::shared_ptr<const std::string>> Board(
      const OperationContext& ctx, const v1::GetKanbanBoardRequest& request);
  [[nodiscard]] absl::StatusOr<v1::KanbanColumnPage> Column(
      const OperationContext& ctx, const v1::ListKanbanColumnRequest& request);

  // Ids of the readable deals matching `filter`, in id order; at most
  // `limit` (the caller asks for one more than it accepts to detect
  // overflow).
  [[nodiscard]] absl::StatusOr<std::vector<int64_t>> MatchingIds(
      const OperationContext& ctx, const common::CompiledFilter& filter,
      int limit);

 private:
  // The candidate ids for `filter` and the caller; `ordered` tells whether
  // they come in id order (ascending after `after_id`).
  std::unique_ptr<IdStream> Candidates(const OperationContext& ctx,
                                       const common::CompiledFilter& filter,
                                       int64_t after_id, bool* ordered);
  // Walks `stream`, calling `visit` for each readable matching deal until it
  // returns false.
  absl::Status Walk(const OperationContext& ctx,
                    const common::CompiledFilter& filter, IdStream& stream,
                    const std::function<bool(v1::Deal&)>& visit);

  // Boards everyone with full read access to a pipeline sees alike (no
  // filter, every column ALL), kept until a commit touches the pipeline or
  // the configuration changes. Boards are read far more often than deals
  // move, and such a board costs ~160 record reads to build.
  struct CachedBoard {
    int64_t config_version = 0;
    int64_t write_count = 0;
    std::shared_ptr<const std::string> board;
  };
  absl::StatusOr<v1::KanbanBoard> BuildBoard(
      const OperationContext& ctx, const v1::GetKanbanBoardRequest& request);

  DealStore& store_;
  const common::PageTokenCodec& page_tokens_;
  absl::Mutex board_mu_;
  // Keyed by (pipeline, cards per column, sums hidden).
  std::map<std::tuple<int64_t, int, bool>, CachedBoard> boards_
      ABSL_GUARDED_BY(board_mu_);
};

}  // namespace crm::deals
