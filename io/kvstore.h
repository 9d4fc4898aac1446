// A read-only key-value store: the storage layer under zarr arrays. Orbax keeps arrays
// either as plain files in a directory (one file per key) or inside an OCDBT database
// (io/ocdbt/); both look the same to the zarr layer through this interface.
//
// Contract:
//  - keys are byte strings using '/' as the separator ("param/.zarray", "param/c/0/1");
//  - list() returns every key in ascending bytewise order;
//  - get(key) returns nullopt when the key does not exist, otherwise the value as a byte
//    span that stays valid as long as the returned KvValue lives (values are mmap'd ranges
//    or decoded node buffers: nothing is copied and pages are only touched when read);
//  - errors (corrupt storage) are FormatError/IoError naming the underlying file;
//  - implementations are safe to use from several threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace ckb {

class MappedFile;

struct KvValue {
  std::span<const std::byte> bytes;
  std::shared_ptr<const void> keepalive;  // owns the memory `bytes` points into
  std::string file;                       // the file the bytes live in (for messages)
  std::uint64_t offset = 0;               // their offset in that file
  // The mapping holding `bytes`, when they are a file range: a reader that has consumed the
  // value (decoded a chunk) drops its pages so a streaming conversion's RSS does not grow
  // with the input.
  std::shared_ptr<const MappedFile> mapped;
  // A value not fetched yet (get_streamed() of a store in object storage): `bytes` is empty
  // and the value is [offset, offset + deferred_size) of `mapped`, read front to back with
  // io/sequential_read.h by its consumer.
  bool deferred = false;
  std::uint64_t deferred_size = 0;

  std::uint64_t size() const { return deferred ? deferred_size : bytes.size(); }
  std::string_view text() const { return {reinterpret_cast<const char*>(bytes.data()), bytes.size()}; }
};

class KvStore {
 public:
  virtual ~KvStore() = default;
  virtual std::vector<std::string> list() const = 0;
  virtual std::optional<KvValue> get(const std::string& key) const = 0;
  // As get(), for a consumer that reads the value once, front to back, and handles deferred
  // values (a streamed zarr chunk): a store in object storage answers with a deferred value
  // instead of fetching it whole, so a multi-GB chunk never has to be in memory. Default: get().
  virtual std::optional<KvValue> get_streamed(const std::string& key) const { return get(key); }
  // The store's location ("/ckpt/item" or "/ckpt/item (ocdbt)"), for messages.
  virtual std::string describe() const = 0;
  // Where `key` lives or would live, for messages ("/ckpt/item/w/0.0").
  virtual std::string locate(const std::string& key) const { return describe() + ":" + key; }
};

using KvStorePtr = std::shared_ptr<const KvStore>;

// Keys are paths relative to `root`; a key naming a directory or nothing is absent.
// Keys containing "." or ".." components or a leading '/' are refused (FormatError).
class DirectoryKvStore final : public KvStore {
 public:
  explicit DirectoryKvStore(std::string root);
  std::vector<std::string> list() const override;
  std::optional<KvValue> get(const std::string& key) const override;
  std::optional<KvValue> get_streamed(const std::string& key) const override;
  std::string describe() const override { return root_; }
  std::string locate(const std::string& key) const override { return root_ + "/" + key; }
  const std::string& root() const { return root_; }

 private:
  std::string root_;
};

}  // namespace ckb
