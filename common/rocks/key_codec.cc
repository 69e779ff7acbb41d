#include "common/rocks/key_codec.h"

namespace crm::common {

void AppendUint64(std::string* key, uint64_t value) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    key->push_back(static_cast<char>((value >> shift) & 0xff));
  }
}

void AppendInt64(std::string* key, int64_t value) {
  AppendUint64(key, static_cast<uint64_t>(value) ^ (uint64_t{1} << 63));
}

void AppendString(std::string* key, std::string_view value) {
  key->append(value.data(), value.size());
  key->push_back('\0');
}

std::string EncodeUint64(uint64_t value) {
  std::string key;
  AppendUint64(&key, value);
  return key;
}

std::string EncodeInt64(int64_t value) {
  std::string key;
  AppendInt64(&key, value);
  return key;
}

bool KeyReader::ReadUint64(uint64_t* value) {
  if (rest_.size() < 8) return false;
  uint64_t result = 0;
  for (int i = 0; i < 8; ++i) {
    result = (result << 8) | static_cast<uint8_t>(rest_[i]);
  }
  rest_.remove_prefix(8);
  *value = result;
  return true;
}

bool KeyReader::ReadInt64(int64_t* value) {
  uint64_t raw = 0;
  if (!ReadUint64(&raw)) return false;
  *value = static_cast<int64_t>(raw ^ (uint64_t{1} << 63));
  return true;
}

bool KeyReader::ReadString(std::string* value) {
  const size_t end = rest_.find('\0');
  if (end == std::string_view::npos) return false;
  value->assign(rest_.data(), end);
  rest_.remove_prefix(end + 1);
  return true;
}

std::string PrefixSuccessor(std::string_view prefix) {
  std::string result(prefix);
  while (!result.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(result.back());
    if (last != 0xff) {
      ++last;
      return result;
    }
    result.pop_back();
  }
  return result;
}

}  // namespace crm::common
