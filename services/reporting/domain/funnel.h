// The two funnels of a pipeline, computed from per-stage totals (counts and
// exact amount sums of one currency), and percentages as reports print
// them.
//
// Classic: the deals now in each stage, with the share of all deals shown.
// Conversion: a deal counts in every PROCESS stage up to the furthest one
// it reached (a won deal in all of them, then in its WON stage); a failure
// stage counts only the deals that ended there; shares are of the first
// stage. Deals that were lost still count in the process stages they
// reached before.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/money/decimal_sum.h"

namespace crm::reporting {

enum class StageKind { kProcess, kWon, kLost };

// A pipeline's stages in their order (process stages first, as
// pipeline-config keeps them).
struct StageInfo {
  std::string stage_id;
  StageKind kind = StageKind::kProcess;
};

struct Tally {
  int64_t deals = 0;
  common::DecimalSum amount;

  void Add(const Tally& other) {
    deals += other.deals;
    amount.Add(other.amount);
  }
};

struct FunnelRow {
  std::string stage_id;
  Tally tally;
  // "12.50": percent of the funnel's base (percent.h); absent when the
  // base is zero.
  std::optional<std::string> percent;
};

// `now[i]`: the deals now in stage i (same indexes as `stages`).
std::vector<FunnelRow> ClassicFunnel(const std::vector<StageInfo>& stages,
                                     const std::vector<Tally>& now);

// Deals grouped by how far they got: `furthest_process` is the index (in
// `stages`) of the furthest process stage reached, or -1 for none; `end`
// is the index of the stage a closed deal ended in (a WON or failure
// stage), or -1 while the deal is in progress.
struct Reach {
  int furthest_process = -1;
  int end = -1;
  Tally tally;
};

std::vector<FunnelRow> ConversionFunnel(const std::vector<StageInfo>& stages,
                                        const std::vector<Reach>& reached);

}  // namespace crm::reporting
