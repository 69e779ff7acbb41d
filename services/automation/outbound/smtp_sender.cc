#include "services/automation/outbound/smtp_sender.h"

#include <curl/curl.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

#include "services/automation/outbound/curl_util.h"

namespace crm::automation {
namespace {

absl::string_view AbslView(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

// A bare addr-spec without anything that could break the SMTP envelope or
// the headers.
bool IsPlainAddress(std::string_view address) {
  if (address.empty() || address.size() > 254) return false;
  const size_t at = address.find('@');
  if (at == 0 || at == std::string_view::npos || at + 1 == address.size() ||
      address.find('@', at + 1) != std::string_view::npos) {
    return false;
  }
  for (char c : address) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f || c == '<' || c == '>' || c == ',' ||
        c == ';' || c == '"' || c == '(' || c == ')' || c == '\\') {
      return false;
    }
  }
  return true;
}

bool IsAscii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x80;
  });
}

// RFC 2047 encoded word for non-ASCII subjects; CR and LF become spaces.
std::string SubjectHeaderValue(std::string_view subject) {
  std::string clean(subject);
  std::replace(clean.begin(), clean.end(), '\r', ' ');
  std::replace(clean.begin(), clean.end(), '\n', ' ');
  if (IsAscii(clean)) return clean;
  return absl::StrCat("=?UTF-8?B?", absl::Base64Escape(clean), "?=");
}

// Every line break as CRLF.
std::string ToCrlf(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 32);
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\r') {
      out.append("\r\n");
      if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
    } else if (c == '\n') {
      out.append("\r\n");
    } else {
      out.push_back(c);
    }
  }
  return out;
}

struct Upload {
  const std::string* data;
  size_t offset = 0;
};

size_t ReadUpload(char* buffer, size_t size, size_t count, void* user) {
  auto* upload = static_cast<Upload*>(user);
  const size_t n =
      std::min(size * count, upload->data->size() - upload->offset);
  std::memcpy(buffer, upload->data->data() + upload->offset, n);
  upload->offset += n;
  return n;
}

}  // namespace

std::string MakeMessageId(std::string_view key, std::string_view domain) {
  std::string safe(key);
  for (char& c : safe) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' &&
        c != '_' && c != '-') {
      c = '-';
    }
  }
  return absl::StrCat("<", safe, "@", AbslView(domain), ">");
}

absl::Status SendSmtpMail(const SmtpServer& server, const SmtpMail& mail) {
  if (!IsPlainAddress(mail.from)) {
    return absl::InvalidArgumentError(
        absl::StrCat("from: not a plain email address: \"", mail.from, "\""));
  }
  if (!IsPlainAddress(mail.to)) {
    return absl::InvalidArgumentError(
        absl::StrCat("to: not a plain email address: \"", mail.to, "\""));
  }
  const std::string& id = mail.message_id;
  if (id.size() < 5 || id.front() != '<' || id.back() != '>' ||
      !IsPlainAddress(std::string_view(id).substr(1, id.size() - 2))) {
    return absl::InvalidArgumentError(
        absl::StrCat("message_id: expected \"<id@domain>\", got \"", id, "\""));
  }
  if (server.host.empty() ||
      server.host.find_first_of("/@:?# \r\n") != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("host: invalid SMTP host \"", server.host, "\""));
  }
  if (server.port <= 0 || server.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("port: ", server.port, " is outside 1..65535"));
  }
  if (server.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("timeout: must be positive");
  }

  const std::string message =
      absl::StrCat("Date: ",
                   absl::FormatTime("%a, %d %b %Y %H:%M:%S +0000", absl::Now(),
                                    absl::UTCTimeZone()),
                   "\r\nFrom: <", mail.from, ">\r\nTo: <", mail.to,
                   ">\r\nSubject: ", SubjectHeaderValue(mail.subject),
                   "\r\nMessage-ID: ", mail.message_id,
                   "\r\nMIME-Version: 1.0\r\n"
                   "Content-Type: text/plain; charset=UTF-8\r\n"
                   "Content-Transfer-Encoding: 8bit\r\n\r\n",
                   ToCrlf(mail.text_body));

  CurlEasy curl;
  if (curl.get() == nullptr) {
    return absl::ResourceExhaustedError("curl_easy_init failed");
  }
  CURL* h = curl.get();
  const std::string url =
      absl::StrCat("smtp://", server.host, ":", server.port);
  const std::string envelope_from = absl::StrCat("<", mail.from, ">");
  curl_slist* rcpt =
      curl_slist_append(nullptr, absl::StrCat("<", mail.to, ">").c_str());
  if (rcpt == nullptr) return absl::ResourceExhaustedError("out of memory");
  Upload upload{&message};
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "smtp");
  curl_easy_setopt(h, CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_NONE));
  curl_easy_setopt(h, CURLOPT_MAIL_FROM, envelope_from.c_str());
  curl_easy_setopt(h, CURLOPT_MAIL_RCPT, rcpt);
  curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE,
                   static_cast<curl_off_t>(message.size()));
  curl_easy_setopt(h, CURLOPT_READFUNCTION, &ReadUpload);
  curl_easy_setopt(h, CURLOPT_READDATA, &upload);
  SetCommonOptions(h, server.timeout);
  const CURLcode code = curl_easy_perform(h);
  curl_slist_free_all(rcpt);
  if (code == CURLE_OK) return absl::OkStatus();

  long reply = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &reply);
  const absl::Status error = CurlError(code, curl.error(), url);
  if (reply >= 500 && reply < 600) {
    return absl::FailedPreconditionError(absl::StrCat(
        "SMTP server refused the message (", reply, "): ", error.message()));
  }
  if (reply >= 400 && reply < 500) {
    return absl::UnavailableError(absl::StrCat(
        "SMTP server deferred the message (", reply, "): ", error.message()));
  }
  return error;
}

}  // namespace crm::automation
