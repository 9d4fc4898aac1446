// Implementation of io/zip.h: a bounds-checked zip reader (classic + zip64 end records,
// central directory as the single source of truth for sizes) and a stored-member writer
// with offsets fixed up front, torch-style 64-byte alignment padding and CRC-32 combined
// from independently written pieces. See io/zip.h for why this is hand-written.
#include "io/zip.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>
#include <unordered_set>

#include "codec/crc32.h"
#include "codec/inflate.h"
#include "core/errors.h"
#include "io/byte_reader.h"

namespace ckb {
namespace {

constexpr std::uint32_t kLocalSig = 0x04034b50;
constexpr std::uint32_t kCentralSig = 0x02014b50;
constexpr std::uint32_t kEocdSig = 0x06054b50;
constexpr std::uint32_t kZip64EocdSig = 0x06064b50;
constexpr std::uint32_t kZip64LocatorSig = 0x07064b50;
constexpr std::uint32_t kDescriptorSig = 0x08074b50;
constexpr std::uint32_t kMax32 = 0xFFFFFFFFu;
constexpr std::uint16_t kMax16 = 0xFFFFu;
constexpr std::size_t kEocdSize = 22;
constexpr std::size_t kLocatorSize = 20;
constexpr std::size_t kZip64EocdSize = 56;
constexpr std::size_t kLocalHeaderSize = 30;
constexpr std::size_t kCentralHeaderSize = 46;
constexpr std::uint16_t kZip64ExtraId = 0x0001;
constexpr std::uint16_t kPaddingExtraId = 0x4246;  // "FB", as torch's writer pads

// Names must stay inside the extraction root: no absolute paths, drive letters, ".."
// components (with either separator), NUL or control bytes.
// A name made printable for messages (control bytes as \xNN).
std::string printable(const std::string& name) {
  std::string out;
  for (char c : name) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 15];
    } else {
      out += c;
    }
  }
  return out;
}

void check_name(const std::string& name, const std::string& path, std::uint64_t off) {
  auto bad = [&](const std::string& why) {
    throw FormatError(path, "zip entry name '" + printable(name) + "' rejected: " + why, off);
  };
  if (name.empty()) bad("empty name");
  if (name.find('\0') != std::string::npos) bad("contains NUL");
  if (name.front() == '/' || name.front() == '\\') bad("absolute path");
  if (name.size() >= 2 && name[1] == ':') bad("drive-letter path");
  std::size_t start = 0;
  while (start <= name.size()) {
    std::size_t end = name.find_first_of("/\\", start);
    if (end == std::string::npos) end = name.size();
    if (name.compare(start, end - start, "..") == 0) bad("'..' component");
    start = end + 1;
  }
}

// Inflates a raw-deflate member into exactly `e.uncompressed_size` bytes (codec/inflate.h
// refuses a stream that produces more or fewer). The CRC-32 is accumulated over each small
// output window right after it is produced (still in cache) and checked against the central
// directory's when `check_crc`.
Bytes inflate_member(const MappedFile& file, const ZipEntry& e, bool check_crc) {
  const auto held = file.view(e.data_offset, e.compressed_size, "deflated zip member");
  const auto in = held.bytes;
  if (e.uncompressed_size > std::numeric_limits<std::size_t>::max() / 2)
    throw FormatError(file.path(), "zip member '" + e.name + "' declares an absurd size", e.local_header_offset);
  Bytes out(static_cast<std::size_t>(e.uncompressed_size));
  InflateStream stream(DeflateWrap::Raw, in, e.uncompressed_size, file.path(), e.data_offset,
                       "deflated zip member '" + e.name + "'");
  constexpr std::size_t kOutWindow = 1u << 18;
  std::uint32_t crc = 0;
  for (std::size_t pos = 0; pos < out.size(); pos += kOutWindow) {
    const auto window = out.span().subspan(pos, std::min(kOutWindow, out.size() - pos));
    stream.read(window);
    if (check_crc) crc = crc32_update(window, crc);
  }
  stream.finish(/*allow_trailing=*/true);
  if (check_crc && crc != e.crc32)
    throw FormatError(file.path(), crc_mismatch_message(file.path(), e.name, e.crc32, crc), e.data_offset);
  return out;
}

