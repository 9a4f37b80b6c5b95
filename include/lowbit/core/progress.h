// Progress of long work on a terminal: "label  12/156  [00:07 < 01:23]", redrawn at most ten times a
// second on stderr, and silent when stderr is not a terminal (CI, pipes) or when disabled.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace lowbit {

bool stderr_is_terminal();

class Progress {
 public:
  Progress(std::string label, int64_t total, bool enabled = stderr_is_terminal());
  ~Progress();
  void update(int64_t done, std::string_view note = {});
  void finish();  // clears the line

 private:
  std::string label_;
  int64_t total_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

std::string format_duration(double seconds);  // "1:05:03", "02:07"

}  // namespace lowbit
