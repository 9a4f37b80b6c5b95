// Sub-byte packing: values of 1..8 bits laid out as a little-endian bit stream
// (value i occupies bits [i*bits, (i+1)*bits) of the stream; byte 0 holds the lowest bits).
// For 4 bits this is the usual "low nibble first" order.
#pragma once

#include <cstdint>

namespace lowbit {

int64_t packed_bytes(int64_t n, int bits);

// values[i] must be < 2^bits (checked: a larger value is an error, not silently truncated).
void pack_bits(const uint8_t* values, int64_t n, int bits, uint8_t* out);
void unpack_bits(const uint8_t* packed, int64_t n, int bits, uint8_t* out);

// Signed variants: two's complement in `bits` bits, values in [-2^(bits-1), 2^(bits-1)-1].
void pack_signed_bits(const int8_t* values, int64_t n, int bits, uint8_t* out);
void unpack_signed_bits(const uint8_t* packed, int64_t n, int bits, int8_t* out);

}  // namespace lowbit
