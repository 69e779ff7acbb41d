// Recording mail and HTTP senders for unit tests: every message or POST is
// kept, and answers are scripted (queued, in order; once the queue is empty
// mail is accepted and POSTs answer HTTP 200). Thread-safe.
//
//   FakeHttpSender http;
//   http.AnswerNext(HttpResult{503, ""});
//   ... run the rule ...
//   EXPECT_EQ(http.posts().size(), 1);
#pragma once

#include <deque>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

#include "services/automation/outbound/senders.h"

namespace crm::automation {

class FakeMailSender final : public MailSender {
 public:
  void AnswerNext(absl::Status status) {
    absl::MutexLock lock(&mu_);
    answers_.push_back(std::move(status));
  }
  std::vector<SmtpMail> sent() const {
    absl::MutexLock lock(&mu_);
    return sent_;
  }
  absl::Status Send(const SmtpMail& mail) override {
    absl::MutexLock lock(&mu_);
    sent_.push_back(mail);
    if (answers_.empty()) return absl::OkStatus();
    absl::Status answer = std::move(answers_.front());
    answers_.pop_front();
    return answer;
  }

 private:
  mutable absl::Mutex mu_;
  std::deque<absl::Status> answers_ ABSL_GUARDED_BY(mu_);
  std::vector<SmtpMail> sent_ ABSL_GUARDED_BY(mu_);
};

class FakeHttpSender final : public HttpSender {
 public:
  void AnswerNext(absl::StatusOr<HttpResult> answer) {
    absl::MutexLock lock(&mu_);
    answers_.push_back(std::move(answer));
  }
  std::vector<HttpPost> posts() const {
    absl::MutexLock lock(&mu_);
    return posts_;
  }
  absl::StatusOr<HttpResult> Post(const HttpPost& post) override {
    absl::MutexLock lock(&mu_);
    posts_.push_back(post);
    if (answers_.empty()) return HttpResult{200, ""};
    absl::StatusOr<HttpResult> answer = std::move(answers_.front());
    answers_.pop_front();
    return answer;
  }

 private:
  mutable absl::Mutex mu_;
  std::deque<absl::StatusOr<HttpResult>> answers_ ABSL_GUARDED_BY(mu_);
  std::vector<HttpPost> posts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace crm::automation
