// Deadlines: every outgoing call carries one, and long server-side work
// stops once its caller is gone.
//
//   grpc::ClientContext context;
//   SetDeadlineFromNow(&context, absl::Seconds(2));
//
//   CRM_RETURN_IF_ERROR(CallerStillWaiting(*server_context));
#pragma once

#include <chrono>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/client_context.h"
#include "grpcpp/server_context.h"

namespace crm::common {

inline void SetDeadlineFromNow(grpc::ClientContext* context,
                               absl::Duration timeout) {
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoMicroseconds(timeout));
}

// OK while the caller of a server call still waits for its answer;
// DEADLINE_EXCEEDED once its deadline passed, CANCELLED once it cancelled
// (or the connection went away). Work that would only produce an answer no
// one reads checks this before it starts and between steps.
inline absl::Status CallerStillWaiting(const grpc::ServerContextBase& context) {
  if (context.deadline() <= std::chrono::system_clock::now()) {
    return absl::DeadlineExceededError("the caller's deadline passed");
  }
  if (context.IsCancelled()) {
    return absl::CancelledError("the caller cancelled the call");
  }
  return absl::OkStatus();
}

}  // namespace crm::common
