// Directory and OCDBT key-value writers for io/kvstore_writer.h.
#include "io/kvstore_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "core/errors.h"
#include "io/output.h"

namespace ckb {
namespace {

// A value as a file, written where it will stay: the store lives inside a temporary
// directory the caller renames into place, so a per-file temporary (and its rename and
// directory fsync) would buy nothing. Abandoned without close(), the file is removed.
class FileSink final : public KvValueSink {
 public:
  explicit FileSink(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) throw_errno(path_, "cannot create");
  }
  ~FileSink() override {
    if (fd_ < 0) return;
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  void append(std::span<const std::byte> bytes) override {
    while (!bytes.empty()) {
      const ssize_t n = ::pwrite(fd_, bytes.data(), bytes.size(), static_cast<off_t>(size_));
      if (n < 0) {
        if (errno == EINTR) continue;
        throw_errno(path_, "write failed");
      }
      size_ += static_cast<std::uint64_t>(n);
      bytes = bytes.subspan(static_cast<std::size_t>(n));
    }
  }
  void close() override {
    const int fd = fd_;
    if (::fsync(fd) != 0) throw_errno(path_, "cannot finish writing");
    fd_ = -1;
    if (::close(fd) != 0) throw_errno(path_, "cannot finish writing");
  }

 private:
  std::string path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

class DirectoryKvWriter final : public KvWriter {
 public:
  explicit DirectoryKvWriter(std::string root) : root_(std::move(root)) {}
  std::unique_ptr<KvValueSink> begin_value(const std::string& key) override {
    check_key(key);
    const std::string path = root_ + "/" + key;
    make_dirs(std::filesystem::path(path).parent_path().string());
    return std::make_unique<FileSink>(path);
  }
  void finish() override {}

 private:
  void check_key(const std::string& key) const {
    if (key.empty() || key.front() == '/') throw MappingError(root_, "cannot store key '" + key + "' as a file");
    std::size_t s = 0;
    while (s <= key.size()) {
      std::size_t e = key.find('/', s);
      if (e == std::string::npos) e = key.size();
      const std::string_view part(key.data() + s, e - s);
      if (part.empty() || part == "." || part == "..")
        throw MappingError(root_, "cannot store key '" + key + "' as a file: empty, '.' or '..' path component");
      s = e + 1;
    }
  }
  std::string root_;
};

class OcdbtKvWriter final : public KvWriter {
  struct Sink final : KvValueSink {
    explicit Sink(std::unique_ptr<ocdbt::OcdbtWriter::ValueStream> s) : s(std::move(s)) {}
    void append(std::span<const std::byte> bytes) override { s->append(bytes); }
    void close() override { s->close(); }
    std::unique_ptr<ocdbt::OcdbtWriter::ValueStream> s;
  };

 public:
  OcdbtKvWriter(std::string root, ocdbt::WriterConfig config) : w_(std::move(root), config) {}
  std::unique_ptr<KvValueSink> begin_value(const std::string& key) override {
    return std::make_unique<Sink>(w_.begin_value(key));
  }
  void finish() override { w_.finish(); }

 private:
  ocdbt::OcdbtWriter w_;
};

}  // namespace

std::unique_ptr<KvWriter> make_directory_kv_writer(std::string root) {
  return std::make_unique<DirectoryKvWriter>(std::move(root));
}

std::unique_ptr<KvWriter> make_ocdbt_kv_writer(std::string root, ocdbt::WriterConfig config) {
  return std::make_unique<OcdbtKvWriter>(std::move(root), config);
}

}  // namespace ckb
