#include "common/grpc/update_mask.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "common/status/status_matchers.h"

namespace crm::common {
namespace {

using ::crm::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

google::protobuf::FieldMask Mask(std::initializer_list<const char*> paths) {
  google::protobuf::FieldMask mask;
  for (const char* path : paths) mask.add_paths(path);
  return mask;
}

TEST(UpdateMaskTest, KnownPathsPassOthersAreNamed) {
  auto paths =
      ParseUpdateMask(Mask({"sort", "name", "sort"}), {"name", "sort"});
  ASSERT_TRUE(paths.ok()) << paths.status();
  EXPECT_THAT(*paths, ElementsAre("name", "sort"));
  EXPECT_THAT(ParseUpdateMask(Mask({}), {"name", "sort"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("update_mask: required; updatable fields: "
                                 "name, sort")));
  EXPECT_THAT(ParseUpdateMask(Mask({"id"}), {"name"}, {"id"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("update_mask: id is immutable")));
  EXPECT_THAT(ParseUpdateMask(Mask({"name", "colour"}), {"name"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown field \"colour\"")));
}

}  // namespace
}  // namespace crm::common
