// Facts about the running process and machine.
#pragma once

#include <cstdint>

namespace lowbit {

int64_t peak_rss_bytes();  // high-water mark of resident memory
int max_threads();          // threads parallel regions use
void set_threads(int n);    // n <= 0 keeps the default (every core)

}  // namespace lowbit
