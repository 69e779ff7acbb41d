// Checks of user-visible text shared by every service: UTF-8 decoding,
// length in characters (code points, not bytes), blank and control
// characters. Errors are INVALID_ARGUMENT naming the caller's field.
//
//   CRM_RETURN_IF_ERROR(ValidateText("deal.title", title, {.max_chars = 255}));
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace crm::common {

// Decodes UTF-8 into code points; false when `text` is not valid UTF-8 (bad
// lead or continuation byte, truncated sequence, overlong form, surrogate,
// value past U+10FFFF).
[[nodiscard]] bool DecodeUtf8(std::string_view text,
                              std::vector<uint32_t>* code_points);

// C0 and C1 control characters and DEL.
bool IsControlCharacter(uint32_t c);
// Unicode White_Space characters.
bool IsWhitespaceCharacter(uint32_t c);

struct TextRules {
  int max_chars = 255;
  // Empty text is accepted (and then blank text too).
  bool allow_empty = false;
  // Line breaks and tabs are accepted (other controls never are).
  bool allow_newlines = false;
};

// Valid UTF-8, at most max_chars characters, not blank unless empty is
// allowed, no control characters (but newlines and tabs when allowed).
[[nodiscard]] absl::Status ValidateText(std::string_view field,
                                        std::string_view value,
                                        const TextRules& rules);

}  // namespace crm::common
