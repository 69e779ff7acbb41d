// Opaque, tamper-evident page tokens for cursor pagination, bound to the
// query they came from.
//
//   PageTokenCodec codec(secret);
//   const std::string query = absl::StrCat("pipeline=", p, ";order=id");
//   std::string cursor;  // empty: first page
//   if (!request.page_token().empty()) {
//     CRM_ASSIGN_OR_RETURN(cursor, codec.Decode(request.page_token(), query));
//   }
//   CRM_ASSIGN_OR_RETURN(int page_size, ResolvePageSize(request.page_size()));
//   ...
//   if (more) response->set_next_page_token(codec.Encode(query, last_key));
//
// Token layout (base64url without padding):
//   [version byte][8-byte SHA-256(query) prefix][cursor][16-byte HMAC prefix]
// where the HMAC-SHA256 (with a key derived from the codec key) covers all
// bytes before it. The cursor is authenticated, not encrypted: do not put
// secrets in it.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace crm::common {

class PageTokenCodec {
 public:
  // `key` is the HMAC key (services pass their JWT secret; a distinct key is
  // derived from it, so tokens and JWTs never share a MAC key).
  explicit PageTokenCodec(std::string key);

  // `query` is a canonical string describing the filter/order of the list
  // request (built by the caller); `cursor` is the last key returned
  // (arbitrary bytes, may be empty).
  std::string Encode(std::string_view query, std::string_view cursor) const;

  // Returns the cursor. Errors (all INVALID_ARGUMENT):
  //   "page_token: malformed"                  bad base64url, length, version
  //   "page_token: was tampered with"          MAC mismatch
  //   "page_token: belongs to a different query"
  // An empty token is malformed; callers treat it as "first page" first.
  [[nodiscard]] absl::StatusOr<std::string> Decode(
      std::string_view token, std::string_view query) const;

 private:
  std::string mac_key_;
};

// Page size rule: 0 -> default_size, 1..max_size -> as is, > max_size ->
// max_size (coerced), negative -> INVALID_ARGUMENT naming "page_size".
// default_size is capped at max_size; limits below 1 are a programming error
// (INTERNAL).
[[nodiscard]] absl::StatusOr<int> ResolvePageSize(int requested,
                                                  int default_size = 50,
                                                  int max_size = 500);

}  // namespace crm::common
