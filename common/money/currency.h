// ISO 4217 currency codes with their minor units (digits after the decimal
// point), from a compiled-in table.
//
//   CRM_RETURN_IF_ERROR(ValidateCurrency(req.currency(), "currency"));
//   CRM_ASSIGN_OR_RETURN(int minor, MinorUnits(req.currency(), "currency"));
//
// The table is ISO 4217 List One (current currency and funds codes) as of
// November 2026, minus the codes whose minor unit is "N.A." and which are not
// money a deal can be priced in: precious metals (XAU, XAG, XPT, XPD), bond
// market units (XBA..XBD), XDR, XSU, XUA, the testing code XTS and "no
// currency" XXX. Fund codes with minor units (BOV, CHE, CHW, CLF, COU, MXV,
// USN, UYI, UYW) are accepted. Withdrawn codes are rejected, among them the
// recent ones: HRK (euro, 2023), CUC (2021), SLL (-> SLE), ZWL (-> ZWG, 2024),
// ANG (-> XCG, 2025) and BGN (euro, 2026). Validate on writes only; stored
// records keep whatever code they were written with.
//
// Codes are exactly three uppercase ASCII letters; "usd" is rejected (callers
// must not guess a case mapping).
#pragma once

#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace crm::common {

struct CurrencyInfo {
  std::string_view code;  // "USD"
  int minor_units;        // 2; JPY 0, BHD 3, CLF 4
};

// The whole table, sorted by code.
absl::Span<const CurrencyInfo> AllCurrencies();

// OK for a code in the table. INVALID_ARGUMENT naming `field` otherwise:
//   "<field>: must be a 3-letter uppercase ISO 4217 currency code"
//   "<field>: unknown ISO 4217 currency code \"ABC\""
[[nodiscard]] absl::Status ValidateCurrency(std::string_view code,
                                            std::string_view field);

// The code's minor units (0..4); the same errors as ValidateCurrency.
[[nodiscard]] absl::StatusOr<int> MinorUnits(std::string_view code,
                                             std::string_view field);

}  // namespace crm::common
