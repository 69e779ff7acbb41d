#include "common/auth/auth.h"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

#include "common/crypto/digest.h"

namespace crm::common {
namespace {

using Json = nlohmann::json;

// Tokens longer than this are rejected before any decoding.
constexpr size_t kMaxTokenSize = 8192;
constexpr size_t kMaxServiceNameSize = 64;
constexpr std::string_view kHeaderJson = R"({"alg":"HS256","typ":"JWT"})";
constexpr int64_t kDevUserId = 1;

absl::string_view AbslView(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

std::string Base64UrlEncode(std::string_view raw) {
  return absl::WebSafeBase64Escape(AbslView(raw));
}

// Strict base64url without padding: only [A-Za-z0-9_-], and the encoding
// must be canonical (no stray bits in the last character).
bool Base64UrlDecode(std::string_view encoded, std::string* raw) {
  for (char c : encoded) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' &&
        c != '_') {
      return false;
    }
  }
  if (!absl::WebSafeBase64Unescape(AbslView(encoded), raw)) return false;
  return absl::WebSafeBase64Escape(*raw) == encoded;
}

absl::Status Unauthenticated(std::string_view message) {
  return absl::UnauthenticatedError(AbslView(message));
}

absl::Status Malformed(std::string_view what) {
  return absl::UnauthenticatedError(
      absl::StrCat("malformed token: ", AbslView(what)));
}

// Quotes an attacker-controlled string for an error message.
std::string QuoteForMessage(const std::string& text) {
  constexpr size_t kMaxShown = 32;
  std::string shown = absl::CHexEscape(text.substr(0, kMaxShown));
  if (text.size() > kMaxShown) shown += "...";
  return absl::StrCat("\"", shown, "\"");
}

struct JwtParts {
  std::string_view header;
  std::string_view payload;
  std::string_view signature;
  std::string_view signing_input;  // "<header>.<payload>"
};

absl::StatusOr<JwtParts> SplitJwt(std::string_view token) {
  if (token.empty()) return Malformed("empty token");
  if (token.size() > kMaxTokenSize) return Malformed("token too long");
  const size_t first = token.find('.');
  const size_t second = first == std::string_view::npos
                            ? std::string_view::npos
                            : token.find('.', first + 1);
  if (second == std::string_view::npos ||
      token.find('.', second + 1) != std::string_view::npos) {
    return Malformed("expected 3 dot-separated parts");
  }
  JwtParts parts;
  parts.header = token.substr(0, first);
  parts.payload = token.substr(first + 1, second - first - 1);
  parts.signature = token.substr(second + 1);
  parts.signing_input = token.substr(0, second);
  return parts;
}

absl::StatusOr<Json> DecodeJsonObject(std::string_view part,
                                      std::string_view name) {
  std::string raw;
  if (part.empty() || !Base64UrlDecode(part, &raw)) {
    return Malformed(absl::StrCat(AbslView(name), " is not valid base64url"));
  }
  Json json = Json::parse(raw, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return Malformed(absl::StrCat(AbslView(name), " is not a JSON object"));
  }
  return json;
}

absl::Status CheckHeader(const Json& header) {
  const auto alg = header.find("alg");
  if (alg == header.end() || !alg->is_string()) {
    return Malformed("header has no alg");
  }
  const std::string& alg_name = alg->get_ref<const std::string&>();
  if (alg_name != "HS256") {
    return Unauthenticated(absl::StrCat("unsupported alg ",
                                        QuoteForMessage(alg_name),
                                        " (only HS256 is accepted)"));
  }
  const auto typ = header.find("typ");
  if (typ != header.end() && !typ->is_string()) {
    return Malformed("typ must be a string");
  }
  // "crit" lists extensions the verifier must understand; we know none.
  if (header.contains("crit")) {
    return Unauthenticated("unsupported crit header");
  }
  return absl::OkStatus();
}

absl::Status CheckSignature(const JwtParts& parts, std::string_view secret) {
  std::string signature;
  if (parts.signature.empty() ||
      !Base64UrlDecode(parts.signature, &signature)) {
    return Malformed("signature is not valid base64url");
  }
  if (!ConstantTimeEquals(signature,
                          AsBytes(HmacSha256(secret, parts.signing_input)))) {
    return Unauthenticated("bad signature");
  }
  return absl::OkStatus();
}

// Reads an optional numeric time claim. Returns false when absent.
absl::StatusOr<bool> ReadTimeClaim(const Json& claims, const char* name,
                                   double* seconds) {
  const auto it = claims.find(name);
  if (it == claims.end()) return false;
  if (!it->is_number()) {
    return Malformed(absl::StrCat(name, " claim must be a number"));
  }
  *seconds = it->get<double>();
  return true;
}

absl::Status CheckTimes(const Json& claims, absl::Time now,
                        absl::Duration leeway) {
  const double now_s = absl::ToDoubleSeconds(now - absl::UnixEpoch());
  const double leeway_s = absl::ToDoubleSeconds(leeway);
  double exp = 0;
  absl::StatusOr<bool> has = ReadTimeClaim(claims, "exp", &exp);
  if (!has.ok()) return has.status();
  if (!*has) return Unauthenticated("missing exp claim");
  if (now_s >= exp + leeway_s) return Unauthenticated("token expired");

  double nbf = 0;
  has = ReadTimeClaim(claims, "nbf", &nbf);
  if (!has.ok()) return has.status();
  if (*has && now_s + leeway_s < nbf) {
    return Unauthenticated("token not yet valid");
  }

  double iat = 0;
  has = ReadTimeClaim(claims, "iat", &iat);
  if (!has.ok()) return has.status();
  if (*has && iat > now_s + leeway_s) {
    return Unauthenticated("token issued in the future");
  }
  return absl::OkStatus();
}

bool IsValidServiceName(const std::string& name) {
  if (name.empty() || name.size() > kMaxServiceNameSize) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' &&
        c != '_' && c != '.') {
      return false;
    }
  }
  return true;
}

