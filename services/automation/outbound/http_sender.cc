#include "services/automation/outbound/http_sender.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

#include "services/automation/outbound/curl_util.h"

namespace crm::automation {
namespace {

size_t AppendCapped(char* data, size_t size, size_t count, void* user) {
  auto* out = static_cast<std::string*>(user);
  const size_t n = size * count;
  if (out->size() < kMaxResponseBytes) {
    out->append(data, std::min(n, kMaxResponseBytes - out->size()));
  }
  return n;
}

absl::Status CheckUrl(const std::string& url) {
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> parsed(curl_url(),
                                                             &curl_url_cleanup);
  if (parsed == nullptr) return absl::ResourceExhaustedError("curl_url failed");
  if (curl_url_set(parsed.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) {
    return absl::InvalidArgumentError(
        absl::StrCat("url: not a valid URL: \"", url, "\""));
  }
  char* scheme = nullptr;
  char* host = nullptr;
  curl_url_get(parsed.get(), CURLUPART_SCHEME, &scheme, 0);
  curl_url_get(parsed.get(), CURLUPART_HOST, &host, 0);
  const std::string scheme_text = scheme ? absl::AsciiStrToLower(scheme) : "";
  const bool has_host = host != nullptr && host[0] != '\0';
  curl_free(scheme);
  curl_free(host);
  if (scheme_text != "http" && scheme_text != "https") {
    return absl::InvalidArgumentError(absl::StrCat(
        "url: only http and https are allowed, got \"", url, "\""));
  }
  if (!has_host) {
    return absl::InvalidArgumentError(
        absl::StrCat("url: no host in \"", url, "\""));
  }
  return absl::OkStatus();
}

struct SocketGuard {
  bool public_only = false;
  bool refused = false;
};

curl_socket_t OpenCheckedSocket(void* user, curlsocktype,
                                struct curl_sockaddr* address) {
  auto* guard = static_cast<SocketGuard*>(user);
  if (guard->public_only && IsNonPublicAddress(&address->addr)) {
    guard->refused = true;
    return CURL_SOCKET_BAD;
  }
  return socket(address->family, address->socktype | SOCK_CLOEXEC,
                address->protocol);
}

bool NonPublicIpv4(uint32_t ip) {  // host byte order
  const auto in = [ip](uint32_t net, int bits) {
    return (ip >> (32 - bits)) == (net >> (32 - bits));
  };
  return in(0x00000000, 8) ||   // 0.0.0.0/8
         in(0x0A000000, 8) ||   // 10/8
         in(0x64400000, 10) ||  // 100.64/10
         in(0x7F000000, 8) ||   // 127/8
         in(0xA9FE0000, 16) ||  // 169.254/16
         in(0xAC100000, 12) ||  // 172.16/12
         in(0xC0000000, 24) ||  // 192.0.0/24
         in(0xC0A80000, 16) ||  // 192.168/16
         in(0xC6120000, 15) ||  // 198.18/15
         in(0xE0000000, 4) ||   // multicast
         in(0xF0000000, 4);     // 240/4, broadcast included
}

}  // namespace

bool IsNonPublicAddress(const struct sockaddr* address) {
  if (address->sa_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(address);
    return NonPublicIpv4(ntohl(v4->sin_addr.s_addr));
  }
  if (address->sa_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(address);
    const uint8_t* b = v6->sin6_addr.s6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {
      return NonPublicIpv4((uint32_t{b[12]} << 24) | (uint32_t{b[13]} << 16) |
                           (uint32_t{b[14]} << 8) | b[15]);
    }
    return IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr) ||
           IN6_IS_ADDR_UNSPECIFIED(&v6->sin6_addr) ||
           IN6_IS_ADDR_LINKLOCAL(&v6->sin6_addr) ||
           IN6_IS_ADDR_MULTICAST(&v6->sin6_addr) ||
           (b[0] & 0xFE) == 0xFC ||  // fc00::/7
           // NAT64 (64:ff9b::/96, 64:ff9b:1::/48) and 6to4 (2002::/16)
           // reach IPv4 addresses through a gateway.
           (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b) ||
           (b[0] == 0x20 && b[1] == 0x02);
  }
  return true;  // other families are not for webhooks
}

std::string FormEncode(
    const std::vector<std::pair<std::string, std::string>>& fields) {
  InitCurlOnce();
  std::string out;
  for (const auto& [key, value] : fields) {
    if (!out.empty()) out.push_back('&');
    char* k =
        curl_easy_escape(nullptr, key.data(), static_cast<int>(key.size()));
    char* v =
        curl_easy_escape(nullptr, value.data(), static_cast<int>(value.size()));
    absl::StrAppend(&out, k ? k : "", "=", v ? v : "");
    curl_free(k);
    curl_free(v);
  }
  return out;
}

absl::StatusOr<HttpResult> SendHttpPost(const HttpPost& post) {
  if (post.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("timeout: must be positive");
  }
  const absl::Status url_ok = CheckUrl(post.url);
  if (!url_ok.ok()) return url_ok;
  CurlHeaders headers;
  const absl::Status type_ok = headers.Add("Content-Type", post.content_type);
  if (!type_ok.ok()) return type_ok;
  for (const auto& [name, value] : post.headers) {
    const absl::Status ok = headers.Add(name, value);
    if (!ok.ok()) return ok;
  }
  // No "Expect: 100-continue" round trip for larger bodies.
  const absl::Status expect_ok = headers.Add("Expect", "");
  if (!expect_ok.ok()) return expect_ok;

  CurlEasy curl;
  if (curl.get() == nullptr) {
    return absl::ResourceExhaustedError("curl_easy_init failed");
  }
  HttpResult result;
  CURL* h = curl.get();
  curl_easy_setopt(h, CURLOPT_URL, post.url.c_str());
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_POST, 1L);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, post.body.data());
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                   static_cast<curl_off_t>(post.body.size()));
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_PROXY, "");
  SetCommonOptions(h, post.timeout);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &AppendCapped);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &result.body);
  SocketGuard guard;
  guard.public_only = post.public_addresses_only;
  curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, &OpenCheckedSocket);
  curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, &guard);

  const CURLcode code = curl_easy_perform(h);
  if (guard.refused && code != CURLE_OK) {
    return absl::FailedPreconditionError(
        absl::StrCat("url: ", post.url,
                     " resolves to a loopback, private or link-local address"));
  }
  if (code != CURLE_OK) return CurlError(code, curl.error(), post.url);
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  result.status_code = static_cast<int>(status);
  if (status >= 500) {
    return absl::UnavailableError(
        absl::StrCat("POST ", post.url, ": server answered ", status));
  }
  return result;
}

}  // namespace crm::automation
