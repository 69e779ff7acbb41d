// crm.deals.v1.DealsService on gRPC's callback API.
//
// Threading. gRPC's callback threads serve every call of the process, so
// nothing that can wait long runs on them. A call runs inline (on the
// callback thread) only when it needs no network: the caller is privileged
// or its effective permissions are already cached, and it is a point read,
// or a write while commits do not fsync. Everything else — a permission
// fetch from pipeline-config, an fsync'd commit, a list, board or batch
// scan — runs on a bounded worker pool; when its queue is full the call is
// refused with RESOURCE_EXHAUSTED rather than queued without bound.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/server_callback.h"

#include "crm/deals/v1/deals_service.grpc.pb.h"

#include "common/auth/auth.h"
#include "common/concurrency/worker_pool.h"
#include "common/pagination/page_token.h"
#include "common/pipelines_client/pipeline_client.h"
#include "services/deals/api/batch_update.h"
#include "services/deals/api/config_write_gate.h"
#include "services/deals/api/deal_lister.h"
#include "services/deals/api/deal_operations.h"
#include "services/deals/domain/access.h"
#include "services/deals/storage/deal_store.h"

namespace crm::deals {

struct DealsServiceDeps {
  DealStore& store;
  common::PipelineClient& pipelines;
  const common::Authenticator& authenticator;
  const common::PageTokenCodec& page_tokens;
  common::WorkerPool& workers;
  // Users who pass every check besides those whose token says "admin".
  std::set<int64_t> admin_user_ids;
  DealOperationsOptions operations;
  // When set, writes that wait for an fsync (--sync_writes) run here rather
  // than on `workers`: they spend their time waiting for the disk, and
  // group commit shares one fsync among as many commits as are waiting, so
  // this pool is sized by the writes that should be in flight at once, not
  // by the cores.
  common::WorkerPool* durable_writers = nullptr;
};

// GetKanbanBoard is a raw method: boards are answered with bytes (often
// cached ones) rather than a message gRPC would serialize per call.
class DealsServiceImpl final
    : public v1::DealsService::WithRawCallbackMethod_GetKanbanBoard<
          v1::DealsService::CallbackService> {
 public:
  explicit DealsServiceImpl(DealsServiceDeps deps);

  grpc::ServerUnaryReactor* CreateDeal(grpc::CallbackServerContext* context,
                                       const v1::CreateDealRequest* request,
                                       v1::Deal* response) override;
  grpc::ServerUnaryReactor* GetDeal(grpc::CallbackServerContext* context,
                                    const v1::GetDealRequest* request,
                                    v1::Deal* response) override;
  grpc::ServerUnaryReactor* UpdateDeal(grpc::CallbackServerContext* context,
                                       const v1::UpdateDealRequest* request,
                                       v1::Deal* response) override;
  grpc::ServerUnaryReactor* DeleteDeal(
      grpc::CallbackServerContext* context,
      const v1::DeleteDealRequest* request,
      google::protobuf::Empty* response) override;
  grpc::ServerUnaryReactor* MoveDealStage(
      grpc::CallbackServerContext* context,
      const v1::MoveDealStageRequest* request, v1::Deal* response) override;
  grpc::ServerUnaryReactor* MoveDealToPipeline(
      grpc::CallbackServerContext* context,
      const v1::MoveDealToPipelineRequest* request,
      v1::Deal* response) override;
  grpc::ServerUnaryReactor* SetProductRows(
      grpc::CallbackServerContext* context,
      const v1::SetProductRowsRequest* request, v1::Deal* response) override;
  grpc::ServerUnaryReactor* ListDeals(grpc::CallbackServerContext* context,
                                      const v1::ListDealsRequest* request,
                                      v1::ListDealsResponse* response) override;
  grpc::ServerUnaryReactor* GetKanbanBoard(grpc::CallbackServerContext* context,
                                           const grpc::ByteBuffer* request,
                                           grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ListKanbanColumn(
      grpc::CallbackServerContext* context,
      const v1::ListKanbanColumnRequest* request,
      v1::KanbanColumnPage* response) override;
  grpc::ServerUnaryReactor* BatchUpdateDeals(
      grpc::CallbackServerContext* context,
      const v1::BatchUpdateDealsRequest* request,
      v1::BatchUpdateDealsResponse* response) override;
  grpc::ServerUnaryReactor* ListStageHistory(
      grpc::CallbackServerContext* context,
      const v1::ListStageHistoryRequest* request,
      v1::ListStageHistoryResponse* response) override;
  grpc::ServerUnaryReactor* GetTimeInStage(
      grpc::CallbackServerContext* context,
      const v1::GetTimeInStageRequest* request,
      v1::GetTimeInStageResponse* response) override;
  grpc::ServerUnaryReactor* CountDeals(
      grpc::CallbackServerContext* context,
      const v1::CountDealsRequest* request,
      v1::CountDealsResponse* response) override;
  grpc::ServerWriteReactor<v1::DealEvent>* ReplayEvents(
      grpc::CallbackServerContext* context,
      const v1::ReplayEventsRequest* request) override;

 private:
  enum class Cost {
    kRead,   // inline when permissions are at hand
    kWrite,  // inline unless commits fsync
    kScan,   // always on the worker pool
    kBatch,  // writes, always on the worker pool
  };
  using Body = std::function<absl::Status(const OperationContext&)>;

  // Authenticates, then runs `body` with the caller's context inline or on
  // the pool (see the file comment) and finishes the call with its status.
  grpc::ServerUnaryReactor* Run(grpc::CallbackServerContext* context, Cost cost,
                                v1::Channel channel, std::string request_id,
                                Body body);
  // Builds the context with `cached` permissions, or fetches them from
  // pipeline-config when null (never inline: Run only runs calls inline
  // when they are cached).
  absl::StatusOr<OperationContext> MakeContext(
      const common::Principal& principal, v1::Channel channel,
      std::string request_id, std::shared_ptr<const common::ConfigView> config,
      std::shared_ptr<const crm::pipelines::v1::EffectivePermissions> cached);
  bool Privileged(const common::Principal& principal) const;

  DealsServiceDeps deps_;
  DealOperations operations_;
  DealLister lister_;
  BatchUpdater batch_;
  IndexedPermissionsCache permissions_cache_;
  // Every write holds a pass from here while it runs (see CountDeals).
  ConfigWriteGate config_writes_;
};

}  // namespace crm::deals
