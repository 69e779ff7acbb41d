// What a binary was built from, for --version and the start-up log line.
#pragma once

namespace crm::common {

// The project version (CMake's PROJECT_VERSION), e.g. "0.9.0".
const char* BuildVersion();
// The commit, from `git describe --always --dirty` at build time (with
// "-dirty" for uncommitted changes), $CRM_BUILD_COMMIT, or "unknown".
const char* BuildCommit();

}  // namespace crm::common
