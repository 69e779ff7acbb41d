#include "common/auth/auth.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <set>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/server_context.h"
#include "grpcpp/test/server_context_test_spouse.h"
#include "gtest/gtest.h"

#include "common/status/status_matchers.h"

namespace crm::common {
namespace {

using ::crm::testing::StatusIs;
using ::testing::HasSubstr;
using Json = nlohmann::json;

constexpr char kSecret[] = "unit-test-secret";
const absl::Time kNow = absl::FromUnixSeconds(1'700'000'000);

std::string B64(const std::string& raw) {
  return absl::WebSafeBase64Escape(raw);
}

std::string Unb64(const std::string& encoded) {
  std::string raw;
  EXPECT_TRUE(absl::WebSafeBase64Unescape(encoded, &raw)) << encoded;
  return raw;
}

// Signs arbitrary header and payload text with HMAC-SHA256, independently of
// the code under test.
std::string SignRaw(const std::string& header, const std::string& payload,
                    const std::string& secret = kSecret) {
  const std::string input = absl::StrCat(B64(header), ".", B64(payload));
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac,
       &mac_len);
  return absl::StrCat(
      input, ".",
      B64(std::string(reinterpret_cast<const char*>(mac), mac_len)));
}

std::string SignClaims(const Json& claims,
                       const std::string& header = R"({"alg":"HS256"})") {
  return SignRaw(header, claims.dump());
}

Json ValidClaims() {
  return Json{{"sub", "42"},
              {"iat", absl::ToUnixSeconds(kNow)},
              {"exp", absl::ToUnixSeconds(kNow + absl::Hours(1))}};
}

std::vector<std::string> Parts(const std::string& token) {
  return absl::StrSplit(token, '.');
}

class JwtVerifierTest : public ::testing::Test {
 protected:
  JwtVerifier verifier_{kSecret};
};

TEST_F(JwtVerifierTest, UserTokenRoundTrip) {
  const std::string token =
      MakeUserToken(kSecret, 42, false, absl::Hours(1), kNow);
  const std::vector<std::string> parts = Parts(token);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(Json::parse(Unb64(parts[0])),
            Json::parse(R"({"alg":"HS256","typ":"JWT"})"));
  const Json claims = Json::parse(Unb64(parts[1]));
  EXPECT_EQ(claims.at("sub"), "42");
  EXPECT_EQ(claims.at("iat"), absl::ToUnixSeconds(kNow));
  EXPECT_EQ(claims.at("exp"), absl::ToUnixSeconds(kNow) + 3600);
  EXPECT_FALSE(claims.contains("admin"));
  EXPECT_EQ(token.find('='), std::string::npos);

  ASSERT_OK_AND_ASSIGN(Principal principal, verifier_.Verify(token, kNow));
  EXPECT_EQ(principal.user_id, 42);
  EXPECT_FALSE(principal.is_admin);
  EXPECT_FALSE(principal.IsService());
  EXPECT_EQ(principal.service, "");
}

TEST_F(JwtVerifierTest, SignatureMatchesIndependentHmac) {
  const Json claims = ValidClaims();
  const std::string token = SignHs256Jwt(claims, kSecret);
  EXPECT_EQ(token, SignRaw(R"({"alg":"HS256","typ":"JWT"})", claims.dump()));
}

TEST_F(JwtVerifierTest, AdminClaim) {
  ASSERT_OK_AND_ASSIGN(
      Principal admin,
      verifier_.Verify(MakeUserToken(kSecret, 7, true, absl::Hours(1), kNow),
                       kNow));
  EXPECT_EQ(admin.user_id, 7);
  EXPECT_TRUE(admin.is_admin);

  Json claims = ValidClaims();
  claims["admin"] = false;
  ASSERT_OK_AND_ASSIGN(Principal plain,
                       verifier_.Verify(SignClaims(claims), kNow));
  EXPECT_FALSE(plain.is_admin);

  claims["admin"] = "true";
  EXPECT_THAT(verifier_.Verify(SignClaims(claims), kNow),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("admin claim must be a boolean")));
}

TEST_F(JwtVerifierTest, ServiceToken) {
  const std::string token =
      MakeServiceToken(kSecret, "automation", absl::Hours(1), kNow);
  const Json claims = Json::parse(Unb64(Parts(token)[1]));
  EXPECT_EQ(claims.at("sub"), "service:automation");
  EXPECT_EQ(claims.at("svc"), "automation");

  ASSERT_OK_AND_ASSIGN(Principal principal, verifier_.Verify(token, kNow));
  EXPECT_TRUE(principal.IsService());
  EXPECT_EQ(principal.service, "automation");
  EXPECT_EQ(principal.user_id, 0);
  EXPECT_FALSE(principal.is_admin);
}

TEST_F(JwtVerifierTest, ServiceTokenWithInconsistentClaims) {
  Json claims = ValidClaims();
  claims["svc"] = "automation";  // sub is still "42"
  EXPECT_THAT(verifier_.Verify(SignClaims(claims), kNow),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("malformed token: sub of a service token")));
  claims["sub"] = "service:automation";
  claims["svc"] = 5;
  EXPECT_THAT(verifier_.Verify(SignClaims(claims), kNow),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("svc claim must be a string")));
  claims["sub"] = "service:";
  claims["svc"] = "";
  EXPECT_THAT(verifier_.Verify(SignClaims(claims), kNow),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("not a valid service name")));
}

