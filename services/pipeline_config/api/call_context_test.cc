#include "services/pipeline_config/api/call_context.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/grpc/message_limits.h"
#include "common/pagination/page_token.h"
#include "common/rocks/key_codec.h"
#include "common/status/status_matchers.h"

namespace crm::pipeline_config {
namespace {

using ::testing::ElementsAre;

std::vector<std::string> Keys(int count) {
  std::vector<std::string> keys;
  for (int i = 1; i <= count; ++i) keys.push_back(common::EncodeInt64(i));
  return keys;
}

// Pages through `keys` with items of `item_bytes`; the sizes of the pages.
std::vector<int> PageSizes(const std::vector<std::string>& keys,
                           size_t item_bytes, int page_size,
                           std::vector<size_t>* emitted) {
  const common::PageTokenCodec codec("call-context-test-secret-0123456789");
  std::vector<int> sizes;
  std::string token;
  for (int page = 0; page < 100; ++page) {
    int count = 0;
    std::string next;
    EXPECT_OK(Paginate(
        keys, page_size, token, "q", codec,
        [&](size_t i) {
          emitted->push_back(i);
          ++count;
          return item_bytes;
        },
        &next));
    sizes.push_back(count);
    if (next.empty()) break;
    token = next;
  }
  return sizes;
}

TEST(PaginateTest, PagesEndAtThePageSize) {
  std::vector<size_t> emitted;
  EXPECT_THAT(PageSizes(Keys(7), 10, 3, &emitted), ElementsAre(3, 3, 1));
  EXPECT_THAT(emitted, ElementsAre(0, 1, 2, 3, 4, 5, 6));
}

TEST(PaginateTest, PagesAlsoEndAtTheReplyBudget) {
  // Items of a third of the budget: three fill a reply, whatever the page
  // size, and every item still comes exactly once.
  std::vector<size_t> emitted;
  EXPECT_THAT(PageSizes(Keys(8), common::kReplyBudgetBytes / 3, 100, &emitted),
              ElementsAre(3, 3, 2));
  EXPECT_THAT(emitted, ElementsAre(0, 1, 2, 3, 4, 5, 6, 7));
  // An item larger than the whole budget still goes out, one per page.
  emitted.clear();
  EXPECT_THAT(PageSizes(Keys(2), common::kReplyBudgetBytes * 2, 100, &emitted),
              ElementsAre(1, 1));
}

}  // namespace
}  // namespace crm::pipeline_config
