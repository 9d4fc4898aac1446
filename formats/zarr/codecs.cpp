// zstd / zlib / gzip / blosc / crc32c / bz2 / lz4 decoding for formats/zarr/codecs.h.
#include "formats/zarr/codecs.h"

#include <blosc.h>
#include <bzlib.h>
#include <lz4.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "core/errors.h"
#include "codec/crc32c.h"
#include "codec/inflate.h"
#include "codec/zstd_decode.h"

namespace ckb::zarr {

const char* codec_name(BytesCodecKind kind) {
  switch (kind) {
    case BytesCodecKind::Zstd: return "zstd";
    case BytesCodecKind::Zlib: return "zlib";
    case BytesCodecKind::Gzip: return "gzip";
    case BytesCodecKind::Blosc: return "blosc";
    case BytesCodecKind::Crc32c: return "crc32c";
    case BytesCodecKind::Bz2: return "bz2";
    case BytesCodecKind::Lz4: return "lz4";
  }
  return "?";
}

namespace {

Bytes copy_of(std::span<const std::byte> s) {
  Bytes b(s.size());
  if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
  return b;
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

// One or more concatenated bz2 streams (Python's bz2.decompress accepts several), decoded
// into a buffer of limit + 1 bytes so an overrun is seen without growing it.
Bytes bz2_bounded(std::span<const std::byte> in, std::uint64_t limit, bool exact, const std::string& path,
                  std::uint64_t offset, const std::string& what) {
  auto fail = [&](const std::string& m) { return FormatError(path, what + ": " + m, offset); };
  Bytes out(static_cast<std::size_t>(limit + 1));
  std::uint64_t in_pos = 0, out_pos = 0;
  if (in.empty()) throw fail("empty bz2 stream");
  while (in_pos < in.size()) {
    bz_stream bz{};
    if (BZ2_bzDecompressInit(&bz, 0, 0) != BZ_OK) throw fail("BZ2_bzDecompressInit failed");
    struct End {
      bz_stream* b;
      ~End() { BZ2_bzDecompressEnd(b); }
    } end{&bz};
    int rc = BZ_OK;
    while (rc != BZ_STREAM_END) {
      const unsigned in_step = static_cast<unsigned>(std::min<std::uint64_t>(in.size() - in_pos, 1u << 30));
      const unsigned out_step = static_cast<unsigned>(std::min<std::uint64_t>(out.size() - out_pos, 1u << 30));
      bz.next_in = reinterpret_cast<char*>(const_cast<std::byte*>(in.data() + in_pos));
      bz.avail_in = in_step;
      bz.next_out = reinterpret_cast<char*>(out.data() + out_pos);
      bz.avail_out = out_step;
      rc = BZ2_bzDecompress(&bz);
      in_pos += in_step - bz.avail_in;
      out_pos += out_step - bz.avail_out;
      if (out_pos > limit) throw fail("decodes to more than the " + std::to_string(limit) + " bytes expected");
      if (rc == BZ_STREAM_END) break;
      if (rc != BZ_OK) throw fail("corrupt bz2 stream (libbz2 error " + std::to_string(rc) + ")");
      if (in_step - bz.avail_in == 0 && out_step - bz.avail_out == 0) throw fail("truncated bz2 stream");
    }
  }
  if (exact && out_pos != limit)
    throw fail("decoded to " + std::to_string(out_pos) + " bytes, expected " + std::to_string(limit));
  Bytes r(static_cast<std::size_t>(out_pos));
  if (out_pos) std::memcpy(r.data(), out.data(), r.size());
  return r;
}

// numcodecs.LZ4: the decoded size as a 4-byte little-endian integer, then one LZ4 block.
Bytes lz4_bounded(std::span<const std::byte> in, std::uint64_t limit, bool exact, const std::string& path,
                  std::uint64_t offset, const std::string& what) {
  auto fail = [&](const std::string& m) { return FormatError(path, what + ": " + m, offset); };
  if (in.size() < 4) throw fail("lz4 frame shorter than its 4-byte size header");
  std::uint32_t declared = 0;
  for (int i = 3; i >= 0; --i) declared = (declared << 8) | static_cast<std::uint8_t>(in[static_cast<std::size_t>(i)]);
  if (declared > limit || (exact && declared != limit))
    throw fail("lz4 header declares " + std::to_string(declared) + " decoded bytes, expected " +
               (exact ? "" : "at most ") + std::to_string(limit));
  if (in.size() - 4 > static_cast<std::size_t>(LZ4_MAX_INPUT_SIZE) || declared > static_cast<std::uint32_t>(INT32_MAX))
    throw fail("lz4 block too large");
  Bytes out(declared);
  const int n = LZ4_decompress_safe(reinterpret_cast<const char*>(in.data() + 4), reinterpret_cast<char*>(out.data()),
                                    static_cast<int>(in.size() - 4), static_cast<int>(declared));
  if (n < 0 || static_cast<std::uint32_t>(n) != declared)
    throw fail(n < 0 ? "corrupt lz4 block" : "lz4 block decodes to " + std::to_string(n) + " bytes, header says " +
                                                 std::to_string(declared));
  return out;
}

}  // namespace

Bytes decode_bytes_codec(BytesCodecKind kind, std::span<const std::byte> in, std::uint64_t limit, bool exact,
                         const std::string& path, std::uint64_t offset, const std::string& what) {
  switch (kind) {
    case BytesCodecKind::Zstd: return zstd_decode(in, limit, exact, path, offset, what);
    case BytesCodecKind::Zlib: return inflate_decode(DeflateWrap::Zlib, in, limit, exact, path, offset, what);
    case BytesCodecKind::Gzip: return inflate_decode(DeflateWrap::Gzip, in, limit, exact, path, offset, what);
    case BytesCodecKind::Blosc: return blosc_bounded(in, limit, exact, path, offset, what);
    case BytesCodecKind::Bz2: return bz2_bounded(in, limit, exact, path, offset, what);
    case BytesCodecKind::Lz4: return lz4_bounded(in, limit, exact, path, offset, what);
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