TEST_F(JwtVerifierTest, Expired) {
  const std::string token =
      MakeUserToken(kSecret, 42, false, absl::Hours(1), kNow);
  // Within the 30 s leeway.
  EXPECT_OK(verifier_.Verify(token, kNow + absl::Hours(1) + absl::Seconds(29)));
  EXPECT_THAT(
      verifier_.Verify(token, kNow + absl::Hours(1) + absl::Seconds(30)),
      StatusIs(absl::StatusCode::kUnauthenticated, "token expired"));
  EXPECT_THAT(verifier_.Verify(token, kNow + absl::Hours(48)),
              StatusIs(absl::StatusCode::kUnauthenticated, "token expired"));

  JwtVerifier strict(kSecret, absl::ZeroDuration());
  EXPECT_THAT(strict.Verify(token, kNow + absl::Hours(1)),
              StatusIs(absl::StatusCode::kUnauthenticated, "token expired"));
  EXPECT_OK(strict.Verify(token, kNow + absl::Hours(1) - absl::Seconds(1)));
}

TEST_F(JwtVerifierTest, ExpRequiredAndNumeric) {
  Json claims = ValidClaims();
  claims.erase("exp");
  EXPECT_THAT(verifier_.Verify(SignClaims(claims), kNow),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("missing exp claim")));
  claims["exp"] = std::to_string(absl::ToUnixSeconds(kNow) + 3600);
  EXPECT_THAT(verifier_.Verify(SignClaims(claims), kNow),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       "malformed token: exp claim must be a number"));
  claims["exp"] = absl::ToUnixSeconds(kNow) + 3600.5;  // fractional is fine
  EXPECT_OK(verifier_.Verify(SignClaims(claims), kNow));
}

TEST_F(JwtVerifierTest, NotYetValid) {
  Json claims = ValidClaims();
  claims["nbf"] = absl::ToUnixSeconds(kNow + absl::Minutes(5));
  EXPECT_THAT(
      verifier_.Verify(SignClaims(claims), kNow),
      StatusIs(absl::StatusCode::kUnauthenticated, "token not yet valid"));
  EXPECT_OK(verifier_.Verify(SignClaims(claims), kNow + absl::Minutes(5)));
  claims["nbf"] = absl::ToUnixSeconds(kNow + absl::Seconds(20));  // leeway
  EXPECT_OK(verifier_.Verify(SignClaims(claims), kNow));
  claims["nbf"] = "soon";
  EXPECT_THAT(verifier_.Verify(SignClaims(claims), kNow),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("nbf claim must be a number")));
}

TEST_F(JwtVerifierTest, IssuedInTheFuture) {
  Json claims = ValidClaims();
  claims["iat"] = absl::ToUnixSeconds(kNow + absl::Minutes(5));
  EXPECT_THAT(verifier_.Verify(SignClaims(claims), kNow),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("issued in the future")));
  claims["iat"] = absl::ToUnixSeconds(kNow + absl::Seconds(10));
  EXPECT_OK(verifier_.Verify(SignClaims(claims), kNow));
}

TEST_F(JwtVerifierTest, WrongSecret) {
  const std::string token =
      MakeUserToken("another-secret", 42, false, absl::Hours(1), kNow);
  EXPECT_THAT(verifier_.Verify(token, kNow),
              StatusIs(absl::StatusCode::kUnauthenticated, "bad signature"));
}

