// Where the tests find the project's shared data (models, golden vectors, text).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

namespace lowbit::test {

// ../shared relative to the source tree, unless LOWBIT_SHARED_DIR says otherwise.
inline std::filesystem::path shared_dir() {
  if (const char* e = std::getenv("LOWBIT_SHARED_DIR"); e && *e) return e;
  return std::filesystem::path(LOWBIT_SOURCE_DIR) / ".." / "shared";
}

inline std::filesystem::path golden_dir() {
  if (const char* e = std::getenv("LOWBIT_GOLDEN_DIR"); e && *e) return e;
  return shared_dir() / "golden";
}

}  // namespace lowbit::test
