// Zip archives as used by torch.save (stored records, 64-byte aligned, zip64 records) and
// numpy .npz (stored or deflated members, zip64 extra fields with 0xFFFFFFFF local sizes).
//
// Hand-written on purpose: a converter needs the absolute file offset of each stored
// member to mmap tensors without copying, and torch's writer layout (FB padding extra
// field, data at 64-byte boundaries, sizes known before data) which general zip libraries
// (libzip, minizip) do not expose. Deflate itself is zlib's.
//
// Reader safety: sizes and offsets come from the central directory (and zip64 extra
// fields), are checked against the file size, names with "..", absolute paths or NUL are
// rejected, and inflation stops at the declared uncompressed size (zip bombs cannot grow
// past it).
//
// CRC-32: the central directory's CRC-32 is authoritative. Every way to get a member's bytes
// except stored_bytes() checks it, without a second pass over the data: read() and deflated
// sources check while inflating/copying; stored-member sources check as their ranges are
// read, in any order and from several threads (io/zip_crc.h, which also says what happens to
// members read only in part). Whether the local header (or, with general-purpose flag bit 3,
// the data descriptor) records the same CRC-32 is checked when the member is accessed. With
// ZipReadOptions::zero_crc_means_unset (torch.save with
// torch.serialization.set_crc32_options(False) writes 0 for every record, and torch.load
// never checks) a CRC-32 of 0 on a non-empty member means "none recorded": such a member is
// not verified and its stored source stays zero-copy.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/tensor.h"
#include "io/file.h"
#include "io/output.h"
#include "io/zip_crc.h"

namespace ckb {

struct ZipEntry {
  std::string name;
  std::uint16_t method = 0;  // 0 stored, 8 deflated (others rejected on read)
  std::uint32_t crc32 = 0;
  std::uint64_t compressed_size = 0;
  std::uint64_t uncompressed_size = 0;
  std::uint64_t local_header_offset = 0;
  std::uint64_t data_offset = 0;  // absolute offset of the member's (compressed) bytes
  // The CRC-32 the local header (or data descriptor) records; nullopt when none is readable.
  std::optional<std::uint32_t> local_crc32;
  bool crc_recorded = true;  // false: a 0 CRC-32 read with ZipReadOptions::zero_crc_means_unset
};

struct ZipReadOptions {
  bool zero_crc_means_unset = false;
};

class ZipReader {
 public:
  // Parses the end-of-central-directory (zip64 aware) and the central directory.
  explicit ZipReader(MappedFilePtr file, ZipReadOptions opts = {});
  const std::vector<ZipEntry>& entries() const { return entries_; }
  const ZipEntry* find(std::string_view name) const;
  const MappedFilePtr& file() const { return file_; }
  // Raw bytes of a stored (method 0) member, NOT CRC-checked (for peeking at headers);
  // FormatError for compressed members.
  std::span<const std::byte> stored_bytes(const ZipEntry& e) const;
  // The member's uncompressed bytes (inflated if needed), CRC-32 checked.
  Bytes read(const ZipEntry& e) const;
  // A lazy tensor source over the member: a copying, CRC-32 verifying range source for
  // stored members (parallel_reads, not contiguous; zero-copy only when no CRC is
  // recorded), inflated (and CRC-checked) on first read and cached for deflated ones. `skip`
  // bytes at the start are not part of the tensor (e.g. an .npy header); `len` is the
  // tensor's byte size. The bytes outside [skip, skip + len) are checksummed now; all
  // sources over one member share one verifier.
  SourcePtr member_source(const ZipEntry& e, std::uint64_t skip, std::uint64_t len) const;

 private:
  // FormatError when the local header's CRC-32 disagrees with the central directory's.
  void check_local_crc(const ZipEntry& e) const;
  std::shared_ptr<const ZipCrcVerifier> verifier(const ZipEntry& e) const;

  MappedFilePtr file_;
  ZipReadOptions opts_;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, std::size_t> index_;  // name -> entries_ slot
  mutable std::mutex verifiers_mu_;
  mutable std::vector<std::shared_ptr<const ZipCrcVerifier>> verifiers_;  // by entries_ slot, lazily
};

// Writes stored members at offsets fixed before any data arrives, so tensors can be
// written in parallel and in any order. Each member's data starts at a multiple of
// `alignment` (padding in a local-header extra field, id 0x4246 as torch writes it).
// zip64 records are written when needed (or always, with force_zip64).
class ZipWriter {
 public:
  struct Member {
    std::string name;
    std::uint64_t size;
  };
  ZipWriter(AtomicFile& out, std::vector<Member> members, std::uint64_t alignment = 64, bool force_zip64 = false);
  // Absolute file offset of member i's data.
  std::uint64_t data_offset(std::size_t i) const;
  // Thread-safe: bytes [offset, offset+data.size()) of member i.
  void write(std::size_t i, std::uint64_t offset, std::span<const std::byte> data);
  // Writes the central directory and end records (and the local headers not written yet: a
  // member's local header, with the CRC-32 combined from its pieces, is written as soon as
  // its last byte is). Every member must be complete. Does not commit `out`.
  void finish();

 private:
  struct Piece {
    std::uint64_t offset, len;
    std::uint32_t crc;
  };
  std::uint32_t member_crc(std::size_t i, std::vector<Piece> pieces) const;
  void write_local_header(std::size_t i, std::vector<Piece> pieces);
  AtomicFile& out_;
  std::vector<Member> members_;
  std::vector<std::uint64_t> header_offset_, data_offset_;
  std::vector<std::vector<Piece>> pieces_;
  std::vector<std::uint64_t> written_;  // bytes written per member
  std::vector<std::uint32_t> crc_;      // per member, once its local header is written
  std::vector<bool> header_written_;
  std::uint64_t alignment_;
  bool zip64_;
  std::uint64_t end_ = 0;
  std::mutex mu_;
};

}  // namespace ckb
