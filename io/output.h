// Crash-safe outputs. Everything ckptbridge writes goes to a temporary name next to the
// destination and is renamed into place only after it is complete and fsync'd, so a run
// that fails or is killed leaves either no output or the previous one, never a partial file.
// An output may never be one of the inputs (checked by the caller with same_file()).
//
// Every function here also takes an s3:// or gs:// URL where it takes a path: the output is
// then written in place in object storage, visible only when complete (io/remote_output.h).
//
// Temporaries and their cleanup:
//  - A temporary is named ".ckb-tmp-<pid>-<unique>-<destination name>" beside the destination
//    (for the "old output" moved aside while a directory is replaced: the same plus ".old").
//  - Failure or cancellation (an exception, incl. Cancelled): the destructors remove them.
//  - A signal: every live temporary of the process is in a registry, and
//    abandon_temporaries() (engine/signals.cpp's watchdog, before _exit) removes them all.
//    A commit's rename and that removal exclude each other, so the destination is either
//    the previous output or the complete new one, never a half-removed one.
//  - SIGKILL / power loss: the temporary stays; the next run for the same destination
//    removes it with remove_stale_temporaries() once its process is gone.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "io/direct_io.h"

namespace ckb {

class RemoteUpload;
class RemoteDir;

// A file written at explicit offsets (thread-safe pwrite), published by commit(). Large
// writes bypass the page cache where the filesystem allows it (io/direct_io.h); the rest is
// buffered and pushed towards the disk as it is written, so dirty pages never pile up.
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
  void buffered_write(std::uint64_t offset, std::span<const std::byte> data);
  std::string final_, tmp_;
  int fd_ = -1;
  std::unique_ptr<DirectWriter> direct_;  // null when the filesystem refuses O_DIRECT
  std::unique_ptr<RemoteUpload> remote_;  // set for a URL (then there is no fd and no temporary)
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
  std::unique_ptr<RemoteDir> remote_;  // set for a URL: written in place, tmp_ == final_
  bool committed_ = false;
};

// pwrite(2) of all of `data` at `offset` (retrying short writes and EINTR); IoError naming
// `path` and the offset on failure.
void pwrite_all(int fd, std::uint64_t offset, std::span<const std::byte> data, const std::string& path);

// Writes a small file completely (inside an AtomicDir, or standalone via AtomicFile).
void write_small_file(const std::string& path, std::string_view content);
void make_dirs(const std::string& path);
void remove_tree(const std::string& path);  // best effort, for cleanup

// The live temporaries of this process (created, neither committed nor removed yet).
std::size_t live_temporary_count();
// For a process about to _exit: removes every live temporary and refuses all later ones
// (creating a temporary or committing one then throws Cancelled). Returns how many were
// live. Takes a lock: never call it from a signal handler.
std::size_t abandon_temporaries();

// Removes the temporaries of dead processes beside `destination` (in its parent folder and,
// when `destination` is a folder, such as an Orbax root receiving a step, inside it): the
// entries named ".ckb-tmp-<pid>-..." whose process no longer exists (kill(pid, 0) fails with
// ESRCH). Temporaries of running processes, including this one, are left alone; so is
// everything else. Returns the removed paths. A pid reused by an unrelated process keeps its
// leftovers until that process ends; processes in other pid namespaces sharing the folder
// are not told apart (their pids look dead).
std::vector<std::string> remove_stale_temporaries(const std::string& destination);
// The pid in a temporary's name (".ckb-tmp-<pid>-..."), 0 when the name is not one.
long temporary_owner(const std::string& path);

}  // namespace ckb
