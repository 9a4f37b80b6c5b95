// Which CPU kernels this machine runs, for benchmark reports.
#pragma once

#include <string>

namespace lowbit {

std::string cpu_kernels_description();  // e.g. "avx512 (+vnni)"

}  // namespace lowbit
