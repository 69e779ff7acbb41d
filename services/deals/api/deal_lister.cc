#include "services/deals/api/deal_lister.h"

#include <algorithm>
#include <limits>
#include <map>
#include <queue>
#include <set>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

#include "common/grpc/message_limits.h"
#include "common/money/currency.h"
#include "common/money/decimal.h"
#include "common/money/decimal_sum.h"
#include "common/rocks/key_codec.h"
#include "common/status/status_macros.h"

namespace crm::deals {
namespace {

// More assignee streams than this are slower than one scan of the stage or
// of the store.
constexpr size_t kMaxAssigneeStreams = 64;

// The pipeline a stage id belongs to: "C<n>:..." is pipeline n, anything
// else pipeline 0 (pipeline-config's naming).
int64_t PipelineOfStage(const std::string& stage_id) {
  if (stage_id.size() > 2 && stage_id[0] == 'C') {
    const size_t colon = stage_id.find(':');
    int64_t id = 0;
    if (colon != std::string::npos &&
        absl::SimpleAtoi(stage_id.substr(1, colon - 1), &id)) {
      return id;
    }
  }
  return 0;
}

// The users whose deals are all the caller can read anywhere, or nullopt
// when some stage lets it read more (OPEN or ALL).
std::optional<std::set<int64_t>> ScopeAssignees(const OperationContext& ctx) {
  if (IsPrivileged(ctx.caller)) return std::nullopt;
  std::set<int64_t> users;
  for (const common::PipelineView& pipeline : ctx.config->pipelines()) {
    for (const common::StageView& stage : pipeline.stages) {
      ReadScope scope = ReadScopeFor(ctx.caller, pipeline.id, stage.stage_id);
      if (scope.none()) continue;
      if (scope.all() || scope.include_opened) return std::nullopt;
      users.insert(scope.assignee_ids->begin(), scope.assignee_ids->end());
    }
  }
  return users;
}

std::unique_ptr<IdStream> AssigneeStreams(DealStore& store,
                                          const std::vector<int64_t>& users,
                                          int64_t after_id, bool descending) {
  std::vector<std::unique_ptr<IdStream>> streams;
  for (int64_t user : users)
    streams.push_back(store.StreamAssignee(user, after_id, descending));
  return MergeIdStreams(std::move(streams), descending);
}

// An empty stream.
std::unique_ptr<IdStream> Nothing() {
  return MergeIdStreams({}, /*descending=*/false);
}

// A column sum printed with the currency's minor units ("1250.00").
std::string AmountSum(const common::DecimalSum& sum,
                      const std::string& currency) {
  absl::StatusOr<int> minor = common::MinorUnits(currency, "currency");
  return sum.ToString(minor.ok() ? *minor : 2);
}

}  // namespace

std::unique_ptr<IdStream> DealLister::Candidates(
    const OperationContext& ctx, const common::CompiledFilter& filter,
    int64_t after_id, bool* ordered) {
  *ordered = true;
  if (filter.stage_ids().has_value()) {
    std::vector<std::unique_ptr<IdStream>> streams;
    for (const std::string& stage : *filter.stage_ids()) {
      const int64_t pipeline = PipelineOfStage(stage);
      if (filter.pipeline_id().has_value() && *filter.pipeline_id() != pipeline)
        continue;  // contradicts the pipeline condition: nothing there
      streams.push_back(store_.StreamStage(pipeline, stage, after_id, false));
    }
    return MergeIdStreams(std::move(streams), false);
  }
  if (filter.assignee_ids().has_value() &&
      filter.assignee_ids()->size() <= kMaxAssigneeStreams) {
    return AssigneeStreams(store_, *filter.assignee_ids(), after_id, false);
  }
  if (filter.pipeline_id().has_value()) {
    const common::PipelineView* pipeline =
        ctx.config->FindPipeline(*filter.pipeline_id());
    if (pipeline == nullptr) return Nothing();
    std::vector<std::unique_ptr<IdStream>> streams;
    for (const common::StageView& stage : pipeline->stages) {
      streams.push_back(
          store_.StreamStage(pipeline->id, stage.stage_id, after_id, false));
    }
    return MergeIdStreams(std::move(streams), false);
  }
  if (std::optional<std::set<int64_t>> users = ScopeAssignees(ctx);
      users.has_value() && users->size() <= kMaxAssigneeStreams) {
    return AssigneeStreams(store_, {users->begin(), users->end()}, after_id,
                           false);
  }
  if (filter.close_date_range().has_value()) {
    *ordered = false;
    return store_.StreamCloseDates(filter.close_date_range()->first,
                                   filter.close_date_range()->second);
  }
  return store_.StreamAll(after_id, false);
}

absl::Status DealLister::Walk(const OperationContext& ctx,
                              const common::CompiledFilter& filter,
                              IdStream& stream,
                              const std::function<bool(v1::Deal&)>& visit) {
  // Ids are read in growing batches and their records fetched with one
  // MultiGet per batch: small first batches keep a short page cheap, larger
  // ones amortise long scans.
  size_t batch_size = 8;
  std::vector<int64_t> ids;
  while (true) {
    ids.clear();
    int64_t id = 0;
    while (ids.size() < batch_size && stream.Next(&id)) ids.push_back(id);
    CRM_RETURN_IF_ERROR(stream.status());
    if (ids.empty()) return absl::OkStatus();
    CRM_ASSIGN_OR_RETURN(auto records, store_.GetMany(ids));
    for (auto& record : records) {
      // Gone since the index was read (a concurrent delete): skip it.
      if (!record.has_value()) continue;
      if (!Allows(ctx.caller, Action::kRead, record->deal()) ||
          !filter.Matches(record->deal())) {
        continue;
      }
      if (!visit(*record->mutable_deal())) return absl::OkStatus();
    }
    if (ids.size() < batch_size) return absl::OkStatus();
    batch_size = std::min<size_t>(batch_size * 2, 256);
  }
}

absl::StatusOr<v1::ListDealsResponse> DealLister::List(
    const OperationContext& ctx, const v1::ListDealsRequest& request) {
  CRM_ASSIGN_OR_RETURN(int page_size,
                       common::ResolvePageSize(request.page_size()));
  common::CompiledFilter filter;
  if (request.has_filter()) {
    CRM_ASSIGN_OR_RETURN(
        filter, common::CompiledFilter::Compile(request.filter(), *ctx.config));
  }
  CRM_ASSIGN_OR_RETURN(
      common::DealOrdering ordering,
      common::DealOrdering::Compile(request.order_by(), *ctx.config));
  const std::string query =
      absl::StrCat("list|", filter.fingerprint(), "|", ordering.fingerprint());
  std::string cursor;
  if (!request.page_token().empty()) {
    CRM_ASSIGN_OR_RETURN(cursor,
                         page_tokens_.Decode(request.page_token(), query));
  }

  v1::ListDealsResponse response;
  bool ordered = false;
  int64_t after_id = 0;
  if (ordering.by_id() && !cursor.empty()) {
    common::KeyReader reader(cursor);
    if (!reader.ReadInt64(&after_id) || !reader.done()) {
      return absl::InvalidArgumentError("page_token: malformed");
    }
  }
  std::unique_ptr<IdStream> stream =
      Candidates(ctx, filter, ordering.by_id() ? after_id : 0, &ordered);

  // A page also ends when the reply reaches the byte budget (large deals:
  // long comments, many custom fields), with a token for the rest.
  common::ReplyBudget budget;
  if (ordering.by_id() && ordered) {
    // Ids come in order: stop after one more than a page.
    CRM_RETURN_IF_ERROR(Walk(ctx, filter, *stream, [&](v1::Deal& deal) {
      if (response.deals_size() == page_size || budget.spent()) {
        response.set_next_page_token(page_tokens_.Encode(
            query, common::EncodeInt64(
                       response.deals(response.deals_size() - 1).id())));
        return false;
      }
      budget.Spend(deal.ByteSizeLong());
      *response.add_deals() = std::move(deal);
      return true;
    }));
  } else {
    // Keep the page_size + 1 smallest sort keys after the cursor.
    using Entry = std::pair<std::string, v1::Deal>;
    auto less = [](const Entry& a, const Entry& b) {
      return a.first < b.first;
    };
    std::priority_queue<Entry, std::vector<Entry>, decltype(less)> best(less);
    const size_t keep = static_cast<size_t>(page_size) + 1;
    CRM_RETURN_IF_ERROR(Walk(ctx, filter, *stream, [&](v1::Deal& deal) {
      std::string key = ordering.SortKey(deal);
      if (!cursor.empty() && key <= cursor) return true;
      if (best.size() == keep && key >= best.top().first) return true;
      best.emplace(std::move(key), std::move(deal));
      if (best.size() > keep) best.pop();
      return true;
    }));
    std::vector<Entry> page;
    while (!best.empty()) {
      page.push_back(std::move(const_cast<Entry&>(best.top())));
      best.pop();
    }
    std::reverse(page.begin(), page.end());
    bool more = page.size() == keep;
    if (more) page.pop_back();
    for (size_t i = 0; i < page.size(); ++i) {
      const bool full = budget.Spend(page[i].second.ByteSizeLong());
      *response.add_deals() = std::move(page[i].second);
      if (full && i + 1 < page.size()) {
        page.resize(i + 1);
        more = true;
        break;
      }
    }
    if (more) {
      response.set_next_page_token(
          page_tokens_.Encode(query, page.back().first));
    }
  }

  if (request.include_total()) {
    int64_t total = 0;
    if (filter.empty() && IsPrivileged(ctx.caller)) {
      // Everything counts: the column counters know.
      for (const common::PipelineView& pipeline : ctx.config->pipelines()) {
        CRM_ASSIGN_OR_RETURN(int64_t count, store_.CountDeals(pipeline.id, ""));
        total += count;
      }
    } else {
      bool unused = false;
      std::unique_ptr<IdStream> all = Candidates(ctx, filter, 0, &unused);
      CRM_RETURN_IF_ERROR(Walk(ctx, filter, *all, [&](v1::Deal&) {
        ++total;
        return true;
      }));
    }
    response.set_total(total);
  }
  return response;
}

absl::StatusOr<std::vector<int64_t>> DealLister::MatchingIds(
    const OperationContext& ctx, const common::CompiledFilter& filter,
    int limit) {
  bool ordered = false;
  std::unique_ptr<IdStream> stream = Candidates(ctx, filter, 0, &ordered);
  std::vector<int64_t> ids;
  CRM_RETURN_IF_ERROR(Walk(ctx, filter, *stream, [&](v1::Deal& deal) {
    ids.push_back(deal.id());
    // In id order the first `limit` are the answer; otherwise collect all
    // and cut after sorting.
    return !ordered || static_cast<int>(ids.size()) < limit;
  }));
  std::sort(ids.begin(), ids.end());
  if (static_cast<int>(ids.size()) > limit) ids.resize(limit);
  return ids;
}

namespace {

absl::StatusOr<const common::PipelineView*> FindPipeline(
    const common::ConfigView& config, int64_t pipeline_id) {
  const common::PipelineView* pipeline = config.FindPipeline(pipeline_id);
  if (pipeline == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("pipeline_id: pipeline ", pipeline_id, " does not exist"));
  }
  return pipeline;
}

std::string ColumnQuery(int64_t pipeline_id, const std::string& stage_id,
                        const common::CompiledFilter& filter) {
  return absl::StrCat("column|", pipeline_id, "|", stage_id, "|",
                      filter.fingerprint());
}

// Newest first: the id-descending walk of one column, readable matching
// deals only, as a kanban shows them.
std::unique_ptr<IdStream> ColumnStream(DealStore& store,
                                       const OperationContext& ctx,
                                       int64_t pipeline_id,
                                       const std::string& stage_id,
                                       int64_t before_id) {
  ReadScope scope = ReadScopeFor(ctx.caller, pipeline_id, stage_id);
  if (scope.none()) return Nothing();
  return store.StreamStage(pipeline_id, stage_id, before_id,
                           /*descending=*/true);
}

}  // namespace

