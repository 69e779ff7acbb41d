// Client-side deadline defaults: every outgoing call carries a deadline.
//
//   grpc::ClientContext context;
//   SetDeadlineFromNow(&context, absl::Seconds(2));
#pragma once

#include <chrono>

#include "absl/time/time.h"
#include "grpcpp/client_context.h"

namespace crm::common {

inline void SetDeadlineFromNow(grpc::ClientContext* context,
                               absl::Duration timeout) {
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoMicroseconds(timeout));
}

}  // namespace crm::common
