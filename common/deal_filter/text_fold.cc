#include "common/deal_filter/text_fold.h"

#include <unicode/stringpiece.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <cstdint>

#include <unicode/normalizer2.h>
#include <unicode/utf16.h>

namespace crm::common {
namespace {

// Normalizer2 instances are process-wide singletons owned by ICU and are
// thread-safe, unlike a Transliterator, so one pair serves every thread.
struct Normalizers {
  const icu::Normalizer2* nfd = nullptr;
  const icu::Normalizer2* nfc = nullptr;
};

const Normalizers& GetNormalizers() {
  static const Normalizers normalizers = [] {
    Normalizers n;
    UErrorCode status = U_ZERO_ERROR;
    n.nfd = icu::Normalizer2::getNFDInstance(status);
    if (U_FAILURE(status)) n.nfd = nullptr;
    status = U_ZERO_ERROR;
    n.nfc = icu::Normalizer2::getNFCInstance(status);
    if (U_FAILURE(status)) n.nfc = nullptr;
    return n;
  }();
  return normalizers;
}

// Decomposes (NFD) and drops the nonspacing marks, which after
// decomposition are the accents: "ó" -> "o" + U+0301 -> "o".
icu::UnicodeString DecomposeWithoutMarks(const icu::UnicodeString& text,
                                         const Normalizers& normalizers) {
  icu::UnicodeString decomposed = text;
  if (normalizers.nfd != nullptr) {
    UErrorCode status = U_ZERO_ERROR;
    icu::UnicodeString out = normalizers.nfd->normalize(text, status);
    if (U_SUCCESS(status)) decomposed = std::move(out);
  }
  icu::UnicodeString kept;
  const int32_t length = decomposed.length();
  for (int32_t i = 0; i < length;) {
    const UChar32 c = decomposed.char32At(i);
    i += U16_LENGTH(c);
    if (u_charType(c) != U_NON_SPACING_MARK) kept.append(c);
  }
  return kept;
}

bool IsAscii(std::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

}  // namespace

std::string FoldForSearch(std::string_view text) {
  if (IsAscii(text)) {
    // ASCII has no marks and is already NFC; full case folding of ASCII is
    // plain lower-casing.
    std::string folded(text);
    for (char& c : folded) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return folded;
  }
  const Normalizers& normalizers = GetNormalizers();
  // fromUTF8 replaces every ill-formed sequence with U+FFFD.
  // ICU lengths are int32_t; deal texts are far shorter, anything past 2 GiB
  // is cut rather than wrapped to a negative length.
  const size_t length = std::min<size_t>(text.size(), INT32_MAX);
  icu::UnicodeString unicode = icu::UnicodeString::fromUTF8(
      icu::StringPiece(text.data(), static_cast<int32_t>(length)));
  unicode = DecomposeWithoutMarks(unicode, normalizers);
  // Full folding: "ß" -> "ss", final sigma -> sigma.
  unicode.foldCase(U_FOLD_CASE_DEFAULT);
  // Folding can map a character to a sequence that decomposes further or
  // carries a mark of its own; decompose and strip once more so the result
  // never depends on which of the two forms the text arrived in.
  unicode = DecomposeWithoutMarks(unicode, normalizers);
  if (normalizers.nfc != nullptr) {
    UErrorCode status = U_ZERO_ERROR;
    // Recomposes what is left (Hangul syllables, spacing marks).
    icu::UnicodeString composed = normalizers.nfc->normalize(unicode, status);
    if (U_SUCCESS(status)) unicode = std::move(composed);
  }
  std::string folded;
  unicode.toUTF8String(folded);
  return folded;
}

}  // namespace crm::common
