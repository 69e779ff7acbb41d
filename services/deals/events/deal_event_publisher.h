// Where the outbox relay sends deal events: one subscriber (automation,
// reporting, a test sink).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include "crm/deals/v1/deal_events.pb.h"

namespace crm::deals {

// Consecutive events of the outbox, as stored: serialized DealEvents, so a
// delivery never parses or re-serializes what the commit already wrote.
struct EventBatch {
  std::vector<std::string> events;
  std::vector<int64_t> sequences;  // of each event, increasing
  size_t bytes() const {
    size_t total = 0;
    for (const auto& event : events) total += event.size();
    return total;
  }
};

class DealEventPublisher {
 public:
  virtual ~DealEventPublisher() = default;
  // Delivers the batch in order. Returns the highest sequence the
  // subscriber durably applied (usually the last one sent). Any error means
  // nothing is assumed delivered.
  [[nodiscard]] virtual absl::StatusOr<int64_t> Deliver(
      const EventBatch& batch) = 0;
};

}  // namespace crm::deals
