// Where the outbox relay sends deal events: one subscriber (automation,
// reporting, a test sink).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

#include "crm/deals/v1/deal_events.pb.h"

namespace crm::deals {

class DealEventPublisher {
 public:
  virtual ~DealEventPublisher() = default;
  // Delivers consecutive events in order. Returns the highest sequence the
  // subscriber durably applied (usually the last one sent). Any error means
  // "try again later"; nothing is assumed delivered.
  [[nodiscard]] virtual absl::StatusOr<int64_t> Deliver(
      const std::vector<crm::deals::v1::DealEvent>& events) = 0;
};

}  // namespace crm::deals
