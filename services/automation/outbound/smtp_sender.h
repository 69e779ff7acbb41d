// Outbound email over plain SMTP (no TLS, no auth), e.g. to a local relay or
// an MTA sidecar, over libcurl.
//
//   SmtpMail mail;
//   mail.from = "crm@example.com";
//   mail.to = contact_email;
//   mail.subject = subject;
//   mail.text_body = body;
//   mail.message_id = MakeMessageId(run_key, "crm.example.com");
//   CRM_RETURN_IF_ERROR(SendSmtpMail({"127.0.0.1", 25}, mail));
//
// The Message-ID stays the same for every attempt of one rule run, so mail
// systems and the receiver can recognise a redelivered message.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace crm::automation {

struct SmtpServer {
  std::string host;
  int port = 25;
  // Whole session, connection included.
  absl::Duration timeout = absl::Seconds(30);
};

struct SmtpMail {
  std::string from;  // a bare address: "crm@example.com"
  std::string to;    // a bare address
  std::string subject;
  // UTF-8 plain text; line breaks are sent as CRLF.
  std::string text_body;
  // "<id@domain>", see MakeMessageId.
  std::string message_id;
};

// "<key@domain>" with characters outside [A-Za-z0-9._-] in `key` replaced by
// '-'; the same key always gives the same id.
std::string MakeMessageId(std::string_view key, std::string_view domain);

// Sends one message.
//   INVALID_ARGUMENT    a malformed address, message id, host or port
//   FAILED_PRECONDITION the server refused permanently (5xx), e.g. no such
//                       recipient; retrying will not help
//   DEADLINE_EXCEEDED   no completed session within the timeout
//   UNAVAILABLE         connection failure or a temporary refusal (4xx)
[[nodiscard]] absl::Status SendSmtpMail(const SmtpServer& server,
                                        const SmtpMail& mail);

}  // namespace crm::automation