// Lazily inflated member; the first read inflates and caches the whole member.
class DeflatedMemberSource final : public TensorSource {
 public:
  DeflatedMemberSource(MappedFilePtr file, ZipEntry e, std::uint64_t skip, std::uint64_t len)
      : file_(std::move(file)), entry_(std::move(e)), skip_(skip), len_(len) {}
  void read(std::uint64_t offset, std::span<std::byte> out) const override {
    std::call_once(once_, [&] { bytes_ = inflate_member(*file_, entry_, entry_.crc_recorded); });
    if (offset > len_ || out.size() > len_ - offset)
      throw FormatError(file_->path(), "read past the end of zip member '" + entry_.name + "'");
    if (!out.empty()) std::memcpy(out.data(), bytes_.data() + skip_ + offset, out.size());
  }
  std::string describe() const override { return file_->path() + ":" + entry_.name + " (deflated)"; }

 private:
  MappedFilePtr file_;
  ZipEntry entry_;
  std::uint64_t skip_, len_;
  mutable std::once_flag once_;
  mutable Bytes bytes_;
};

// A stored member's bytes by range, copied out of the mapping and checksummed on the way
// (io/zip_crc.h): not contiguous, so every consumer goes through read().
class StoredMemberSource final : public TensorSource {
 public:
  StoredMemberSource(MappedFilePtr file, std::string name, std::uint64_t data_offset, std::uint64_t skip,
                     std::uint64_t len, std::shared_ptr<const ZipCrcVerifier> crc)
      : file_(std::move(file)), name_(std::move(name)), begin_(data_offset + skip), skip_(skip), len_(len),
        crc_(std::move(crc)) {
    file_->range(begin_, len_, "stored zip member");
  }
  void read(std::uint64_t offset, std::span<std::byte> out) const override {
    if (offset > len_ || out.size() > len_ - offset)
      throw FormatError(file_->path(), "read past the end of zip member '" + name_ + "'", begin_ + offset);
    if (out.empty()) return;
    file_->read(begin_ + offset, out, "stored zip member");
    crc_->cover(skip_ + offset, out);
  }
  std::string describe() const override { return file_->path() + ":" + name_ + " @" + std::to_string(begin_); }
  bool parallel_reads() const override { return true; }
  void prefetch(std::uint64_t offset, std::uint64_t len) const override {
    if (offset < len_) file_->will_need(begin_ + offset, std::min(len, len_ - offset));
  }
  void release_range(std::uint64_t offset, std::uint64_t len) const override {
    if (offset < len_) file_->drop_pages(begin_ + offset, std::min(len, len_ - offset));
  }
  void release() const override { file_->drop_pages(begin_, len_); }

 private:
  MappedFilePtr file_;
  std::string name_;
  std::uint64_t begin_, skip_, len_;
  std::shared_ptr<const ZipCrcVerifier> crc_;
};

