#include "services/deals/api/deals_service_impl.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

#include "common/grpc/deadline.h"
#include "common/grpc/message_limits.h"
#include "common/grpc/raw_messages.h"
#include "common/grpc/unary_call.h"
#include "common/rocks/key_codec.h"
#include "common/status/grpc_status.h"
#include "common/status/status_macros.h"
#include "common/text/request_id.h"

namespace crm::deals {
namespace {

constexpr int kReplayBatch = 200;
// CountDeals waits at most this long for a min_config_version.
constexpr absl::Duration kMaxConfigWait = absl::Seconds(5);

absl::Status RequirePrivileged(const OperationContext& ctx, const char* what) {
  if (IsPrivileged(ctx.caller)) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat(what, " is for service identities and administrators only"));
}

// Streams retained events in order, one write at a time, reading the outbox
// in batches as it goes.
class ReplayReactor final : public grpc::ServerWriteReactor<v1::DealEvent> {
 public:
  ReplayReactor(DealStore& store, int64_t from, int64_t to)
      : store_(store), next_(from), to_(to) {
    WriteNext();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "stream broken"));
      return;
    }
    WriteNext();
  }
  void OnDone() override { delete this; }

 private:
  void WriteNext() {
    if (position_ == buffer_.size()) {
      absl::StatusOr<std::vector<v1::DealEvent>> batch =
          store_.ReadOutbox(next_, kReplayBatch);
      if (!batch.ok()) {
        Finish(common::ToGrpcStatus(batch.status()));
        return;
      }
      buffer_ = *std::move(batch);
      position_ = 0;
      if (buffer_.empty()) {
        Finish(grpc::Status::OK);
        return;
      }
      next_ = buffer_.back().sequence() + 1;
    }
    const v1::DealEvent& event = buffer_[position_++];
    if (to_ > 0 && event.sequence() > to_) {
      Finish(grpc::Status::OK);
      return;
    }
    StartWrite(&event);
  }

  DealStore& store_;
  int64_t next_;
  const int64_t to_;
  std::vector<v1::DealEvent> buffer_;
  size_t position_ = 0;
};

}  // namespace

DealsServiceImpl::DealsServiceImpl(DealsServiceDeps deps)
    : deps_(std::move(deps)),
      operations_(deps_.store, deps_.operations),
      lister_(deps_.store, deps_.page_tokens),
      batch_(operations_, lister_) {}

bool DealsServiceImpl::Privileged(const common::Principal& principal) const {
  return principal.IsPrivileged(deps_.admin_user_ids);
}

absl::StatusOr<OperationContext> DealsServiceImpl::MakeContext(
    const common::Principal& principal, v1::Channel channel,
    std::string request_id, std::shared_ptr<const common::ConfigView> config,
    std::shared_ptr<const crm::pipelines::v1::EffectivePermissions> cached) {
  OperationContext ctx;
  ctx.config = std::move(config);
  if (ctx.config->version() == 0) {
    return absl::UnavailableError(
        "the pipeline configuration is not loaded yet; retry");
  }
  if (channel == v1::CHANNEL_UNSPECIFIED) channel = v1::CHANNEL_API;
  if (!v1::Channel_IsValid(channel)) {
    return absl::InvalidArgumentError("channel: unknown value");
  }
  if ((channel == v1::CHANNEL_AUTOMATION || channel == v1::CHANNEL_TRIGGER ||
       channel == v1::CHANNEL_BATCH) &&
      !principal.IsService()) {
    return absl::InvalidArgumentError(
        "channel: AUTOMATION, TRIGGER and BATCH are set by services only");
  }
  ctx.channel = channel;
  ctx.request_id = std::move(request_id);
  ctx.actor_id = principal.user_id;
  ctx.actor_service = principal.service;
  if (Privileged(principal)) {
    ctx.caller.user_id = principal.user_id;
    ctx.caller.privileged = true;
    return ctx;
  }
  std::shared_ptr<const crm::pipelines::v1::EffectivePermissions> proto =
      std::move(cached);
  if (proto == nullptr) {
    CRM_ASSIGN_OR_RETURN(proto,
                         deps_.pipelines.GetPermissions(principal.user_id));
  }
  ctx.caller = MakeCaller(principal, permissions_cache_.Get(proto));
  return ctx;
}

