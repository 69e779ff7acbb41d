#include "common/grpc/update_mask.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace crm::common {

absl::StatusOr<std::set<std::string>> ParseUpdateMask(
    const google::protobuf::FieldMask& mask,
    const std::set<std::string>& mutable_paths,
    const std::set<std::string>& immutable_paths) {
  if (mask.paths_size() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("update_mask: required; updatable fields: ",
                     absl::StrJoin(mutable_paths, ", ")));
  }
  std::set<std::string> paths;
  for (const std::string& path : mask.paths()) {
    if (immutable_paths.count(path) > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("update_mask: ", path, " is immutable"));
    }
    if (mutable_paths.count(path) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "update_mask: unknown field \"", path,
          "\"; updatable fields: ", absl::StrJoin(mutable_paths, ", ")));
    }
    paths.insert(path);
  }
  return paths;
}

}  // namespace crm::common
