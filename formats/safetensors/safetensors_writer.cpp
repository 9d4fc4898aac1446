// Writer side of formats/safetensors/safetensors.h. The whole layout (header, offsets,
// shard assignment) is computed from metadata in begin(); tensor bytes are then pwritten at
// their final offsets from any thread, and the output is renamed into place at commit.
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/errors.h"
#include "formats/cooperative.h"
#include "formats/safetensors/safetensors.h"
#include "io/file.h"
#include "io/output.h"
#include "io/shared_file.h"

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
  std::unique_ptr<SharedFilePart> part;  // one file written by several processes: rank 0's temporary
};

// The shard of every tensor (in order): filled greedily in tree order up to "shard-size";
// all in shard 0 when unsharded.
std::vector<std::size_t> shard_plan(const std::vector<std::pair<std::string, TensorInfo>>& tensors, const WriteOptions& wo) {
  const std::uint64_t max_shard_bytes = option_size(wo.options, "shard-size").value_or(0);
  std::vector<std::size_t> shard(tensors.size());
  std::size_t s = 0;
  std::uint64_t cur = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto nb = tensors[i].second.nbytes();
    if (max_shard_bytes > 0 && cur > 0 && cur + nb > max_shard_bytes) {
      ++s;
      cur = 0;
    }
    shard[i] = s;
    cur += nb;
  }
  return shard;
}

std::vector<std::pair<std::string, TensorInfo>> tensor_infos(const Node& layout) {
  std::vector<std::pair<std::string, TensorInfo>> tensors;
  visit_leaves(layout, [&](const Path& p, const Node& n) {
    if (n.is_tensor()) tensors.emplace_back(join_path(p), n.tensor().info);
  });
  return tensors;
}

// One writer, alone or as one process of several (formats/cooperative.h): then, sharded, it
// writes only the shards holding its slots into the folder rank 0 made; unsharded, every
// process writes its tensors into the one file rank 0 made (its header and size fixed by rank
// 0); publish() (rank 0) is separate.
class SafetensorsWriter final : public CooperativeWriter {
 public:
  SafetensorsWriter(std::string path, WriteOptions opts, std::optional<Cooperation> co = std::nullopt)
      : path_(std::move(path)), opts_(std::move(opts)), cooperative_(co.has_value()), co_(co.value_or(Cooperation{})) {}

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

    const bool sharded = option_size(opts_.options, "shard-size").value_or(0) > 0;
    std::vector<std::vector<std::size_t>> groups;
    const auto shard_of = shard_plan(tensors, opts_);
    for (std::size_t i = 0; i < shard_of.size(); ++i) {
      if (shard_of[i] == groups.size()) groups.emplace_back();
      groups[shard_of[i]].push_back(i);
    }
    if (groups.empty()) groups.emplace_back();
    slots_.resize(tensors.size());
    // Several processes and one file: rank 0 makes it, the others write their tensors into it.
    one_shared_file_ = cooperative_ && !sharded;
    if (sharded && co_.rank == 0) {
      dir_ = std::make_unique<AtomicDir>(path_);
    }
    const std::string folder = dir_ ? dir_->path() : co_.folder;
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
      if (one_shared_file_ && co_.rank > 0) {
        sh.part = std::make_unique<SharedFilePart>(co_.folder);
      } else if (owns(sh.slots) || one_shared_file_) {
        sh.file = std::make_unique<AtomicFile>(sharded ? folder + "/" + sh.file_name : path_);
        sh.file->truncate(sh.header.size() + off);
        sh.file->pwrite(0, sh.header);
      }
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
    const Shard& sh = shards_[s.shard];
    if (sh.file) sh.file->pwrite(s.file_offset + offset, data);
    else if (sh.part) sh.part->pwrite(s.file_offset + offset, data);
    else throw MappingError(path_, "tensor slot " + std::to_string(slot) + " is written by another process");
  }

  bool prefers_file_order() const override { return is_remote_path(path_); }
  std::optional<std::uint64_t> file_position(std::size_t slot, std::uint64_t offset) const override {
    if (slot >= slots_.size()) return std::nullopt;
    return slots_[slot].file_offset + offset;
  }

  void commit() override {
    for (auto& sh : shards_) {
      if (sh.part) sh.part->finish();
      else if (sh.file && !one_shared_file_) sh.file->commit();  // inside the temp dir when sharded
    }
    if (!cooperative_) publish();
  }

  // Rank 0's temporary folder (sharded) or file (one file).
  std::string shared_folder() const override {
    if (dir_) return dir_->path();
    return one_shared_file_ && !shards_.empty() && shards_[0].file ? shards_[0].file->temp_path() : "";
  }

  void publish() override {
    if (one_shared_file_) shards_[0].file->commit();
    if (dir_) {
      if (!index_.empty()) write_small_file(dir_->path() + "/" + kIndexName, index_);
      dir_->commit();
    }
  }

 private:
  // Whether this process writes the shard holding `slots` (every slot of a shard goes to one process).
  bool owns(const std::vector<std::size_t>& slots) const {
    return !cooperative_ || slots.empty() || (slots.front() < co_.owned.size() && co_.owned[slots.front()]);
  }

  std::string path_;
  WriteOptions opts_;
  bool cooperative_;
  Cooperation co_;
  bool one_shared_file_ = false;
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

namespace ckb {

std::vector<std::size_t> safetensors_shard_groups(const Node& layout, const WriteOptions& wo) {
  auto groups = safetensors::shard_plan(safetensors::tensor_infos(layout), wo);
  if (option_size(wo.options, "shard-size").value_or(0) == 0)  // one file: any tensor to any process
    for (std::size_t i = 0; i < groups.size(); ++i) groups[i] = i;
  return groups;
}

std::unique_ptr<CooperativeWriter> make_cooperative_safetensors_writer(const std::string& path, const WriteOptions& wo,
                                                                       const Cooperation& co) {
  if (co.rank > 0 && co.folder.empty()) throw MappingError(path, "safetensors: a cooperative writer of rank > 0 needs rank 0's folder");
  return std::make_unique<safetensors::SafetensorsWriter>(path, wo, co);
}

}  // namespace ckb::safetensors
