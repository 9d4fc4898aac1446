// Directory and OCDBT key-value writers for io/kvstore_writer.h.
#include "io/kvstore_writer.h"

#include <filesystem>

#include "core/errors.h"
#include "io/output.h"

namespace ckb {
namespace {

class DirectoryKvWriter final : public KvWriter {
 public:
  explicit DirectoryKvWriter(std::string root) : root_(std::move(root)) {}
  using KvWriter::put;
  void put(const std::string& key, std::span<const std::byte> value) override {
    check_key(key);
    const std::string path = root_ + "/" + key;
    make_dirs(std::filesystem::path(path).parent_path().string());
    write_small_file(path, std::string_view(reinterpret_cast<const char*>(value.data()), value.size()));
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
 public:
  OcdbtKvWriter(std::string root, ocdbt::WriterConfig config) : w_(std::move(root), config) {}
  using KvWriter::put;
  void put(const std::string& key, std::span<const std::byte> value) override { w_.put(key, value); }
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
