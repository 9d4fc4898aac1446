// The remote side of io/file.h: a MappedFile over an object in s3://, gs:// or http(s)://
// (io/remote/object_store.h), and the folder queries (exists, is a folder, listing) that
// io/file.h answers for URLs. Internal to io/: include io/file.h instead.
//
// RemoteBacking reserves an anonymous mapping as large as the object (address space only)
// and fills 16 KiB blocks on first use by ranged GETs (several threads asking for the same
// block wait for one request). What range() made resident stays for the life of the file:
// callers use range() for metadata only and read()/view() for tensor bytes, which go
// straight into the caller's buffer (large reads split into parallel requests).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "io/file.h"
#include "io/remote/object_store.h"

namespace ckb {

class RemoteBacking {
 public:
  // The backing of `url`: one HEAD, then the backing of the same object opened recently in
  // this process if its size is unchanged (so detection and reading fetch a header once), else
  // a new one. IoError when the object does not exist.
  static std::shared_ptr<RemoteBacking> open(const std::string& url);
  RemoteBacking(std::string url, remote::ObjectStorePtr store, std::string key, std::uint64_t size);
  ~RemoteBacking();
  RemoteBacking(const RemoteBacking&) = delete;
  RemoteBacking& operator=(const RemoteBacking&) = delete;

  std::uint64_t size() const { return size_; }
  const std::byte* base() const { return base_; }
  // Makes [off, off+len) of the mapping hold the object's bytes.
  void ensure(std::uint64_t off, std::uint64_t len);
  // Copies [off, off+dst.size()) into dst: from the mapping where resident, else fetched.
  void read(std::uint64_t off, std::span<std::byte> dst) const;

 private:
  static constexpr std::uint64_t kBlock = 16 * 1024;
  remote::ObjectStorePtr store_;
  std::string key_, url_;
  std::uint64_t size_ = 0;
  std::byte* base_ = nullptr;
  std::size_t mapped_ = 0;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::uint8_t> state_;  // per block: 0 absent, 1 being fetched, 2 resident
};

// Forgets a recently opened object (this process is replacing it).
void forget_remote_file(const std::string& url);

// Fetches [off, off+dst.size()) of an object, splitting large reads into parallel requests.
void remote_read_parallel(const remote::ObjectStore& store, const std::string& key, std::uint64_t off,
                          std::span<std::byte> dst);

bool remote_exists(const std::string& url);
bool remote_is_directory(const std::string& url);
std::vector<DirEntry> remote_list_directory(const std::string& url);
std::vector<std::string> remote_list_files(const std::string& url);
bool same_remote_object(const std::string& a, const std::string& b);

}  // namespace ckb
