#include "services/reporting/domain/funnel.h"

#include <cstdlib>

#include "absl/strings/str_format.h"

namespace crm::reporting {

std::optional<std::string> Percent(int64_t part, int64_t whole) {
  if (whole == 0) return std::nullopt;
  // Hundredths of a percent, rounded half away from zero, in 128 bits so
  // no count overflows.
  __extension__ typedef __int128 Int128;
  const bool negative = (part < 0) != (whole < 0) && part != 0;
  const Int128 p = part < 0 ? -static_cast<Int128>(part) : part;
  const Int128 w = whole < 0 ? -static_cast<Int128>(whole) : whole;
  const Int128 hundredths = (p * 10000 * 2 + w) / (2 * w);
  const auto units = static_cast<int64_t>(hundredths / 100);
  const auto cents = static_cast<int>(hundredths % 100);
  return absl::StrFormat("%s%d.%02d", negative ? "-" : "", units, cents);
}

std::vector<FunnelRow> ClassicFunnel(const std::vector<StageInfo>& stages,
                                     const std::vector<Tally>& now) {
  std::vector<FunnelRow> rows(stages.size());
  int64_t total = 0;
  for (size_t i = 0; i < stages.size(); ++i) {
    rows[i].stage_id = stages[i].stage_id;
    if (i < now.size()) rows[i].tally = now[i];
    total += rows[i].tally.deals;
  }
  for (FunnelRow& row : rows) row.percent = Percent(row.tally.deals, total);
  return rows;
}

std::vector<FunnelRow> ConversionFunnel(const std::vector<StageInfo>& stages,
                                        const std::vector<Reach>& reached) {
  const int n = static_cast<int>(stages.size());
  std::vector<FunnelRow> rows(stages.size());
  for (int i = 0; i < n; ++i) rows[i].stage_id = stages[i].stage_id;
  for (const Reach& reach : reached) {
    const bool won = reach.end >= 0 && reach.end < n &&
                     stages[reach.end].kind == StageKind::kWon;
    for (int i = 0; i < n; ++i) {
      if (stages[i].kind != StageKind::kProcess) continue;
      if (won || i <= reach.furthest_process) rows[i].tally.Add(reach.tally);
    }
    if (reach.end >= 0 && reach.end < n &&
        stages[reach.end].kind != StageKind::kProcess) {
      rows[reach.end].tally.Add(reach.tally);
    }
  }
  const int64_t base = rows.empty() ? 0 : rows[0].tally.deals;
  for (FunnelRow& row : rows) row.percent = Percent(row.tally.deals, base);
  return rows;
}

}  // namespace crm::reporting
