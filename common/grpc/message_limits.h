// Message size limits every service and client of this project shares.
//
// gRPC refuses any message above the receiver's limit (RESOURCE_EXHAUSTED,
// "larger than max"), and a refusal that repeats on every retry wedges
// whatever sent it. So the limits are fixed in one place:
//
//   * kMaxMessageBytes: what servers accept and send and what clients of
//     this project accept. Far above anything one record can reach.
//   * kReplyBudgetBytes: a reply that pages (a list, a board column, an
//     event replay) or a push of events stops adding items once its
//     serialized size reaches this, and hands out a next page token or
//     resumes in the next push. The first item always goes in, so a page
//     is never empty while items remain.
//   * kMaxDealBytes: the largest stored deal the API admits (serialized);
//     an event carries one deal plus a little, so it always fits a message.
#pragma once

#include <cstddef>

namespace crm::common {

inline constexpr int kMaxMessageBytes = 16 << 20;
inline constexpr size_t kReplyBudgetBytes = 2 << 20;
inline constexpr size_t kMaxDealBytes = 1 << 20;

static_assert(kMaxDealBytes * 2 + kReplyBudgetBytes <=
                  static_cast<size_t>(kMaxMessageBytes),
              "a reply over budget by one deal must still fit a message");

// Counts what a paging reply holds so far:
//
//   ReplyBudget budget;
//   for (...) {
//     *reply.add_deals() = deal;
//     if (budget.Spend(reply.deals(n).ByteSizeLong()) && more_remain) {
//       reply.set_next_page_token(TokenAfter(deal));
//       break;
//     }
//   }
//
// Items go in first and are counted after, so a page always holds at least
// one item and ends at most one item past the budget; items are bounded
// (kMaxDealBytes and smaller), so the reply stays far below
// kMaxMessageBytes.
class ReplyBudget {
 public:
  explicit ReplyBudget(size_t limit = kReplyBudgetBytes) : limit_(limit) {}

  // Adds an item of `bytes` (its ByteSizeLong()); true once the reply has
  // reached the budget and should stop.
  bool Spend(size_t bytes) {
    // Each repeated-field element also costs a tag and a length prefix.
    used_ += bytes + 6;
    return used_ >= limit_;
  }
  bool spent() const { return used_ >= limit_; }
  size_t used() const { return used_; }

 private:
  size_t limit_;
  size_t used_ = 0;
};

}  // namespace crm::common
