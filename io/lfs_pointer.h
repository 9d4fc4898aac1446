// Git LFS pointer files: what a checkpoint is when a repository was cloned without
// `git lfs` (a common cause of "my checkpoint won't load"). A pointer is a small text file
// (the spec caps it at 1024 bytes) starting "version https://git-lfs.github.com/spec/v1"
// (or the pre-release "https://hawser.github.com/spec/v1") with "oid sha256:<hex>" and
// "size <bytes>" lines. Recognising it lets readers say so instead of "not a checkpoint".
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>

namespace ckb {

struct LfsPointer {
  std::string oid;   // "sha256:<64 hex>" as written
  std::string size;  // decimal digits as written
  // "a Git LFS pointer (oid sha256:..., size N), not the file itself: run `git lfs pull`"
  std::string describe() const;
};

// The pointer described by `bytes`, or nullopt when they are not an LFS pointer.
std::optional<LfsPointer> parse_lfs_pointer(std::span<const std::byte> bytes);
// Reads at most 1024 bytes of `path`; nullopt when it is not a regular file holding a pointer.
std::optional<LfsPointer> read_lfs_pointer(const std::string& path);

}  // namespace ckb
