#include "services/deals/api/deal_operations.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/message_differencer.h"
#include "google/protobuf/util/time_util.h"

#include "common/crypto/digest.h"
#include "common/money/currency.h"
#include "common/money/decimal.h"
#include "common/money/product_rows.h"
#include "common/status/status_macros.h"
#include "common/text/etag.h"
#include "common/text/request_id.h"
#include "common/text/text.h"
#include "common/time/proto_time.h"
#include "services/deals/domain/deal_rules.h"

namespace crm::deals {
namespace {

namespace pv1 = ::crm::pipelines::v1;
using google::protobuf::FieldDescriptor;
using google::protobuf::util::TimeUtil;

constexpr int kMaxRaceRetries = 5;
constexpr int kMaxProductRows = 500;
constexpr int kMaxProductNameChars = 255;

using ::crm::common::FromTimestamp;
using ::crm::common::ToTimestamp;

// Fields UpdateDeal may change, by API name.
const std::vector<std::string>& UpdatableFields() {
  static const auto* fields = new std::vector<std::string>{
      "title",        "amount",      "currency",     "manual_amount",
      "tax_amount",   "probability", "assignee_id",  "company_id",
      "contact_ids",  "source",      "begin_date",   "close_date",
      "opened",       "comments",    "observer_ids", "lead_id",
      "custom_fields"};
  return *fields;
}

// Fields that only record who changed what and when: a change limited to
// them is no change.
bool IsBookkeeping(const std::string& name) {
  return name == "updated_by" || name == "update_time" || name == "etag" ||
         name == "moved_by" || name == "move_time" || name == "created_by" ||
         name == "create_time";
}

// True when the field has the same value in both deals. Scalars and
// repeated scalars are compared directly; only messages (times, product
// rows) and the custom field map take the slower generic comparison. Called
// for every field on every change, so it must be cheap.
bool SameField(const FieldDescriptor* field, const v1::Deal& a,
               const v1::Deal& b) {
  const auto* r = v1::Deal::GetReflection();
  if (field->is_map() ||
      field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
    google::protobuf::util::MessageDifferencer differencer;
    return differencer.CompareWithFields(a, b, {field}, {field});
  }
  if (field->is_repeated()) {
    const int size = r->FieldSize(a, field);
    if (size != r->FieldSize(b, field)) return false;
    for (int i = 0; i < size; ++i) {
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_INT64 &&
          r->GetRepeatedInt64(a, field, i) != r->GetRepeatedInt64(b, field, i))
        return false;
    }
    return true;
  }
  if (field->has_presence() && r->HasField(a, field) != r->HasField(b, field))
    return false;
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      return r->GetStringReference(a, field, nullptr) ==
             r->GetStringReference(b, field, nullptr);
    case FieldDescriptor::CPPTYPE_INT64:
      return r->GetInt64(a, field) == r->GetInt64(b, field);
    case FieldDescriptor::CPPTYPE_INT32:
      return r->GetInt32(a, field) == r->GetInt32(b, field);
    case FieldDescriptor::CPPTYPE_BOOL:
      return r->GetBool(a, field) == r->GetBool(b, field);
    case FieldDescriptor::CPPTYPE_ENUM:
      return r->GetEnumValue(a, field) == r->GetEnumValue(b, field);
    default: {
      google::protobuf::util::MessageDifferencer differencer;
      return differencer.CompareWithFields(a, b, {field}, {field});
    }
  }
}

// The fields ChangedFields looks at: every field but the bookkeeping ones.
const std::vector<const FieldDescriptor*>& ComparedFields() {
  static const auto* fields = [] {
    auto* list = new std::vector<const FieldDescriptor*>();
    const auto* descriptor = v1::Deal::descriptor();
    for (int i = 0; i < descriptor->field_count(); ++i) {
      if (!IsBookkeeping(descriptor->field(i)->name()))
        list->push_back(descriptor->field(i));
    }
    return list;
  }();
  return *fields;
}

// The API names of the fields that differ, bookkeeping excluded.
std::vector<std::string> ChangedFields(const v1::Deal& before,
                                       const v1::Deal& after) {
  std::vector<std::string> changed;
  for (const FieldDescriptor* field : ComparedFields()) {
    if (!SameField(field, before, after)) changed.push_back(field->name());
  }
  return changed;
}

// Copies one field (by reflection) from `from` to `to`; presence follows
// `from` for fields that have it, repeated fields are replaced.
void CopyField(const FieldDescriptor* field, const v1::Deal& from,
               v1::Deal* to) {
  const auto* reflection = v1::Deal::GetReflection();
  reflection->ClearField(to, field);
  if (field->is_repeated()) {
    for (int i = 0; i < reflection->FieldSize(from, field); ++i) {
      switch (field->cpp_type()) {
        case FieldDescriptor::CPPTYPE_INT64:
          reflection->AddInt64(to, field,
                               reflection->GetRepeatedInt64(from, field, i));
          break;
        case FieldDescriptor::CPPTYPE_MESSAGE:
          reflection->AddMessage(to, field)->CopyFrom(
              reflection->GetRepeatedMessage(from, field, i));
          break;
        default:
          break;  // No other repeated type is updatable.
      }
    }
    return;
  }
  if (field->has_presence() && !reflection->HasField(from, field)) return;
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      reflection->SetString(to, field, reflection->GetString(from, field));
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      reflection->SetInt64(to, field, reflection->GetInt64(from, field));
      break;
    case FieldDescriptor::CPPTYPE_INT32:
      reflection->SetInt32(to, field, reflection->GetInt32(from, field));
      break;
    case FieldDescriptor::CPPTYPE_BOOL:
      reflection->SetBool(to, field, reflection->GetBool(from, field));
      break;
    default:
      break;  // No other singular type is updatable.
  }
}