grpc::ServerUnaryReactor* DealsServiceImpl::Run(
    grpc::CallbackServerContext* context, Cost cost, v1::Channel channel,
    std::string request_id, Body body) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<common::Principal> principal =
      deps_.authenticator.Authenticate(*context);
  if (!principal.ok()) {
    common::FinishUnary(reactor, principal.status());
    return reactor;
  }
  // Looked up once: it decides where the call runs and, when present, is
  // the caller's permissions.
  const bool privileged = Privileged(*principal);
  std::shared_ptr<const crm::pipelines::v1::EffectivePermissions> cached =
      privileged ? nullptr
                 : deps_.pipelines.CachedPermissions(principal->user_id);
  const bool inline_ok =
      cost != Cost::kScan && cost != Cost::kBatch &&
      (privileged || cached != nullptr) &&
      (cost == Cost::kRead || !deps_.store.db().sync_writes());
  const bool writes = cost == Cost::kWrite || cost == Cost::kBatch;
  auto work = [this, channel, writes, principal = *std::move(principal),
               request_id = std::move(request_id), body = std::move(body),
               cached = std::move(cached)]() mutable -> absl::Status {
    // A write holds its pass until it has committed (CountDeals waits for
    // writes checked against an older configuration).
    ConfigWriteGate::Pass pass;
    std::shared_ptr<const common::ConfigView> config;
    if (writes) {
      pass = config_writes_.Enter(deps_.pipelines);
      config = pass.config();
    } else {
      config = deps_.pipelines.GetConfig();
    }
    absl::StatusOr<OperationContext> ctx =
        MakeContext(principal, channel, std::move(request_id),
                    std::move(config), std::move(cached));
    return ctx.ok() ? body(*ctx) : ctx.status();
    // (The pass is released here, before the call finishes.)
  };
  common::WorkerPool& pool = cost == Cost::kWrite &&
                                     deps_.durable_writers != nullptr &&
                                     deps_.store.db().sync_writes()
                                 ? *deps_.durable_writers
                                 : deps_.workers;
  // Queued work whose caller gave up meanwhile is not started
  // (common::SubmitUnary): it would change deals for an answer no one reads.
  if (inline_ok) {
    common::FinishUnary(reactor, work());
  } else if (!common::SubmitUnary(pool, context, reactor, std::move(work))) {
    reactor->Finish(common::Overloaded("deals"));
  }
  return reactor;
}

grpc::ServerUnaryReactor* DealsServiceImpl::CreateDeal(
    grpc::CallbackServerContext* context, const v1::CreateDealRequest* request,
    v1::Deal* response) {
  return Run(context, Cost::kWrite, request->channel(), request->request_id(),
             [this, request, response](const OperationContext& ctx) {
               CRM_ASSIGN_OR_RETURN(*response,
                                    operations_.Create(ctx, request->deal()));
               return absl::OkStatus();
             });
}

grpc::ServerUnaryReactor* DealsServiceImpl::GetDeal(
    grpc::CallbackServerContext* context, const v1::GetDealRequest* request,
    v1::Deal* response) {
  return Run(context, Cost::kRead, v1::CHANNEL_API, "",
             [this, request, response](const OperationContext& ctx) {
               CRM_ASSIGN_OR_RETURN(*response,
                                    operations_.Get(ctx, request->deal_id()));
               return absl::OkStatus();
             });
}

grpc::ServerUnaryReactor* DealsServiceImpl::UpdateDeal(
    grpc::CallbackServerContext* context, const v1::UpdateDealRequest* request,
    v1::Deal* response) {
  return Run(context, Cost::kWrite, request->channel(), request->request_id(),
             [this, request, response](const OperationContext& ctx) {
               CRM_ASSIGN_OR_RETURN(
                   *response,
                   operations_.Update(ctx, request->deal(),
                                      request->update_mask(), request->etag()));
               return absl::OkStatus();
             });
}

grpc::ServerUnaryReactor* DealsServiceImpl::DeleteDeal(
    grpc::CallbackServerContext* context, const v1::DeleteDealRequest* request,
    google::protobuf::Empty* /*response*/) {
  return Run(context, Cost::kWrite, v1::CHANNEL_API, "",
             [this, request](const OperationContext& ctx) {
               return operations_.Delete(ctx, request->deal_id(),
                                         request->etag());
             });
}

grpc::ServerUnaryReactor* DealsServiceImpl::MoveDealStage(
    grpc::CallbackServerContext* context,
    const v1::MoveDealStageRequest* request, v1::Deal* response) {
  return Run(context, Cost::kWrite, request->channel(), request->request_id(),
             [this, request, response](const OperationContext& ctx) {
               CRM_ASSIGN_OR_RETURN(
                   *response,
                   operations_.MoveStage(ctx, request->deal_id(),
                                         request->stage_id(), request->etag()));
               return absl::OkStatus();
             });
}

