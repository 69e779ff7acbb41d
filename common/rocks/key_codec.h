// Order-preserving key encoding: the bytewise order of encoded keys is the
// order of the values. Integers are big-endian (signed ones with the sign bit
// flipped); strings end with a 0 byte, so they must not contain one (callers
// pass only validated ids).
//
//   std::string key;
//   AppendInt64(&key, pipeline_id);
//   AppendString(&key, stage_id);
//   KeyReader reader(key);
//   int64_t id; std::string stage;
//   if (!reader.ReadInt64(&id) || !reader.ReadString(&stage) || !reader.done())
//   ...
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace crm::common {

void AppendUint64(std::string* key, uint64_t value);
void AppendInt64(std::string* key, int64_t value);
// REQUIRES: `value` holds no 0 byte.
void AppendString(std::string* key, std::string_view value);

std::string EncodeUint64(uint64_t value);
std::string EncodeInt64(int64_t value);

// Decodes what the Append functions wrote, in the same order. Each Read
// returns false (and leaves the output alone) on a short or malformed key.
class KeyReader {
 public:
  explicit KeyReader(std::string_view key) : rest_(key) {}
  bool ReadUint64(uint64_t* value);
  bool ReadInt64(int64_t* value);
  bool ReadString(std::string* value);
  bool done() const { return rest_.empty(); }

 private:
  std::string_view rest_;
};

// The smallest key greater than every key starting with `prefix`, or "" when
// there is none (all bytes 0xff). Use as iterate_upper_bound for a prefix scan.
std::string PrefixSuccessor(std::string_view prefix);

}  // namespace crm::common
