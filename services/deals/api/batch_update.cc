#include "services/deals/api/batch_update.h"

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/field_mask.pb.h"

#include "common/deal_filter/deal_query.h"
#include "common/status/status_macros.h"
#include "common/text/request_id.h"

namespace crm::deals {
namespace {

// The one stage a batch move names (every deal must be in its pipeline).
// A full id names its stage: ids are unique across pipelines, and pipeline
// 0's carry no prefix, so "WON" is pipeline 0's and never moves deals of
// another pipeline. Otherwise the bare id is resolved in each pipeline as
// MoveDealStage resolves it (common::ConfigView::ResolveStage) and must name a
// stage of exactly one.
absl::StatusOr<const common::StageView*> BatchTargetStage(
    const common::ConfigView& config, const std::string& stage_id) {
  std::vector<const common::StageView*> matches;
  for (const common::PipelineView& pipeline : config.pipelines()) {
    if (const common::StageView* exact =
            config.FindStage(pipeline.id, stage_id))
      return exact;
  }
  for (const common::PipelineView& pipeline : config.pipelines()) {
    if (const common::StageView* stage =
            config.ResolveStage(pipeline.id, stage_id))
      matches.push_back(stage);
  }
  if (matches.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "move_to_stage_id: stage \"", stage_id, "\" does not exist"));
  }
  if (matches.size() > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("move_to_stage_id: \"", stage_id, "\" is a stage of ",
                     matches.size(), " pipelines; name one by its full id (\"",
                     matches[0]->stage_id, "\", ...)"));
  }
  return matches[0];
}

}  // namespace

BatchUpdater::BatchUpdater(DealOperations& operations, DealLister& lister)
    : operations_(operations), lister_(lister) {}