absl::StatusOr<std::shared_ptr<const std::string>> DealLister::Board(
    const OperationContext& ctx, const v1::GetKanbanBoardRequest& request) {
  constexpr size_t kMaxCachedBoards = 256;
  const common::PipelineView* pipeline =
      ctx.config->FindPipeline(request.pipeline_id());
  bool cacheable = pipeline != nullptr && !request.has_filter() &&
                   request.cards_per_column() >= 0 &&
                   request.cards_per_column() <= 100;
  for (size_t i = 0; cacheable && i < pipeline->stages.size(); ++i) {
    cacheable =
        ReadScopeFor(ctx.caller, pipeline->id, pipeline->stages[i].stage_id)
            .all();
  }
  if (!cacheable) {
    CRM_ASSIGN_OR_RETURN(v1::KanbanBoard board, BuildBoard(ctx, request));
    return std::make_shared<const std::string>(board.SerializeAsString());
  }
  const auto key = std::make_tuple(pipeline->id, request.cards_per_column(),
                                   HidesSums(ctx.caller, pipeline->id));
  // Read before building: a commit racing with the build makes the entry
  // stale at once rather than hiding the commit.
  const int64_t write_count = store_.PipelineWriteCount(pipeline->id);
  {
    absl::MutexLock lock(&board_mu_);
    auto it = boards_.find(key);
    if (it != boards_.end() &&
        it->second.config_version == ctx.config->version() &&
        it->second.write_count == write_count) {
      return it->second.board;
    }
  }
  CRM_ASSIGN_OR_RETURN(v1::KanbanBoard built, BuildBoard(ctx, request));
  auto board = std::make_shared<const std::string>(built.SerializeAsString());
  absl::MutexLock lock(&board_mu_);
  if (boards_.size() >= kMaxCachedBoards) boards_.clear();
  boards_[key] = CachedBoard{ctx.config->version(), write_count, board};
  return board;
}

