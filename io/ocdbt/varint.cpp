// Varint decoding for io/ocdbt/varint.h.
#include "io/ocdbt/varint.h"

namespace ckb::ocdbt {

std::uint64_t read_varint(ByteReader& r, const char* what) {
  const std::uint64_t start = r.abs_pos();
  std::uint64_t v = 0;
  for (int i = 0; i < 10; ++i) {
    if (r.at_end()) throw FormatError(r.path(), std::string("truncated varint (") + what + ")", start);
    std::uint8_t b = r.u8(what);
    if (i == 9 && b > 1)  // the 10th byte may only carry the top bit of a 64-bit value
      throw FormatError(r.path(), std::string("varint overflows 64 bits (") + what + ")", start);
    v |= static_cast<std::uint64_t>(b & 0x7F) << (7 * i);
    if (!(b & 0x80)) return v;
  }
  throw FormatError(r.path(), std::string("varint longer than 10 bytes (") + what + ")", start);
}

std::uint64_t read_varint_max(ByteReader& r, std::uint64_t max, const char* what) {
  const std::uint64_t start = r.abs_pos();
  std::uint64_t v = read_varint(r, what);
  if (v > max)
    throw FormatError(r.path(),
                      std::string(what) + " = " + std::to_string(v) + " exceeds its limit " + std::to_string(max), start);
  return v;
}

std::string encode_varint(std::uint64_t v) {
  std::string s;
  do {
    std::uint8_t b = v & 0x7F;
    v >>= 7;
    if (v) b |= 0x80;
    s.push_back(static_cast<char>(b));
  } while (v);
  return s;
}

}  // namespace ckb::ocdbt
