#include "lowbit/core/system.h"

#include <omp.h>
#include <sys/resource.h>

namespace lowbit {

int64_t peak_rss_bytes() {
  struct rusage u {};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<int64_t>(u.ru_maxrss) * 1024;  // kilobytes on Linux
}

int max_threads() { return omp_get_max_threads(); }

void set_threads(int n) {
  if (n > 0) omp_set_num_threads(n);
}

}  // namespace lowbit
