// A checkpoint as an ordered tree.
//
// Inner nodes are containers: Dict (string keys), List or Tuple (sequence indices "0","1",...).
// The container kind is kept because Orbax (key_type 1 vs 2) and pickle both distinguish
// them. Leaves are tensors (lazy), Python-like scalars (int, float, bool, string, None) or
// raw bytes. An empty container is a node of its own (Orbax's "Dict"/"List" markers).
//
// Names: a leaf's path is its keys joined with '/'. Flat formats (safetensors, a flat torch
// state_dict, npz) have a root Dict whose keys are the stored names, dots and all, so the
// path of "embed.weight" is "embed.weight" and of a nested {"model": {"w": ...}} "model/w".
//
// Each node carries `attrs`, format-specific hints a writer of the same family may use to
// reproduce the original exactly (e.g. "orbax.value_type" = "scalar", "random_key_impl").
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "core/tensor.h"

namespace ckb {

enum class ContainerKind : std::uint8_t { Dict, List, Tuple };

struct NoneValue {
  bool operator==(const NoneValue&) const = default;
};
struct RawBytes {
  std::string data;
  bool operator==(const RawBytes&) const = default;
};

class Node;

// A keyed child of a container. Copying deep-copies the subtree (tensor data is shared:
// sources are immutable).
struct Child {
  std::string key;
  std::unique_ptr<Node> node;
  Child(std::string k, std::unique_ptr<Node> n);
  Child(const Child& other);
  Child& operator=(const Child& other);
  Child(Child&&) noexcept = default;
  Child& operator=(Child&&) noexcept = default;
  ~Child();
  Node* operator->() { return node.get(); }
  const Node* operator->() const { return node.get(); }
};

class Node {
 public:
  struct Container {
    ContainerKind kind = ContainerKind::Dict;
    std::vector<Child> children;
    // Key -> position, built lazily for large dicts so add()/find() stay O(1). Rebuilt when
    // it does not describe `children` (code may push to `children` directly).
    mutable std::unordered_map<std::string, std::size_t> index;
  };
  using Value = std::variant<Container, Tensor, NoneValue, bool, std::int64_t, double, std::string, RawBytes>;

  Node() : value_(Container{}) {}
  explicit Node(Value v) : value_(std::move(v)) {}
  Node(const Node& other);
  Node& operator=(const Node& other);
  Node(Node&&) noexcept = default;
  Node& operator=(Node&&) noexcept = default;

  static Node dict() { return Node(Container{ContainerKind::Dict, {}, {}}); }
  static Node list() { return Node(Container{ContainerKind::List, {}, {}}); }
  static Node tuple() { return Node(Container{ContainerKind::Tuple, {}, {}}); }
  static Node tensor(Tensor t) { return Node(std::move(t)); }
  static Node none() { return Node(NoneValue{}); }

  bool is_container() const { return std::holds_alternative<Container>(value_); }
  bool is_tensor() const { return std::holds_alternative<Tensor>(value_); }
  bool is_leaf() const { return !is_container(); }
  // A container with no children (an "empty node").
  bool is_empty_container() const { return is_container() && container().children.empty(); }

  Container& container();
  const Container& container() const;
  Tensor& tensor();
  const Tensor& tensor() const;
  Value& value() { return value_; }
  const Value& value() const { return value_; }

  // Container access. add() appends (keys of a Dict must be unique; a List/Tuple key is
  // its index and is assigned automatically when `key` is empty).
  Node& add(std::string key, Node child);
  Node& append(Node child) { return add("", std::move(child)); }
  Node* find(std::string_view key);
  const Node* find(std::string_view key) const;
  std::size_t size() const { return is_container() ? container().children.size() : 0; }

  // Type name of a leaf for reports: "tensor", "int", "float", "bool", "string", "none",
  // "bytes", and for containers "dict" / "list" / "tuple".
  std::string_view type_name() const;

  std::map<std::string, std::string> attrs;

 private:
  Value value_;
};

using Path = std::vector<std::string>;
std::string join_path(const Path& p, char sep = '/');

// Visits leaves and empty containers in tree order (depth first, insertion order).
void visit_leaves(const Node& root, const std::function<void(const Path&, const Node&)>& fn);
void visit_leaves_mut(Node& root, const std::function<void(const Path&, Node&)>& fn);

// All tensors in visit order, with their '/'-joined names.
std::vector<std::pair<std::string, const Tensor*>> tensor_list(const Node& root);

// Equality of two non-tensor leaves (type and value; floats compared bit for bit). Empty
// containers are equal when their kinds are. Tensors compare false (compare their bytes).
bool leaf_values_equal(const Node& a, const Node& b);

// nnx.Variable wrappers as Orbax writes a raw nnx.State: a dict holding exactly one key
// "value" whose child is a leaf (not a container).
bool is_value_wrapper(const Node& n);
// Replaces every such wrapper by its leaf.
void unwrap_value_leaves(Node& root);
// Wraps every leaf (tensor or scalar; not empty containers or None) as {"value": leaf}.
void wrap_value_leaves(Node& root);

// Looks a '/'-joined path up; null if absent.
const Node* find_path(const Node& root, std::string_view path);
Node* find_path(Node& root, std::string_view path);

// A loaded checkpoint: the tree plus format-level facts.
struct Checkpoint {
  std::string format;                          // "safetensors", "torch", "npz", ...
  std::string path;                            // what was opened
  Node root = Node::dict();
  std::map<std::string, std::string> metadata;  // e.g. safetensors __metadata__
  // Write options of the same format that reproduce this checkpoint's layout (set by readers,
  // never from file contents a user controls): Orbax "zarr-version".
  std::map<std::string, std::string> layout_options = {};
};

}  // namespace ckb