absl::Status ApplyMask(const v1::Deal& input,
                       const google::protobuf::FieldMask& mask,
                       v1::Deal* deal) {
  if (mask.paths_size() == 0) {
    return absl::InvalidArgumentError(
        "update_mask: name at least one field to update");
  }
  const auto& updatable = UpdatableFields();
  for (int i = 0; i < mask.paths_size(); ++i) {
    const std::string& path = mask.paths(i);
    const std::string where = absl::StrCat("update_mask.paths[", i, "]");
    if (absl::StartsWith(path, "custom_fields.")) {
      const std::string code = path.substr(strlen("custom_fields."));
      auto it = input.custom_fields().find(code);
      if (it == input.custom_fields().end()) {
        deal->mutable_custom_fields()->erase(code);
      } else {
        (*deal->mutable_custom_fields())[code] = it->second;
      }
      continue;
    }
    if (path == "stage_id" || path == "pipeline_id" || path == "product_rows") {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": ", path,
          " changes only through MoveDealStage, MoveDealToPipeline or "
          "SetProductRows"));
    }
    if (std::find(updatable.begin(), updatable.end(), path) ==
        updatable.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": \"", path, "\" cannot be updated"));
    }
    CopyField(v1::Deal::descriptor()->FindFieldByName(path), input, deal);
  }
  if (!deal->has_opened()) deal->set_opened(true);  // unset means the default
  return absl::OkStatus();
}

bool MaskNames(const google::protobuf::FieldMask& mask,
               const std::string& name) {
  for (const std::string& path : mask.paths()) {
    if (path == name) return true;
  }
  return false;
}

// Checks the custom values the mask sets (after ApplyMask put them into
// `after`), not the ones the deal kept: a definition changed or deleted
// since a value was stored must not block an edit of something else. A
// value of a field deals does not know is refused when the request sets it
// (custom_fields.UF_CRM_X with a value, or a new value in a whole
// custom_fields map); one a whole map only echoes back as stored is left to
// Mutate, which drops it.
absl::Status ValidateMaskedCustomFields(const v1::Deal& before,
                                        const v1::Deal& after,
                                        const google::protobuf::FieldMask& mask,
                                        const common::ConfigView& config) {
  for (const std::string& path : mask.paths()) {
    if (path == "custom_fields") {
      for (const auto& [code, values] : after.custom_fields()) {
        if (config.FindField(code) == nullptr) {
          auto stored = before.custom_fields().find(code);
          if (stored != before.custom_fields().end() &&
              google::protobuf::util::MessageDifferencer::Equals(stored->second,
                                                                 values)) {
            continue;
          }
        }
        CRM_RETURN_IF_ERROR(ValidateCustomField(code, values, config));
      }
    } else if (absl::StartsWith(path, "custom_fields.")) {
      const std::string code = path.substr(strlen("custom_fields."));
      auto it = after.custom_fields().find(code);
      if (it != after.custom_fields().end()) {
        CRM_RETURN_IF_ERROR(ValidateCustomField(code, it->second, config));
      }
    }
  }
  return absl::OkStatus();
}

common::ProductRowInput::DiscountType ToDiscountType(
    v1::ProductRow::DiscountType type) {
  switch (type) {
    case v1::ProductRow::DISCOUNT_TYPE_PERCENT:
      return common::ProductRowInput::DiscountType::kPercent;
    case v1::ProductRow::DISCOUNT_TYPE_ABSOLUTE:
      return common::ProductRowInput::DiscountType::kAbsolute;
    default:
      return common::ProductRowInput::DiscountType::kNone;
  }
}

absl::StatusOr<common::Decimal> ParseOr(const std::string& text,
                                        const std::string& field,
                                        const char* fallback) {
  return common::Decimal::Parse(text.empty() ? fallback : text, field);
}

