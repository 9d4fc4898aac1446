// Crash-safe outputs. Everything ckptbridge writes goes to a temporary name next to the
// destination and is renamed into place only after it is complete and fsync'd, so a run
// that fails or is killed leaves either no output or the previous one, never a partial file.
// An output may never be one of the inputs (checked by the caller with same_file()).
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace ckb {

// A file written at explicit offsets (thread-safe pwrite), published by commit().
class AtomicFile {
 public:
  explicit AtomicFile(std::string final_path);
  ~AtomicFile();  // removes the temporary unless committed
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void pwrite(std::uint64_t offset, std::span<const std::byte> data);
  void pwrite(std::uint64_t offset, std::string_view data) {
    pwrite(offset, std::as_bytes(std::span(data.data(), data.size())));
  }
  // Reserves the final size up front (sparse), so a full disk fails early where possible.
  void truncate(std::uint64_t size);
  // fsync + rename to the final path.
  void commit();
  const std::string& temp_path() const { return tmp_; }
  const std::string& final_path() const { return final_; }

 private:
  std::string final_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

// A directory built under a temporary name and renamed into place by commit(). If the
// destination exists it is replaced only at commit (the old one is removed after the new
// one is complete). Files inside are written with AtomicFile or plain writes.
class AtomicDir {
 public:
  explicit AtomicDir(std::string final_path);
  ~AtomicDir();
  AtomicDir(const AtomicDir&) = delete;
  AtomicDir& operator=(const AtomicDir&) = delete;
  const std::string& path() const { return tmp_; }  // where to write now
  const std::string& final_path() const { return final_; }
  void commit();

 private:
  std::string final_, tmp_;
  bool committed_ = false;
};

// Writes a small file completely (inside an AtomicDir, or standalone via AtomicFile).
void write_small_file(const std::string& path, std::string_view content);
void make_dirs(const std::string& path);
void remove_tree(const std::string& path);  // best effort, for cleanup

}  // namespace ckb
