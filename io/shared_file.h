// A file that another process is building (its io/output.h AtomicFile's temporary), written
// here at explicit offsets: the processes of one MPI run writing one output file together
// (formats/cooperative.h) each write their own byte ranges, and the owner publishes the file
// once all are done. This never creates, renames or removes the file.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace ckb {

class SharedFilePart {
 public:
  // Opens the existing file for writing; IoError naming it when that fails.
  explicit SharedFilePart(std::string path);
  ~SharedFilePart();
  SharedFilePart(const SharedFilePart&) = delete;
  SharedFilePart& operator=(const SharedFilePart&) = delete;

  // Thread-safe.
  void pwrite(std::uint64_t offset, std::span<const std::byte> data);
  // Makes what this process wrote durable (fsync) and closes the file.
  void finish();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace ckb