// Validates the rows, fills their output-only totals (in the deal currency)
// and, unless the amount is manual, sets the deal amount and tax from them.
absl::Status PriceRows(v1::Deal* deal) {
  if (deal->product_rows_size() > kMaxProductRows) {
    return absl::InvalidArgumentError(
        absl::StrCat("rows: at most ", kMaxProductRows, " product rows"));
  }
  if (deal->product_rows_size() > 0 && deal->currency().empty()) {
    return absl::FailedPreconditionError(
        "currency: the deal needs a currency before it gets product rows");
  }
  int minor = 2;
  if (!deal->currency().empty()) {
    CRM_ASSIGN_OR_RETURN(minor,
                         common::MinorUnits(deal->currency(), "deal.currency"));
  }
  std::vector<common::ProductRowTotals> totals;
  for (int i = 0; i < deal->product_rows_size(); ++i) {
    v1::ProductRow* row = deal->mutable_product_rows(i);
    const std::string where = absl::StrCat("rows[", i, "]");
    row->set_index(i);
    if (row->product_id() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".product_id: must be >= 0"));
    }
    if (row->product_id() == 0 && row->product_name().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".product_name: required without a product_id"));
    }
    CRM_RETURN_IF_ERROR(common::ValidateText(
        absl::StrCat(where, ".product_name"), row->product_name(),
        {kMaxProductNameChars, true, false}));
    CRM_RETURN_IF_ERROR(common::ValidateText(absl::StrCat(where, ".unit"),
                                             row->unit(), {32, true, false}));
    common::ProductRowInput in;
    CRM_ASSIGN_OR_RETURN(
        in.price, ParseOr(row->price(), absl::StrCat(where, ".price"), "0"));
    CRM_ASSIGN_OR_RETURN(
        in.quantity,
        ParseOr(row->quantity(), absl::StrCat(where, ".quantity"), "1"));
    in.discount_type = ToDiscountType(row->discount_type());
    CRM_ASSIGN_OR_RETURN(
        in.discount,
        ParseOr(row->discount(), absl::StrCat(where, ".discount"), "0"));
    CRM_ASSIGN_OR_RETURN(
        in.tax_rate,
        ParseOr(row->tax_rate(), absl::StrCat(where, ".tax_rate"), "0"));
    in.tax_included = row->tax_included();
    CRM_ASSIGN_OR_RETURN(common::ProductRowTotals t,
                         common::ComputeRow(in, minor, where));
    row->set_price(in.price.ToString(minor));
    row->set_quantity(in.quantity.ToString());
    row->set_discount(in.discount.ToString());
    row->set_tax_rate(in.tax_rate.ToString());
    row->set_net_total(t.net.ToString(minor));
    row->set_tax_total(t.tax.ToString(minor));
    row->set_total(t.total.ToString(minor));
    totals.push_back(t);
  }
  if (!deal->manual_amount() && deal->product_rows_size() > 0) {
    CRM_ASSIGN_OR_RETURN(common::ProductRowTotals sum,
                         common::SumRows(totals, "rows"));
    deal->set_amount(sum.total.ToString(minor));
    deal->set_tax_amount(sum.tax.ToString(minor));
  }
  return absl::OkStatus();
}

absl::Status CheckEtag(const v1::Deal& stored, const std::string& etag) {
  return common::CheckEtag(etag, stored.etag(),
                           absl::StrCat("deal ", stored.id()));
}

}  // namespace

absl::Status ValidateDealId(int64_t deal_id, const char* field) {
  if (deal_id > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": must be a positive deal id"));
}

// Request ids are remembered per caller: one caller can neither replay nor
// block another's (automation's run ids are visible in its run log).
static std::string RequestKey(const OperationContext& ctx) {
  if (ctx.request_id.empty()) return "";
  return ctx.actor_service.empty()
             ? absl::StrCat("u", ctx.actor_id, "|", ctx.request_id)
             : absl::StrCat("s:", ctx.actor_service, "|", ctx.request_id);
}

namespace {

// SHA-256 of who asks, how, and the payload. `method` is empty for creates:
// their fingerprints were stored in that form before other calls had any.
std::string Fingerprint(const OperationContext& ctx, const std::string& method,
                        const google::protobuf::Message& payload) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    payload.SerializeToCodedStream(&coded);
  }
  const std::string data = absl::StrCat(
      ctx.actor_id, "|", ctx.actor_service, "|", static_cast<int>(ctx.channel),
      "|", method.empty() ? "" : absl::StrCat(method, "|"), bytes);
  return std::string(common::AsBytes(common::Sha256(data)));
}

}  // namespace

std::string RequestFingerprint(const OperationContext& ctx,
                               const google::protobuf::Message& request) {
  return Fingerprint(ctx, request.GetDescriptor()->full_name(), request);
}

std::string CreateFingerprint(const OperationContext& ctx,
                              const v1::Deal& input) {
  return Fingerprint(ctx, "", input);
}

absl::Status RequestIdReused() {
  return absl::AlreadyExistsError(
      "request_id: used already for a different request");
}

DealOperations::DealOperations(DealStore& store, DealOperationsOptions options)
    : store_(store), options_(std::move(options)) {}

absl::Time DealOperations::Now() const {
  return options_.clock ? options_.clock() : absl::Now();
}

absl::StatusOr<storage::DealRecord> DealOperations::LoadReadable(
    const OperationContext& ctx, int64_t deal_id) {
  CRM_RETURN_IF_ERROR(ValidateDealId(deal_id));
  CRM_ASSIGN_OR_RETURN(std::optional<storage::DealRecord> record,
                       store_.Get(deal_id));
  if (!record.has_value()) {
    return absl::NotFoundError(absl::StrCat("deal ", deal_id, " not found"));
  }
  CRM_RETURN_IF_ERROR(CheckRead(ctx.caller, record->deal()));
  return *std::move(record);
}

