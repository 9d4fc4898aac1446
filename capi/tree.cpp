// Trees through the C ABI: opening, describing, reading tensors (whole, ranges, regions) and
// building trees in the caller's memory (capi/ckptbridge.h).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "capi/handles.h"

using namespace ckb;
using namespace ckb::capi;
using json = nlohmann::ordered_json;

namespace {

// A tensor whose bytes belong to the caller (borrowed; see ckb_tree_add_tensor).
class BorrowedSource final : public TensorSource {
 public:
  BorrowedSource(const void* data, std::uint64_t n, std::string what)
      : data_(static_cast<const std::byte*>(data)), n_(n), what_(std::move(what)) {}
  void read(std::uint64_t offset, std::span<std::byte> out) const override {
    if (offset > n_ || out.size() > n_ - offset) throw UsageError(what_ + ": read past the end of the caller's buffer");
    std::memcpy(out.data(), data_ + offset, out.size());
  }
  const std::byte* contiguous() const override { return data_; }
  bool parallel_reads() const override { return true; }
  std::string describe() const override { return what_; }

 private:
  const std::byte* data_;
  std::uint64_t n_;
  std::string what_;
};

// A tensor of an abstract tree: metadata only.
class AbstractSource final : public TensorSource {
 public:
  explicit AbstractSource(std::string what) : what_(std::move(what)) {}
  void read(std::uint64_t, std::span<std::byte>) const override {
    throw UsageError(what_ + ": an abstract tensor (shape and dtype only) has no bytes to read");
  }
  std::string describe() const override { return what_ + " (abstract)"; }

 private:
  std::string what_;
};

const char* kind_name(ContainerKind k) {
  return k == ContainerKind::Dict ? "dict" : k == ContainerKind::List ? "list" : "tuple";
}

json describe_node(const Node& n, const std::map<const Tensor*, std::size_t>& index) {
  json j;
  const auto& v = n.value();
  if (const auto* c = std::get_if<Node::Container>(&v)) {
    j["t"] = kind_name(c->kind);
    j["c"] = json::array();
    for (const auto& ch : c->children) j["c"].push_back(json::array({ch.key, describe_node(*ch.node, index)}));
  } else if (const auto* t = std::get_if<Tensor>(&v)) {
    j["t"] = "tensor";
    j["i"] = index.at(t);
  } else if (std::holds_alternative<NoneValue>(v)) {
    j["t"] = "none";
    j["v"] = nullptr;
  } else if (const auto* b = std::get_if<bool>(&v)) {
    j["t"] = "bool";
    j["v"] = *b;
  } else if (const auto* i = std::get_if<std::int64_t>(&v)) {
    j["t"] = "int";
    j["v"] = *i;
  } else if (const auto* d = std::get_if<double>(&v)) {
    j["t"] = "float";
    if (std::isnan(*d)) j["v"] = "nan";
    else if (std::isinf(*d)) j["v"] = *d > 0 ? "inf" : "-inf";
    else j["v"] = *d;
  } else if (const auto* s = std::get_if<std::string>(&v)) {
    j["t"] = "string";
    j["v"] = *s;
  } else if (const auto* r = std::get_if<RawBytes>(&v)) {
    static const char* hex = "0123456789abcdef";
    std::string h;
    for (unsigned char c : r->data) h += {hex[c >> 4], hex[c & 15]};
    j["t"] = "bytes";
    j["v"] = h;
  }
  if (!n.attrs.empty()) j["attrs"] = n.attrs;
  return j;
}

std::size_t check_index(const ckb_tree& t, std::size_t i) {
  if (i >= t.tensors.size())
    throw UsageError("tensor index " + std::to_string(i) + " out of range (" + std::to_string(t.tensors.size()) + " tensors)");
  return i;
}

// A new key under a list or tuple is its index (core/tree.h): the next one.
void check_new_key(const Node& parent, const std::string& key, const std::string& path) {
  if (parent.container().kind != ContainerKind::Dict && key != std::to_string(parent.size()))
    throw UsageError("'" + path + "': the next key under a list is " + std::to_string(parent.size()) + ", not '" + key + "'");
}

// The container at `parts[0..n-1]`, created as dicts where absent.
Node& container_at(Node& root, const std::vector<std::string>& parts, std::size_t n, const std::string& path) {
  Node* cur = &root;
  for (std::size_t k = 0; k < n; ++k) {
    Node* next = cur->find(parts[k]);
    if (!next) {
      check_new_key(*cur, parts[k], path);
      next = &cur->add(parts[k], Node::dict());
    }
    if (!next->is_container()) throw UsageError(path + ": '" + parts[k] + "' is already a leaf");
    cur = next;
  }
  return *cur;
}

void add_leaf(ckb_tree& t, const std::string& path, Node leaf) {
  if (!t.owned || t.keep_alive) throw UsageError("only trees made by ckb_tree_new can be added to");
  std::vector<std::string> parts;
  std::size_t a = 0;
  for (std::size_t b; (b = path.find('/', a)) != std::string::npos; a = b + 1) parts.push_back(path.substr(a, b - a));
  parts.push_back(path.substr(a));
  for (const auto& p : parts)
    if (p.empty()) throw UsageError("'" + path + "': empty path component");
  Node& parent = container_at(t.owned->root, parts, parts.size() - 1, path);
  if (parent.find(parts.back())) throw UsageError("'" + path + "' is already in the tree");
  check_new_key(parent, parts.back(), path);
  parent.add(parts.back(), std::move(leaf));
  t.root = &t.owned->root;
  t.dirty = true;
}

}  // namespace

