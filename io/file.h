// Read-only file access: whole-file mmap (zero-copy tensor reads) and bounds-checked
// sources over byte ranges of a mapped file. Inputs are only ever opened O_RDONLY.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "core/tensor.h"

namespace ckb {

class MappedFile {
 public:
  // Maps the whole file read-only. Throws IoError if it cannot be opened or is not a
  // regular file.
  static std::shared_ptr<const MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::byte* data() const { return data_; }
  std::uint64_t size() const { return size_; }
  std::span<const std::byte> bytes() const { return {data_, static_cast<std::size_t>(size_)}; }
  const std::string& path() const { return path_; }
  // The byte range [off, off+len); throws FormatError naming the file if it lies outside.
  std::span<const std::byte> range(std::uint64_t off, std::uint64_t len, const char* what) const;
  // madvise(MADV_DONTNEED) on the pages covering [off, off+len): frees resident memory;
  // later reads fault the bytes back in from the page cache.
  void drop_pages(std::uint64_t off, std::uint64_t len) const;
  // madvise(MADV_WILLNEED) on [off, off+len): starts reading those pages from disk in the
  // background, so a sequential consumer of a cold file does not wait on each page fault.
  void will_need(std::uint64_t off, std::uint64_t len) const;

 private:
  MappedFile() = default;
  std::string path_;
  const std::byte* data_ = nullptr;
  std::uint64_t size_ = 0;
};

using MappedFilePtr = std::shared_ptr<const MappedFile>;

// A tensor whose C-order little-endian bytes are the range [offset, offset+len) of a
// mapped file. The range is checked at construction.
class MappedRangeSource final : public TensorSource {
 public:
  MappedRangeSource(MappedFilePtr file, std::uint64_t offset, std::uint64_t len, std::string what);
  void read(std::uint64_t offset, std::span<std::byte> out) const override;
  const std::byte* contiguous() const override { return file_->data() + offset_; }
  std::string describe() const override;
  void prefetch(std::uint64_t offset, std::uint64_t len) const override;
  // Drops this range's pages from the process (they stay in the page cache), so streaming
  // a file larger than RAM through mmap does not grow the resident set.
  void release() const override { file_->drop_pages(offset_, len_); }
  void release_range(std::uint64_t off, std::uint64_t len) const override { file_->drop_pages(offset_ + off, len); }

 private:
  MappedFilePtr file_;
  std::uint64_t offset_, len_;
  std::string what_;
};

bool path_exists(const std::string& path);
bool is_directory(const std::string& path);
// Reads a whole (small) file into a string; IoError on failure.
std::string read_text_file(const std::string& path);
// True when a and b name the same existing file (same device and inode).
bool same_file(const std::string& a, const std::string& b);

}  // namespace ckb
