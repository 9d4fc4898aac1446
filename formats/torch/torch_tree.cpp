// Turns the value model of formats/torch/pickle.h into a ckptbridge tree: containers,
// scalar leaves and lazy strided tensor views over their storages. Bounds every view
// against its storage before creating it, and caps depth and total node count so that a
// pickle sharing one container many times (a DAG via the memo) cannot explode the tree.
#include <unordered_set>

#include "core/errors.h"
#include "formats/torch/torch_format.h"

namespace ckb::torch_format {
namespace {

class TreeBuilder {
 public:
  TreeBuilder(const std::string& file, const StorageResolver& resolve, std::size_t max_nodes)
      : file_(file), resolve_(resolve), max_nodes_(max_nodes) {}

  Node convert(const pickle::Value* v, Path& path) {
    if (path.size() > pickle::kMaxDepth) fail(path, "nested deeper than " + std::to_string(pickle::kMaxDepth) + " levels");
    if (++nodes_ > max_nodes_)
      fail(path, "tree would have more than " + std::to_string(max_nodes_) +
                     " nodes (containers shared through the pickle memo are expanded per use)");
    using pickle::Kind;
    switch (v->kind) {
      case Kind::None: return Node::none();
      case Kind::Bool: return Node(v->b);
      case Kind::Int: return Node(v->i);
      case Kind::Float: return Node(v->f);
      case Kind::Str: return Node(v->s);
      case Kind::Bytes: return Node(RawBytes{v->s});
      case Kind::Tuple:
      case Kind::List: {
        Node n = v->kind == Kind::Tuple ? Node::tuple() : Node::list();
        auto& children = n.container().children;
        children.reserve(v->items.size());
        for (std::size_t k = 0; k < v->items.size(); ++k) {
          path.push_back(std::to_string(k));
          Node c = convert(v->items[k], path);
          children.emplace_back(path.back(), std::make_unique<Node>(std::move(c)));
          path.pop_back();
        }
        return n;
      }
      case Kind::Dict: {
        Node n = Node::dict();
        n.attrs["torch.type"] = v->ordered ? "OrderedDict" : "dict";
        auto& children = n.container().children;
        children.reserve(v->entries.size());
        std::unordered_set<std::string> keys;
        bool all_int = !v->entries.empty();
        for (const auto& [k, val] : v->entries) {
          all_int &= k->kind == Kind::Int;
          std::string key;
          if (k->kind == Kind::Str) key = k->s;
          else if (k->kind == Kind::Int) key = std::to_string(k->i);
          else fail(path, "dict key of type " + kind_name(k) + " is not supported (only str and int keys)");
          if (!keys.insert(key).second) fail(path, "dict has two keys that both read as '" + key + "'");
          path.push_back(key);
          Node c = convert(val, path);
          children.emplace_back(key, std::make_unique<Node>(std::move(c)));
          path.pop_back();
        }
        if (all_int) n.attrs["torch.keys"] = "int";
        return n;
      }
      case Kind::Tensor: return tensor(*v->tensor, path);
      case Kind::Unsupported: fail(path, v->s);
      case Kind::Global: fail(path, "a bare reference to " + v->s + " is not a checkpoint value");
      case Kind::Storage: fail(path, "a bare storage (not wrapped in a tensor) is not supported");
    }
    fail(path, "unknown value");
  }

 private:
  [[noreturn]] void fail(const Path& path, const std::string& msg) const {
    throw FormatError(file_, (path.empty() ? std::string("top-level object") : "'" + join_path(path) + "'") + ": " + msg);
  }

  static std::string kind_name(const pickle::Value* v) {
    switch (v->kind) {
      case pickle::Kind::None: return "None";
      case pickle::Kind::Bool: return "bool";
      case pickle::Kind::Float: return "float";
      case pickle::Kind::Bytes: return "bytes";
      case pickle::Kind::Tuple: return "tuple";
      case pickle::Kind::List: return "list";
      case pickle::Kind::Dict: return "dict";
      case pickle::Kind::Tensor: return "tensor";
      default: return "object";
    }
  }

  Node tensor(const pickle::TensorRef& t, const Path& path) {
    const std::string name = join_path(path);
    auto [base, base_nbytes] = resolve_(*t.storage);
    const std::uint64_t es = dtype_size(t.dtype);
    const std::uint64_t numel = checked_numel(t.shape, file_ + ": tensor '" + name + "'");
    if (numel > 0) {
      // Highest element index the view touches, overflow-checked.
      std::uint64_t hi = static_cast<std::uint64_t>(t.storage_offset);
      bool overflow = false;
      for (std::size_t d = 0; d < t.shape.size(); ++d) {
        std::uint64_t step = 0;
        overflow |= __builtin_mul_overflow(static_cast<std::uint64_t>(t.shape[d] - 1),
                                           static_cast<std::uint64_t>(t.stride[d]), &step);
        overflow |= __builtin_add_overflow(hi, step, &hi);
      }
      std::uint64_t need = 0;
      overflow |= __builtin_add_overflow(hi, 1, &need);
      overflow |= __builtin_mul_overflow(need, es, &need);
      if (overflow || need > base_nbytes)
        fail(path, "tensor view (storage offset " + std::to_string(t.storage_offset) + ", shape " + shape_str(t.shape) +
                       ", stride " + shape_str(t.stride) + ", " + std::string(dtype_name(t.dtype)) + ") needs " +
                       (overflow ? std::string("more than 2^64") : std::to_string(need)) + " bytes of storage '" +
                       t.storage->key + "', which has only " + std::to_string(base_nbytes));
    }
    std::string what = base->describe() + " (tensor '" + name + "')";
    auto src = std::make_shared<StridedSource>(base, base_nbytes, t.dtype, t.shape, t.stride,
                                               static_cast<std::uint64_t>(t.storage_offset), std::move(what));
    Node n = Node::tensor(Tensor{TensorInfo{t.dtype, t.shape}, std::move(src)});
    if (t.requires_grad) n.attrs["torch.requires_grad"] = "1";
    if (t.parameter) n.attrs["torch.parameter"] = "1";
    return n;
  }

  const std::string& file_;
  const StorageResolver& resolve_;
  std::size_t max_nodes_;
  std::size_t nodes_ = 0;
};

}  // namespace

Node build_tree(const pickle::Value* root, const std::string& file, const StorageResolver& resolve,
                std::size_t max_nodes) {
  TreeBuilder b(file, resolve, max_nodes);
  Path path;
  if (root->kind == pickle::Kind::Dict || root->kind == pickle::Kind::List || root->kind == pickle::Kind::Tuple)
    return b.convert(root, path);
  // torch.save(tensor) or torch.save(3): keep the value under one key.
  Node top = Node::dict();
  const std::string key = root->kind == pickle::Kind::Tensor ? "tensor" : "value";
  path.push_back(key);
  Node leaf = b.convert(root, path);
  top.container().children.emplace_back(key, std::make_unique<Node>(std::move(leaf)));
  top.attrs["torch.root"] = "bare";
  return top;
}

}  // namespace ckb::torch_format
