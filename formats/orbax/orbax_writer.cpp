// The Orbax PyTree writer (formats/orbax/orbax_writer.h).
#include "formats/orbax/orbax_writer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/errors.h"
#include "core/float_bits.h"
#include "formats/cooperative.h"
#include "formats/orbax/py_json.h"
#include "formats/zarr/zarr_dtype.h"
#include "formats/zarr/zarr_chunk_encoder.h"
#include "formats/zarr/zarr_writer.h"
#include "io/file.h"
#include "io/kvstore_writer.h"
#include "io/ocdbt/ocdbt_merge.h"
#include "io/output.h"

namespace ckb::orbax {
namespace {

using ojson = nlohmann::ordered_json;
using json = nlohmann::json;

constexpr const char* kPyTreeHandler = "orbax.checkpoint._src.handlers.pytree_checkpoint_handler.PyTreeCheckpointHandler";
// Orbax splits an array whose bytes exceed the OCDBT target data-file size into chunks
// (formats.md §1.6); smaller arrays are one chunk.
constexpr std::uint64_t kOrbaxTargetFileSize = 1ull << 31;
constexpr const char* kSingleDeviceSharding = R"({"sharding_type": "SingleDeviceSharding", "device_str": "cpu:0"})";

struct Key {
  std::string name;
  int key_type;  // 1 sequence index, 2 dict key
};

struct Leaf {
  std::vector<Key> keys;
  const Node* node = nullptr;
  std::string param;       // keys joined with '.'
  std::string value_type;  // as in _METADATA
  bool skip_deserialize = false;
};

// Chunks of more raw bytes than this are streamed: encoded as their bytes arrive (zstd on
// several cores) straight into their stored value, so memory holds neither the raw nor the
// compressed chunk. Smaller ones are gathered (unless written whole) and compressed in one
// call on the writing thread, which is faster for them: the executor already runs one such
// chunk per core. Which path a chunk takes depends only on its size, so the output does not
// depend on how the bytes were cut into write() calls or on the machine.
constexpr std::uint64_t kStreamChunkBytes = 16ull << 20;

struct ChunkState {
  // Gathered chunks: the bytes received so far (when not written whole).
  Bytes partial;
  std::uint64_t filled = 0;
  // Streamed chunks: the value being written, the bytes fed to the encoder so far, whether a
  // thread is feeding it now, and the pieces that arrived ahead of their turn (only when
  // several threads write ranges of one chunk: each waits here, copied, until the bytes
  // before it are in; the executor writes a tensor for this writer from one thread, in order).
  std::unique_ptr<KvValueSink> sink;
  std::unique_ptr<zarr::ChunkEncoder> encoder;
  std::uint64_t next = 0;
  bool feeding = false;
  std::map<std::uint64_t, Bytes> ahead;
};

struct ArraySlot {
  std::size_t leaf = 0;
  zarr::WriteSpec spec;
  bool streamed = false;  // chunk_bytes() > kStreamChunkBytes
  std::mutex mu;
  std::vector<ChunkState> chunks;
  std::atomic<std::uint64_t> chunks_done{0};
  bool owned = true;  // written by this process (formats/cooperative.h)
};

std::string base64_urlsafe(const std::string& s) {
  static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < s.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(s[i]) << 16) | (static_cast<unsigned char>(s[i + 1]) << 8) |
                       static_cast<unsigned char>(s[i + 2]);
    for (int k = 18; k >= 0; k -= 6) out.push_back(abc[(v >> k) & 63]);
  }
  if (i < s.size()) {
    unsigned v = static_cast<unsigned char>(s[i]) << 16;
    if (i + 1 < s.size()) v |= static_cast<unsigned char>(s[i + 1]) << 8;
    out.push_back(abc[(v >> 18) & 63]);
    out.push_back(abc[(v >> 12) & 63]);
    out.push_back(i + 1 < s.size() ? abc[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

bool flatten_key_less(const Key& a, const Key& b) {
  if (a.key_type == 1 && b.key_type == 1 && a.name.size() != b.name.size()) return a.name.size() < b.name.size();
  return a.name < b.name;
}

// JAX flattening order: dict keys sorted, sequences by index.
bool flatten_less(const Leaf& a, const Leaf& b) {
  return std::lexicographical_compare(a.keys.begin(), a.keys.end(), b.keys.begin(), b.keys.end(), flatten_key_less);
}

std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

std::string checkpoint_metadata(const ojson& item_handlers, std::uint64_t init_ns) {
  ojson j;
  j["item_handlers"] = item_handlers;
  j["metrics"] = ojson::object();
  j["performance_metrics"] = ojson::object();
  j["init_timestamp_nsecs"] = init_ns;
  j["commit_timestamp_nsecs"] = now_ns();
  j["custom_metadata"] = ojson::object();
  return py_json_dumps(j);
}

// One 0-d element of `t` holding `n`'s value (a "scalar" leaf).
std::string scalar_bytes(const Node& n, DType t, const std::string& where) {
  auto put = [](auto v) { return std::string(reinterpret_cast<const char*>(&v), sizeof v); };
  const auto& v = n.value();
  if (const bool* b = std::get_if<bool>(&v)) {
    if (t != DType::BOOL) throw MappingError(where, "bool scalar cannot be stored as " + std::string(dtype_name(t)));
    return std::string(1, *b ? '\1' : '\0');
  }
  if (const std::int64_t* i = std::get_if<std::int64_t>(&v)) {
    auto check = [&](auto lo, auto hi) {
      if (*i < static_cast<std::int64_t>(lo) || (hi > 0 && static_cast<std::uint64_t>(*i) > static_cast<std::uint64_t>(hi)))
        throw MappingError(where, "integer scalar " + std::to_string(*i) + " does not fit " + std::string(dtype_name(t)));
    };
    switch (t) {
      case DType::I64: return put(*i);
      case DType::I32: check(INT32_MIN, INT32_MAX); return put(static_cast<std::int32_t>(*i));
      case DType::I16: check(INT16_MIN, INT16_MAX); return put(static_cast<std::int16_t>(*i));
      case DType::I8: check(INT8_MIN, INT8_MAX); return put(static_cast<std::int8_t>(*i));
      case DType::U64: check(0, UINT64_MAX); return put(static_cast<std::uint64_t>(*i));
      case DType::U32: check(0, UINT32_MAX); return put(static_cast<std::uint32_t>(*i));
      case DType::U16: check(0, UINT16_MAX); return put(static_cast<std::uint16_t>(*i));
      case DType::U8: check(0, UINT8_MAX); return put(static_cast<std::uint8_t>(*i));
      case DType::BOOL: check(0, 1); return std::string(1, static_cast<char>(*i));
      default: break;
    }
  }
  if (const double* d = std::get_if<double>(&v)) {
    switch (t) {
      case DType::F64: return put(*d);
      case DType::F32: return put(static_cast<float>(*d));
      case DType::F16: return put(static_cast<std::uint16_t>(encode_float(kF16, *d)));
      case DType::BF16: return put(static_cast<std::uint16_t>(encode_float(kBF16, *d)));
      default: break;
    }
  }
  throw MappingError(where, std::string(n.type_name()) + " scalar cannot be stored as " + std::string(dtype_name(t)));
}

// One writer, alone or as one process of several (formats/cooperative.h): then each process
// writes the arrays it owns into its own `ocdbt.process_<rank>/` database (or their array
// directories), rank 0 the non-array leaves; publish() merges the databases into the root
// one and writes the metadata and commit markers.
class OrbaxWriter final : public CooperativeWriter {
 public:
  OrbaxWriter(std::string path, const WriteOptions& opts, std::optional<Cooperation> co = std::nullopt)
      : path_(std::move(path)), opts_(opts), cooperative_(co.has_value()), co_(co.value_or(Cooperation{})) {
    zarr3_ = option_text(opts.options, "zarr-version").value_or("2") == "3";
    ocdbt_ = !option_flag(opts.options, "no-ocdbt");
    compress_ = option_text(opts.options, "compression").value_or("zstd") == "zstd";
    chunk_bytes_ = option_size(opts.options, "chunk-size").value_or(0);
    if (chunk_bytes_ == 0) chunk_bytes_ = kOrbaxTargetFileSize;
    if (auto step = option_int(opts.options, "step")) {
      if (*step < 0) throw UsageError("orbax step must be a non-negative integer, got " + std::to_string(*step));
      step_ = std::to_string(*step);
      item_ = "default";
    }
    if (auto item = option_text(opts.options, "item")) {
      if (step_.empty()) throw UsageError("an Orbax item name needs a step (--step N --item NAME)");
      item_ = *item;
      if (item_.empty() || item_.find('/') != std::string::npos || item_ == "." || item_ == "..")
        throw UsageError("orbax item name must be a plain directory name, got '" + item_ + "'");
    }
  }

  void begin(const Node& layout) override {
    init_ns_ = now_ns();
    if (!layout.is_container()) throw MappingError(path_, "an Orbax checkpoint holds a tree; the root is a " +
                                                              std::string(layout.type_name()));
    std::vector<Key> keys;
    collect(layout, keys);
    check_names();

    // Output directories (a process other than rank 0 writes into rank 0's).
    if (co_.rank > 0) {
      item_dir_ = step_.empty() ? co_.folder : co_.folder + "/" + item_;
      item_final_ = step_.empty() ? path_ : path_ + "/" + step_ + "/" + item_;
    } else if (step_.empty()) {
      dir_ = std::make_unique<AtomicDir>(path_);
      item_dir_ = dir_->path();
      item_final_ = path_;
    } else {
      const std::string step_final = path_ + "/" + step_;
      if (path_exists(step_final) && !opts_.overwrite)
        throw UsageError("step " + step_ + " already exists in " + path_ + "; pass --overwrite to replace it");
      // The step is rebuilt as a whole: it may hold only the item being written and the
      // step's own metadata, or other items would be lost.
      if (path_exists(step_final))
        for (const auto& e : list_directory(step_final)) {
          const std::string& n = e.name;
          if (n != item_ && n != "_CHECKPOINT_METADATA" && n != "commit_success.txt")
            throw UsageError("refusing to replace step " + step_ + " of " + path_ + ": it also holds '" + n +
                             "', which this output would lose (write another step, or remove it yourself)");
        }
      dir_ = std::make_unique<AtomicDir>(step_final);
      item_dir_ = dir_->path() + "/" + item_;
      item_final_ = step_final + "/" + item_;
      make_dirs(item_dir_);
    }
    const std::string db = cooperative_ ? item_dir_ + "/" + process_database(co_.rank) : item_dir_;
    kv_ = ocdbt_ ? make_ocdbt_kv_writer(db) : make_directory_kv_writer(item_dir_);

    for (std::size_t li = 0; li < leaves_.size(); ++li) {
      const Leaf& leaf = leaves_[li];
      if (leaf.node->is_tensor()) {
        auto a = std::make_unique<ArraySlot>();
        a->leaf = li;
        a->spec.zarr_format = zarr3_ ? 3 : 2;
        a->spec.compress = compress_;
        a->spec.info = leaf.node->tensor().info;
        a->spec.chunk_rows = zarr::rows_for_chunk_bytes(a->spec.info, chunk_bytes_);
        a->streamed = a->spec.chunk_bytes() > kStreamChunkBytes;
        a->chunks.resize(a->spec.num_chunks());
        a->owned = !cooperative_ || (slots_.size() < co_.owned.size() && co_.owned[slots_.size()]);
        if (a->owned) kv_->put(leaf.param + "/" + zarr::metadata_key(a->spec), zarr::metadata_json(a->spec));
        slots_.push_back(std::move(a));
      } else if (leaf.value_type == "scalar" && co_.rank == 0) {
        zarr::WriteSpec s;
        s.zarr_format = zarr3_ ? 3 : 2;
        s.compress = compress_;
        s.info.dtype = scalar_storage_dtype(*leaf.node);
        const std::string bytes = scalar_bytes(*leaf.node, s.info.dtype, path_ + ":" + leaf.param);
        kv_->put(leaf.param + "/" + zarr::metadata_key(s), zarr::metadata_json(s));
        auto enc = zarr::encode_chunk(s, std::as_bytes(std::span(bytes.data(), bytes.size())));
        kv_->put(leaf.param + "/" + zarr::chunk_key(s, 0), enc.bytes());
      }
    }
  }

  void write(std::size_t slot, std::uint64_t offset, std::span<const std::byte> data) override {
    if (slot >= slots_.size()) throw MappingError(path_, "orbax writer: no tensor slot " + std::to_string(slot));
    ArraySlot& a = *slots_[slot];
    if (!a.owned) throw MappingError(path_, "orbax writer: '" + leaves_[a.leaf].param + "' is written by another process");
    const std::uint64_t total = a.spec.info.nbytes();
    if (offset > total || data.size() > total - offset)
      throw MappingError(path_, "orbax writer: write to '" + leaves_[a.leaf].param + "' at " + std::to_string(offset) +
                                    " is outside the tensor");
    const std::uint64_t per = a.spec.chunk_bytes();
    while (!data.empty()) {
      const std::uint64_t i = offset / per;
      const auto [b, e] = a.spec.chunk_range(i);
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(data.size(), e - offset));
      const auto part = data.first(n);
      ChunkState& c = a.chunks[i];
      if (a.streamed) {
        stream_piece(a, i, offset - b, part);
      } else if (offset == b && n == e - b) {
        store_chunk(a, i, part);
      } else {
        std::byte* dst;
        {
          std::lock_guard lock(a.mu);
          if (!c.partial.data()) c.partial = Bytes(static_cast<std::size_t>(e - b));
          dst = c.partial.data();
        }
        std::memcpy(dst + (offset - b), part.data(), n);
        Bytes full;
        {
          std::lock_guard lock(a.mu);
          c.filled += n;
          if (c.filled > e - b) written_twice(a);
          if (c.filled == e - b) full = std::move(c.partial);
        }
        if (full.data()) store_chunk(a, i, full.span());
      }
      offset += n;
      data = data.subspan(n);
    }
  }

  bool streams_in_order() const override { return true; }

  // Streams still open (a failed or cancelled run) end before the store they write to.
  ~OrbaxWriter() override { slots_.clear(); }

  void commit() override {
    if (!kv_) throw MappingError(path_, "orbax writer: commit() before begin()");
    for (const auto& a : slots_)
      if (a->owned && a->chunks_done.load() != a->spec.num_chunks())
        throw MappingError(path_, "orbax writer: tensor '" + leaves_[a->leaf].param + "' was not completely written");
    kv_->finish();
    if (!cooperative_) publish();
  }

  std::string shared_folder() const override { return dir_ ? dir_->path() : ""; }

  void publish() override {
    if (!dir_) throw MappingError(path_, "orbax writer: only rank 0 publishes");
    if (cooperative_ && ocdbt_) {
      std::vector<std::string> dbs;
      for (int r = 0; r < co_.ranks; ++r) dbs.push_back(process_database(r));
      ocdbt::merge_databases(item_dir_, dbs);
    }

    // _METADATA, in JAX flattening order.
    std::vector<std::size_t> order(leaves_.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t x, std::size_t y) { return flatten_less(leaves_[x], leaves_[y]); });
    ojson tree = ojson::object();
    ojson array_metadatas = ojson::array();
    json sharding = json::object();
    json strings = json::object();
    for (std::size_t li : order) {
      const Leaf& leaf = leaves_[li];
      std::vector<std::string> names;
      ojson key_md = ojson::array();
      for (const auto& k : leaf.keys) {
        names.push_back(k.name);
        key_md.push_back({{"key", k.name}, {"key_type", k.key_type}});
      }
      ojson vm;
      vm["value_type"] = leaf.value_type;
      vm["skip_deserialize"] = leaf.skip_deserialize;
      if (leaf.value_type == "jax.Array") {
        const auto& shape = leaf.node->tensor().info.shape;
        vm["write_shape"] = shape;
        ojson ext = nullptr;
        if (auto it = leaf.node->attrs.find("random_key_impl"); it != leaf.node->attrs.end())
          ext = {{"random_key_impl", it->second}};
        zarr::WriteSpec s;
        s.info = leaf.node->tensor().info;
        s.chunk_rows = zarr::rows_for_chunk_bytes(s.info, chunk_bytes_);
        ojson am;
        am["param_name"] = leaf.param;
        am["write_shape"] = shape;
        am["chunk_shape"] = s.chunk_shape();
        am["ext_metadata"] = ext;
        array_metadatas.push_back({{"array_metadata", am}});
        sharding[base64_urlsafe(leaf.param)] = kSingleDeviceSharding;
      }
      if (leaf.value_type == "string") strings[leaf.param] = std::get<std::string>(leaf.node->value());
      tree[py_tuple_repr(names)] = {{"key_metadata", key_md}, {"value_metadata", vm}};
    }
    ojson meta;
    meta["tree_metadata"] = tree;
    meta["use_ocdbt"] = ocdbt_;
    meta["use_zarr3"] = zarr3_;
    meta["store_array_data_equal_to_fill_value"] = true;
    meta["custom_metadata"] = nullptr;
    write_small_file(item_dir_ + "/_METADATA", py_json_dumps(meta));
    if (!sharding.empty()) write_small_file(item_dir_ + "/_sharding", sharding.dump());
    if (!array_metadatas.empty()) {
      make_dirs(item_dir_ + "/array_metadatas");
      ojson am;
      am["array_metadatas"] = array_metadatas;
      write_small_file(item_dir_ + "/array_metadatas/process_0", py_json_dumps(am));
    }
    if (!strings.empty()) write_small_file(item_dir_ + "/_strings.json", strings.dump());
    if (step_.empty()) {
      write_small_file(item_dir_ + "/_CHECKPOINT_METADATA", checkpoint_metadata(kPyTreeHandler, init_ns_));
    } else {
      ojson handlers;
      handlers[item_] = kPyTreeHandler;
      write_small_file(dir_->path() + "/_CHECKPOINT_METADATA", checkpoint_metadata(handlers, init_ns_));
      write_small_file(dir_->path() + "/commit_success.txt", "Checkpoint commit was successful to " + dir_->final_path());
    }
    write_small_file(item_dir_ + "/commit_success.txt", "Checkpoint commit was successful to " + item_final_);
    dir_->commit();
  }

 private:
  void collect(const Node& n, std::vector<Key>& keys) {
    if (n.is_container() && !n.container().children.empty()) {
      const int kt = n.container().kind == ContainerKind::Dict ? 2 : 1;
      for (const auto& ch : n.container().children) {
        keys.push_back({ch.key, kt});
        collect(*ch.node, keys);
        keys.pop_back();
      }
      return;
    }
    Leaf leaf;
    leaf.keys = keys;
    leaf.node = &n;
    for (std::size_t i = 0; i < keys.size(); ++i) leaf.param += (i ? "." : "") + keys[i].name;
    const std::string where = leaf.param.empty() ? std::string("<root>") : leaf.param;
    auto attr_vt = n.attrs.find("orbax.value_type");
    if (n.is_tensor()) {
      // A 0-d tensor marked as a scalar (e.g. a Linen step from an NNX uint32 array) is stored
      // as Orbax stores Python/NumPy scalars: the same zarr array, value_type "scalar".
      const std::string vt = attr_vt != n.attrs.end() ? attr_vt->second : "";
      leaf.value_type = vt == "np.ndarray" ? "np.ndarray"
                        : vt == "scalar" && n.tensor().info.shape.empty() ? "scalar"
                                                                           : "jax.Array";
    } else if (n.is_container()) {
      leaf.skip_deserialize = true;
      const auto kind = n.container().kind;
      leaf.value_type = kind == ContainerKind::Dict ? "Dict" : kind == ContainerKind::List ? "List" : "Tuple";
      if (attr_vt != n.attrs.end() && kind == ContainerKind::Tuple && attr_vt->second == "NamedTuple")
        leaf.value_type = "NamedTuple";
    } else if (std::holds_alternative<NoneValue>(n.value())) {
      leaf.value_type = "None";
      leaf.skip_deserialize = true;
    } else if (std::holds_alternative<std::string>(n.value())) {
      leaf.value_type = "string";
    } else if (std::holds_alternative<RawBytes>(n.value())) {
      throw MappingError(path_, "leaf '" + where + "' holds raw bytes, which an Orbax checkpoint cannot store");
    } else {
      leaf.value_type = "scalar";
    }
    if (keys.empty()) throw MappingError(path_, "an Orbax checkpoint needs a tree, not a single " + std::string(n.type_name()));
    leaves_.push_back(std::move(leaf));
  }

  // Orbax names arrays by the '.'-joined key path; two leaves must not share a name.
  void check_names() const {
    std::unordered_map<std::string, std::size_t> seen;
    for (std::size_t i = 0; i < leaves_.size(); ++i) {
      auto [it, fresh] = seen.emplace(leaves_[i].param, i);
      if (!fresh)
        throw MappingError(path_, "two leaves have the same Orbax name '" + leaves_[i].param +
                                      "' (dotted key path); rename one of them");
    }
  }

  [[noreturn]] void written_twice(const ArraySlot& a) const {
    throw MappingError(path_, "orbax writer: bytes of '" + leaves_[a.leaf].param + "' written twice");
  }

  // Bytes [at, at + part.size()) of streamed chunk `i`: fed to its encoder when their turn
  // has come (then also the pieces waiting behind them), else copied aside.
  void stream_piece(ArraySlot& a, std::uint64_t i, std::uint64_t at, std::span<const std::byte> part) {
    ChunkState& c = a.chunks[i];
    const auto [b, e] = a.spec.chunk_range(i);
    std::unique_lock lock(a.mu);
    if (at < c.next) written_twice(a);
    if (!c.encoder) {
      c.sink = kv_->begin_value(leaves_[a.leaf].param + "/" + zarr::chunk_key(a.spec, i));
      c.encoder = std::make_unique<zarr::ChunkEncoder>(a.spec, i, [sink = c.sink.get()](std::span<const std::byte> v) {
        sink->append(v);
      });
    }
    if (c.feeding || at != c.next) {
      lock.unlock();
      Bytes copy(part.size());
      std::memcpy(copy.data(), part.data(), part.size());
      lock.lock();
      if (at < c.next || !c.ahead.emplace(at, std::move(copy)).second) written_twice(a);
      if (c.feeding || c.ahead.begin()->first != c.next) return;
      part = {};
    }
    c.feeding = true;
    Bytes held;
    for (;;) {
      lock.unlock();
      if (!part.empty()) c.encoder->append(part);
      lock.lock();
      c.next += part.size();
      held = Bytes();
      part = {};
      auto it = c.ahead.begin();
      if (it == c.ahead.end() || it->first != c.next) break;
      held = std::move(it->second);
      c.ahead.erase(it);
      part = held.span();
    }
    c.feeding = false;
    if (c.next != e - b) return;
    lock.unlock();
    c.encoder->finish();
    c.sink->close();
    c.encoder.reset();
    c.sink.reset();
    a.chunks_done.fetch_add(1);
  }

  void store_chunk(ArraySlot& a, std::uint64_t i, std::span<const std::byte> raw) {
    const auto enc = zarr::encode_chunk(a.spec, raw);
    kv_->put(leaves_[a.leaf].param + "/" + zarr::chunk_key(a.spec, i), enc.bytes());
    a.chunks_done.fetch_add(1);
  }

  static std::string process_database(int rank) { return "ocdbt.process_" + std::to_string(rank); }

  std::string path_;
  WriteOptions opts_;
  bool cooperative_;
  Cooperation co_;
  bool zarr3_ = false, ocdbt_ = true, compress_ = true;
  std::uint64_t chunk_bytes_ = 0;
  std::string step_, item_;
  std::uint64_t init_ns_ = 0;
  std::vector<Leaf> leaves_;
  std::vector<std::unique_ptr<ArraySlot>> slots_;
  std::unique_ptr<AtomicDir> dir_;
  std::string item_dir_, item_final_;
  std::unique_ptr<KvWriter> kv_;
};

}  // namespace

DType scalar_storage_dtype(const Node& n) {
  if (auto it = n.attrs.find("orbax.dtype"); it != n.attrs.end()) {
    auto t = zarr::parse_v2_dtype(it->second);
    if (!t) t = zarr::parse_v3_dtype(it->second);
    if (t) return t->dtype;
  }
  if (std::holds_alternative<bool>(n.value())) return DType::BOOL;
  if (std::holds_alternative<double>(n.value())) return DType::F64;
  return DType::I64;
}

std::unique_ptr<Writer> make_writer(const std::string& path, const WriteOptions& opts) {
  return std::make_unique<OrbaxWriter>(path, opts);
}

}  // namespace ckb::orbax

namespace ckb {

std::unique_ptr<CooperativeWriter> make_cooperative_orbax_writer(const std::string& path, const WriteOptions& wo,
                                                                 const Cooperation& co) {
  if (co.rank > 0 && co.folder.empty()) throw MappingError(path, "orbax: a cooperative writer of rank > 0 needs rank 0's folder");
  return std::make_unique<orbax::OrbaxWriter>(path, wo, co);
}

}  // namespace ckb
