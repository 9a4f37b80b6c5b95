#include "lowbit/core/packing.h"

#include <cstring>
#include <vector>

#include "lowbit/core/error.h"

namespace lowbit {
namespace {
void check_bits(int bits) { LB_CHECK(bits >= 1 && bits <= 8, "bit width {} outside 1..8", bits); }
}  // namespace

int64_t packed_bytes(int64_t n, int bits) {
  check_bits(bits);
  return (n * bits + 7) / 8;
}

void pack_bits(const uint8_t* values, int64_t n, int bits, uint8_t* out) {
  check_bits(bits);
  std::memset(out, 0, static_cast<size_t>(packed_bytes(n, bits)));
  const uint32_t limit = 1u << bits;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t v = values[i];
    LB_CHECK(v < limit, "value {} at index {} does not fit in {} bits", v, i, bits);
    const int64_t bit = i * bits;
    const int64_t byte = bit / 8;
    const int shift = static_cast<int>(bit % 8);
    out[byte] |= static_cast<uint8_t>(v << shift);
    if (shift + bits > 8) out[byte + 1] |= static_cast<uint8_t>(v >> (8 - shift));
  }
}

void unpack_bits(const uint8_t* packed, int64_t n, int bits, uint8_t* out) {
  check_bits(bits);
  const uint32_t mask = (1u << bits) - 1;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t bit = i * bits;
    const int64_t byte = bit / 8;
    const int shift = static_cast<int>(bit % 8);
    uint32_t v = static_cast<uint32_t>(packed[byte]) >> shift;
    if (shift + bits > 8) v |= static_cast<uint32_t>(packed[byte + 1]) << (8 - shift);
    out[i] = static_cast<uint8_t>(v & mask);
  }
}

void pack_signed_bits(const int8_t* values, int64_t n, int bits, uint8_t* out) {
  check_bits(bits);
  const int lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
  const uint32_t mask = (1u << bits) - 1;
  std::vector<uint8_t> twos(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    LB_CHECK(values[i] >= lo && values[i] <= hi, "value {} at index {} does not fit in signed {} bits",
             values[i], i, bits);
    twos[i] = static_cast<uint8_t>(static_cast<uint32_t>(values[i]) & mask);
  }
  pack_bits(twos.data(), n, bits, out);
}

void unpack_signed_bits(const uint8_t* packed, int64_t n, int bits, int8_t* out) {
  unpack_bits(packed, n, bits, reinterpret_cast<uint8_t*>(out));
  const int32_t sign = 1 << (bits - 1);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t v = static_cast<uint8_t>(out[i]);
    out[i] = static_cast<int8_t>((v ^ sign) - sign);
  }
}

}  // namespace lowbit