absl::StatusOr<v1::KanbanBoard> DealLister::BuildBoard(
    const OperationContext& ctx, const v1::GetKanbanBoardRequest& request) {
  CRM_ASSIGN_OR_RETURN(const common::PipelineView* pipeline,
                       FindPipeline(*ctx.config, request.pipeline_id()));
  if (request.cards_per_column() < 0 || request.cards_per_column() > 100) {
    return absl::InvalidArgumentError("cards_per_column: must be 0..100");
  }
  const int cards =
      request.cards_per_column() == 0 ? 20 : request.cards_per_column();
  common::CompiledFilter filter;
  if (request.has_filter()) {
    CRM_ASSIGN_OR_RETURN(
        filter, common::CompiledFilter::Compile(request.filter(), *ctx.config));
  }
  const bool hide = HidesSums(ctx.caller, pipeline->id);
  CRM_ASSIGN_OR_RETURN(auto totals, store_.ColumnTotalsOf(pipeline->id));

  v1::KanbanBoard board;
  board.set_pipeline_id(pipeline->id);
  // One budget for the whole board: once it is spent, the remaining columns
  // carry their counts and sums but no more cards, and a token to fetch
  // them with ListKanbanColumn.
  common::ReplyBudget budget;
  for (const common::StageView& stage : pipeline->stages) {
    v1::KanbanColumn* column = board.add_columns();
    column->set_stage_id(stage.stage_id);
    column->set_stage_name(stage.name);
    column->set_sums_hidden(hide);
    const ReadScope scope =
        ReadScopeFor(ctx.caller, pipeline->id, stage.stage_id);
    std::map<std::string, common::DecimalSum> sums;
    int64_t count = 0;
    int64_t last_card = 0;
    bool more = false;
    if (scope.none()) {
      // Nothing readable in this column.
    } else if (scope.all() && filter.empty()) {
      // Everything in the column is readable: the counters are the answer.
      auto it = totals.find(stage.stage_id);
      if (it != totals.end()) {
        count = it->second.count;
        sums = it->second.sums;
      }
      auto stream = ColumnStream(store_, ctx, pipeline->id, stage.stage_id, 0);
      CRM_RETURN_IF_ERROR(Walk(ctx, filter, *stream, [&](v1::Deal& deal) {
        if (column->cards_size() == cards || budget.spent()) {
          more = true;
          return false;
        }
        last_card = deal.id();
        budget.Spend(deal.ByteSizeLong());
        *column->add_cards() = std::move(deal);
        return true;
      }));
    } else {
      // Only some deals are readable (or a filter applies): count them.
      auto stream = ColumnStream(store_, ctx, pipeline->id, stage.stage_id, 0);
      CRM_RETURN_IF_ERROR(Walk(ctx, filter, *stream, [&](v1::Deal& deal) {
        ++count;
        if (!deal.amount().empty()) {
          auto amount = common::Decimal::Parse(deal.amount(), "amount");
          if (amount.ok()) sums[deal.currency()].Add(*amount);
        }
        if (column->cards_size() < cards && !budget.spent()) {
          last_card = deal.id();
          budget.Spend(deal.ByteSizeLong());
          *column->add_cards() = std::move(deal);
        } else {
          more = true;
        }
        return true;
      }));
    }
    column->set_count(count);
    if (!hide) {
      for (const auto& [currency, total] : sums) {
        if (total.IsZero()) continue;
        v1::CurrencySum* sum = column->add_sums();
        sum->set_currency(currency);
        sum->set_amount(AmountSum(total, currency));
      }
    }
    if (more) {
      // No card yet (the budget ran out before this column): from the top.
      column->set_next_page_token(page_tokens_.Encode(
          ColumnQuery(pipeline->id, stage.stage_id, filter),
          common::EncodeInt64(last_card != 0
                                  ? last_card
                                  : std::numeric_limits<int64_t>::max())));
    }
  }
  return board;
}