// Parses a user id: a decimal string of digits only, or a JSON integer; it
// must be positive and fit in int64.
bool ParseUserId(const Json& sub, int64_t* user_id) {
  if (sub.is_string()) {
    const std::string& text = sub.get_ref<const std::string&>();
    if (text.empty() || text.size() > 19) return false;
    for (char c : text) {
      if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
    }
    return absl::SimpleAtoi(text, user_id) && *user_id > 0;
  }
  if (sub.is_number_unsigned()) {
    const uint64_t value = sub.get<uint64_t>();
    if (value == 0 ||
        value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return false;
    }
    *user_id = static_cast<int64_t>(value);
    return true;
  }
  if (sub.is_number_integer()) {
    *user_id = sub.get<int64_t>();
    return *user_id > 0;
  }
  return false;
}

absl::StatusOr<Principal> PrincipalFromClaims(const Json& claims) {
  const auto sub = claims.find("sub");
  if (sub == claims.end() || sub->is_null()) {
    return Unauthenticated("missing sub claim");
  }
  Principal principal;
  const auto svc = claims.find("svc");
  if (svc != claims.end()) {
    if (!svc->is_string()) return Malformed("svc claim must be a string");
    const std::string& name = svc->get_ref<const std::string&>();
    if (!IsValidServiceName(name)) {
      return Malformed("svc claim is not a valid service name");
    }
    if (!sub->is_string() ||
        sub->get_ref<const std::string&>() != absl::StrCat("service:", name)) {
      return Malformed("sub of a service token must be \"service:<svc>\"");
    }
    principal.service = name;
  } else if (!ParseUserId(*sub, &principal.user_id)) {
    return Malformed("sub claim must be a positive decimal user id");
  }
  const auto admin = claims.find("admin");
  if (admin != claims.end()) {
    if (!admin->is_boolean()) return Malformed("admin claim must be a boolean");
    principal.is_admin = admin->get<bool>();
  }
  return principal;
}