TEST_F(JwtVerifierTest, TamperedPayload) {
  const std::vector<std::string> parts =
      Parts(MakeUserToken(kSecret, 42, false, absl::Hours(1), kNow));
  Json claims = Json::parse(Unb64(parts[1]));
  claims["admin"] = true;
  const std::string forged =
      absl::StrCat(parts[0], ".", B64(claims.dump()), ".", parts[2]);
  EXPECT_THAT(verifier_.Verify(forged, kNow),
              StatusIs(absl::StatusCode::kUnauthenticated, "bad signature"));
  claims.erase("admin");
  claims["sub"] = "1";
  const std::string forged_sub =
      absl::StrCat(parts[0], ".", B64(claims.dump()), ".", parts[2]);
  EXPECT_THAT(verifier_.Verify(forged_sub, kNow),
              StatusIs(absl::StatusCode::kUnauthenticated, "bad signature"));
}

TEST_F(JwtVerifierTest, EveryCharacterChangeIsRejected) {
  const std::string token =
      MakeUserToken(kSecret, 42, false, absl::Hours(1), kNow);
  for (size_t i = 0; i < token.size(); ++i) {
    if (token[i] == '.') continue;
    std::string tampered = token;
    tampered[i] = token[i] == 'A' ? 'B' : 'A';
    EXPECT_THAT(verifier_.Verify(tampered, kNow),
                StatusIs(absl::StatusCode::kUnauthenticated))
        << "position " << i;
  }
}

TEST_F(JwtVerifierTest, TruncatedSignature) {
  const std::string token =
      MakeUserToken(kSecret, 42, false, absl::Hours(1), kNow);
  EXPECT_THAT(verifier_.Verify(token.substr(0, token.size() - 4), kNow),
              StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(verifier_.Verify(token.substr(0, token.rfind('.') + 1), kNow),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("malformed token")));
}

TEST_F(JwtVerifierTest, AlgNoneIsRejected) {
  const std::string payload = B64(ValidClaims().dump());
  const std::string unsigned_token =
      absl::StrCat(B64(R"({"alg":"none","typ":"JWT"})"), ".", payload, ".");
  EXPECT_THAT(verifier_.Verify(unsigned_token, kNow),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("unsupported alg \"none\"")));
  // Even with a signature that would be valid for HS256.
  EXPECT_THAT(
      verifier_.Verify(SignClaims(ValidClaims(), R"({"alg":"none"})"), kNow),
      StatusIs(absl::StatusCode::kUnauthenticated,
               HasSubstr("unsupported alg")));
}

TEST_F(JwtVerifierTest, OtherAlgsAreRejected) {
  for (const char* header : {R"({"alg":"HS512"})", R"({"alg":"RS256"})",
                             R"({"alg":"hs256"})", R"({"alg":"HS256 "})"}) {
    EXPECT_THAT(verifier_.Verify(SignClaims(ValidClaims(), header), kNow),
                StatusIs(absl::StatusCode::kUnauthenticated,
                         HasSubstr("unsupported alg")))
        << header;
  }
  for (const char* header : {R"({})", R"({"alg":256})", R"({"typ":"JWT"})"}) {
    EXPECT_THAT(verifier_.Verify(SignClaims(ValidClaims(), header), kNow),
                StatusIs(absl::StatusCode::kUnauthenticated,
                         "malformed token: header has no alg"))
        << header;
  }
  EXPECT_THAT(
      verifier_.Verify(
          SignClaims(ValidClaims(), R"({"alg":"HS256","crit":["exp"]})"), kNow),
      StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("crit")));
  // typ is optional and not interpreted, but must be a string.
  EXPECT_OK(verifier_.Verify(
      SignClaims(ValidClaims(), R"({"alg":"HS256","typ":"jwt"})"), kNow));
  EXPECT_THAT(
      verifier_.Verify(SignClaims(ValidClaims(), R"({"alg":"HS256","typ":1})"),
                       kNow),
      StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("typ")));
}