v1::DealEvent DealOperations::NewEvent(const OperationContext& ctx,
                                       v1::DealEventType type,
                                       absl::Time now) const {
  v1::DealEvent event;
  event.set_type(type);
  event.set_actor_id(ctx.actor_id);
  event.set_actor_service(ctx.actor_service);
  event.set_channel(ctx.channel);
  *event.mutable_occur_time() = ToTimestamp(now);
  event.set_request_id(ctx.request_id);
  return event;
}

v1::DealEvent DealOperations::MoveEvent(const OperationContext& ctx,
                                        v1::DealEventType type,
                                        const v1::Deal& before,
                                        const v1::Deal& after,
                                        absl::Time now) const {
  v1::DealEvent event = NewEvent(ctx, type, now);
  event.set_from_pipeline_id(before.pipeline_id());
  event.set_from_stage_id(before.stage_id());
  event.set_from_semantics(before.stage_semantics());
  event.set_to_pipeline_id(after.pipeline_id());
  event.set_to_stage_id(after.stage_id());
  event.set_to_semantics(after.stage_semantics());
  for (auto& name : ChangedFields(before, after))
    event.add_changed_fields(name);
  return event;
}

DealWrite DealOperations::MoveWrite(const OperationContext& ctx,
                                    v1::StageHistoryEntry::Kind kind,
                                    v1::DealEventType type,
                                    const v1::Deal& before, v1::Deal after,
                                    absl::Time now) const {
  after.set_moved_by(ctx.actor_id);
  *after.mutable_move_time() = ToTimestamp(now);
  Stamp(ctx, &after, now);
  DealWrite write;
  write.history.push_back(NewHistory(ctx, kind, before, after, now));
  write.event = MoveEvent(ctx, type, before, after, now);
  write.after = std::move(after);
  return write;
}

v1::StageHistoryEntry DealOperations::NewHistory(
    const OperationContext& ctx, v1::StageHistoryEntry::Kind kind,
    const v1::Deal& from, const v1::Deal& to, absl::Time now) const {
  v1::StageHistoryEntry entry;
  entry.set_deal_id(to.id());
  entry.set_kind(kind);
  if (kind != v1::StageHistoryEntry::KIND_CREATED) {
    entry.set_from_pipeline_id(from.pipeline_id());
    entry.set_from_stage_id(from.stage_id());
  }
  entry.set_to_pipeline_id(to.pipeline_id());
  entry.set_to_stage_id(to.stage_id());
  entry.set_to_semantics(to.stage_semantics());
  entry.set_actor_id(ctx.actor_id);
  *entry.mutable_time() = ToTimestamp(now);
  entry.set_channel(ctx.channel);
  return entry;
}

void DealOperations::Stamp(const OperationContext& ctx, v1::Deal* deal,
                           absl::Time now) const {
  deal->set_updated_by(ctx.actor_id);
  *deal->mutable_update_time() = ToTimestamp(now);
}

absl::StatusOr<CommitResult> DealOperations::Mutate(
    const OperationContext& ctx, int64_t deal_id, const std::string& etag,
    const std::string& fingerprint, bool deletes,
    const std::function<absl::StatusOr<std::optional<DealWrite>>(
        const storage::DealRecord&)>& change) {
  CRM_RETURN_IF_ERROR(common::ValidateRequestId(ctx.request_id));
  // A request id names one request: a retry after a commit (a lost answer,
  // a redelivered automation run) answers with the deal as it is now
  // instead of applying the change a second time; the id used for another
  // payload is refused as CreateDeal refuses it.
  const std::string request_key = RequestKey(ctx);
  // What changes recorded before their payload was fingerprinted hold.
  const std::string legacy_fingerprint = absl::StrCat("change:", deal_id);
  bool rechecked = false;
  for (int attempt = 0;; ++attempt) {
    if (!request_key.empty()) {
      CRM_ASSIGN_OR_RETURN(std::optional<storage::RequestRecord> earlier,
                           store_.FindRequest(request_key));
      if (earlier.has_value()) {
        if (earlier->fingerprint() != fingerprint &&
            earlier->fingerprint() != legacy_fingerprint) {
          return RequestIdReused();
        }
        CommitResult replayed;
        if (deletes) {
          CRM_ASSIGN_OR_RETURN(std::optional<storage::DealRecord> current,
                               store_.Get(deal_id));
          if (!current.has_value()) return replayed;  // deleted, as asked
        }
        CRM_ASSIGN_OR_RETURN(storage::DealRecord current,
                             LoadReadable(ctx, deal_id));
        replayed.revision = current.revision();
        replayed.deal = std::move(*current.mutable_deal());
        return replayed;
      }
    }
    CRM_ASSIGN_OR_RETURN(storage::DealRecord record,
                         LoadReadable(ctx, deal_id));
    CRM_RETURN_IF_ERROR(CheckEtag(record.deal(), etag));
    CRM_ASSIGN_OR_RETURN(std::optional<DealWrite> write, change(record));
    if (!write.has_value()) {
      if (!request_key.empty()) {
        // Remembered even though nothing changed: a retry after the deal
        // changed must not apply the request then.
        storage::RequestRecord used;
        used.set_fingerprint(fingerprint);
        used.set_deal_id(deal_id);
        absl::Status remembered = store_.RememberRequest(request_key, used);
        if (absl::IsAlreadyExists(remembered) && !rechecked) {
          rechecked = true;  // a concurrent retry was first: answer as it
          continue;
        }
        CRM_RETURN_IF_ERROR(remembered);
      }
      CommitResult unchanged;
      unchanged.revision = record.revision();
      unchanged.deal = record.deal();
      return unchanged;
    }
    // Values of custom fields deleted since they were stored go with the
    // first write that keeps the deal: they are never validated, and must
    // not come back should a field of that code be created again. Not when
    // this call's configuration is older than one the deal was written
    // with, which may define fields this one does not know yet.
    if (write->after.has_value() &&
        ctx.config->version() >= record.config_version() &&
        DropDeletedCustomFields(&*write->after, *ctx.config) &&
        write->event.has_value()) {
      const auto& changed = write->event->changed_fields();
      if (std::find(changed.begin(), changed.end(), "custom_fields") ==
          changed.end()) {
        write->event->add_changed_fields("custom_fields");
      }
    }
    write->before = record;
    write->config_version = ctx.config->version();
    if (write->event.has_value()) write->event->set_request_id(ctx.request_id);
    write->request_id = request_key;
    write->request_fingerprint = fingerprint;
    absl::StatusOr<CommitResult> result = store_.Commit(*std::move(write));
    if (result.ok()) {
      if (result->event_sequence > 0 && options_.on_event) options_.on_event();
      return result;
    }
    // A concurrent retry with the same request id committed first.
    if (absl::IsAlreadyExists(result.status()) && !rechecked) {
      rechecked = true;
      continue;
    }
    // A concurrent write won. With an etag the caller wanted that exact
    // version; without one, redo the change on the fresh state.
    if (!absl::IsAborted(result.status()) || !etag.empty() ||
        attempt + 1 >= kMaxRaceRetries) {
      return result.status();
    }
  }
}