void ckb_tree::index() const {
  tensors = root ? tensor_list(*root) : decltype(tensors){};
  dirty.store(false, std::memory_order_release);
}

extern "C" {

int ckb_open(const char* path, const char* options_json, ckb_tree** out) {
  return guarded([&] {
    if (!path || !out) throw UsageError("ckb_open: null argument");
    engine::SourceOptions so;
    if (options_json && *options_json) {
      const json o = json::parse(options_json);
      for (const auto& [k, v] : o.items()) {
        if (k == "step") {
          if (!v.is_null()) so.step = v.get<std::int64_t>();
        } else if (k == "strict_chunks") {
          so.strict_chunks = v.get<bool>();
        } else {
          throw UsageError("open: unknown option '" + k + "' (step, strict_chunks)");
        }
      }
    }
    auto t = std::make_unique<ckb_tree>();
    t->owned = std::make_shared<Checkpoint>(engine::open(path, so));
    t->root = &t->owned->root;
    t->format = t->owned->format;
    t->path = t->owned->path;
    t->metadata = t->owned->metadata;
    t->layout_options = t->owned->layout_options;
    t->index();
    *out = t.release();
  });
}

int ckb_tree_describe(const ckb_tree* tree, char** json_out) {
  return guarded([&] {
    const ckb_tree& t = tree_ref(tree);
    if (!json_out) throw UsageError("ckb_tree_describe: null argument");
    json j;
    j["format"] = t.format;
    j["path"] = t.path;
    j["metadata"] = t.metadata;
    j["layout_options"] = t.layout_options;
    std::map<const Tensor*, std::size_t> index;
    j["tensors"] = json::array();
    for (std::size_t i = 0; i < t.tensors.size(); ++i) {
      const auto& [name, tensor] = t.tensors[i];
      index[tensor] = i;
      j["tensors"].push_back({{"name", name},
                              {"dtype", std::string(dtype_name(tensor->info.dtype))},
                              {"shape", tensor->info.shape},
                              {"nbytes", tensor->info.nbytes()},
                              {"zero_copy", tensor->source && tensor->source->contiguous() != nullptr}});
    }
    j["tree"] = t.root ? describe_node(*t.root, index) : json(nullptr);
    j["report"] = t.report;
    *json_out = dup_string(j.dump(-1, ' ', false, json::error_handler_t::replace));
  });
}

int ckb_tensor_pointer(const ckb_tree* tree, size_t index, const void** ptr) {
  return guarded([&] {
    const ckb_tree& t = tree_ref(tree);
    if (!ptr) throw UsageError("ckb_tensor_pointer: null argument");
    const Tensor& x = *t.tensors[check_index(t, index)].second;
    *ptr = x.source ? x.source->contiguous() : nullptr;
  });
}

int ckb_tensor_read(const ckb_tree* tree, size_t index, uint64_t offset, void* out, uint64_t nbytes, unsigned threads) {
  return guarded([&] {
    const ckb_tree& t = tree_ref(tree);
    const auto& [name, x] = t.tensors[check_index(t, index)];
    const std::uint64_t total = x->info.nbytes();
    if (offset > total || nbytes > total - offset)
      throw UsageError(name + ": bytes [" + std::to_string(offset) + ", " + std::to_string(offset + nbytes) +
                       ") lie outside its " + std::to_string(total) + " bytes");
    if (!nbytes) return;
    if (!out) throw UsageError("ckb_tensor_read: null buffer");
    // Sources may read whole elements only (a cast): widen a ragged range to whole elements.
    const std::uint64_t elem = std::max<std::uint64_t>(1, dtype_bits(x->info.dtype) / 8);
    const std::uint64_t a = offset / elem * elem, b = std::min(total, (offset + nbytes + elem - 1) / elem * elem);
    if (a == offset && b == offset + nbytes) {
      read_parallel(*x->source, offset, {static_cast<std::byte*>(out), nbytes}, threads);
    } else {
      Bytes tmp(b - a);
      read_parallel(*x->source, a, tmp.span(), threads);
      std::memcpy(out, tmp.data() + (offset - a), nbytes);
    }
  });
}

int ckb_tensor_read_region(const ckb_tree* tree, size_t index, size_t ndim, const int64_t* start, const int64_t* stop,
                           void* out, uint64_t nbytes, unsigned threads) {
  return guarded([&] {
    const ckb_tree& t = tree_ref(tree);
    const auto& [name, x] = t.tensors[check_index(t, index)];
    if (ndim && (!start || !stop)) throw UsageError("ckb_tensor_read_region: null bounds");
    if (nbytes && !out) throw UsageError("ckb_tensor_read_region: null buffer");
    read_region(*x, {start, ndim}, {stop, ndim}, {static_cast<std::byte*>(out), nbytes}, name, threads);
  });
}

int ckb_tensor_release(const ckb_tree* tree, size_t index) {
  return guarded([&] {
    const ckb_tree& t = tree_ref(tree);
    const Tensor& x = *t.tensors[check_index(t, index)].second;
    if (x.source) x.source->release();
  });
}

void ckb_tree_free(ckb_tree* tree) { delete tree; }

int ckb_tree_new(ckb_tree** out) {
  return guarded([&] {
    if (!out) throw UsageError("ckb_tree_new: null argument");
    auto t = std::make_unique<ckb_tree>();
    t->owned = std::make_shared<Checkpoint>();
    t->owned->format = "memory";
    t->owned->path = "<memory>";
    t->root = &t->owned->root;
    t->format = "memory";
    t->path = "<memory>";
    *out = t.release();
  });
}

int ckb_tree_add_tensor(ckb_tree* tree, const char* path, const char* dtype, size_t ndim, const int64_t* shape,
                        const void* data, uint64_t nbytes) {
  return guarded([&] {
    if (!tree || !path || !dtype || (ndim && !shape)) throw UsageError("ckb_tree_add_tensor: null argument");
    const auto dt = dtype_from_name(dtype);
    if (!dt) throw UsageError(std::string(path) + ": unknown dtype '" + dtype + "'");
    TensorInfo info{*dt, Shape(shape, shape + ndim)};
    try {
      checked_numel(info.shape, path);
    } catch (const FormatError& e) {
      throw UsageError(e.what());  // the caller's shape, not a file's bytes
    }
    SourcePtr src;
    if (data) {
      if (nbytes != info.nbytes())
        throw UsageError(std::string(path) + ": " + std::to_string(nbytes) + " bytes given, " + shape_str(info.shape) +
                         " needs " + std::to_string(info.nbytes()));
      src = std::make_shared<BorrowedSource>(data, nbytes, path);
    } else {
      src = std::make_shared<AbstractSource>(path);
    }
    add_leaf(*tree, path, Node::tensor(Tensor{info, src}));
  });
}

int ckb_tree_add_value(ckb_tree* tree, const char* path, const char* json_value) {
  return guarded([&] {
    if (!tree || !path || !json_value) throw UsageError("ckb_tree_add_value: null argument");
    const json v = json::parse(json_value);
    Node n;
    if (v.is_null()) n = Node::none();
    else if (v.is_boolean()) n = Node(Node::Value(v.get<bool>()));
    else if (v.is_number_integer()) n = Node(Node::Value(v.get<std::int64_t>()));
    else if (v.is_number_float()) n = Node(Node::Value(v.get<double>()));
    else if (v.is_string()) n = Node(Node::Value(v.get<std::string>()));
    else if (v.is_object() && v.empty()) n = Node::dict();
    else if (v.is_array() && v.empty()) n = Node::list();
    else throw UsageError(std::string(path) + ": a leaf value is null, a bool, a number, a string, {} or []");
    add_leaf(*tree, path, std::move(n));
  });
}

int ckb_tree_set_metadata(ckb_tree* tree, const char* key, const char* value) {
  return guarded([&] {
    if (!tree || !key || !value) throw UsageError("ckb_tree_set_metadata: null argument");
    if (!tree->owned || tree->keep_alive) throw UsageError("only trees made by ckb_tree_new take metadata");
    tree->owned->metadata[key] = value;
    tree->metadata[key] = value;
  });
}

int ckb_convert(const char* from_dtype, const void* src, uint64_t n, const char* to_dtype, void* dst) {
  return guarded([&] {
    if (!from_dtype || !to_dtype || (n && (!src || !dst))) throw UsageError("ckb_convert: null argument");
    const auto from = dtype_from_name(from_dtype), to = dtype_from_name(to_dtype);
    if (!from || !to) throw UsageError(std::string("ckb_convert: unknown dtype '") + (from ? to_dtype : from_dtype) + "'");
    engine::convert(*from, *to, src, dst, n);
  });
}

}  // extern "C"