grpc::ServerUnaryReactor* DealsServiceImpl::MoveDealToPipeline(
    grpc::CallbackServerContext* context,
    const v1::MoveDealToPipelineRequest* request, v1::Deal* response) {
  return Run(context, Cost::kWrite, request->channel(), request->request_id(),
             [this, request, response](const OperationContext& ctx) {
               CRM_ASSIGN_OR_RETURN(
                   *response,
                   operations_.MoveToPipeline(
                       ctx, request->deal_id(), request->pipeline_id(),
                       request->stage_id(), request->etag()));
               return absl::OkStatus();
             });
}

grpc::ServerUnaryReactor* DealsServiceImpl::SetProductRows(
    grpc::CallbackServerContext* context,
    const v1::SetProductRowsRequest* request, v1::Deal* response) {
  return Run(context, Cost::kWrite, request->channel(), request->request_id(),
             [this, request, response](const OperationContext& ctx) {
               CRM_ASSIGN_OR_RETURN(
                   *response, operations_.SetProductRows(
                                  ctx, request->deal_id(), request->rows(),
                                  request->etag()));
               return absl::OkStatus();
             });
}

grpc::ServerUnaryReactor* DealsServiceImpl::ListDeals(
    grpc::CallbackServerContext* context, const v1::ListDealsRequest* request,
    v1::ListDealsResponse* response) {
  return Run(context, Cost::kScan, v1::CHANNEL_API, "",
             [this, request, response](const OperationContext& ctx) {
               CRM_ASSIGN_OR_RETURN(*response, lister_.List(ctx, *request));
               return absl::OkStatus();
             });
}

grpc::ServerUnaryReactor* DealsServiceImpl::GetKanbanBoard(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Run(context, Cost::kScan, v1::CHANNEL_API, "",
             [this, request, response](const OperationContext& ctx) {
               v1::GetKanbanBoardRequest parsed;
               CRM_RETURN_IF_ERROR(common::ParseRawRequest(*request, &parsed));
               CRM_ASSIGN_OR_RETURN(std::shared_ptr<const std::string> board,
                                    lister_.Board(ctx, parsed));
               common::SetRawResponse(*board, response);
               return absl::OkStatus();
             });
}

grpc::ServerUnaryReactor* DealsServiceImpl::ListKanbanColumn(
    grpc::CallbackServerContext* context,
    const v1::ListKanbanColumnRequest* request,
    v1::KanbanColumnPage* response) {
  return Run(context, Cost::kScan, v1::CHANNEL_API, "",
             [this, request, response](const OperationContext& ctx) {
               CRM_ASSIGN_OR_RETURN(*response, lister_.Column(ctx, *request));
               return absl::OkStatus();
             });
}

grpc::ServerUnaryReactor* DealsServiceImpl::BatchUpdateDeals(
    grpc::CallbackServerContext* context,
    const v1::BatchUpdateDealsRequest* request,
    v1::BatchUpdateDealsResponse* response) {
  return Run(context, Cost::kBatch, v1::CHANNEL_API, request->request_id(),
             [this, context, request, response](const OperationContext& ctx) {
               return batch_.Run(ctx, *request, response, [context] {
                 return common::CallerStillWaiting(*context);
               });
             });
}