absl::StatusOr<v1::Deal> DealOperations::Create(const OperationContext& ctx,
                                                const v1::Deal& input) {
  CRM_RETURN_IF_ERROR(common::ValidateRequestId(ctx.request_id));
  const std::string fingerprint =
      ctx.request_id.empty() ? "" : CreateFingerprint(ctx, input);
  const std::string request_key = RequestKey(ctx);
  for (int attempt = 0;; ++attempt) {
    if (!request_key.empty()) {
      CRM_ASSIGN_OR_RETURN(std::optional<storage::RequestRecord> earlier,
                           store_.FindRequest(request_key));
      if (earlier.has_value()) {
        if (earlier->fingerprint() != fingerprint) return RequestIdReused();
        CRM_ASSIGN_OR_RETURN(std::optional<storage::DealRecord> record,
                             store_.Get(earlier->deal_id()));
        if (!record.has_value()) {
          return absl::NotFoundError(
              absl::StrCat("deal ", earlier->deal_id(),
                           " created by this request_id was deleted"));
        }
        CRM_RETURN_IF_ERROR(CheckRead(ctx.caller, record->deal()));
        return record->deal();
      }
    }
    const absl::Time now = Now();
    NewDealContext context;
    context.deal_id = store_.AllocateDealId();
    context.creator_id = ctx.actor_id;
    context.now = now;
    context.zone = options_.zone;
    CRM_ASSIGN_OR_RETURN(v1::Deal deal,
                         PrepareNewDeal(input, *ctx.config, context));
    CRM_RETURN_IF_ERROR(CheckAdd(ctx.caller, deal));
    DealWrite write;
    write.history.push_back(
        NewHistory(ctx, v1::StageHistoryEntry::KIND_CREATED, deal, deal, now));
    v1::DealEvent event = NewEvent(ctx, v1::DEAL_EVENT_TYPE_CREATED, now);
    event.set_to_pipeline_id(deal.pipeline_id());
    event.set_to_stage_id(deal.stage_id());
    event.set_to_semantics(deal.stage_semantics());
    event.set_to_assignee_id(deal.assignee_id());
    write.event = std::move(event);
    write.after = std::move(deal);
    write.request_id = request_key;
    write.request_fingerprint = fingerprint;
    write.config_version = ctx.config->version();
    absl::StatusOr<CommitResult> result = store_.Commit(std::move(write));
    if (result.ok()) {
      if (options_.on_event) options_.on_event();
      return *std::move(result->deal);
    }
    // A concurrent retry with the same request id committed first: answer
    // with what it created.
    if (absl::IsAlreadyExists(result.status()) && attempt == 0) continue;
    return result.status();
  }
}

absl::StatusOr<v1::Deal> DealOperations::Get(const OperationContext& ctx,
                                             int64_t deal_id) {
  CRM_ASSIGN_OR_RETURN(storage::DealRecord record, LoadReadable(ctx, deal_id));
  return std::move(*record.mutable_deal());
}

