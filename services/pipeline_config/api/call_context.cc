#include "services/pipeline_config/api/call_context.h"

#include "common/grpc/message_limits.h"
#include "common/status/status_macros.h"
#include "services/pipeline_config/domain/permissions.h"

namespace crm::pipeline_config {

absl::Status RequireConfig(const Caller& caller, const ConfigData& data) {
  if (caller.privileged ||
      HasConfigPermission(data, caller.principal.user_id)) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(
      "changing the configuration needs the CONFIG permission");
}

absl::Status Paginate(const std::vector<std::string>& keys, int32_t page_size,
                      const std::string& page_token, const std::string& query,
                      const common::PageTokenCodec& codec,
                      const std::function<size_t(size_t index)>& emit,
                      std::string* next_page_token) {
  CRM_ASSIGN_OR_RETURN(int size, common::ResolvePageSize(page_size));
  size_t start = 0;
  if (!page_token.empty()) {
    CRM_ASSIGN_OR_RETURN(std::string cursor, codec.Decode(page_token, query));
    start = static_cast<size_t>(
        std::upper_bound(keys.begin(), keys.end(), cursor) - keys.begin());
  }
  size_t end = std::min(keys.size(), start + static_cast<size_t>(size));
  common::ReplyBudget budget;
  for (size_t i = start; i < end; ++i) {
    if (budget.Spend(emit(i))) end = i + 1;  // the reply is big enough
  }
  next_page_token->clear();
  if (end < keys.size() && end > start)
    *next_page_token = codec.Encode(query, keys[end - 1]);
  return absl::OkStatus();
}

}  // namespace crm::pipeline_config