grpc::ServerUnaryReactor* DealsServiceImpl::ListStageHistory(
    grpc::CallbackServerContext* context,
    const v1::ListStageHistoryRequest* request,
    v1::ListStageHistoryResponse* response) {
  return Run(
      context, Cost::kRead, v1::CHANNEL_API, "",
      [this, request, response](const OperationContext& ctx) -> absl::Status {
        CRM_ASSIGN_OR_RETURN(int page_size,
                             common::ResolvePageSize(request->page_size()));
        const std::string query = absl::StrCat("history|", request->deal_id());
        uint64_t after = 0;
        if (!request->page_token().empty()) {
          CRM_ASSIGN_OR_RETURN(
              std::string cursor,
              deps_.page_tokens.Decode(request->page_token(), query));
          common::KeyReader reader(cursor);
          if (!reader.ReadUint64(&after) || !reader.done()) {
            return absl::InvalidArgumentError("page_token: malformed");
          }
        }
        CRM_ASSIGN_OR_RETURN(
            auto entries,
            operations_.History(ctx, request->deal_id(), after, page_size + 1));
        bool more = static_cast<int>(entries.size()) > page_size;
        if (more) entries.resize(page_size);
        common::ReplyBudget budget;
        for (size_t i = 0; i < entries.size(); ++i) {
          *response->add_entries() = std::move(entries[i].second);
          if (budget.Spend(response->entries(i).ByteSizeLong()) &&
              i + 1 < entries.size()) {
            entries.resize(i + 1);
            more = true;
            break;
          }
        }
        if (more) {
          response->set_next_page_token(deps_.page_tokens.Encode(
              query, common::EncodeUint64(entries.back().first)));
        }
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* DealsServiceImpl::GetTimeInStage(
    grpc::CallbackServerContext* context,
    const v1::GetTimeInStageRequest* request,
    v1::GetTimeInStageResponse* response) {
  return Run(context, Cost::kRead, v1::CHANNEL_API, "",
             [this, request, response](const OperationContext& ctx) {
               CRM_ASSIGN_OR_RETURN(
                   *response, operations_.TimeInStage(ctx, request->deal_id()));
               return absl::OkStatus();
             });
}

grpc::ServerUnaryReactor* DealsServiceImpl::CountDeals(
    grpc::CallbackServerContext* context, const v1::CountDealsRequest* request,
    v1::CountDealsResponse* response) {
  // With min_config_version the call may wait: never inline.
  const Cost cost =
      request->min_config_version() > 0 ? Cost::kScan : Cost::kRead;
  // Stops waiting a little before the caller's deadline, so the caller
  // gets the reason rather than DEADLINE_EXCEEDED.
  const absl::Time deadline =
      std::min(absl::FromChrono(context->deadline()) - absl::Milliseconds(100),
               absl::Now() + kMaxConfigWait);
  return Run(
      context, cost, v1::CHANNEL_API, "",
      [this, request, response,
       deadline](const OperationContext& ctx) -> absl::Status {
        CRM_RETURN_IF_ERROR(RequirePrivileged(ctx, "CountDeals"));
        if (request->pipeline_id() < 0) {
          return absl::InvalidArgumentError("pipeline_id: must be >= 0");
        }
        if (request->min_config_version() < 0) {
          return absl::InvalidArgumentError("min_config_version: must be >= 0");
        }
        if (request->min_config_version() > 0) {
          CRM_RETURN_IF_ERROR(config_writes_.AwaitVersion(
              deps_.pipelines, request->min_config_version(), deadline));
        }
        CRM_ASSIGN_OR_RETURN(int64_t count,
                             deps_.store.CountDeals(request->pipeline_id(),
                                                    request->stage_id()));
        response->set_count(count);
        return absl::OkStatus();
      });
}

grpc::ServerWriteReactor<v1::DealEvent>* DealsServiceImpl::ReplayEvents(
    grpc::CallbackServerContext* context,
    const v1::ReplayEventsRequest* request) {
  auto refuse = [](absl::Status status) {
    class Refused final : public grpc::ServerWriteReactor<v1::DealEvent> {
     public:
      explicit Refused(absl::Status status) {
        Finish(common::ToGrpcStatus(status));
      }
      void OnDone() override { delete this; }
    };
    return new Refused(std::move(status));
  };
  absl::StatusOr<common::Principal> principal =
      deps_.authenticator.Authenticate(*context);
  if (!principal.ok()) return refuse(principal.status());
  if (!Privileged(*principal)) {
    return refuse(absl::PermissionDeniedError(
        "ReplayEvents is for service identities and administrators only"));
  }
  if (request->from_sequence() < 0) {
    return refuse(absl::InvalidArgumentError("from_sequence: must be >= 0"));
  }
  if (request->to_sequence() < 0 ||
      (request->to_sequence() > 0 &&
       request->to_sequence() < request->from_sequence())) {
    return refuse(absl::InvalidArgumentError(
        "to_sequence: 0 (no bound) or >= from_sequence"));
  }
  absl::StatusOr<int64_t> first = deps_.store.FirstRetainedSequence();
  if (!first.ok()) return refuse(first.status());
  if (request->from_sequence() > 0 && request->from_sequence() < *first) {
    return refuse(absl::FailedPreconditionError(
        absl::StrCat("from_sequence: events before ", *first,
                     " are no longer retained; replay from ", *first)));
  }
  return new ReplayReactor(deps_.store,
                           std::max<int64_t>(request->from_sequence(), *first),
                           request->to_sequence());
}

}  // namespace crm::deals