absl::StatusOr<v1::Deal> DealOperations::Update(
    const OperationContext& ctx, const v1::Deal& input,
    const google::protobuf::FieldMask& mask, const std::string& etag) {
  CRM_RETURN_IF_ERROR(ValidateDealId(input.id(), "deal.id"));
  std::string fingerprint;
  if (!ctx.request_id.empty()) {
    v1::UpdateDealRequest request;
    *request.mutable_deal() = input;
    *request.mutable_update_mask() = mask;
    request.set_etag(etag);
    fingerprint = RequestFingerprint(ctx, request);
  }
  CRM_ASSIGN_OR_RETURN(
      CommitResult result,
      Mutate(ctx, input.id(), etag, fingerprint, /*deletes=*/false,
             [&](const storage::DealRecord& record)
                 -> absl::StatusOr<std::optional<DealWrite>> {
               const v1::Deal& before = record.deal();
               CRM_RETURN_IF_ERROR(
                   CheckAction(ctx.caller, Action::kWrite, before));
               v1::Deal after = before;
               CRM_RETURN_IF_ERROR(ApplyMask(input, mask, &after));
               const bool rows_price =
                   !after.manual_amount() && after.product_rows_size() > 0;
               if (rows_price && (MaskNames(mask, "amount") ||
                                  MaskNames(mask, "tax_amount"))) {
                 return absl::InvalidArgumentError(
                     "deal.amount: follows the product rows unless "
                     "manual_amount is true");
               }
               CRM_RETURN_IF_ERROR(ValidateDealFields(&after));
               CRM_RETURN_IF_ERROR(ValidateMaskedCustomFields(
                   before, after, mask, *ctx.config));
               // Switching back to computed amounts, or changing the
               // currency, re-prices the rows.
               if (rows_price) CRM_RETURN_IF_ERROR(PriceRows(&after));
               std::vector<std::string> changed = ChangedFields(before, after);
               if (changed.empty()) return std::optional<DealWrite>();
               const absl::Time now = Now();
               Stamp(ctx, &after, now);
               const bool reassigned =
                   before.assignee_id() != after.assignee_id();
               v1::DealEvent event =
                   NewEvent(ctx,
                            reassigned ? v1::DEAL_EVENT_TYPE_ASSIGNEE_CHANGED
                                       : v1::DEAL_EVENT_TYPE_UPDATED,
                            now);
               for (auto& name : changed) event.add_changed_fields(name);
               event.set_from_assignee_id(before.assignee_id());
               event.set_to_assignee_id(after.assignee_id());
               DealWrite write;
               write.after = std::move(after);
               write.event = std::move(event);
               return std::optional<DealWrite>(std::move(write));
             }));
  return *std::move(result.deal);
}

absl::Status DealOperations::Delete(const OperationContext& ctx,
                                    int64_t deal_id, const std::string& etag) {
  std::string fingerprint;
  if (!ctx.request_id.empty()) {
    v1::DeleteDealRequest request;
    request.set_deal_id(deal_id);
    request.set_etag(etag);
    fingerprint = RequestFingerprint(ctx, request);
  }
  return Mutate(ctx, deal_id, etag, fingerprint, /*deletes=*/true,
                [&](const storage::DealRecord& record)
                    -> absl::StatusOr<std::optional<DealWrite>> {
                  CRM_RETURN_IF_ERROR(
                      CheckAction(ctx.caller, Action::kDelete, record.deal()));
                  DealWrite write;
                  v1::DealEvent event =
                      NewEvent(ctx, v1::DEAL_EVENT_TYPE_DELETED, Now());
                  event.set_from_pipeline_id(record.deal().pipeline_id());
                  event.set_from_stage_id(record.deal().stage_id());
                  event.set_from_semantics(record.deal().stage_semantics());
                  write.event = std::move(event);
                  return std::optional<DealWrite>(std::move(write));
                })
      .status();
}

namespace {

v1::StageHistoryEntry::Kind MoveKind(const v1::Deal& before,
                                     const v1::Deal& after) {
  if (after.closed() && !before.closed())
    return v1::StageHistoryEntry::KIND_CLOSED;
  if (!after.closed() && before.closed())
    return v1::StageHistoryEntry::KIND_REOPENED;
  return v1::StageHistoryEntry::KIND_MOVED;
}

}  // namespace

absl::StatusOr<v1::Deal> DealOperations::MoveStage(const OperationContext& ctx,
                                                   int64_t deal_id,
                                                   const std::string& stage_id,
                                                   const std::string& etag,
                                                   bool exact_stage_id) {
  if (stage_id.empty()) return absl::InvalidArgumentError("stage_id: required");
  std::string fingerprint;
  if (!ctx.request_id.empty()) {
    v1::MoveDealStageRequest request;
    request.set_deal_id(deal_id);
    request.set_stage_id(stage_id);
    request.set_etag(etag);
    fingerprint = RequestFingerprint(ctx, request);
  }
  CRM_ASSIGN_OR_RETURN(
      CommitResult result,
      Mutate(ctx, deal_id, etag, fingerprint, /*deletes=*/false,
             [&](const storage::DealRecord& record)
                 -> absl::StatusOr<std::optional<DealWrite>> {
               const v1::Deal& before = record.deal();
               const common::StageView* stage =
                   exact_stage_id
                       ? ctx.config->FindStage(before.pipeline_id(), stage_id)
                       : ctx.config->ResolveStage(before.pipeline_id(),
                                                  stage_id);
               if (stage == nullptr) {
                 // Read access is established: naming the pipeline leaks
                 // nothing.
                 CRM_RETURN_IF_ERROR(
                     CheckAction(ctx.caller, Action::kWrite, before));
                 return absl::InvalidArgumentError(absl::StrCat(
                     "stage_id: \"", stage_id, "\" is not a stage of pipeline ",
                     before.pipeline_id()));
               }
               CRM_RETURN_IF_ERROR(
                   CheckTransition(ctx.caller, before, stage->stage_id));
               if (stage->stage_id == before.stage_id())
                 return std::optional<DealWrite>();
               CRM_RETURN_IF_ERROR(CheckMayEnter(*ctx.config, *stage,
                                                 /*entering_pipeline=*/false,
                                                 "stage_id"));
               const absl::Time now = Now();
               v1::Deal after = before;
               ApplyStage(&after, *stage, now, options_.zone);
               const auto kind = MoveKind(before, after);
               return std::optional<DealWrite>(
                   MoveWrite(ctx, kind, v1::DEAL_EVENT_TYPE_STAGE_CHANGED,
                             before, std::move(after), now));
             }));
  return *std::move(result.deal);
}

