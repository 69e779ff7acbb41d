// Percentages as reports print them: "12.50", 2 places, rounded half up,
// computed exactly from integers (counts, micro units).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/money/decimal_sum.h"

namespace crm::reporting {

// part / whole as a percentage ("0.00" to "100.00", or more when part is
// larger; negative when the signs differ); nullopt when whole is zero.
std::optional<std::string> Percent(int64_t part, int64_t whole);

// (now - before) / before as a percentage; nullopt when before is zero.
std::optional<std::string> PercentChange(const common::DecimalSum& now,
                                         const common::DecimalSum& before);

}  // namespace crm::reporting
