// Case- and accent-insensitive text for search and ordering.
//
//   const std::string needle = FoldForSearch("negocio");
//   if (FoldForSearch(deal.title()).find(needle) != std::string::npos) ...
#pragma once

#include <string>
#include <string_view>

namespace crm::common {

// Case- and accent-insensitive form of UTF-8 text for substring search:
// ICU NFD decomposition, removal of nonspacing marks (Mn), full case folding,
// then NFC; invalid UTF-8 bytes are replaced (never crash). "Negócio" and
// "NEGOCIO" both fold to "negocio"; "Straße" contains "strasse" after folding.
//
// Thread-safe. ASCII text takes a fast path (lower-casing is all the steps
// above do to it). Folding is for comparison only: the result is not meant
// to be shown.
std::string FoldForSearch(std::string_view text);

}  // namespace crm::common
