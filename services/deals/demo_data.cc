#include "services/deals/demo_data.h"

#include <memory>
#include <string>

#include "common/status/status_macros.h"

namespace crm::deals {

absl::StatusOr<int> SeedDemoDeals(DealStore& store,
                                  const common::ConfigView& config,
                                  const DealOperationsOptions& options) {
  if (store.next_event_sequence() > 1) return 0;
  DealOperations operations(store, options);
  OperationContext ctx;
  ctx.caller.privileged = true;
  ctx.actor_service = "demo";
  ctx.config = std::make_shared<const common::ConfigView>(config);
  struct Demo {
    const char* title;
    const char* amount;
    const char* currency;
    int64_t assignee;
    const char* stage;
  };
  const Demo demos[] = {
      {"Negócio com a Tecnologia Ltda", "12500.00", "EUR", 2, "NEW"},
      {"École Supérieure: licences", "4800.00", "EUR", 3, "PREPARATION"},
      {"Acme Corp annual plan", "30000.00", "USD", 2, "PREPAYMENT_INVOICE"},
      {"Globex onboarding", "7200.00", "USD", 4, "EXECUTING"},
      {"Initech renewal", "15000.00", "USD", 3, "FINAL_INVOICE"},
      {"Umbrella pilot", "2500.00", "EUR", 4, "NEW"},
      {"Stark Industries expansion", "99000.00", "USD", 2, "WON"},
      {"Wayne Enterprises audit", "18000.00", "USD", 3, "LOSE"},
      {"Café Müller franchise", "6400.00", "EUR", 1, "PREPARATION"},
      {"Hooli migration", "42000.00", "USD", 1, "EXECUTING"},
      {"Soylent tasting tour", "900.00", "EUR", 4, "NEW"},
      {"Cyberdyne maintenance", "12000.00", "USD", 2, "APOLOGY"},
  };
  int created = 0;
  for (const Demo& demo : demos) {
    if (config.FindStage(0, demo.stage) == nullptr) continue;
    v1::Deal deal;
    deal.set_title(demo.title);
    deal.set_amount(demo.amount);
    deal.set_currency(demo.currency);
    deal.set_assignee_id(demo.assignee);
    deal.set_stage_id(demo.stage);
    CRM_RETURN_IF_ERROR(operations.Create(ctx, deal).status());
    ++created;
  }
  return created;
}

}  // namespace crm::deals