TEST_F(JwtVerifierTest, Garbage) {
  const std::string good =
      MakeUserToken(kSecret, 42, false, absl::Hours(1), kNow);
  const std::vector<std::string> parts = Parts(good);
  const std::vector<std::string> garbage = {
      "",
      "abc",
      "a.b",
      "..",
      "a.b.c.d",
      "!!!.###.$$$",
      good + ".",
      "." + good,
      absl::StrCat(parts[0], "=.", parts[1], ".", parts[2]),
      absl::StrCat(parts[0], ".", parts[1], ".", parts[2], "="),
      absl::StrCat(parts[0], " .", parts[1], ".", parts[2]),
      absl::StrCat(parts[0], "+.", parts[1], ".", parts[2]),
      absl::StrCat(parts[0], ".", parts[1], ".", parts[2], "+"),
      SignRaw("not json", ValidClaims().dump()),
      SignRaw(R"(["alg","HS256"])", ValidClaims().dump()),
      SignRaw(R"({"alg":"HS256"})", "not json"),
      SignRaw(R"({"alg":"HS256"})", "[1,2,3]"),
      SignRaw(R"({"alg":"HS256"})", "\"sub\""),
      SignRaw(R"({"alg":"HS256"})", "{\"sub\":\"\xff\"}"),
      std::string(10000, 'a'),
  };
  for (const std::string& token : garbage) {
    EXPECT_THAT(verifier_.Verify(token, kNow),
                StatusIs(absl::StatusCode::kUnauthenticated,
                         HasSubstr("malformed token")))
        << token;
  }
}

TEST_F(JwtVerifierTest, MissingSub) {
  Json claims = ValidClaims();
  claims.erase("sub");
  EXPECT_THAT(
      verifier_.Verify(SignClaims(claims), kNow),
      StatusIs(absl::StatusCode::kUnauthenticated, "missing sub claim"));
  claims["sub"] = nullptr;
  EXPECT_THAT(
      verifier_.Verify(SignClaims(claims), kNow),
      StatusIs(absl::StatusCode::kUnauthenticated, "missing sub claim"));
}

TEST_F(JwtVerifierTest, BadUserIds) {
  const std::vector<Json> bad_subs = {"alice",
                                      "12a",
                                      " 12",
                                      "12 ",
                                      "+12",
                                      "-5",
                                      "0",
                                      "1.5",
                                      "0x10",
                                      "",
                                      "9223372036854775808",
                                      "99999999999999999999",
                                      -5,
                                      0,
                                      7.5,
                                      true,
                                      Json::array({1}),
                                      Json::object(),
                                      Json(18446744073709551615ULL)};
  for (const Json& sub : bad_subs) {
    Json claims = ValidClaims();
    claims["sub"] = sub;
    EXPECT_THAT(verifier_.Verify(SignClaims(claims), kNow),
                StatusIs(absl::StatusCode::kUnauthenticated,
                         "malformed token: sub claim must be a positive "
                         "decimal user id"))
        << sub.dump();
  }
}

TEST_F(JwtVerifierTest, GoodUserIds) {
  const std::vector<std::pair<Json, int64_t>> good = {
      {"1", 1},
      {"9223372036854775807", 9223372036854775807LL},
      {"007", 7},
      {Json(15), 15},
      {Json(9223372036854775807ULL), 9223372036854775807LL}};
  for (const auto& [sub, id] : good) {
    Json claims = ValidClaims();
    claims["sub"] = sub;
    ASSERT_OK_AND_ASSIGN(Principal principal,
                         verifier_.Verify(SignClaims(claims), kNow));
    EXPECT_EQ(principal.user_id, id) << sub.dump();
  }
}

TEST_F(JwtVerifierTest, EmptySecretRejectsEverything) {
  JwtVerifier unconfigured("");
  const std::string token = MakeUserToken("", 42, false, absl::Hours(1), kNow);
  EXPECT_THAT(unconfigured.Verify(token, kNow),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("not configured")));
}

class AuthenticatorTest : public ::testing::Test {
 protected:
  std::string UserToken(int64_t user_id, bool admin = false) const {
    return MakeUserToken(kSecret, user_id, admin, absl::Hours(1), absl::Now());
  }

  Authenticator auth_{kSecret, /*insecure_dev_auth=*/false};
  Authenticator dev_{kSecret, /*insecure_dev_auth=*/true};
};

TEST_F(AuthenticatorTest, BearerHeader) {
  EXPECT_FALSE(auth_.insecure_dev_auth());
  const std::string token = UserToken(9, true);
  for (const std::string& header :
       {"Bearer " + token, "bearer " + token, "BEARER\t" + token,
        "  Bearer   " + token + "  "}) {
    SCOPED_TRACE(header);
    ASSERT_OK_AND_ASSIGN(Principal principal, auth_.AuthenticateHeader(header));
    EXPECT_EQ(principal.user_id, 9);
    EXPECT_TRUE(principal.is_admin);
  }
}

TEST_F(AuthenticatorTest, MissingHeader) {
  EXPECT_THAT(auth_.AuthenticateHeader(""),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       "missing authorization metadata"));
  EXPECT_THAT(auth_.AuthenticateHeader("   "),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       "missing authorization metadata"));
}

