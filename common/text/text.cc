#include "common/text/text.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"

namespace crm::common {

// Decodes UTF-8 into code points; false when `text` is not valid UTF-8
// (bad lead or continuation byte, truncated sequence, overlong form,
// surrogate, value past U+10FFFF).
bool DecodeUtf8(std::string_view text, std::vector<uint32_t>* code_points) {
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    int extra = 0;
    uint32_t code_point = 0;
    if (c < 0x80) {
      code_point = c;
    } else if ((c & 0xe0) == 0xc0) {
      extra = 1;
      code_point = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      extra = 2;
      code_point = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      extra = 3;
      code_point = c & 0x07;
    } else {
      return false;
    }
    if (extra > 0 && i + extra >= text.size()) return false;
    for (int k = 1; k <= extra; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xc0) != 0x80) return false;
      code_point = (code_point << 6) | (next & 0x3f);
    }
    if ((extra == 1 && code_point < 0x80) ||
        (extra == 2 && code_point < 0x800) ||
        (extra == 3 && code_point < 0x10000) || code_point > 0x10ffff ||
        (code_point >= 0xd800 && code_point <= 0xdfff)) {
      return false;
    }
    code_points->push_back(code_point);
    i += extra + 1;
  }
  return true;
}

// C0 and C1 control characters and DEL.
bool IsControlCharacter(uint32_t c) {
  return c < 0x20 || (c >= 0x7f && c <= 0x9f);
}

// Unicode White_Space characters (besides the controls among them).
bool IsWhitespaceCharacter(uint32_t c) {
  return c == ' ' || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
         c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
         c == 0x3000 || c == 0xfeff || c == '\t' || c == '\n' || c == '\r' ||
         c == 0x0b || c == 0x0c || c == 0x85;
}

absl::Status ValidateText(std::string_view field, std::string_view value,
                          const TextRules& rules) {
  const std::string name(field);
  std::vector<uint32_t> code_points;
  if (!DecodeUtf8(value, &code_points)) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": not valid UTF-8"));
  }
  if (code_points.empty()) {
    if (rules.allow_empty) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(name, ": required"));
  }
  if (code_points.size() > static_cast<size_t>(rules.max_chars)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": longer than ", rules.max_chars, " characters"));
  }
  if (!rules.allow_empty && std::all_of(code_points.begin(), code_points.end(),
                                        IsWhitespaceCharacter)) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": blank"));
  }
  for (uint32_t c : code_points) {
    if (rules.allow_newlines && (c == '\n' || c == '\r' || c == '\t')) continue;
    if (IsControlCharacter(c)) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": control characters are not allowed"));
    }
  }
  return absl::OkStatus();
}

}  // namespace crm::common