absl::StatusOr<v1::Deal> DealOperations::MoveToPipeline(
    const OperationContext& ctx, int64_t deal_id, int64_t pipeline_id,
    const std::string& stage_id, const std::string& etag) {
  const common::PipelineView* pipeline = ctx.config->FindPipeline(pipeline_id);
  if (pipeline == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("pipeline_id: pipeline ", pipeline_id, " does not exist"));
  }
  std::string fingerprint;
  if (!ctx.request_id.empty()) {
    v1::MoveDealToPipelineRequest request;
    request.set_deal_id(deal_id);
    request.set_pipeline_id(pipeline_id);
    request.set_stage_id(stage_id);
    request.set_etag(etag);
    fingerprint = RequestFingerprint(ctx, request);
  }
  CRM_ASSIGN_OR_RETURN(
      CommitResult result,
      Mutate(ctx, deal_id, etag, fingerprint, /*deletes=*/false,
             [&](const storage::DealRecord& record)
                 -> absl::StatusOr<std::optional<DealWrite>> {
               const v1::Deal& before = record.deal();
               CRM_RETURN_IF_ERROR(
                   CheckAction(ctx.caller, Action::kWrite, before));
               const common::StageView* stage = nullptr;
               if (!stage_id.empty()) {
                 stage = ctx.config->ResolveStage(pipeline_id, stage_id);
                 if (stage == nullptr) {
                   return absl::InvalidArgumentError(absl::StrCat(
                       "stage_id: \"", stage_id,
                       "\" is not a stage of pipeline ", pipeline_id));
                 }
               } else {
                 stage = ctx.config->FirstStageWithSemantics(
                     pipeline_id, before.stage_semantics());
                 if (stage == nullptr)
                   stage = ctx.config->FirstStage(pipeline_id);
                 if (stage == nullptr) {
                   return absl::FailedPreconditionError(
                       absl::StrCat("pipeline_id: pipeline ", pipeline_id,
                                    " has no stages"));
                 }
               }
               if (pipeline_id == before.pipeline_id()) {
                 if (stage->stage_id == before.stage_id())
                   return std::optional<DealWrite>();
                 return absl::InvalidArgumentError(absl::StrCat(
                     "pipeline_id: deal ", deal_id, " is in pipeline ",
                     pipeline_id, " already; use MoveDealStage"));
               }
               CRM_RETURN_IF_ERROR(CheckMayEnter(
                   *ctx.config, *stage, /*entering_pipeline=*/true,
                   stage_id.empty() ? "pipeline_id" : "stage_id"));
               const absl::Time now = Now();
               v1::Deal after = before;
               after.set_pipeline_id(pipeline_id);
               ApplyStage(&after, *stage, now, options_.zone);
               // The deal arrives in the other pipeline as if added there.
               CRM_RETURN_IF_ERROR(CheckAdd(ctx.caller, after));
               return std::optional<DealWrite>(
                   MoveWrite(ctx, v1::StageHistoryEntry::KIND_PIPELINE_CHANGED,
                             v1::DEAL_EVENT_TYPE_PIPELINE_CHANGED, before,
                             std::move(after), now));
             }));
  return *std::move(result.deal);
}