TEST_F(AuthenticatorTest, WrongScheme) {
  const std::string token = UserToken(9);
  for (const std::string& header :
       {std::string("Basic dXNlcjpwYXNz"), token, "Token " + token,
        "Bearer:" + token, "Bearerx " + token}) {
    EXPECT_THAT(auth_.AuthenticateHeader(header),
                StatusIs(absl::StatusCode::kUnauthenticated,
                         HasSubstr("unsupported authorization scheme")))
        << header;
  }
  EXPECT_THAT(
      auth_.AuthenticateHeader("Bearer"),
      StatusIs(absl::StatusCode::kUnauthenticated, "missing bearer token"));
  EXPECT_THAT(
      auth_.AuthenticateHeader("Bearer   "),
      StatusIs(absl::StatusCode::kUnauthenticated, "missing bearer token"));
}

TEST_F(AuthenticatorTest, BadTokens) {
  EXPECT_THAT(auth_.AuthenticateHeader("Bearer garbage"),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("malformed token")));
  EXPECT_THAT(auth_.AuthenticateHeader(
                  "Bearer " + MakeUserToken("other", 9, false, absl::Hours(1),
                                            absl::Now())),
              StatusIs(absl::StatusCode::kUnauthenticated, "bad signature"));
  EXPECT_THAT(auth_.AuthenticateHeader(
                  "Bearer " + MakeUserToken(kSecret, 9, false, absl::Hours(1),
                                            absl::Now() - absl::Hours(2))),
              StatusIs(absl::StatusCode::kUnauthenticated, "token expired"));
}

TEST_F(AuthenticatorTest, ServiceIdentity) {
  ASSERT_OK_AND_ASSIGN(
      Principal principal,
      auth_.AuthenticateHeader("Bearer " +
                               MakeServiceToken(kSecret, "automation",
                                                absl::Hours(1), absl::Now())));
  EXPECT_EQ(principal.service, "automation");
  EXPECT_EQ(principal.user_id, 0);
}

TEST_F(AuthenticatorTest, DevModeWithoutTokenIsAdminUserOne) {
  EXPECT_TRUE(dev_.insecure_dev_auth());
  ASSERT_OK_AND_ASSIGN(Principal principal, dev_.AuthenticateHeader(""));
  EXPECT_EQ(principal.user_id, 1);
  EXPECT_TRUE(principal.is_admin);
  EXPECT_FALSE(principal.IsService());
}

TEST_F(AuthenticatorTest, DevModeSkipsSignatureAndExpiry) {
  const std::string foreign =
      MakeUserToken("other", 5, false, absl::Hours(1), absl::Now());
  ASSERT_OK_AND_ASSIGN(Principal principal,
                       dev_.AuthenticateHeader("Bearer " + foreign));
  EXPECT_EQ(principal.user_id, 5);
  EXPECT_FALSE(principal.is_admin);

  const std::string expired =
      MakeUserToken(kSecret, 6, false, absl::Hours(1), absl::UnixEpoch());
  ASSERT_OK_AND_ASSIGN(principal, dev_.AuthenticateHeader("Bearer " + expired));
  EXPECT_EQ(principal.user_id, 6);
}

TEST_F(AuthenticatorTest, DevModeStillRejectsMalformedTokens) {
  EXPECT_THAT(dev_.AuthenticateHeader("Bearer garbage"),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("malformed token")));
  Json claims = ValidClaims();
  claims["sub"] = "alice";
  EXPECT_THAT(dev_.AuthenticateHeader("Bearer " + SignClaims(claims)),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("sub claim must be a positive")));
  claims.erase("sub");
  EXPECT_THAT(
      dev_.AuthenticateHeader("Bearer " + SignClaims(claims)),
      StatusIs(absl::StatusCode::kUnauthenticated, "missing sub claim"));
  EXPECT_THAT(dev_.AuthenticateHeader("Basic dXNlcjpwYXNz"),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("unsupported authorization scheme")));
}

