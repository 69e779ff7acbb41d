// BatchUpdateDeals as an operation: one action (assignee, stage, pipeline,
// opened flag, delete) applied to up to kMaxBatchItems deals named by id or
// by a filter. The action and the target are checked before any deal is
// touched; the target ids are fixed under the request id (a repeat takes
// the same deals even if the filter matches others by then); each deal is
// then changed like a single call on the BATCH channel, with the request id
// "<request_id>/<deal id>", so a repeat applies nothing twice. One deal's
// failure is its own result and does not stop the others.
//
//   BatchUpdater batch(operations, lister);
//   CRM_RETURN_IF_ERROR(batch.Run(ctx, request, &response, [&] {
//     return common::CallerStillWaiting(server_context);
//   }));
#pragma once

#include <functional>

#include "absl/status/status.h"

#include "crm/deals/v1/deals_service.pb.h"

#include "services/deals/api/deal_lister.h"
#include "services/deals/api/deal_operations.h"

namespace crm::deals {

class BatchUpdater {
 public:
  // Both must outlive the updater.
  BatchUpdater(DealOperations& operations, DealLister& lister);

  // Fills `response` with one result per deal. `still_wanted`, when set, is
  // asked before each deal; once it fails the batch stops and answers its
  // status (the caller is gone, so no partial answer is sent).
  [[nodiscard]] absl::Status Run(
      const OperationContext& ctx, const v1::BatchUpdateDealsRequest& request,
      v1::BatchUpdateDealsResponse* response,
      const std::function<absl::Status()>& still_wanted = {});

 private:
  DealOperations& operations_;
  DealLister& lister_;
};

}  // namespace crm::deals
