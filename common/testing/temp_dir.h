// Test-only: a fresh directory under $TMPDIR (or /tmp), removed with all its
// contents when the object goes away.
#pragma once

#include <string>

namespace crm::testing {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace crm::testing