TEST_F(AuthenticatorTest, ServerContextMetadata) {
  {
    grpc::ServerContext context;
    EXPECT_THAT(auth_.Authenticate(context),
                StatusIs(absl::StatusCode::kUnauthenticated,
                         "missing authorization metadata"));
    ASSERT_OK_AND_ASSIGN(Principal dev_principal, dev_.Authenticate(context));
    EXPECT_EQ(dev_principal.user_id, 1);
    EXPECT_TRUE(dev_principal.is_admin);
  }
  {
    grpc::ServerContext context;
    grpc::testing::ServerContextTestSpouse spouse(&context);
    spouse.AddClientMetadata("authorization", "Bearer " + UserToken(11));
    ASSERT_OK_AND_ASSIGN(Principal principal, auth_.Authenticate(context));
    EXPECT_EQ(principal.user_id, 11);
  }
  {
    grpc::ServerContext context;
    grpc::testing::ServerContextTestSpouse spouse(&context);
    spouse.AddClientMetadata("authorization", "Bearer " + UserToken(11));
    spouse.AddClientMetadata("authorization", "Bearer " + UserToken(12));
    EXPECT_THAT(auth_.Authenticate(context),
                StatusIs(absl::StatusCode::kUnauthenticated,
                         HasSubstr("more than one")));
  }
}

TEST_F(AuthenticatorTest, CallerIsPrivilegedByClaimListOrServiceIdentity) {
  const std::set<int64_t> admins = {12};
  auto caller_with = [&](const std::string& token) {
    grpc::ServerContext context;
    grpc::testing::ServerContextTestSpouse spouse(&context);
    spouse.AddClientMetadata("authorization", "Bearer " + token);
    return auth_.AuthenticateCaller(context, admins);
  };
  ASSERT_OK_AND_ASSIGN(CallerIdentity plain, caller_with(UserToken(11)));
  EXPECT_EQ(plain.principal.user_id, 11);
  EXPECT_FALSE(plain.privileged);
  ASSERT_OK_AND_ASSIGN(CallerIdentity listed, caller_with(UserToken(12)));
  EXPECT_TRUE(listed.privileged);
  ASSERT_OK_AND_ASSIGN(CallerIdentity admin,
                       caller_with(UserToken(11, /*admin=*/true)));
  EXPECT_TRUE(admin.privileged);
  ASSERT_OK_AND_ASSIGN(CallerIdentity service,
                       caller_with(MakeServiceToken(
                           kSecret, "deals", absl::Hours(1), absl::Now())));
  EXPECT_TRUE(service.privileged);
  EXPECT_THAT(caller_with("not-a-jwt").status(),
              StatusIs(absl::StatusCode::kUnauthenticated));
}

}  // namespace
}  // namespace crm::common

namespace crm::common {
namespace {

TEST(AuthenticatorCacheTest, CachedTokenStillExpires) {
  const std::string secret = "cache-secret";
  Authenticator auth(secret, /*insecure_dev_auth=*/false);
  const absl::Time now = absl::FromUnixSeconds(1800000000);
  const std::string header =
      "Bearer " + MakeUserToken(secret, 42, false, absl::Minutes(1), now);
  // The first call verifies and remembers, the second is served from memory.
  for (int i = 0; i < 2; ++i) {
    ASSERT_OK_AND_ASSIGN(Principal principal,
                         auth.AuthenticateHeader(header, now));
    EXPECT_EQ(principal.user_id, 42);
    EXPECT_EQ(principal.expires, now + absl::Minutes(1) + absl::Seconds(30));
  }
  EXPECT_THAT(auth.AuthenticateHeader(header, now + absl::Minutes(2)),
              crm::testing::StatusIs(absl::StatusCode::kUnauthenticated,
                                     ::testing::HasSubstr("expired")));
}

TEST(AuthenticatorCacheTest, FailuresAreNotCachedAndOtherBytesAreVerified) {
  const std::string secret = "cache-secret";
  Authenticator auth(secret, /*insecure_dev_auth=*/false);
  const absl::Time now = absl::FromUnixSeconds(1800000000);
  const std::string token =
      MakeUserToken(secret, 42, false, absl::Hours(1), now);
  ASSERT_OK(auth.AuthenticateHeader("Bearer " + token, now).status());
  // A token signed with another secret is refused every time.
  const std::string forged =
      MakeUserToken("other", 42, true, absl::Hours(1), now);
  for (int i = 0; i < 2; ++i) {
    EXPECT_THAT(auth.AuthenticateHeader("Bearer " + forged, now),
                crm::testing::StatusIs(absl::StatusCode::kUnauthenticated));
  }
  // Tampering with the cached token's signature is caught, not matched.
  std::string tampered = token;
  tampered.back() = tampered.back() == 'A' ? 'B' : 'A';
  EXPECT_THAT(auth.AuthenticateHeader("Bearer " + tampered, now),
              crm::testing::StatusIs(absl::StatusCode::kUnauthenticated));
}

}  // namespace
}  // namespace crm::common
