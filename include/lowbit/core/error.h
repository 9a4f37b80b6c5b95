// Errors: one exception type whose message names what went wrong and where.
#pragma once

#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace lowbit {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace lowbit

// LB_CHECK(cond, "format {}", args...) throws lowbit::Error with the formatted message when cond is false.
#define LB_CHECK(cond, ...)                     \
  do {                                          \
    if (!(cond)) ::lowbit::fail(__VA_ARGS__);   \
  } while (0)