absl::StatusOr<v1::Deal> DealOperations::SetProductRows(
    const OperationContext& ctx, int64_t deal_id,
    const google::protobuf::RepeatedPtrField<v1::ProductRow>& rows,
    const std::string& etag) {
  std::string fingerprint;
  if (!ctx.request_id.empty()) {
    v1::SetProductRowsRequest request;
    request.set_deal_id(deal_id);
    *request.mutable_rows() = rows;
    request.set_etag(etag);
    fingerprint = RequestFingerprint(ctx, request);
  }
  CRM_ASSIGN_OR_RETURN(
      CommitResult result,
      Mutate(ctx, deal_id, etag, fingerprint, /*deletes=*/false,
             [&](const storage::DealRecord& record)
                 -> absl::StatusOr<std::optional<DealWrite>> {
               const v1::Deal& before = record.deal();
               CRM_RETURN_IF_ERROR(
                   CheckAction(ctx.caller, Action::kWrite, before));
               v1::Deal after = before;
               *after.mutable_product_rows() = rows;
               for (auto& row : *after.mutable_product_rows()) {
                 row.clear_net_total();
                 row.clear_tax_total();
                 row.clear_total();
               }
               CRM_RETURN_IF_ERROR(PriceRows(&after));
               if (after.product_rows_size() == 0 && !after.manual_amount() &&
                   before.product_rows_size() > 0) {
                 // The rows are gone: the amount they made goes too.
                 after.set_amount("0");
                 after.clear_tax_amount();
                 CRM_RETURN_IF_ERROR(ValidateDealFields(&after));
               }
               std::vector<std::string> changed = ChangedFields(before, after);
               if (changed.empty()) return std::optional<DealWrite>();
               const absl::Time now = Now();
               Stamp(ctx, &after, now);
               v1::DealEvent event =
                   NewEvent(ctx, v1::DEAL_EVENT_TYPE_UPDATED, now);
               for (auto& name : changed) event.add_changed_fields(name);
               DealWrite write;
               write.after = std::move(after);
               write.event = std::move(event);
               return std::optional<DealWrite>(std::move(write));
             }));
  return *std::move(result.deal);
}

absl::StatusOr<std::vector<int64_t>> DealOperations::BatchTargets(
    const OperationContext& ctx, const v1::BatchUpdateDealsRequest& request,
    const std::function<absl::StatusOr<std::vector<int64_t>>()>& targets) {
  CRM_RETURN_IF_ERROR(common::ValidateRequestId(ctx.request_id));
  const std::string request_key = RequestKey(ctx);
  if (request_key.empty()) return targets();
  v1::BatchUpdateDealsRequest payload = request;
  payload.clear_request_id();
  const std::string fingerprint = RequestFingerprint(ctx, payload);
  for (int attempt = 0; attempt < 2; ++attempt) {
    CRM_ASSIGN_OR_RETURN(std::optional<storage::RequestRecord> earlier,
                         store_.FindRequest(request_key));
    if (earlier.has_value()) {
      if (earlier->fingerprint() != fingerprint) return RequestIdReused();
      return std::vector<int64_t>(earlier->batch_deal_ids().begin(),
                                  earlier->batch_deal_ids().end());
    }
    CRM_ASSIGN_OR_RETURN(std::vector<int64_t> ids, targets());
    storage::RequestRecord used;
    used.set_fingerprint(fingerprint);
    for (int64_t id : ids) used.add_batch_deal_ids(id);
    absl::Status remembered = store_.RememberRequest(request_key, used);
    // A concurrent call with the same id was first: follow what it took.
    if (absl::IsAlreadyExists(remembered)) continue;
    CRM_RETURN_IF_ERROR(remembered);
    return ids;
  }
  return absl::AbortedError(
      "request_id: a concurrent batch with this id is still starting; retry");
}

absl::StatusOr<std::vector<std::pair<uint64_t, v1::StageHistoryEntry>>>
DealOperations::History(const OperationContext& ctx, int64_t deal_id,
                        uint64_t after_seq, int limit) {
  CRM_RETURN_IF_ERROR(LoadReadable(ctx, deal_id).status());
  return store_.ReadHistory(deal_id, after_seq, limit);
}

absl::StatusOr<v1::GetTimeInStageResponse> DealOperations::TimeInStage(
    const OperationContext& ctx, int64_t deal_id) {
  CRM_RETURN_IF_ERROR(LoadReadable(ctx, deal_id).status());
  const absl::Time now = Now();
  v1::GetTimeInStageResponse response;
  *response.mutable_as_of() = ToTimestamp(now);
  // (pipeline, stage) -> index in response.stages, in first-entry order.
  std::map<std::pair<int64_t, std::string>, int> index;
  int current = -1;
  absl::Time entered;
  uint64_t after = 0;
  while (true) {
    CRM_ASSIGN_OR_RETURN(auto entries,
                         store_.ReadHistory(deal_id, after, 1000));
    if (entries.empty()) break;
    for (const auto& [seq, entry] : entries) {
      after = seq;
      const absl::Time at = FromTimestamp(entry.time());
      if (current >= 0) {
        v1::StageTime* left = response.mutable_stages(current);
        left->set_cumulative_seconds(left->cumulative_seconds() +
                                     absl::ToInt64Seconds(at - entered));
        *left->mutable_last_exited() = entry.time();
        left->set_current(false);
      }
      auto key = std::make_pair(entry.to_pipeline_id(), entry.to_stage_id());
      auto it = index.find(key);
      if (it == index.end()) {
        v1::StageTime* stage = response.add_stages();
        stage->set_pipeline_id(key.first);
        stage->set_stage_id(key.second);
        *stage->mutable_first_entered() = entry.time();
        it = index.emplace(key, response.stages_size() - 1).first;
      }
      current = it->second;
      v1::StageTime* stage = response.mutable_stages(current);
      stage->set_entries(stage->entries() + 1);
      stage->clear_last_exited();
      stage->set_current(true);
      entered = at;
    }
  }
  if (current >= 0) {
    v1::StageTime* stage = response.mutable_stages(current);
    stage->set_cumulative_seconds(stage->cumulative_seconds() +
                                  absl::ToInt64Seconds(now - entered));
  }
  return response;
}

}  // namespace crm::deals