absl::StatusOr<v1::KanbanColumnPage> DealLister::Column(
    const OperationContext& ctx, const v1::ListKanbanColumnRequest& request) {
  CRM_ASSIGN_OR_RETURN(const common::PipelineView* pipeline,
                       FindPipeline(*ctx.config, request.pipeline_id()));
  const common::StageView* stage =
      ctx.config->ResolveStage(pipeline->id, request.stage_id());
  if (stage == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("stage_id: \"", request.stage_id(),
                     "\" is not a stage of pipeline ", pipeline->id));
  }
  CRM_ASSIGN_OR_RETURN(int page_size,
                       common::ResolvePageSize(request.page_size(), 20, 100));
  common::CompiledFilter filter;
  if (request.has_filter()) {
    CRM_ASSIGN_OR_RETURN(
        filter, common::CompiledFilter::Compile(request.filter(), *ctx.config));
  }
  const std::string query = ColumnQuery(pipeline->id, stage->stage_id, filter);
  int64_t before_id = 0;
  if (!request.page_token().empty()) {
    CRM_ASSIGN_OR_RETURN(std::string cursor,
                         page_tokens_.Decode(request.page_token(), query));
    common::KeyReader reader(cursor);
    if (!reader.ReadInt64(&before_id) || !reader.done() || before_id <= 0) {
      return absl::InvalidArgumentError("page_token: malformed");
    }
  }
  v1::KanbanColumnPage page;
  auto stream =
      ColumnStream(store_, ctx, pipeline->id, stage->stage_id, before_id);
  common::ReplyBudget budget;
  CRM_RETURN_IF_ERROR(Walk(ctx, filter, *stream, [&](v1::Deal& deal) {
    if (page.cards_size() == page_size || budget.spent()) {
      page.set_next_page_token(page_tokens_.Encode(
          query, common::EncodeInt64(page.cards(page.cards_size() - 1).id())));
      return false;
    }
    budget.Spend(deal.ByteSizeLong());
    *page.add_cards() = std::move(deal);
    return true;
  }));
  return page;
}

}  // namespace crm::deals
