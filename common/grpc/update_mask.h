// Update masks (google.protobuf.FieldMask) of Update* calls: one check of
// the paths a resource lets a caller change, with one set of messages.
//
//   CRM_ASSIGN_OR_RETURN(std::set<std::string> paths,
//                        ParseUpdateMask(request.update_mask(),
//                                        {"name", "sort"}, {"id"}));
//
// (The deals service checks its masks itself: its paths include the custom
// fields of the configuration, `custom_fields.UF_CRM_*`, which no fixed list
// names.)
#pragma once

#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "google/protobuf/field_mask.pb.h"

namespace crm::common {

// The mask's paths, each one of `mutable_paths`. INVALID_ARGUMENT naming
// `update_mask` for an empty mask (updates say what they change), for a path
// in `immutable_paths` ("<path> is immutable") and for any other unknown
// path (listing the updatable ones).
[[nodiscard]] absl::StatusOr<std::set<std::string>> ParseUpdateMask(
    const google::protobuf::FieldMask& mask,
    const std::set<std::string>& mutable_paths,
    const std::set<std::string>& immutable_paths = {});

}  // namespace crm::common
