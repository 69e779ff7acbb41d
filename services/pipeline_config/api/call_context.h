// What the three pipeline-config gRPC services share: their dependencies,
// authentication and the CONFIG check, cursor paging over the in-memory
// configuration, and the one place a status becomes a gRPC status.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/server_callback.h"

#include "common/auth/auth.h"
#include "common/pagination/page_token.h"
#include "common/status/grpc_status.h"
#include "services/pipeline_config/domain/config_manager.h"
#include "services/pipeline_config/domain/version_notifier.h"

namespace crm::pipeline_config {

struct ServiceDeps {
  ConfigManager& manager;
  VersionNotifier& notifier;
  const common::Authenticator& authenticator;
  const common::PageTokenCodec& page_tokens;
  // Users who pass every check besides those whose token says "admin".
  std::set<int64_t> admin_user_ids;
};

// The caller of one RPC (administrator or service identity: privileged).
using Caller = common::CallerIdentity;

// UNAUTHENTICATED when the token is missing or bad.
[[nodiscard]] inline absl::StatusOr<Caller> Authenticate(
    const ServiceDeps& deps, const grpc::CallbackServerContext& context) {
  return deps.authenticator.AuthenticateCaller(context, deps.admin_user_ids);
}

// PERMISSION_DENIED unless the caller is privileged or holds CONFIG.
[[nodiscard]] absl::Status RequireConfig(const Caller& caller,
                                         const ConfigData& data);

// Emits up to one page of `keys` (sorted ascending, unique) that come after
// the cursor in `page_token`, and sets `next_page_token` when more remain.
// `emit` returns the serialized size of what it added; the page also ends
// once the reply reaches common::kReplyBudgetBytes.
// `query` binds the token to the request's filters. INVALID_ARGUMENT for a bad
// page_size or page token.
[[nodiscard]] absl::Status Paginate(
    const std::vector<std::string>& keys, int32_t page_size,
    const std::string& page_token, const std::string& query,
    const common::PageTokenCodec& codec,
    const std::function<size_t(size_t index)>& emit,
    std::string* next_page_token);

}  // namespace crm::pipeline_config
