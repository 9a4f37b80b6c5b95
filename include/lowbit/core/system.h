// Facts about the running process and machine.
#pragma once

#include <cstdint>

namespace lowbit {

int64_t peak_rss_bytes();  // high-water mark of resident memory
int64_t current_rss_bytes();  // resident memory now (0 where /proc is missing)
// Restarts the high-water mark (Linux /proc/self/clear_refs) so that peak_rss_bytes() measures a phase of
// the work; false where the system cannot. After a reset peak_rss_bytes() covers the time since it.
bool reset_peak_rss();
int max_threads();          // threads parallel regions use
void set_threads(int n);    // n <= 0 keeps the default (every core)

}  // namespace lowbit
