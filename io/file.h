// Read-only file access: whole-file mmap (zero-copy tensor reads) and bounds-checked
// sources over byte ranges of a mapped file. Inputs are only ever opened O_RDONLY.
//
// Every function here also takes a remote URL (s3://, gs://, http(s)://; io/remote/) where
// it takes a path. A remote MappedFile has no file behind its mapping: range() and bytes()
// fetch the bytes they return (ranged GETs, kept for later calls; meant for metadata:
// headers, directories, manifests), read() and view() fetch into the caller's or a fresh
// buffer without keeping anything (meant for tensor data), and data() / contiguous() are not
// available (nullptr), so a consumer that needs all the bytes goes through read().
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"

namespace ckb {

class RemoteBacking;

class MappedFile : public std::enable_shared_from_this<MappedFile> {
 public:
  // Maps the whole file read-only. Throws IoError if it cannot be opened or is not a
  // regular file (a remote object that does not exist: IoError naming the URL).
  static std::shared_ptr<const MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  // The mapped bytes; nullptr for a remote file (use range(), read() or view()).
  const std::byte* data() const { return remote_ ? nullptr : data_; }
  std::uint64_t size() const { return size_; }
  // The whole file (a remote file is fetched completely: use range() for a part).
  std::span<const std::byte> bytes() const;
  const std::string& path() const { return path_; }
  bool remote() const { return remote_ != nullptr; }
  // The byte range [off, off+len); throws FormatError naming the file if it lies outside.
  std::span<const std::byte> range(std::uint64_t off, std::uint64_t len, const char* what) const;
  // Copies [off, off+dst.size()) into dst (bounds as range()).
  void read(std::uint64_t off, std::span<std::byte> dst, const char* what) const;
  // [off, off+len) for a consumer that uses it once: the mapped range of a local file, a
  // freshly fetched buffer for a remote one; `keepalive` owns the memory.
  struct View {
    std::span<const std::byte> bytes;
    std::shared_ptr<const void> keepalive;
  };
  View view(std::uint64_t off, std::uint64_t len, const char* what) const;
  // Throws range()'s FormatError when [off, off+len) lies outside the file; fetches nothing.
  void check_range(std::uint64_t off, std::uint64_t len, const char* what) const;
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
  std::shared_ptr<RemoteBacking> remote_;  // set for a URL: fills the (anonymous) mapping on demand
};

using MappedFilePtr = std::shared_ptr<const MappedFile>;

// A tensor whose C-order little-endian bytes are the range [offset, offset+len) of a
// mapped file. The range is checked at construction.
class MappedRangeSource final : public TensorSource {
 public:
  MappedRangeSource(MappedFilePtr file, std::uint64_t offset, std::uint64_t len, std::string what);
  void read(std::uint64_t offset, std::span<std::byte> out) const override;
  const std::byte* contiguous() const override { return file_->remote() ? nullptr : file_->data() + offset_; }
  bool parallel_reads() const override { return file_->remote(); }
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

// `path` without its trailing '/' ("out/" -> "out", "s3://b/k//" -> "s3://b/k"); "/" stays.
std::string without_trailing_slashes(std::string path);

// While one lives (in any thread), the sizes and listings of remote objects are asked once
// and reused (io/remote_snapshot.h): the engine holds one per call, so detecting and opening a
// checkpoint in object storage costs a few requests, not dozens. What the process writes there
// clears them; they are dropped when the last scope ends.
class RemoteSnapshotScope {
 public:
  RemoteSnapshotScope();
  ~RemoteSnapshotScope();
  RemoteSnapshotScope(const RemoteSnapshotScope&) = delete;
  RemoteSnapshotScope& operator=(const RemoteSnapshotScope&) = delete;
};

bool path_exists(const std::string& path);
bool is_directory(const std::string& path);
// True for s3://, gs://, http:// and https:// locations (io/remote/).
bool is_remote_path(std::string_view path);

// The entries directly inside a folder (a remote prefix ending at '/'), sorted by name.
// IoError when it cannot be listed (a remote http(s) location: UsageError).
struct DirEntry {
  std::string name;
  bool is_directory = false;
};
std::vector<DirEntry> list_directory(const std::string& dir);
// Every regular file below `dir`, as paths relative to it with '/' separators, sorted.
std::vector<std::string> list_files_recursive(const std::string& dir);
// Reads a whole (small) file into a string; IoError on failure.
std::string read_text_file(const std::string& path);
// True when a and b name the same existing file (same device and inode).
bool same_file(const std::string& a, const std::string& b);

}  // namespace ckb