// Dev mode: the token must be well formed, but neither the algorithm, the
// signature nor the times are checked.
absl::StatusOr<Principal> DecodeUnverified(std::string_view token) {
  absl::StatusOr<JwtParts> parts = SplitJwt(token);
  if (!parts.ok()) return parts.status();
  absl::StatusOr<Json> header = DecodeJsonObject(parts->header, "header");
  if (!header.ok()) return header.status();
  absl::StatusOr<Json> claims = DecodeJsonObject(parts->payload, "payload");
  if (!claims.ok()) return claims.status();
  return PrincipalFromClaims(*claims);
}

bool IsAsciiBlank(char c) { return c == ' ' || c == '\t'; }

std::string_view TrimBlanks(std::string_view s) {
  while (!s.empty() && IsAsciiBlank(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsAsciiBlank(s.back())) s.remove_suffix(1);
  return s;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (absl::ascii_tolower(static_cast<unsigned char>(a[i])) !=
        absl::ascii_tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string SignHs256Jwt(const nlohmann::json& claims,
                         std::string_view secret) {
  const std::string payload =
      claims.dump(-1, ' ', false, Json::error_handler_t::replace);
  std::string token =
      absl::StrCat(Base64UrlEncode(kHeaderJson), ".", Base64UrlEncode(payload));
  absl::StrAppend(&token, ".",
                  Base64UrlEncode(AsBytes(HmacSha256(secret, token))));
  return token;
}

std::string MakeUserToken(std::string_view secret, int64_t user_id, bool admin,
                          absl::Duration ttl, absl::Time now) {
  Json claims = {{"sub", std::to_string(user_id)},
                 {"iat", absl::ToUnixSeconds(now)},
                 {"exp", absl::ToUnixSeconds(now + ttl)}};
  if (admin) claims["admin"] = true;
  return SignHs256Jwt(claims, secret);
}

std::string MakeServiceToken(std::string_view secret, std::string_view service,
                             absl::Duration ttl, absl::Time now) {
  const std::string name(service);
  Json claims = {{"sub", "service:" + name},
                 {"svc", name},
                 {"iat", absl::ToUnixSeconds(now)},
                 {"exp", absl::ToUnixSeconds(now + ttl)}};
  return SignHs256Jwt(claims, secret);
}

JwtVerifier::JwtVerifier(std::string secret, absl::Duration leeway)
    : secret_(std::move(secret)),
      leeway_(leeway < absl::ZeroDuration() ? absl::ZeroDuration() : leeway) {}

absl::StatusOr<Principal> JwtVerifier::Verify(std::string_view token,
                                              absl::Time now) const {
  if (secret_.empty()) {
    return Unauthenticated("token verification is not configured (no secret)");
  }
  absl::StatusOr<JwtParts> parts = SplitJwt(token);
  if (!parts.ok()) return parts.status();
  absl::StatusOr<Json> header = DecodeJsonObject(parts->header, "header");
  if (!header.ok()) return header.status();
  if (absl::Status s = CheckHeader(*header); !s.ok()) return s;
  if (absl::Status s = CheckSignature(*parts, secret_); !s.ok()) return s;
  absl::StatusOr<Json> claims = DecodeJsonObject(parts->payload, "payload");
  if (!claims.ok()) return claims.status();
  if (absl::Status s = CheckTimes(*claims, now, leeway_); !s.ok()) return s;
  absl::StatusOr<Principal> principal = PrincipalFromClaims(*claims);
  if (!principal.ok()) return principal;
  double exp = 0;
  if (absl::StatusOr<bool> has = ReadTimeClaim(*claims, "exp", &exp);
      has.ok() && *has) {
    principal->expires = absl::UnixEpoch() + absl::Seconds(exp) + leeway_;
  }
  return principal;
}

class Authenticator::TokenCache {
 public:
  std::optional<Principal> Find(std::string_view token, absl::Time now) {
    Shard& shard = ShardFor(token);
    absl::MutexLock lock(&shard.mu);
    auto it = shard.map.find(absl::string_view(token.data(), token.size()));
    if (it == shard.map.end()) return std::nullopt;
    if (now >= it->second.expires) {
      shard.map.erase(it);
      return std::nullopt;
    }
    return it->second;
  }

  void Insert(std::string_view token, const Principal& principal) {
    Shard& shard = ShardFor(token);
    absl::MutexLock lock(&shard.mu);
    // Bounded: a full shard starts over rather than tracking recency.
    if (shard.map.size() >= kMaxEntriesPerShard) shard.map.clear();
    shard.map.insert_or_assign(std::string(token), principal);
  }

 private:
  static constexpr size_t kShards = 16;
  static constexpr size_t kMaxEntriesPerShard = 1024;

  struct Shard {
    absl::Mutex mu;
    absl::flat_hash_map<std::string, Principal> map ABSL_GUARDED_BY(mu);
  };

  Shard& ShardFor(std::string_view token) {
    return shards_[absl::Hash<absl::string_view>()(
                       absl::string_view(token.data(), token.size())) %
                   kShards];
  }

  std::array<Shard, kShards> shards_;
};

Authenticator::Authenticator(std::string secret, bool insecure_dev_auth)
    : verifier_(std::move(secret)),
      insecure_dev_auth_(insecure_dev_auth),
      cache_(std::make_unique<TokenCache>()) {}

Authenticator::~Authenticator() = default;

absl::StatusOr<Principal> Authenticator::Authenticate(
    const grpc::ServerContextBase& context) const {
  const auto& metadata = context.client_metadata();
  const auto range = metadata.equal_range("authorization");
  if (range.first == range.second) return AuthenticateHeader("");
  if (std::next(range.first) != range.second) {
    return Unauthenticated("more than one authorization metadata entry");
  }
  const grpc::string_ref& value = range.first->second;
  return AuthenticateHeader(std::string_view(value.data(), value.size()));
}

absl::StatusOr<CallerIdentity> Authenticator::AuthenticateCaller(
    const grpc::ServerContextBase& context,
    const std::set<int64_t>& admin_user_ids) const {
  absl::StatusOr<Principal> principal = Authenticate(context);
  if (!principal.ok()) return principal.status();
  CallerIdentity caller;
  caller.privileged = principal->IsPrivileged(admin_user_ids);
  caller.principal = *std::move(principal);
  return caller;
}

absl::StatusOr<Principal> Authenticator::AuthenticateHeader(
    std::string_view authorization_value) const {
  return AuthenticateHeader(authorization_value, absl::Now());
}

absl::StatusOr<Principal> Authenticator::AuthenticateHeader(
    std::string_view authorization_value, absl::Time now) const {
  const std::string_view value = TrimBlanks(authorization_value);
  if (value.empty()) {
    if (insecure_dev_auth_) {
      Principal dev;
      dev.user_id = kDevUserId;
      dev.is_admin = true;
      return dev;
    }
    return Unauthenticated("missing authorization metadata");
  }
  const size_t blank = value.find_first_of(" \t");
  const std::string_view scheme = value.substr(0, blank);
  if (!EqualsIgnoreCase(scheme, "bearer")) {
    return Unauthenticated(
        "unsupported authorization scheme, expected \"Bearer <token>\"");
  }
  const std::string_view token = blank == std::string_view::npos
                                     ? std::string_view()
                                     : TrimBlanks(value.substr(blank));
  if (token.empty()) return Unauthenticated("missing bearer token");
  if (insecure_dev_auth_) return DecodeUnverified(token);
  if (std::optional<Principal> cached = cache_->Find(token, now);
      cached.has_value()) {
    return *std::move(cached);
  }
  absl::StatusOr<Principal> principal = verifier_.Verify(token, now);
  if (principal.ok()) cache_->Insert(token, *principal);
  return principal;
}

}  // namespace crm::common