// Little-endian appenders for building headers.
void put16(std::string& s, std::uint16_t v) {
  s.push_back(static_cast<char>(v & 0xff));
  s.push_back(static_cast<char>(v >> 8));
}
void put32(std::string& s, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put64(std::string& s, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

bool is_ascii(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Reader

ZipReader::ZipReader(MappedFilePtr file, ZipReadOptions opts) : file_(std::move(file)), opts_(opts) {
  const std::string& path = file_->path();
  const std::uint64_t size = file_->size();
  // Only the end records, the central directory and the local headers are touched (a remote
  // archive fetches just those).
  auto region = [&](std::uint64_t off, std::uint64_t len) { return file_->range(off, len, "zip structure"); };
  if (size < kEocdSize) throw FormatError(path, "not a zip file: too small for an end-of-central-directory record", 0);

  // The EOCD is the last 22 bytes plus an optional comment of up to 65535 bytes.
  std::uint64_t eocd = std::numeric_limits<std::uint64_t>::max();
  const std::uint64_t lowest = size > kEocdSize + 0xFFFF ? size - kEocdSize - 0xFFFF : 0;
  const auto tail = region(lowest, size - lowest);
  for (std::uint64_t p = size - kEocdSize + 1; p-- > lowest;) {
    ByteReader r(tail.subspan(p - lowest, kEocdSize), path, p);
    if (r.le<std::uint32_t>("EOCD signature") != kEocdSig) continue;
    r.skip(16, "EOCD");
    std::uint16_t comment = r.le<std::uint16_t>("EOCD comment length");
    if (p + kEocdSize + comment <= size) {
      eocd = p;
      break;
    }
  }
  if (eocd == std::numeric_limits<std::uint64_t>::max()) {
    // A file that starts like a zip (a local header) but has no directory at its end was cut short.
    const auto head = region(0, std::min<std::uint64_t>(size, 4));
    const bool starts_as_zip = size >= 4 && std::to_integer<int>(head[0]) == 'P' && std::to_integer<int>(head[1]) == 'K' &&
                               std::to_integer<int>(head[2]) == 3 && std::to_integer<int>(head[3]) == 4;
    throw FormatError(path, starts_as_zip ? "truncated: the zip archive ends without its end-of-central-directory record"
                                          : "no zip end-of-central-directory record found", size);
  }

  ByteReader er(region(eocd, kEocdSize), path, eocd);
  er.skip(4, "EOCD signature");
  std::uint16_t disk = er.le<std::uint16_t>("EOCD disk number");
  std::uint16_t cd_disk = er.le<std::uint16_t>("EOCD central directory disk");
  er.skip(2, "EOCD entries on disk");
  std::uint64_t count = er.le<std::uint16_t>("EOCD entry count");
  std::uint64_t cd_size = er.le<std::uint32_t>("EOCD central directory size");
  std::uint64_t cd_off = er.le<std::uint32_t>("EOCD central directory offset");
  std::uint64_t cd_limit = eocd;  // the central directory must end before its end records

  // zip64: a locator right before the EOCD points at the zip64 end record.
  bool need64 = count == kMax16 || cd_size == kMax32 || cd_off == kMax32;
  bool has_locator = false;
  if (eocd >= kLocatorSize) {
    ByteReader lr(region(eocd - kLocatorSize, kLocatorSize), path, eocd - kLocatorSize);
    has_locator = lr.le<std::uint32_t>("zip64 locator signature") == kZip64LocatorSig;
  }
  if (need64 && !has_locator)
    throw FormatError(path, "zip end record needs zip64 values but no zip64 locator is present", eocd);
  if (has_locator) {
    ByteReader lr(region(eocd - kLocatorSize, kLocatorSize), path, eocd - kLocatorSize);
    lr.skip(8, "zip64 locator");
    std::uint64_t rec = lr.le<std::uint64_t>("zip64 end record offset");
    if (rec > eocd - kLocatorSize || eocd - kLocatorSize - rec < kZip64EocdSize)
      throw FormatError(path, "zip64 end record offset " + std::to_string(rec) + " is out of range", eocd - kLocatorSize);
    ByteReader zr(region(rec, kZip64EocdSize), path, rec);
    if (zr.le<std::uint32_t>("zip64 end record signature") != kZip64EocdSig)
      throw FormatError(path, "bad zip64 end-of-central-directory signature", rec);
    zr.skip(8 + 2 + 2, "zip64 end record header");
    std::uint32_t disk64 = zr.le<std::uint32_t>("zip64 disk number");
    std::uint32_t cd_disk64 = zr.le<std::uint32_t>("zip64 central directory disk");
    zr.skip(8, "zip64 entries on disk");
    count = zr.le<std::uint64_t>("zip64 entry count");
    cd_size = zr.le<std::uint64_t>("zip64 central directory size");
    cd_off = zr.le<std::uint64_t>("zip64 central directory offset");
    if (disk64 != 0 || cd_disk64 != 0) throw FormatError(path, "multi-disk zip archives are not supported", rec);
    cd_limit = rec;
  } else if (disk != 0 || cd_disk != 0) {
    throw FormatError(path, "multi-disk zip archives are not supported", eocd);
  }
  if (cd_off > cd_limit || cd_size > cd_limit - cd_off)
    throw FormatError(path,
                      "central directory (offset " + std::to_string(cd_off) + ", size " + std::to_string(cd_size) +
                          ") lies outside the file",
                      eocd);
  if (count > cd_size / kCentralHeaderSize)
    throw FormatError(path, "central directory claims " + std::to_string(count) + " entries but has only " +
                                std::to_string(cd_size) + " bytes",
                      cd_off);

  ByteReader cr(region(cd_off, cd_size), path, cd_off);
  std::unordered_set<std::string> names;
  entries_.reserve(static_cast<std::size_t>(count));
  for (std::uint64_t i = 0; i < count; ++i) {
    const std::uint64_t at = cr.abs_pos();
    if (cr.le<std::uint32_t>("central directory signature") != kCentralSig)
      throw FormatError(path, "bad central directory entry signature (entry " + std::to_string(i) + ")", at);
    cr.skip(4, "central directory versions");
    std::uint16_t flags = cr.le<std::uint16_t>("central directory flags");
    ZipEntry e;
    e.method = cr.le<std::uint16_t>("central directory method");
    cr.skip(4, "central directory time/date");
    e.crc32 = cr.le<std::uint32_t>("central directory crc32");
    e.compressed_size = cr.le<std::uint32_t>("central directory compressed size");
    e.uncompressed_size = cr.le<std::uint32_t>("central directory size");
    std::uint16_t name_len = cr.le<std::uint16_t>("central directory name length");
    std::uint16_t extra_len = cr.le<std::uint16_t>("central directory extra length");
    std::uint16_t comment_len = cr.le<std::uint16_t>("central directory comment length");
    std::uint32_t start_disk = cr.le<std::uint16_t>("central directory disk");
    cr.skip(6, "central directory attributes");
    e.local_header_offset = cr.le<std::uint32_t>("central directory local header offset");
    e.name = std::string(cr.take_str(name_len, "central directory name"));
    ByteReader xr(cr.take(extra_len, "central directory extra field"), path, cr.abs_pos() - extra_len);
    cr.skip(comment_len, "central directory comment");

    // zip64 extra: only the fields whose 32-bit value is saturated, in this fixed order.
    bool z_usize = e.uncompressed_size == kMax32, z_csize = e.compressed_size == kMax32,
         z_off = e.local_header_offset == kMax32, z_disk = start_disk == kMax16;
    while (xr.remaining() >= 4) {
      std::uint16_t id = xr.le<std::uint16_t>("extra field id");
      std::uint16_t len = xr.le<std::uint16_t>("extra field length");
      ByteReader fr(xr.take(len, "extra field"), path, xr.abs_pos() - len);
      if (id != kZip64ExtraId) continue;
      if (z_usize) e.uncompressed_size = fr.le<std::uint64_t>("zip64 uncompressed size"), z_usize = false;
      if (z_csize) e.compressed_size = fr.le<std::uint64_t>("zip64 compressed size"), z_csize = false;
      if (z_off) e.local_header_offset = fr.le<std::uint64_t>("zip64 local header offset"), z_off = false;
      if (z_disk) start_disk = fr.le<std::uint32_t>("zip64 disk number"), z_disk = false;
    }
    if (z_usize || z_csize || z_off)
      throw FormatError(path, "zip entry '" + e.name + "' needs a zip64 extra field but has none", at);
    check_name(e.name, path, at);
    if (!names.insert(e.name).second) throw FormatError(path, "duplicate zip entry name '" + e.name + "'", at);
    if (start_disk != 0) throw FormatError(path, "multi-disk zip archives are not supported", at);
    if (flags & 0x0001) throw FormatError(path, "zip entry '" + e.name + "' is encrypted", at);
    if (e.method != 0 && e.method != 8)
      throw FormatError(path, "zip entry '" + e.name + "' uses unsupported compression method " +
                                  std::to_string(e.method) + " (only stored and deflate)",
                        at);
    if (e.method == 0 && e.compressed_size != e.uncompressed_size)
      throw FormatError(path, "stored zip entry '" + e.name + "' has different compressed and uncompressed sizes",
                        at);
    // Deflate expands at most 1032:1 (a 258-byte match coded in 2 bits): a larger declared size
    // is a lie, refused here so that no reader sizes a buffer from it.
    if (e.method == 8 && e.uncompressed_size / 1032 > e.compressed_size + 64)
      throw FormatError(path,
                        "deflated zip entry '" + e.name + "' declares " + std::to_string(e.uncompressed_size) +
                            " bytes from " + std::to_string(e.compressed_size) +
                            " compressed bytes, more than deflate can produce",
                        at);

    // The local header only contributes its name/extra lengths (its sizes may be 0 or
    // 0xFFFFFFFF with a data descriptor); the data must end before the central directory.
    if (e.local_header_offset > cd_off || cd_off - e.local_header_offset < kLocalHeaderSize)
      throw FormatError(path, "local header of '" + e.name + "' is out of range", at);
    ByteReader lr(region(e.local_header_offset, kLocalHeaderSize), path, e.local_header_offset);
    if (lr.le<std::uint32_t>("local header signature") != kLocalSig)
      throw FormatError(path, "bad local header signature for '" + e.name + "'", e.local_header_offset);
    lr.skip(2, "local header version");
    const std::uint16_t lflags = lr.le<std::uint16_t>("local header flags");
    lr.skip(6, "local header method/time/date");
    const std::uint32_t lcrc = lr.le<std::uint32_t>("local header crc32");
    lr.skip(8, "local header sizes");
    std::uint64_t lname = lr.le<std::uint16_t>("local name length");
    std::uint64_t lextra = lr.le<std::uint16_t>("local extra length");
    e.data_offset = e.local_header_offset + kLocalHeaderSize + lname + lextra;
    if (e.data_offset > cd_off || e.compressed_size > cd_off - e.data_offset)
      throw FormatError(path,
                        "data of zip entry '" + e.name + "' (" + std::to_string(e.compressed_size) +
                            " bytes at offset " + std::to_string(e.data_offset) + ") runs past the central directory",
                        e.local_header_offset);
    // The local header must name the same member (NumPy/zipfile: "File name in directory
    // ... and header ... differ"): a changed central name would rename a tensor silently.
    if (const std::string_view lname_bytes(reinterpret_cast<const char*>(
                                               region(e.local_header_offset + kLocalHeaderSize, lname).data()),
                                           static_cast<std::size_t>(lname));
        lname_bytes != e.name)
      throw FormatError(path,
                        "zip member name in the central directory ('" + printable(e.name) +
                            "') differs from its local header ('" + printable(std::string(lname_bytes)) + "')",
                        e.local_header_offset);
    // The CRC-32 the local side records: the local header's, or with flag bit 3 the data
    // descriptor's ([signature 0x08074b50] crc32 sizes) right after the data, when it fits.
    if (!(lflags & 0x0008)) {
      e.local_crc32 = lcrc;
    } else {
      const std::uint64_t d = e.data_offset + e.compressed_size;
      auto word = [&](std::uint64_t at) -> std::optional<std::uint32_t> {
        if (at > cd_off || cd_off - at < 4) return std::nullopt;
        return ByteReader(region(at, 4), path, at).le<std::uint32_t>("data descriptor");
      };
      const auto first = word(d);
      const auto second = first && *first == kDescriptorSig ? word(d + 4) : std::nullopt;
      if (first && *first == e.crc32) e.local_crc32 = *first;
      else if (second) e.local_crc32 = *second;
      else e.local_crc32 = first;
      if (lcrc != 0 && lcrc != e.crc32) e.local_crc32 = lcrc;
    }
    e.crc_recorded = !(opts_.zero_crc_means_unset && e.crc32 == 0 && e.uncompressed_size > 0);
    entries_.push_back(std::move(e));
  }
  // The entry count and the directory's size must agree (a lowered count would hide members).
  if (cr.remaining() != 0)
    throw FormatError(path,
                      "the end-of-central-directory record declares " + std::to_string(count) +
                          " entries, but the central directory has " + std::to_string(cr.remaining()) +
                          " bytes after them",
                      cr.abs_pos());
  index_.reserve(entries_.size());
  for (std::size_t i = 0; i < entries_.size(); ++i) index_.emplace(entries_[i].name, i);
}

const ZipEntry* ZipReader::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &entries_[it->second];
}

std::span<const std::byte> ZipReader::stored_bytes(const ZipEntry& e) const {
  if (e.method != 0)
    throw FormatError(file_->path(), "zip member '" + e.name + "' is compressed; zero-copy access needs a stored member",
                      e.local_header_offset);
  return file_->range(e.data_offset, e.uncompressed_size, "stored zip member");
}

void ZipReader::check_local_crc(const ZipEntry& e) const {
  if (!e.crc_recorded || !e.local_crc32 || *e.local_crc32 == e.crc32) return;
  char central[16], local[16];
  std::snprintf(central, sizeof central, "0x%08x", e.crc32);
  std::snprintf(local, sizeof local, "0x%08x", *e.local_crc32);
  throw FormatError(file_->path(),
                    "CRC-32 of member '" + e.name + "' of " + file_->path() + " differs between the central directory (" +
                        central + ") and the local header (" + local + ")",
                    e.local_header_offset);
}

std::shared_ptr<const ZipCrcVerifier> ZipReader::verifier(const ZipEntry& e) const {
  auto it = index_.find(e.name);
  if (it == index_.end()) throw UsageError("zip entry '" + e.name + "' is not from this archive");
  const ZipEntry& own = entries_[it->second];
  std::lock_guard lock(verifiers_mu_);
  if (verifiers_.empty()) verifiers_.resize(entries_.size());
  auto& v = verifiers_[it->second];
  if (!v) v = std::make_shared<const ZipCrcVerifier>(file_, own.name, own.data_offset, own.uncompressed_size, own.crc32);
  return v;
}

Bytes ZipReader::read(const ZipEntry& e) const {
  check_local_crc(e);
  if (e.method == 8) return inflate_member(*file_, e, e.crc_recorded);
  auto src = stored_bytes(e);
  Bytes out(src.size());
  if (!src.empty()) std::memcpy(out.data(), src.data(), src.size());
  if (e.crc_recorded) {
    const std::uint32_t crc = crc32_update(out.span());
    if (crc != e.crc32)
      throw FormatError(file_->path(), crc_mismatch_message(file_->path(), e.name, e.crc32, crc), e.data_offset);
  }
  return out;
}

SourcePtr ZipReader::member_source(const ZipEntry& e, std::uint64_t skip, std::uint64_t len) const {
  if (skip > e.uncompressed_size || len > e.uncompressed_size - skip)
    throw FormatError(file_->path(),
                      "zip member '" + e.name + "' has " + std::to_string(e.uncompressed_size) + " bytes, needs " +
                          std::to_string(skip) + " + " + std::to_string(len),
                      e.data_offset);
  check_local_crc(e);
  if (e.method != 0) return std::make_shared<DeflatedMemberSource>(file_, e, skip, len);
  if (!e.crc_recorded) return std::make_shared<MappedRangeSource>(file_, e.data_offset + skip, len, e.name);
  auto crc = verifier(e);
  crc->cover_mapped(0, skip);
  crc->cover_mapped(skip + len, e.uncompressed_size - skip - len);
  return std::make_shared<StoredMemberSource>(file_, e.name, e.data_offset, skip, len, std::move(crc));
}

// ---------------------------------------------------------------------------------------
// Writer

namespace {

// Byte size of member i's local header for a given layout decision.
struct LocalLayout {
  std::uint64_t header_size;  // 30 + name + extras (zip64 + padding)
  std::uint16_t zip64_extra;  // 0 or 20
  std::uint16_t padding;      // number of 'Z' bytes (field header excluded)
  bool has_padding_field;
};

LocalLayout local_layout(const std::string& name, std::uint64_t header_offset, std::uint64_t alignment, bool zip64) {
  LocalLayout l{};
  l.zip64_extra = zip64 ? 20 : 0;
  std::uint64_t pos = header_offset + kLocalHeaderSize + name.size() + l.zip64_extra;
  l.has_padding_field = alignment > 1;
  if (l.has_padding_field) {
    pos += 4;
    l.padding = static_cast<std::uint16_t>((alignment - pos % alignment) % alignment);
    pos += l.padding;
  }
  l.header_size = pos - header_offset;
  return l;
}

}  // namespace

ZipWriter::ZipWriter(AtomicFile& out, std::vector<Member> members, std::uint64_t alignment, bool force_zip64)
    : out_(out), members_(std::move(members)), alignment_(alignment == 0 ? 1 : alignment), zip64_(force_zip64) {
  if (alignment_ > 0x8000) throw UsageError("zip alignment " + std::to_string(alignment_) + " is too large");
  std::set<std::string> seen;
  for (const auto& m : members_) {
    check_name(m.name, out_.final_path(), 0);
    if (m.name.size() > 0xFFFF) throw UsageError("zip member name too long: " + m.name.substr(0, 64) + "...");
    if (!seen.insert(m.name).second) throw UsageError("duplicate zip member name '" + m.name + "'");
  }
  auto plan = [&](bool z64) {
    header_offset_.assign(members_.size(), 0);
    data_offset_.assign(members_.size(), 0);
    std::uint64_t cur = 0;
    bool overflow = false;
    for (std::size_t i = 0; i < members_.size(); ++i) {
      header_offset_[i] = cur;
      auto l = local_layout(members_[i].name, cur, alignment_, z64);
      data_offset_[i] = cur + l.header_size;
      cur = data_offset_[i] + members_[i].size;
      overflow |= members_[i].size >= kMax32 || header_offset_[i] >= kMax32;
    }
    end_ = cur;
    overflow |= end_ >= kMax32 || members_.size() >= kMax16;
    return overflow;
  };
  if (plan(zip64_)) {
    zip64_ = true;
    plan(true);
  }
  pieces_.assign(members_.size(), {});
  written_.assign(members_.size(), 0);
  crc_.assign(members_.size(), 0);
  header_written_.assign(members_.size(), false);
}

std::uint64_t ZipWriter::data_offset(std::size_t i) const { return data_offset_.at(i); }

void ZipWriter::write(std::size_t i, std::uint64_t offset, std::span<const std::byte> data) {
  if (i >= members_.size()) throw UsageError("zip member index " + std::to_string(i) + " out of range");
  if (offset > members_[i].size || data.size() > members_[i].size - offset)
    throw UsageError("write past the end of zip member '" + members_[i].name + "'");
  if (data.empty()) return;
  std::uint32_t crc = crc32_update(data);
  out_.pwrite(data_offset_[i] + offset, data);
  std::vector<Piece> complete;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pieces_[i].push_back({offset, data.size(), crc});
    written_[i] += data.size();
    if (written_[i] != members_[i].size) return;
    complete = pieces_[i];
  }
  // The member is complete: its local header goes out now rather than at finish(), so an
  // output written in parts (object storage) can send each part as soon as its members are done.
  write_local_header(i, std::move(complete));
}

std::uint32_t ZipWriter::member_crc(std::size_t i, std::vector<Piece> ps) const {
  const auto& m = members_[i];
  std::sort(ps.begin(), ps.end(), [](const Piece& a, const Piece& b) { return a.offset < b.offset; });
    std::uint32_t crc = 0;
    std::uint64_t covered = 0;
    for (const auto& p : ps) {
      if (p.offset != covered)
        throw UsageError("zip member '" + m.name + "' was written with a gap or overlap at byte " +
                         std::to_string(std::min(p.offset, covered)));
      crc = crc32_combine(crc, p.crc, p.len);
      covered += p.len;
    }
    if (covered != m.size)
      throw UsageError("zip member '" + m.name + "' is incomplete: " + std::to_string(covered) + " of " +
                       std::to_string(m.size) + " bytes written");
  return crc;
}

void ZipWriter::write_local_header(std::size_t i, std::vector<Piece> pieces) {
    const auto& m = members_[i];
    const std::uint32_t crc32v = member_crc(i, std::move(pieces));
    const auto l = local_layout(m.name, header_offset_[i], alignment_, zip64_);
    const std::uint16_t flags = is_ascii(m.name) ? 0 : 0x0800;
    const std::uint16_t version = zip64_ ? 45 : 20;

    std::string h;
    put32(h, kLocalSig);
    put16(h, version);
    put16(h, flags);
    put16(h, 0);  // stored
    put16(h, 0);  // time
    put16(h, 0);  // date
    put32(h, crc32v);
    put32(h, zip64_ ? kMax32 : static_cast<std::uint32_t>(m.size));
    put32(h, zip64_ ? kMax32 : static_cast<std::uint32_t>(m.size));
    put16(h, static_cast<std::uint16_t>(m.name.size()));
    put16(h, static_cast<std::uint16_t>(l.zip64_extra + (l.has_padding_field ? 4 + l.padding : 0)));
    h += m.name;
    if (zip64_) {
      put16(h, kZip64ExtraId);
      put16(h, 16);
      put64(h, m.size);
      put64(h, m.size);
    }
    if (l.has_padding_field) {
      put16(h, kPaddingExtraId);
      put16(h, l.padding);
      h.append(l.padding, 'Z');
    }
    out_.pwrite(header_offset_[i], h);
    std::lock_guard<std::mutex> lock(mu_);
    crc_[i] = crc32v;
    header_written_[i] = true;
}

void ZipWriter::finish() {
  std::string central;
  for (std::size_t i = 0; i < members_.size(); ++i) {
    const auto& m = members_[i];
    bool done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      done = header_written_[i];
    }
    if (!done) write_local_header(i, pieces_[i]);  // empty members, or an incomplete one (throws)
    const std::uint32_t crc32v = crc_[i];
    const std::uint16_t flags = is_ascii(m.name) ? 0 : 0x0800;
    const std::uint16_t version = zip64_ ? 45 : 20;

    put32(central, kCentralSig);
    put16(central, version);  // made by
    put16(central, version);  // needed
    put16(central, flags);
    put16(central, 0);
    put16(central, 0);
    put16(central, 0);
    put32(central, crc32v);
    put32(central, zip64_ ? kMax32 : static_cast<std::uint32_t>(m.size));
    put32(central, zip64_ ? kMax32 : static_cast<std::uint32_t>(m.size));
    put16(central, static_cast<std::uint16_t>(m.name.size()));
    put16(central, zip64_ ? 28 : 0);
    put16(central, 0);  // comment
    put16(central, 0);  // disk
    put16(central, 0);  // internal attrs
    put32(central, 0);  // external attrs
    put32(central, zip64_ ? kMax32 : static_cast<std::uint32_t>(header_offset_[i]));
    central += m.name;
    if (zip64_) {
      put16(central, kZip64ExtraId);
      put16(central, 24);
      put64(central, m.size);
      put64(central, m.size);
      put64(central, header_offset_[i]);
    }
  }
  const std::uint64_t cd_off = end_;
  const std::uint64_t cd_size = central.size();
  const std::uint64_t n = members_.size();
  std::string tail;
  if (zip64_) {
    const std::uint64_t rec = cd_off + cd_size;
    put32(tail, kZip64EocdSig);
    put64(tail, kZip64EocdSize - 12);
    put16(tail, 45);
    put16(tail, 45);
    put32(tail, 0);
    put32(tail, 0);
    put64(tail, n);
    put64(tail, n);
    put64(tail, cd_size);
    put64(tail, cd_off);
    put32(tail, kZip64LocatorSig);
    put32(tail, 0);
    put64(tail, rec);
    put32(tail, 1);
  }
  auto sat16 = [&](std::uint64_t v) { return static_cast<std::uint16_t>(zip64_ || v >= kMax16 ? kMax16 : v); };
  auto sat32 = [&](std::uint64_t v) { return static_cast<std::uint32_t>(zip64_ || v >= kMax32 ? kMax32 : v); };
  put32(tail, kEocdSig);
  put16(tail, 0);
  put16(tail, 0);
  put16(tail, sat16(n));
  put16(tail, sat16(n));
  put32(tail, sat32(cd_size));
  put32(tail, sat32(cd_off));
  put16(tail, 0);
  out_.pwrite(cd_off, central + tail);
}

}  // namespace ckb
