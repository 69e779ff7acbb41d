// absl::Time <-> google.protobuf.Timestamp at microsecond precision (what the
// stores keep).
#pragma once

#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"

namespace crm::common {

google::protobuf::Timestamp ToTimestamp(absl::Time time);
absl::Time FromTimestamp(const google::protobuf::Timestamp& timestamp);

}  // namespace crm::common
