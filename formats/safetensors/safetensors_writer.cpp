// Writer side of formats/safetensors/safetensors.h. The whole layout (header, offsets,
// shard assignment) is computed from metadata in begin(); tensor bytes are then pwritten at
// their final offsets from any thread, and the output is renamed into place at commit.
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/errors.h"
#include "formats/safetensors/safetensors.h"
#include "io/output.h"

namespace ckb::safetensors {
namespace {

using ojson = nlohmann::ordered_json;

struct Slot {
  std::size_t shard;
  std::uint64_t file_offset;  // absolute offset of the tensor's first byte
  std::uint64_t nbytes;
};

struct Shard {
  std::string file_name;
  std::vector<std::size_t> slots;
  std::string header;  // 8-byte length + padded JSON
  std::unique_ptr<AtomicFile> file;
};

class SafetensorsWriter final : public Writer {
 public:
  SafetensorsWriter(std::string path, WriteOptions opts) : path_(std::move(path)), opts_(std::move(opts)) {}

  void begin(const Node& layout) override {
    std::vector<std::string> not_tensors;
    std::vector<std::pair<std::string, TensorInfo>> tensors;
    visit_leaves(layout, [&](const Path& p, const Node& n) {
      if (n.is_tensor()) tensors.emplace_back(join_path(p), n.tensor().info);
      else not_tensors.push_back(join_path(p) + " (" + std::string(n.type_name()) + ")");
    });
    if (!not_tensors.empty()) {
      std::string list;
      for (std::size_t i = 0; i < not_tensors.size() && i < 20; ++i) list += "\n  " + not_tensors[i];
      throw MappingError(path_, "safetensors holds only tensors; these leaves have no place in it "
                                "(use --drop-non-tensors to drop them explicitly):" + list);
    }
    for (const auto& [name, info] : tensors)
      if (info.dtype == DType::C128)
        throw MappingError(path_, "safetensors has no complex128 dtype (tensor '" + name + "')");

    // Assign shards greedily in tree order.
    const std::uint64_t max_shard_bytes = option_size(opts_.options, "shard-size").value_or(0);
    const bool sharded = max_shard_bytes > 0;
    std::vector<std::vector<std::size_t>> groups(1);
    std::uint64_t cur = 0;
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      auto nb = tensors[i].second.nbytes();
      if (sharded && cur > 0 && cur + nb > max_shard_bytes) {
        groups.emplace_back();
        cur = 0;
      }
      groups.back().push_back(i);
      cur += nb;
    }
    slots_.resize(tensors.size());
    if (sharded) {
      dir_ = std::make_unique<AtomicDir>(path_);
    }
    std::uint64_t total = 0;
    ojson weight_map = ojson::object();
    for (std::size_t s = 0; s < groups.size(); ++s) {
      Shard sh;
      sh.slots = groups[s];
      if (sharded) {
        char buf[64];
        // One shard is one plain model.safetensors without an index, as save_pretrained writes it.
        std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", s + 1, groups.size());
        sh.file_name = groups.size() == 1 ? "model.safetensors" : buf;
      }
      ojson h = ojson::object();
      std::map<std::string, std::string> meta = opts_.metadata;
      if (sharded && !meta.count("format")) meta["format"] = "pt";
      if (!meta.empty()) h["__metadata__"] = meta;
      std::uint64_t off = 0;
      for (auto i : sh.slots) {
        const auto& [name, info] = tensors[i];
        h[name] = {{"dtype", std::string(dtype_name(info.dtype))}, {"shape", info.shape}, {"data_offsets", {off, off + info.nbytes()}}};
        slots_[i] = {s, off, info.nbytes()};
        off += info.nbytes();
        total += info.nbytes();
        if (sharded) weight_map[name] = sh.file_name;
      }
      std::string json = h.dump();
      while (json.size() % 8) json += ' ';
      std::uint64_t n = json.size();
      sh.header.assign(reinterpret_cast<const char*>(&n), 8);
      sh.header += json;
      for (auto i : sh.slots) slots_[i].file_offset += sh.header.size();
      std::string file_path = sharded ? dir_->path() + "/" + sh.file_name : path_;
      sh.file = std::make_unique<AtomicFile>(file_path);
      sh.file->truncate(sh.header.size() + off);
      sh.file->pwrite(0, sh.header);
      shards_.push_back(std::move(sh));
    }
    if (sharded && groups.size() > 1) {
      ojson idx = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
      index_ = idx.dump(2) + "\n";
    }
  }

  void write(std::size_t slot, std::uint64_t offset, std::span<const std::byte> data) override {
    const Slot& s = slots_.at(slot);
    if (offset > s.nbytes || data.size() > s.nbytes - offset)
      throw MappingError(path_, "write past the end of tensor slot " + std::to_string(slot));
    shards_[s.shard].file->pwrite(s.file_offset + offset, data);
  }

  std::optional<std::uint64_t> file_position(std::size_t slot, std::uint64_t offset) const override {
    if (slot >= slots_.size()) return std::nullopt;
    return slots_[slot].file_offset + offset;
  }

  void commit() override {
    for (auto& sh : shards_) sh.file->commit();  // inside the temp dir when sharded
    if (dir_) {
      if (!index_.empty()) write_small_file(dir_->path() + "/" + kIndexName, index_);
      dir_->commit();
    }
  }

 private:
  std::string path_;
  WriteOptions opts_;
  std::vector<Slot> slots_;
  std::vector<Shard> shards_;
  std::unique_ptr<AtomicDir> dir_;
  std::string index_;
};

}  // namespace

std::unique_ptr<Writer> make_writer(const std::string& path, const WriteOptions& opts) {
  return std::make_unique<SafetensorsWriter>(path, opts);
}

}  // namespace ckb::safetensors
