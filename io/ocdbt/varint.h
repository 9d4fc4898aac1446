// Unsigned LEB128 varints as OCDBT encodes them (riegeli Read/WriteVarint64): 7 bits per
// byte, least significant group first, at most 10 bytes for 64 bits. Fields declared
// uint32/uint16 are range checked. Malformed input throws FormatError naming the file and
// absolute offset (through ByteReader).
#pragma once

#include <cstdint>
#include <string>

#include "io/byte_reader.h"

namespace ckb::ocdbt {

std::uint64_t read_varint(ByteReader& r, const char* what);
// Fails unless the value is <= max.
std::uint64_t read_varint_max(ByteReader& r, std::uint64_t max, const char* what);
inline std::uint32_t read_varint32(ByteReader& r, const char* what) {
  return static_cast<std::uint32_t>(read_varint_max(r, 0xFFFFFFFFu, what));
}
inline std::uint16_t read_varint16(ByteReader& r, const char* what) {
  return static_cast<std::uint16_t>(read_varint_max(r, 0xFFFFu, what));
}
// Encoding, for tests and writers.
std::string encode_varint(std::uint64_t v);

}  // namespace ckb::ocdbt
