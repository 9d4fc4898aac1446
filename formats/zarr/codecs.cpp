// zstd / zlib / gzip / blosc / crc32c decoding for formats/zarr/codecs.h.
#include "formats/zarr/codecs.h"

#include <blosc.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "core/errors.h"
#include "io/ocdbt/crc32c.h"
#include "io/ocdbt/zstd_decode.h"

namespace ckb::zarr {

const char* codec_name(BytesCodecKind kind) {
  switch (kind) {
    case BytesCodecKind::Zstd: return "zstd";
    case BytesCodecKind::Zlib: return "zlib";
    case BytesCodecKind::Gzip: return "gzip";
    case BytesCodecKind::Blosc: return "blosc";
    case BytesCodecKind::Crc32c: return "crc32c";
  }
  return "?";
}

namespace {

Bytes copy_of(std::span<const std::byte> s) {
  Bytes b(s.size());
  if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
  return b;
}

Bytes inflate_bounded(std::span<const std::byte> in, std::uint64_t limit, bool exact, bool gzip, const std::string& path,
                      std::uint64_t offset, const std::string& what) {
  auto fail = [&](const std::string& m) { return FormatError(path, what + ": " + m, offset); };
  z_stream zs{};
  if (inflateInit2(&zs, gzip ? 16 + MAX_WBITS : MAX_WBITS) != Z_OK) throw fail("inflateInit failed");
  struct End {
    z_stream* z;
    ~End() { inflateEnd(z); }
  } end{&zs};
  Bytes out(static_cast<std::size_t>(limit + 1));  // +1 byte to detect overrun; limit is a checked chunk size
  std::uint64_t in_pos = 0, out_pos = 0;
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    const uInt in_step = static_cast<uInt>(std::min<std::uint64_t>(in.size() - in_pos, 1u << 30));
    const uInt out_step = static_cast<uInt>(std::min<std::uint64_t>(out.size() - out_pos, 1u << 30));
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(in.data() + in_pos));
    zs.avail_in = in_step;
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + out_pos);
    zs.avail_out = out_step;
    rc = inflate(&zs, Z_NO_FLUSH);
    in_pos += in_step - zs.avail_in;
    out_pos += out_step - zs.avail_out;
    if (out_pos > limit) throw fail("decodes to more than the " + std::to_string(limit) + " bytes expected");
    if (rc == Z_STREAM_END) break;
    if (rc == Z_BUF_ERROR && in_pos == in.size()) throw fail("truncated stream");
    if (rc != Z_OK && rc != Z_BUF_ERROR) throw fail(std::string("corrupt stream: ") + (zs.msg ? zs.msg : "error"));
  }
  if (in_pos != in.size()) throw fail(std::to_string(in.size() - in_pos) + " trailing bytes after the stream");
  if (exact && out_pos != limit)
    throw fail("decoded to " + std::to_string(out_pos) + " bytes, expected " + std::to_string(limit));
  Bytes r(static_cast<std::size_t>(out_pos));
  if (out_pos) std::memcpy(r.data(), out.data(), r.size());
  return r;
}

Bytes blosc_bounded(std::span<const std::byte> in, std::uint64_t limit, bool exact, const std::string& path,
                    std::uint64_t offset, const std::string& what) {
  auto fail = [&](const std::string& m) { return FormatError(path, what + ": " + m, offset); };
  if (in.size() < BLOSC_MIN_HEADER_LENGTH) throw fail("blosc frame shorter than its header");
  std::size_t nbytes = 0, cbytes = 0, blocksize = 0;
  blosc_cbuffer_sizes(in.data(), &nbytes, &cbytes, &blocksize);
  if (cbytes != in.size())
    throw fail("blosc header says " + std::to_string(cbytes) + " compressed bytes, have " + std::to_string(in.size()));
  if (nbytes > limit || (exact && nbytes != limit))
    throw fail("blosc header declares " + std::to_string(nbytes) + " decoded bytes, expected " +
               (exact ? "" : "at most ") + std::to_string(limit));
  std::size_t validated = 0;
  if (blosc_cbuffer_validate(in.data(), in.size(), &validated) < 0 || validated != nbytes)
    throw fail("invalid blosc frame");
  Bytes out(nbytes);
  if (nbytes == 0) return out;
  const int n = blosc_decompress_ctx(in.data(), out.data(), out.size(), 1);
  if (n < 0 || static_cast<std::size_t>(n) != nbytes) throw fail("corrupt blosc data");
  return out;
}

}  // namespace

Bytes decode_bytes_codec(BytesCodecKind kind, std::span<const std::byte> in, std::uint64_t limit, bool exact,
                         const std::string& path, std::uint64_t offset, const std::string& what) {
  switch (kind) {
    case BytesCodecKind::Zstd: return zstd_decode(in, limit, exact, path, offset, what);
    case BytesCodecKind::Zlib: return inflate_bounded(in, limit, exact, false, path, offset, what);
    case BytesCodecKind::Gzip: return inflate_bounded(in, limit, exact, true, path, offset, what);
    case BytesCodecKind::Blosc: return blosc_bounded(in, limit, exact, path, offset, what);
    case BytesCodecKind::Crc32c: {
      if (in.size() < 4) throw FormatError(path, what + ": too short for a crc32c checksum", offset);
      const auto body = in.first(in.size() - 4);
      std::uint32_t stored;
      std::memcpy(&stored, in.data() + body.size(), 4);
      const std::uint32_t actual = ocdbt::crc32c(body);
      if (stored != actual) {
        char buf[80];
        std::snprintf(buf, sizeof buf, "crc32c mismatch (stored 0x%08X, computed 0x%08X)", stored, actual);
        throw FormatError(path, what + ": " + buf, offset + body.size());
      }
      if (body.size() > limit || (exact && body.size() != limit))
        throw FormatError(path, what + ": " + std::to_string(body.size()) + " bytes, expected " + std::to_string(limit),
                          offset);
      return copy_of(body);
    }
  }
  throw FormatError(path, what + ": unknown codec", offset);
}

}  // namespace ckb::zarr
