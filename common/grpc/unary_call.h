// The one edge of a unary call on a callback service: where its work runs,
// what happens to work whose caller is gone, and the single conversion of
// its status.
//
//   grpc::ServerUnaryReactor* Impl::GetThing(grpc::CallbackServerContext* ctx,
//                                            const Req* req, Resp* resp) {
//     return common::RunUnary(ctx, pool_, "things", [=]() -> absl::Status {
//       CRM_ASSIGN_OR_RETURN(Principal who, auth_.Authenticate(*ctx));
//       ...
//     });
//   }
//
// With a pool the work runs there (work that may block: RocksDB writes with
// fsync, calls to other services), so it must capture by value: the
// handler has returned by then. Queued work starts only while the caller
// still waits (CallerStillWaiting), and a full queue answers
// RESOURCE_EXHAUSTED at once. Without a pool it runs inline on gRPC's
// thread and must not block.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/server_callback.h"

#include "common/concurrency/worker_pool.h"
#include "common/grpc/deadline.h"
#include "common/status/grpc_status.h"

namespace crm::common {

// Finishes the call with `status` (ToGrpcStatus: internal details logged
// under a reference, never sent).
inline void FinishUnary(grpc::ServerUnaryReactor* reactor,
                        const absl::Status& status) {
  reactor->Finish(ToGrpcStatus(status));
}

// Queues `work` (absl::Status()) on `pool` for the call of `context`,
// finishing `reactor` with its status; work whose caller gave up while it
// was queued is not started. False when the queue is full (nothing queued,
// `reactor` not finished).
template <typename Work>
[[nodiscard]] bool SubmitUnary(WorkerPool& pool,
                               grpc::CallbackServerContext* context,
                               grpc::ServerUnaryReactor* reactor, Work work) {
  return pool.TrySubmit([context, reactor, work = std::move(work)]() mutable {
    const absl::Status waiting = CallerStillWaiting(*context);
    FinishUnary(reactor, waiting.ok() ? work() : waiting);
  });
}

// The answer to a call that found `service`'s queue full.
inline grpc::Status Overloaded(std::string_view service) {
  return grpc::Status(
      grpc::StatusCode::RESOURCE_EXHAUSTED,
      absl::StrCat(std::string(service), " is overloaded; retry with backoff"));
}

// Runs `work` (absl::Status()) for the call: on `pool` when given, else
// inline, and finishes the call with its status.
template <typename Work>
grpc::ServerUnaryReactor* RunUnary(grpc::CallbackServerContext* context,
                                   WorkerPool* pool, std::string_view service,
                                   Work work) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (pool == nullptr) {
    FinishUnary(reactor, work());
  } else if (!SubmitUnary(*pool, context, reactor, std::move(work))) {
    reactor->Finish(Overloaded(service));
  }
  return reactor;
}

}  // namespace crm::common
