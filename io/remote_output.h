// The remote side of io/output.h: crash-safe outputs in object storage (s3://, gs://).
// Internal to io/: the rest of the code uses AtomicFile / AtomicDir / write_small_file, which
// dispatch here for URLs.
//
// Object storage has no rename, so "nothing partial is ever visible" works as on GCS with
// Orbax: a file becomes visible only when complete (a multipart upload is completed, or one
// PUT), and a folder's small files (metadata, index, commit marker: write_small_file inside
// an AtomicDir) are held back and PUT at commit, in the order they were written, so the
// marker a writer writes last appears last. A failed or abandoned run aborts its multipart
// uploads and deletes the objects its folder had already completed.
//
// Replacing a previous output in a folder (--overwrite) cannot be one rename either, so it is
// done in an order that never shows a mix of the two: while the run writes, the new files'
// multipart uploads are left uncompleted (invisible) and the previous output stays as it was,
// untouched by a run that fails; at commit the previous output's objects are deleted — first
// those that the new small files replace (marker, index, metadata), last written first, then
// the rest — the new files are completed and the small files PUT, marker last. Only during
// that commit is neither output visible; once it has begun, a cancellation no longer stops it.
//
// RemoteUpload buffers the file as fixed parts (8 MiB, or larger so that the size given to
// a truncate() before the first write fits in 9,999 parts) and uploads each part from the
// thread whose write completes it, so memory holds only the parts being written. The rest
// behaves as a local file: bytes never written read as zeros, truncate() may shrink or
// extend (shrinking into a part already uploaded is refused), writes past the end extend.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/remote/object_store.h"

namespace ckb {

class RemoteUpload {
 public:
  explicit RemoteUpload(std::string url);
  ~RemoteUpload();  // aborts unless committed
  RemoteUpload(const RemoteUpload&) = delete;
  RemoteUpload& operator=(const RemoteUpload&) = delete;
  void pwrite(std::uint64_t offset, std::span<const std::byte> data);
  void truncate(std::uint64_t size);
  // Makes the file visible (or, in a replacing folder, hands it to the folder). Checks for a
  // cancellation first; once publishing has begun it runs to its end.
  void commit();
  void abort() noexcept;
  const std::string& url() const { return url_; }

 private:
  struct Part {
    Bytes bytes;
    std::map<std::uint64_t, std::uint64_t> written;  // disjoint [begin, end) within the part, merged
    std::uint64_t filled = 0;                         // their total length
    bool uploaded = false;
    void cover(std::uint64_t begin, std::uint64_t end);
    void clip(std::uint64_t end);  // forget what was written at or after `end`
  };
  std::uint64_t part_size_locked();
  void upload(std::size_t index, Bytes bytes, std::uint64_t len);
  std::string url_;
  remote::ObjectStorePtr store_;
  std::string key_;
  std::mutex mu_;
  std::uint64_t part_size_ = 0;  // fixed at the first write
  std::uint64_t size_ = 0;       // the file's size: the largest end written, or what truncate() set
  std::map<std::size_t, Part> parts_;
  std::unique_ptr<remote::MultipartUpload> upload_;
  bool done_ = false;
  bool aborted_ = false;  // abort() ran: no upload may begin
};

// A folder in object storage, written in place (see above).
class RemoteDir {
 public:
  explicit RemoteDir(std::string url);
  ~RemoteDir();  // uncommitted: aborts the uploads left to complete, deletes what it completed
  // Publishes the folder (see above). A cancellation is checked once, first: once publishing
  // has begun it runs to its end, so that no object is left that the clean-up does not know of.
  void commit();
  const std::string& url() const { return url_; }

  // The live folder that `path` lies in, if any.
  static RemoteDir* containing(const std::string& path);
  void hold_small_file(const std::string& path, std::string content);
  void completed(const std::string& path);
  // Whether the folder held objects when this output began (a previous output replaced with
  // --overwrite): then its files are completed only at commit, after the old objects are gone.
  bool replacing() const { return replacing_; }
  // A file of a replacing folder, all of its parts uploaded: completed by commit(). One entry
  // per path: a later file or small file of the same path replaces (and aborts) an earlier one.
  void complete_at_commit(const std::string& path, std::unique_ptr<remote::MultipartUpload> upload);

 private:
  std::string url_;
  std::mutex mu_;
  std::vector<std::pair<std::string, std::string>> held_;  // small files, in write order
  std::vector<std::string> completed_;                      // objects made visible so far
  std::vector<std::pair<std::string, std::unique_ptr<remote::MultipartUpload>>> pending_;  // to complete at commit
  bool replacing_ = false;
  bool committed_ = false;
  friend std::size_t abandon_remote_outputs() noexcept;
};

// PUT of a whole small object (inside a live RemoteDir: held until its commit).
void remote_write_small_file(const std::string& url, std::string_view content);
// Deletes every object under `url` (best effort).
void remote_remove_tree(const std::string& url) noexcept;
// For a process about to exit: aborts every live upload and deletes what live folders
// completed. Returns how many uploads and folders there were.
std::size_t abandon_remote_outputs() noexcept;

}  // namespace ckb