absl::Status BatchUpdater::Run(
    const OperationContext& ctx, const v1::BatchUpdateDealsRequest& request,
    v1::BatchUpdateDealsResponse* response,
    const std::function<absl::Status()>& still_wanted) {
  // Each item's request id is "<request_id>/<deal id>", which must itself
  // be a valid request id.
  CRM_RETURN_IF_ERROR(
      common::ValidateRequestId(ctx.request_id, 1 + common::kMaxInt64Digits));
  // Checks of the action itself, before any item (and before the request
  // id is taken).
  std::string target_stage_id;
  switch (request.action_case()) {
    case v1::BatchUpdateDealsRequest::kSetAssigneeId:
      if (request.set_assignee_id() <= 0) {
        return absl::InvalidArgumentError(
            "set_assignee_id: must be a positive user id");
      }
      break;
    case v1::BatchUpdateDealsRequest::kMoveToStageId: {
      CRM_ASSIGN_OR_RETURN(
          const common::StageView* stage,
          BatchTargetStage(*ctx.config, request.move_to_stage_id()));
      target_stage_id = stage->stage_id;
      break;
    }
    case v1::BatchUpdateDealsRequest::kMoveToPipelineId:
      if (ctx.config->FindPipeline(request.move_to_pipeline_id()) == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("move_to_pipeline_id: pipeline ",
                         request.move_to_pipeline_id(), " does not exist"));
      }
      break;
    case v1::BatchUpdateDealsRequest::kSetOpened:
    case v1::BatchUpdateDealsRequest::kDelete:
      if (request.action_case() == v1::BatchUpdateDealsRequest::kDelete &&
          !request.delete_()) {
        return absl::InvalidArgumentError("delete: must be true when set");
      }
      break;
    default:
      return absl::InvalidArgumentError(
          "action: one of set_assignee_id, move_to_stage_id, "
          "move_to_pipeline_id, set_opened or delete required");
  }

  auto targets = [&]() -> absl::StatusOr<std::vector<int64_t>> {
    std::vector<int64_t> ids;
    switch (request.target_case()) {
      case v1::BatchUpdateDealsRequest::kDealIds: {
        if (request.deal_ids().ids_size() > kMaxBatchItems) {
          return absl::InvalidArgumentError(absl::StrCat(
              "deal_ids.ids: at most ", kMaxBatchItems, " deals per batch"));
        }
        std::set<int64_t> seen;
        for (int i = 0; i < request.deal_ids().ids_size(); ++i) {
          const int64_t id = request.deal_ids().ids(i);
          if (id <= 0) {
            return absl::InvalidArgumentError(absl::StrCat(
                "deal_ids.ids[", i, "]: must be a positive deal id"));
          }
          if (!seen.insert(id).second) {
            return absl::InvalidArgumentError(absl::StrCat(
                "deal_ids.ids[", i, "]: deal ", id, " is listed twice"));
          }
          ids.push_back(id);
        }
        if (ids.empty()) {
          return absl::InvalidArgumentError(
              "deal_ids.ids: name at least one deal");
        }
        break;
      }
      case v1::BatchUpdateDealsRequest::kFilter: {
        CRM_ASSIGN_OR_RETURN(
            common::CompiledFilter filter,
            common::CompiledFilter::Compile(request.filter(), *ctx.config));
        CRM_ASSIGN_OR_RETURN(
            ids, lister_.MatchingIds(ctx, filter, kMaxBatchItems + 1));
        if (static_cast<int>(ids.size()) > kMaxBatchItems) {
          return absl::InvalidArgumentError(
              absl::StrCat("filter: matches more than ", kMaxBatchItems,
                           " deals; narrow it or batch by ids"));
        }
        break;
      }
      default:
        return absl::InvalidArgumentError(
            "target: deal_ids or filter required");
    }
    return ids;
  };
  CRM_ASSIGN_OR_RETURN(const std::vector<int64_t> ids,
                       operations_.BatchTargets(ctx, request, targets));

  OperationContext item_ctx = ctx;
  item_ctx.channel = v1::CHANNEL_BATCH;
  for (int64_t id : ids) {
    // The caller gave up: stop before the next deal instead of working for
    // an answer no one reads. What was done stays done; the same request
    // id repeats those items without applying them again.
    if (still_wanted) {
      absl::Status wanted = still_wanted();
      if (!wanted.ok()) {
        return absl::Status(
            wanted.code(),
            absl::StrCat(wanted.message(), "; the batch stopped after ",
                         response->results_size(), " of ", ids.size(),
                         " deals"));
      }
    }
    if (!ctx.request_id.empty())
      item_ctx.request_id = absl::StrCat(ctx.request_id, "/", id);
    absl::Status status;
    switch (request.action_case()) {
      case v1::BatchUpdateDealsRequest::kSetAssigneeId:
      case v1::BatchUpdateDealsRequest::kSetOpened: {
        // One field, set like UpdateDeal with that field in the mask.
        v1::Deal change;
        change.set_id(id);
        google::protobuf::FieldMask mask;
        if (request.has_set_assignee_id()) {
          change.set_assignee_id(request.set_assignee_id());
          mask.add_paths("assignee_id");
        } else {
          change.set_opened(request.set_opened());
          mask.add_paths("opened");
        }
        status = operations_.Update(item_ctx, change, mask, "").status();
        break;
      }
      case v1::BatchUpdateDealsRequest::kMoveToStageId:
        status = operations_
                     .MoveStage(item_ctx, id, target_stage_id, "",
                                /*exact_stage_id=*/true)
                     .status();
        break;
      case v1::BatchUpdateDealsRequest::kMoveToPipelineId:
        status = operations_
                     .MoveToPipeline(item_ctx, id,
                                     request.move_to_pipeline_id(), "", "")
                     .status();
        break;
      default:
        status = operations_.Delete(item_ctx, id, "");
        break;
    }
    v1::BatchItemResult* result = response->add_results();
    result->set_deal_id(id);
    result->set_code(static_cast<int>(status.code()));
    result->set_message(std::string(status.message()));
    if (status.ok()) {
      response->set_succeeded(response->succeeded() + 1);
    } else {
      response->set_failed(response->failed() + 1);
    }
  }
  return absl::OkStatus();
}

}  // namespace crm::deals
