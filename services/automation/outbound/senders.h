// The two ways automation reaches outside: mail and HTTP POST (webhooks, the
// SMS gateway), as interfaces so the action runners can be tested without a
// network. The real ones wrap SendSmtpMail and SendHttpPost; a recording
// fake for tests is in fake_senders.h.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "services/automation/outbound/http_sender.h"
#include "services/automation/outbound/smtp_sender.h"

namespace crm::automation {

class MailSender {
 public:
  virtual ~MailSender() = default;
  // Statuses as SendSmtpMail.
  [[nodiscard]] virtual absl::Status Send(const SmtpMail& mail) = 0;
};

class HttpSender {
 public:
  virtual ~HttpSender() = default;
  // Statuses as SendHttpPost.
  [[nodiscard]] virtual absl::StatusOr<HttpResult> Post(
      const HttpPost& post) = 0;
};

// Mail through one SMTP server.
class SmtpMailSender final : public MailSender {
 public:
  explicit SmtpMailSender(SmtpServer server) : server_(std::move(server)) {}
  absl::Status Send(const SmtpMail& mail) override {
    return SendSmtpMail(server_, mail);
  }

 private:
  const SmtpServer server_;
};

// POSTs over libcurl.
class CurlHttpSender final : public HttpSender {
 public:
  absl::StatusOr<HttpResult> Post(const HttpPost& post) override {
    return SendHttpPost(post);
  }
};

}  // namespace crm::automation
