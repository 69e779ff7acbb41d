#include "services/reporting/domain/funnel.h"

#include "services/reporting/domain/percent.h"

namespace crm::reporting {

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
