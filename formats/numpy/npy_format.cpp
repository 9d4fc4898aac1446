// The "npy" format: a single NumPy array file as a one-tensor checkpoint (reader, writer,
// detection by the "\x93NUMPY" magic).
#include <filesystem>
#include <memory>

#include "core/errors.h"
#include "formats/format.h"
#include "formats/numpy/npy.h"
#include "io/file.h"
#include "io/output.h"

namespace ckb {
namespace {

class NpyWriter final : public Writer {
 public:
  explicit NpyWriter(std::string path) : path_(std::move(path)) {}

  void begin(const Node& layout) override {
    std::vector<std::string> leaves;
    const Tensor* tensor = nullptr;
    std::string name;
    visit_leaves(layout, [&](const Path& p, const Node& n) {
      leaves.push_back(join_path(p) + " (" + std::string(n.type_name()) + ")");
      if (n.is_tensor()) {
        tensor = &n.tensor();
        name = join_path(p);
      }
    });
    if (leaves.size() != 1 || !tensor) {
      std::string list;
      for (std::size_t i = 0; i < leaves.size() && i < 20; ++i) list += (i ? ", " : "") + leaves[i];
      if (leaves.size() > 20) list += ", ... (" + std::to_string(leaves.size()) + " in all)";
      throw MappingError(path_, "a .npy file holds exactly one array, but the tree has " + std::to_string(leaves.size()) +
                                    " leaves" + (list.empty() ? "" : ": " + list) + "; use npz for several arrays");
    }
    header_ = npy_header_bytes(tensor->info, name);
    nbytes_ = tensor->info.nbytes();
    file_ = std::make_unique<AtomicFile>(path_);
    file_->truncate(header_.size() + nbytes_);
    file_->pwrite(0, header_);
  }

  void write(std::size_t slot, std::uint64_t offset, std::span<const std::byte> data) override {
    if (!file_) throw MappingError(path_, "npy writer: write() before begin()");
    if (slot != 0 || offset > nbytes_ || data.size() > nbytes_ - offset)
      throw MappingError(path_, "npy writer: write to slot " + std::to_string(slot) + " at " + std::to_string(offset) +
                                    " (+" + std::to_string(data.size()) + ") is outside the single tensor of " +
                                    std::to_string(nbytes_) + " bytes");
    file_->pwrite(header_.size() + offset, data);
  }

  bool prefers_file_order() const override { return is_remote_path(path_); }
  std::optional<std::uint64_t> file_position(std::size_t slot, std::uint64_t offset) const override {
    if (!file_ || slot != 0) return std::nullopt;
    return header_.size() + offset;
  }

  void commit() override {
    if (!file_) throw MappingError(path_, "npy writer: commit() before begin()");
    file_->commit();
  }

 private:
  std::string path_;
  std::string header_;
  std::uint64_t nbytes_ = 0;
  std::unique_ptr<AtomicFile> file_;
};

}  // namespace

Checkpoint read_npy_file(const std::string& path, const NpyReadOptions& opts) {
  auto file = MappedFile::open(path);
  // The header only (a remote file fetches just it): 64 KiB holds any header NumPy writes
  // short of a huge structured dtype, which gets the whole file.
  constexpr std::uint64_t kHead = 64 * 1024;
  NpyHeader h = [&] {
    if (file->size() <= kHead) return parse_npy_header(file->bytes(), path, 0, opts);
    try {
      return parse_npy_header(file->range(0, kHead, "npy header"), path, 0, opts);
    } catch (const FormatError&) {
      return parse_npy_header(file->bytes(), path, 0, opts);
    }
  }();
  if (h.data_offset > file->size() || h.nbytes > file->size() - h.data_offset)
    throw FormatError(path, "truncated .npy data: shape " + shape_str(h.info.shape) + " of " +
                                std::string(dtype_name(h.info.dtype)) + " needs " + std::to_string(h.nbytes) +
                                " bytes from offset " + std::to_string(h.data_offset) + ", the file has " +
                                std::to_string(file->size()) + " bytes",
                      h.data_offset);
  std::string stem = std::filesystem::path(path).stem().string();
  if (stem.empty()) stem = "array";
  auto raw = std::make_shared<MappedRangeSource>(file, h.data_offset, h.nbytes, stem);
  Node root;  // a Dict (built without Node::dict(), which GCC 12 + sanitizers falsely flag)
  root.add(stem, Node::tensor(Tensor{h.info, npy_tensor_source(h, std::move(raw), path + ":" + stem)}));
  return Checkpoint{"npy", path, std::move(root), {}};
}

Format make_npy_format() {
  Format f;
  f.name = "npy";
  f.extensions = {".npy"};
  f.default_file_name = "model.npy";
  f.description = "NumPy .npy: one array (np.save); read and write";
  f.detect = [](const std::string& path) {
    try {
      auto file = MappedFile::open(path);
      return is_npy_magic(file->range(0, std::min<std::uint64_t>(file->size(), 16), "npy magic"));
    } catch (...) {
      return false;
    }
  };
  f.read = [](const std::string& path, const ReadOptions&) { return read_npy_file(path); };
  f.make_writer = [](const std::string& path, const WriteOptions&) -> std::unique_ptr<Writer> {
    return std::make_unique<NpyWriter>(path);
  };
  return f;
}

}  // namespace ckb
