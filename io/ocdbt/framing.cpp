// Frame validation and optional zstd decoding for io/ocdbt/framing.h.
#include "io/ocdbt/framing.h"

#include <cstdio>
#include <cstring>

#include "core/errors.h"
#include "io/byte_reader.h"
#include "codec/crc32c.h"
#include "io/ocdbt/varint.h"
#include "codec/zstd_decode.h"
#include "codec/zstd_encode.h"

namespace ckb::ocdbt {

Body decode_framed(std::span<const std::byte> framed, std::shared_ptr<const void> owner, std::uint32_t magic,
                   const std::string& path, std::uint64_t offset, const char* what) {
  const std::string w(what);
  if (framed.size() < 16)
    throw FormatError(path, w + " too short: " + std::to_string(framed.size()) + " bytes (minimum 16)", offset);
  ByteReader r(framed, path, offset);
  const std::uint32_t m = r.be<std::uint32_t>("magic");
  if (m != magic) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "bad magic 0x%08X (expected 0x%08X)", m, magic);
    throw FormatError(path, w + ": " + buf, offset);
  }
  const std::uint64_t length = r.le<std::uint64_t>("length");
  if (length != framed.size())
    throw FormatError(path,
                      w + ": stored length " + std::to_string(length) + " != " + std::to_string(framed.size()) +
                          " bytes available",
                      offset + 4);
  std::uint32_t stored_crc;
  std::memcpy(&stored_crc, framed.data() + framed.size() - 4, 4);
  const std::uint32_t actual = crc32c(framed.first(framed.size() - 4));
  if (stored_crc != actual) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "crc32c mismatch (stored 0x%08X, computed 0x%08X)", stored_crc, actual);
    throw FormatError(path, w + ": " + buf, offset + framed.size() - 4);
  }
  const std::uint64_t version = read_varint(r, "format version");
  if (version != 0)
    throw FormatError(path, w + ": unsupported format version " + std::to_string(version), offset + 12);
  const std::uint64_t compression = read_varint(r, "compression format");
  const std::size_t body_start = r.pos();
  if (body_start > framed.size() - 4) throw FormatError(path, w + ": header overlaps the crc", offset);
  auto stored = framed.subspan(body_start, framed.size() - 4 - body_start);
  Body b;
  b.file_offset = offset;
  if (compression == 0) {
    b.bytes = stored;
    b.file_offset = offset + body_start;
    b.owner = std::move(owner);
  } else if (compression == 1) {
    auto decoded = std::make_shared<Bytes>(
        zstd_decode(stored, kMaxDecodedBody, false, path, offset + body_start, w + " body"));
    b.bytes = decoded->span();
    b.owner = decoded;
  } else {
    throw FormatError(path, w + ": unknown compression format " + std::to_string(compression), offset + 12);
  }
  return b;
}

std::string encode_framed(std::uint32_t magic, std::string_view body, std::optional<int> zstd_level) {
  std::string out;
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((magic >> s) & 0xFF));
  out.append(8, '\0');  // length, back-filled
  out += encode_varint(0);  // format version
  out += encode_varint(zstd_level ? 1 : 0);
  if (zstd_level) out += zstd_encode_string(body, *zstd_level);
  else out += body;
  std::uint64_t length = out.size() + 4;
  for (int i = 0; i < 8; ++i) out[4 + i] = static_cast<char>((length >> (8 * i)) & 0xFF);
  const std::uint32_t crc = crc32c(std::as_bytes(std::span(out.data(), out.size())));
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((crc >> (8 * i)) & 0xFF));
  return out;
}

}  // namespace ckb::ocdbt
