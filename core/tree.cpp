// Tree construction and traversal for core/tree.h.
#include "core/tree.h"

#include <cstring>

#include "core/errors.h"

namespace ckb {

Child::Child(std::string k, std::unique_ptr<Node> n) : key(std::move(k)), node(std::move(n)) {}
Child::Child(const Child& other) : key(other.key), node(std::make_unique<Node>(*other.node)) {}
Child& Child::operator=(const Child& other) {
  if (this != &other) {
    key = other.key;
    node = std::make_unique<Node>(*other.node);
  }
  return *this;
}
Child::~Child() = default;

Node::Node(const Node& other) = default;

Node& Node::operator=(const Node& other) {
  if (this != &other) {
    Node tmp(other);
    *this = std::move(tmp);
  }
  return *this;
}

Node::Container& Node::container() { return std::get<Container>(value_); }
const Node::Container& Node::container() const { return std::get<Container>(value_); }
Tensor& Node::tensor() { return std::get<Tensor>(value_); }
const Tensor& Node::tensor() const { return std::get<Tensor>(value_); }

Node& Node::add(std::string key, Node child) {
  auto& c = container();
  if (c.kind != ContainerKind::Dict) {
    if (key.empty()) key = std::to_string(c.children.size());
  } else {
    if (find(key)) throw FormatError("", "duplicate key '" + key + "'");
  }
  if (!c.index.empty() && c.index.size() == c.children.size()) c.index.emplace(key, c.children.size());
  c.children.push_back(Child{std::move(key), std::make_unique<Node>(std::move(child))});
  return *c.children.back().node;
}

Node* Node::find(std::string_view key) {
  if (!is_container()) return nullptr;
  auto& c = container();
  constexpr std::size_t kIndexFrom = 32;
  if (c.children.size() < kIndexFrom) {
    for (auto& ch : c.children)
      if (ch.key == key) return ch.node.get();
    return nullptr;
  }
  auto rebuild = [&] {
    c.index.clear();
    for (std::size_t i = 0; i < c.children.size(); ++i) c.index.emplace(c.children[i].key, i);
  };
  if (c.index.size() != c.children.size()) rebuild();
  auto it = c.index.find(std::string(key));
  if (it != c.index.end() && (it->second >= c.children.size() || c.children[it->second].key != key)) {
    rebuild();
    it = c.index.find(std::string(key));
  }
  return it == c.index.end() ? nullptr : c.children[it->second].node.get();
}
const Node* Node::find(std::string_view key) const { return const_cast<Node*>(this)->find(key); }

std::string_view Node::type_name() const {
  struct V {
    std::string_view operator()(const Container& c) const {
      return c.kind == ContainerKind::Dict ? "dict" : c.kind == ContainerKind::List ? "list" : "tuple";
    }
    std::string_view operator()(const Tensor&) const { return "tensor"; }
    std::string_view operator()(const NoneValue&) const { return "none"; }
    std::string_view operator()(bool) const { return "bool"; }
    std::string_view operator()(std::int64_t) const { return "int"; }
    std::string_view operator()(double) const { return "float"; }
    std::string_view operator()(const std::string&) const { return "string"; }
    std::string_view operator()(const RawBytes&) const { return "bytes"; }
  };
  return std::visit(V{}, value_);
}

std::string join_path(const Path& p, char sep) {
  std::string r;
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (i) r += sep;
    r += p[i];
  }
  return r;
}

namespace {
template <class N, class F>
void visit_impl(N& node, Path& path, const F& fn) {
  if (node.is_container() && !node.container().children.empty()) {
    for (auto& ch : node.container().children) {
      path.push_back(ch.key);
      visit_impl(*ch.node, path, fn);
      path.pop_back();
    }
  } else {
    fn(static_cast<const Path&>(path), node);
  }
}
}  // namespace

void visit_leaves(const Node& root, const std::function<void(const Path&, const Node&)>& fn) {
  Path p;
  if (root.is_container() && root.container().children.empty()) return;  // empty root: nothing
  visit_impl(root, p, fn);
}

void visit_leaves_mut(Node& root, const std::function<void(const Path&, Node&)>& fn) {
  Path p;
  if (root.is_container() && root.container().children.empty()) return;
  visit_impl(root, p, fn);
}

std::vector<std::pair<std::string, const Tensor*>> tensor_list(const Node& root) {
  std::vector<std::pair<std::string, const Tensor*>> out;
  visit_leaves(root, [&](const Path& p, const Node& n) {
    if (n.is_tensor()) out.emplace_back(join_path(p), &n.tensor());
  });
  return out;
}

bool leaf_values_equal(const Node& a, const Node& b) {
  if (a.value().index() != b.value().index() || a.is_tensor()) return false;
  if (a.is_container()) return a.container().kind == b.container().kind && a.container().children.empty() &&
                               b.container().children.empty();
  if (auto* x = std::get_if<double>(&a.value())) {
    double y = std::get<double>(b.value());
    return std::memcmp(x, &y, sizeof y) == 0;
  }
  if (auto* x = std::get_if<std::int64_t>(&a.value())) return *x == std::get<std::int64_t>(b.value());
  if (auto* x = std::get_if<bool>(&a.value())) return *x == std::get<bool>(b.value());
  if (auto* x = std::get_if<std::string>(&a.value())) return *x == std::get<std::string>(b.value());
  if (auto* x = std::get_if<RawBytes>(&a.value())) return *x == std::get<RawBytes>(b.value());
  return true;  // None
}

const Node* find_path(const Node& root, std::string_view path) {
  const Node* cur = &root;
  while (!path.empty()) {
    auto pos = path.find('/');
    auto key = path.substr(0, pos);
    cur = cur->find(key);
    if (!cur) return nullptr;
    path = pos == std::string_view::npos ? std::string_view{} : path.substr(pos + 1);
  }
  return cur;
}

Node* find_path(Node& root, std::string_view path) {
  return const_cast<Node*>(find_path(static_cast<const Node&>(root), path));
}

bool is_value_wrapper(const Node& n) {
  return n.is_container() && n.container().kind == ContainerKind::Dict && n.container().children.size() == 1 &&
         n.container().children[0].key == "value" && !n.container().children[0].node->is_container();
}

void unwrap_value_leaves(Node& n) {
  if (!n.is_container()) return;
  for (auto& ch : n.container().children) {
    Node& c = *ch.node;
    if (is_value_wrapper(c)) {
      Node leaf = std::move(*c.container().children[0].node);
      c = std::move(leaf);
    } else {
      unwrap_value_leaves(c);
    }
  }
  n.container().index.clear();
}

void wrap_value_leaves(Node& n) {
  if (!n.is_container()) return;
  for (auto& ch : n.container().children) {
    Node& c = *ch.node;
    if (c.is_container()) {
      wrap_value_leaves(c);
    } else if (!std::holds_alternative<NoneValue>(c.value())) {
      Node w = Node::dict();
      w.add("value", std::move(c));
      c = std::move(w);
    }
  }
}

}  // namespace ckb
