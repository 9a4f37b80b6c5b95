#include <gtest/gtest.h>

#include <random>

#include "lowbit/core/error.h"
#include "lowbit/core/packing.h"

namespace lowbit {
namespace {

TEST(Packing, UnsignedRoundTripsForEveryWidth) {
  std::mt19937 rng(7);
  for (int bits = 1; bits <= 8; ++bits) {
    for (int64_t n : {1, 3, 7, 8, 13, 257, 1001}) {
      std::vector<uint8_t> v(n), back(n);
      for (auto& x : v) x = static_cast<uint8_t>(rng() % (1u << bits));
      std::vector<uint8_t> packed(packed_bytes(n, bits));
      pack_bits(v.data(), n, bits, packed.data());
      EXPECT_EQ(static_cast<int64_t>(packed.size()), (n * bits + 7) / 8);
      unpack_bits(packed.data(), n, bits, back.data());
      EXPECT_EQ(v, back) << "bits " << bits << " n " << n;
    }
  }
}

TEST(Packing, FourBitsIsLowNibbleFirst) {
  const uint8_t v[4] = {0x1, 0x2, 0xf, 0x0};
  uint8_t p[2];
  pack_bits(v, 4, 4, p);
  EXPECT_EQ(p[0], 0x21);
  EXPECT_EQ(p[1], 0x0f);
}

TEST(Packing, SignedRoundTripsAndRejectsOutOfRange) {
  std::mt19937 rng(9);
  for (int bits = 2; bits <= 8; ++bits) {
    const int lo = -(1 << (bits - 1)), span = 1 << bits;
    std::vector<int8_t> v(333), back(333);
    for (auto& x : v) x = static_cast<int8_t>(lo + static_cast<int>(rng() % span));
    std::vector<uint8_t> packed(packed_bytes(333, bits));
    pack_signed_bits(v.data(), 333, bits, packed.data());
    unpack_signed_bits(packed.data(), 333, bits, back.data());
    EXPECT_EQ(v, back);
  }
  const int8_t bad[1] = {8};
  uint8_t out[1];
  EXPECT_THROW(pack_signed_bits(bad, 1, 4, out), Error);
  const uint8_t bad_u[1] = {16};
  EXPECT_THROW(pack_bits(bad_u, 1, 4, out), Error);
  EXPECT_THROW(packed_bytes(4, 9), Error);
}

}  // namespace
}  // namespace lowbit
