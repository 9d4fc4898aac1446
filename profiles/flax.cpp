// Implementation of profiles/flax.h.
#include "profiles/flax.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <set>

#include "core/errors.h"
#include "formats/format.h"
#include "formats/orbax/orbax_writer.h"
#include "ops/ops.h"

namespace ckb {
namespace {

using json = nlohmann::json;

bool is_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string join(const std::string& a, const std::string& b) {
  return a.empty() ? b : b.empty() ? a : a + "/" + b;
}

// A path used as a literal pattern.
std::string lit(const std::string& path) {
  if (path.find_first_of("{}") != std::string::npos)
    throw MappingError(path, "a key containing '{' or '}' cannot be adapted");
  return path;
}

// A path component naming NNX RNG state: `rngs` (nnx.Rngs, a Dropout's stream) or
// `*_rngs` (bridged Linen modules keep theirs in `to_nnx__rngs`).
bool is_rng_key(const std::string& k) { return k == "rngs" || (k.size() > 5 && k.ends_with("_rngs")); }

// Whether any '/'-separated component of `path` satisfies `pred`.
template <class Pred>
bool any_component(std::string_view path, Pred pred) {
  while (true) {
    const auto slash = path.find('/');
    if (pred(path.substr(0, slash))) return true;
    if (slash == std::string_view::npos) return false;
    path.remove_prefix(slash + 1);
  }
}

bool has_rng_component(const std::string& path) {
  return any_component(path, [](std::string_view k) { return is_rng_key(std::string(k)); });
}

struct LogicalLeaf {
  const Node* node;  // the leaf itself (inside its wrapper, if any)
  bool wrapped;
};

// Leaves below `n` with paths relative to it; nnx.Variable wrappers count as their leaf.
void logical_leaves(const Node& n, const std::string& prefix, std::map<std::string, LogicalLeaf>& out) {
  if (is_value_wrapper(n)) {
    out[prefix] = {n.container().children[0].node.get(), true};
  } else if (!n.is_container() || n.is_empty_container()) {
    out[prefix] = {&n, false};
  } else {
    for (const auto& ch : n.container().children) logical_leaves(*ch.node, join(prefix, ch.key), out);
  }
}

// An optax chain entry's position from its key (NNX int key or sequence index).
std::size_t chain_index(const std::string& path, const std::string& key) {
  if (key.size() > 4 || std::stoul(key) > 4096)
    throw MappingError(path, "optax chain index " + key + " is implausible");
  return std::stoul(key);
}

// Whether a subtree holds optimizer state: a tensor or a value other than None (an EmptyState
// is None on disk; empty containers hold nothing either).
bool holds_state(const Node& n) {
  if (n.is_container()) {
    for (const auto& ch : n.container().children)
      if (holds_state(*ch.node)) return true;
    return false;
  }
  return n.is_tensor() || !std::holds_alternative<NoneValue>(n.value());
}

// The chain `like` shows at `path`, one flag per entry (holds state): a sequence (Orbax's
// tuple), or a dict keyed by positions (a target tree built in memory, e.g. the Python
// package's from a TrainState). nullopt where `like` shows no chain there.
std::optional<std::vector<bool>> like_chain(const Checkpoint* like, const std::string& path) {
  const Node* l = like ? find_path(like->root, path) : nullptr;
  if (!l || !l->is_container() || l->is_empty_container()) return std::nullopt;
  const auto& kids = l->container().children;
  if (!std::all_of(kids.begin(), kids.end(), [](const Child& c) { return is_digits(c.key); })) return std::nullopt;
  std::size_t n = 0;
  for (const auto& ch : kids) n = std::max(n, chain_index(like->path + ":" + path, ch.key) + 1);
  std::vector<bool> v(n, false);
  for (const auto& ch : kids) v[std::stoul(ch.key)] = holds_state(*ch.node);
  return v;
}

std::vector<bool> chain_flags(const OptChain& c) {
  std::vector<bool> v;
  for (std::size_t i = 0; i < c.size(); ++i) v.push_back(c.stateful(i));
  return v;
}

std::string describe_chain(const std::vector<bool>& flags) {
  std::set<std::size_t> state;
  for (std::size_t i = 0; i < flags.size(); ++i)
    if (flags[i]) state.insert(i);
  return std::to_string(flags.size()) + (flags.size() == 1 ? " entry" : " entries") + ", state at " + positions_text(state);
}

// How to tell adapt what NNX cannot show.
std::string supply_hint() {
  std::string known;
  for (const auto& k : known_optax_names()) known += (known.empty() ? "" : ", ") + k;
  return "supply the chain with --optax NAME (" + known + "), --opt-chain SPEC (e.g. 'trace,-': a name for each "
         "stateful transform, '-' for each stateless one) or --like LINEN_CHECKPOINT (a Linen checkpoint of the run "
         "that holds opt_state)";
}

// Turns the dict at `path` (keys "0".."n-1" in any order) into a sequence.
void make_sequence(Node& root, const std::string& path) {
  Node* n = find_path(root, path);
  if (!n || !n->is_container()) return;
  auto& c = n->container();
  std::sort(c.children.begin(), c.children.end(),
            [](const Child& a, const Child& b) { return std::stoll(a.key) < std::stoll(b.key); });
  for (std::size_t i = 0; i < c.children.size(); ++i)
    if (c.children[i].key != std::to_string(i)) throw MappingError(path, "optax chain indices are not 0..n-1");
  c.kind = ContainerKind::List;
  c.index.clear();
}

// Builds the adaptation recipe for one source.
class Generator {
 public:
  Generator(const Checkpoint& src, const AdaptOptions& o, const FlaxLayout& from)
      : src_(src), o_(o), from_(from) {
    const Node* w = find_path(src.root, from.weights);
    std::map<std::string, LogicalLeaf> leaves;
    if (w) logical_leaves(*w, "", leaves);
    for (const auto& [p, l] : leaves)
      if (l.node->is_tensor() && !has_rng_component(p)) weight_shapes_[p] = l.node->tensor().info.shape;
  }

  json rules = json::array();
  std::vector<std::string> sequences;  // target containers that are optax chains (sequences)
  std::vector<std::string> notes;
  nlohmann::ordered_json opt_chain;    // the top-level chain as written (Adaptation::opt_chain)

  void to_nnx(bool wrap) {
    const Node& root = src_.root;
    move_subtree(*find_path(root, from_.weights), from_.weights, "model", wrap);
    if (const Node* aux = find_path(root, "nnx_aux/model")) {
      move_subtree(*aux, "nnx_aux/model", "model", wrap);
      notes.push_back("NNX-only model state taken from the Linen checkpoint's nnx_aux/model");
    }
    const bool train = from_.kind == FlaxKind::LinenFull && !o_.weights_only;
    if (train) {
      if (!from_.step.empty())
        map(from_.step, "optimizer/step" + std::string(wrap ? "/value" : ""), json::array({{{"cast", "U32"}}}),
            {{"orbax.value_type", "jax.Array"}});
      opt_to_nnx(*find_path(root, from_.opt_state), from_.opt_state, "optimizer/opt_state", wrap);
    } else {
      const std::string why = o_.weights_only ? "--weights-only: the training state is not carried"
                                              : "params-only Linen checkpoint: no training state";
      if (from_.kind == FlaxKind::FlaxOptim) {
        drop_flax_optim_state(why);
      } else {
        if (find_path(root, "step")) drop("step", why);
        drop_subtree("opt_state", why);
      }
      notes.push_back(why + "; the NNX result holds the model only");
    }
  }

  void to_linen() {
    const Node& root = src_.root;
    for (const auto& r : from_.rng) {
      if (o_.keep_rng) {
        move_subtree(*find_path(root, r), r, "nnx_aux/" + r, false);
      } else {
        drop_subtree(r, "NNX RNG state (RngKey/RngCount): the Linen layout has no place for it "
                        "(--keep-rng keeps it under nnx_aux/model as MaxText does)");
      }
    }
    move_subtree(*find_path(root, from_.weights), from_.weights, "params/params", false);
    const bool train = from_.kind == FlaxKind::NnxFull && !o_.weights_only;
    if (train) {
      if (!from_.step.empty()) linen_step();
      if (!from_.opt_state.empty()) opt_to_linen(*find_path(root, from_.opt_state), from_.opt_state, "opt_state");
      else empty_opt_to_linen(find_path(root, "optimizer/opt_state") ? "optimizer/opt_state" : "");
    } else {
      const std::string why = "--weights-only: the training state is not carried";
      if (from_.kind == FlaxKind::FlaxOptim) {
        drop_flax_optim_state(why);
      } else if (find_path(root, "optimizer")) {
        drop_subtree("optimizer", why);
      }
      // MaxText's params-only layout: TrainState(step=0, params={"params": w}, opt_state={}).
      fill_leaf("step", 0, {{"orbax.value_type", "scalar"}});
      fill_leaf("opt_state", json::object(), {});
      notes.push_back("params-only Linen layout written: step 0, empty opt_state");
    }
  }

 private:
  // flax.optim / T5X: the optimizer state, and T5X's top-level checkpoint `version` number.
  void drop_flax_optim_state(const std::string& why) {
    if (!from_.train_state.empty()) drop_subtree(from_.train_state, why);
    if (const Node* v = src_.root.find("version"); v && !v->is_container() && !v->is_tensor())
      drop("version", "T5X checkpoint format version: the target layout has no place for it");
    // T5X's partitioning annotations (axis names, or None) and empty mutable collections;
    // mutable collections with content (e.g. batch stats) stay unmapped and fail the plan.
    for (const char* k : {"params_axes", "flax_mutables_axes", "flax_mutables"}) {
      const Node* n = src_.root.find(k);
      if (!n) continue;
      const bool axes = std::string(k).ends_with("_axes");
      const bool empty = std::holds_alternative<NoneValue>(n->value()) || n->is_empty_container();
      if (axes) drop_subtree(k, "T5X partitioning axis names: the target layout has no place for them");
      else if (empty) drop(lit(k), "empty T5X flax_mutables");
    }
  }

  void map(const std::string& from, const std::string& to, json ops = nullptr, json attrs = nullptr) {
    json r = {{"map", from}, {"to", to}};
    if (!ops.is_null()) r["ops"] = ops;
    if (!attrs.is_null() && !attrs.empty()) r["attrs"] = attrs;
    rules.push_back(r);
  }
  void drop(const std::string& pattern, const std::string& reason) {
    rules.push_back({{"drop", pattern}, {"reason", reason}});
  }
  void drop_subtree(const std::string& path, const std::string& reason) {
    drop(lit(path) + "/{rest:*}", reason);
    drop(lit(path), reason);  // the subtree as one empty node
  }
  void fill_leaf(const std::string& to, json leaf, json attrs) {
    json r = {{"fill", to}, {"leaf", leaf}};
    if (!attrs.empty()) r["attrs"] = attrs;
    fills_.push_back(r);
  }

 public:
  json fills() const { return fills_; }

 private:
  // Rules moving every leaf below `n` (at source path `sp`) to the same relative path below
  // `tp`: source wrappers removed, target wrappers added when `wrap`. Pattern rules where
  // they are exact, literal ones for the few leaves a pattern would misread.
  void move_subtree(const Node& n, const std::string& sp, const std::string& tp, bool wrap) {
    std::map<std::string, LogicalLeaf> leaves;
    logical_leaves(n, "", leaves);
    const std::string w = wrap ? "/value" : "";
    bool any_wrapped = false, any_plain = false;
    for (const auto& [rel, l] : leaves) {
      const bool special = rel.empty() || l.node->is_container() || std::holds_alternative<NoneValue>(l.node->value()) ||
                           (!l.wrapped && (rel == "value" || rel.ends_with("/value")));
      if (special) {  // empty nodes, None, and unwrapped leaves named "value": one literal rule each
        const std::string s = join(sp, rel) + (l.wrapped ? "/value" : "");
        const bool leaf_wrap = wrap && !l.node->is_container() && !std::holds_alternative<NoneValue>(l.node->value());
        map(lit(s), lit(join(tp, rel)) + (leaf_wrap ? "/value" : ""));
      } else {
        (l.wrapped ? any_wrapped : any_plain) = true;
      }
    }
    if (any_wrapped) map(lit(sp) + "/{p:*}/value", lit(tp) + "/{p}" + w);
    if (any_plain) map(lit(sp) + "/{p:*}", lit(tp) + "/{p}" + w);
  }

  // A subtree whose leaves are all weights (same relative paths and shapes): an optax
  // moment tree (mu, nu, trace, acc_grads, ...).
  bool mirrors_weights(const Node& n) const {
    if (!n.is_container() || n.is_empty_container() || is_value_wrapper(n)) return false;
    std::map<std::string, LogicalLeaf> leaves;
    logical_leaves(n, "", leaves);
    for (const auto& [rel, l] : leaves) {
      auto it = weight_shapes_.find(rel);
      if (it == weight_shapes_.end() || !l.node->is_tensor() || l.node->tensor().info.shape != it->second) return false;
    }
    return true;
  }

  void opt_to_nnx(const Node& n, const std::string& sp, const std::string& tp, bool wrap) {
    if (is_value_wrapper(n) || (!n.is_container() && !std::holds_alternative<NoneValue>(n.value()))) {
      map(lit(sp) + (is_value_wrapper(n) ? "/value" : ""), lit(tp) + (wrap ? "/value" : ""));
    } else if (!n.is_container() || n.is_empty_container()) {
      drop(lit(sp), "empty optax state (EmptyState): NNX keeps no entry for it");
    } else if (n.container().kind == ContainerKind::Dict && n.size() == 1 && n.find("params") &&
               mirrors_weights(*n.find("params"))) {
      move_subtree(*n.find("params"), sp + "/params", tp, wrap);  // moment tree: drop the Linen `params` level
    } else {
      for (const auto& ch : n.container().children) opt_to_nnx(*ch.node, join(sp, ch.key), join(tp, ch.key), wrap);
    }
  }

  void opt_to_linen(const Node& n, const std::string& sp, const std::string& tp) {
    if (is_value_wrapper(n) || !n.is_container()) {
      map(lit(sp) + (is_value_wrapper(n) ? "/value" : ""), lit(tp));
    } else if (n.is_empty_container()) {
      map(lit(sp), lit(tp));
    } else if (std::all_of(n.container().children.begin(), n.container().children.end(),
                           [](const Child& c) { return is_digits(c.key); })) {
      // an optax chain: a sequence again, the empty states NNX left out back as None
      std::set<std::size_t> keys;
      for (const auto& ch : n.container().children) keys.insert(chain_index(sp, ch.key));
      const std::size_t length = chain_length(sp, tp, keys);
      sequences.push_back(tp);
      for (std::size_t i = 0; i < length; ++i) {
        const std::string k = std::to_string(i);
        if (const Node* c = n.find(k)) opt_to_linen(*c, join(sp, k), join(tp, k));
        else fill_leaf(join(tp, k), nullptr, {});
      }
    } else if (mirrors_weights(n)) {
      move_subtree(n, sp, tp + "/params", false);  // moment tree: Linen mirrors the whole variables dict
    } else {
      for (const auto& ch : n.container().children) opt_to_linen(*ch.node, join(sp, ch.key), join(tp, ch.key));
    }
  }

  // The length of the Linen chain at `tp` whose NNX form at `sp` has the stateful entries
  // `keys`. Trailing empty states leave no trace in NNX: the top-level chain's length comes
  // from the options (checked against `keys` and `like`), any chain's from `like` where it
  // shows the chain, else it ends at the last NNX key, with a warning.
  std::size_t chain_length(const std::string& sp, const std::string& tp, const std::set<std::size_t>& keys) {
    const std::size_t nnx_length = keys.empty() ? 0 : *keys.rbegin() + 1;
    const auto like = like_chain(o_.like, tp);
    const bool top = tp == "opt_state";
    auto record = [&](const std::vector<bool>& flags, const std::string& from, bool trailing_unknown) {
      if (!top) return;
      nlohmann::ordered_json holes = nlohmann::ordered_json::array();
      for (std::size_t i = 0; i < flags.size(); ++i)
        if (!flags[i]) holes.push_back(i);
      opt_chain = {{"path", tp}, {"entries", flags.size()}, {"holes", holes}, {"from", from},
                   {"trailing_unknown", trailing_unknown}};
    };
    if (top && o_.opt_chain) {
      const OptChain& c = *o_.opt_chain;
      if (c.stateful_positions() != keys)
        throw MappingError(sp, c.origin + " has stateful entries at " + positions_text(c.stateful_positions()) +
                                   " but the NNX chain at " + sp + " holds state at " + positions_text(keys) +
                                   " (NNX keys a chain's stateful entries by their positions)");
      const std::vector<bool> flags = chain_flags(c);
      if (like && *like != flags)
        throw MappingError(o_.like->path, "--like's optax chain at " + tp + " (" + describe_chain(*like) +
                                              ") disagrees with " + c.origin + " (" + describe_chain(flags) + ")");
      record(flags, c.origin, false);
      std::set<std::size_t> holes;
      for (std::size_t i = 0; i < c.size(); ++i)
        if (!c.stateful(i)) holes.insert(i);
      notes.push_back("optax chain at " + tp + ": " + std::to_string(c.size()) + " entries from " + c.origin +
                      ", None at " + positions_text(holes));
      return c.size();
    }
    if (like) {
      std::vector<bool> flags = *like;
      if (flags.size() < nnx_length) flags.resize(nnx_length, false);
      for (auto k : keys) flags[k] = true;
      record(flags, "--like " + o_.like->path, false);
      return flags.size();
    }
    std::vector<bool> flags(nnx_length, false);
    for (auto k : keys) flags[k] = true;
    record(flags, "the NNX source alone", true);
    notes.push_back("warning: the optax chain at " + sp + " holds state at " + positions_text(keys) + ", written as a " +
                    std::to_string(nnx_length) + "-entry chain at " + tp +
                    "; trailing stateless entries (EmptyState, e.g. a constant learning rate's scale) leave no trace "
                    "in NNX, so they are unknown: if the optimizer's chain is longer, Orbax refuses to restore this "
                    "output into the Linen TrainState (tree structures do not match: opt_state); " + supply_hint());
    return nnx_length;
  }

  // An NNX optimizer without state at `sp` (an empty node; "" when `optimizer` has no
  // `opt_state` at all): every transform of the chain is stateless (optax.sgd without momentum).
  void empty_opt_to_linen(const std::string& sp) {
    const std::string where = sp.empty() ? "optimizer/opt_state" : sp;
    if (o_.opt_chain || like_chain(o_.like, "opt_state")) {
      const std::size_t length = chain_length(where, "opt_state", {});
      if (!sp.empty()) drop(lit(sp), "empty NNX optimizer state: a chain of stateless optax transforms (None entries in Linen)");
      sequences.push_back("opt_state");
      for (std::size_t i = 0; i < length; ++i) fill_leaf("opt_state/" + std::to_string(i), nullptr, {});
      return;
    }
    if (!sp.empty()) map(lit(sp), "opt_state");  // as it is
    notes.push_back("warning: the NNX optimizer state at " + where + (sp.empty() ? " is absent, no opt_state written" :
                    " is empty, written as an empty opt_state") + "; if it is a chain of stateless transforms (e.g. "
                    "optax.sgd without momentum: (EmptyState, EmptyState)), its entries are unknown and Orbax refuses "
                    "to restore this output into the Linen TrainState (tree structures do not match: opt_state); " +
                    supply_hint());
  }

  // NNX's uint32 step as Linen keeps it: int32 jax.Array (MaxText's jitted TrainState), or as
  // `like` stores it (flax's un-jitted TrainState keeps a Python int: an Orbax "scalar").
  void linen_step() {
    DType t = DType::I32;
    json attrs = {{"orbax.value_type", "jax.Array"}};
    if (o_.like) {
      if (const Node* s = find_path(o_.like->root, "step")) {
        if (s->is_tensor()) {
          t = s->tensor().info.dtype;
        } else if (std::holds_alternative<std::int64_t>(s->value())) {
          t = orbax::scalar_storage_dtype(*s);
          attrs = {{"orbax.value_type", "scalar"}};
          if (auto it = s->attrs.find("orbax.dtype"); it != s->attrs.end()) attrs["orbax.dtype"] = it->second;
        }
      }
    }
    map(from_.step, "step", json::array({{{"cast", std::string(dtype_name(t))}}}), attrs);
  }

  const Checkpoint& src_;
  const AdaptOptions& o_;
  const FlaxLayout& from_;
  std::map<std::string, Shape> weight_shapes_;
  json fills_ = json::array();
};

// The expected layout: `like` with the target's wrapper style, its step as the 0-d tensor
// our rules produce, and for a weights-only result only its weights (and RNG state).
Checkpoint expected_layout(const Checkpoint& like, const AdaptOptions& o, bool wrap, const Plan& first) {
  Checkpoint e;
  e.format = like.format;
  e.path = like.path;
  e.root = like.root;
  if (o.to == AdaptOptions::To::Nnx) {
    unwrap_value_leaves(e.root);
    if (wrap) wrap_value_leaves(e.root);
  }
  const std::string weights = o.to == AdaptOptions::To::Nnx ? "model" : "params";
  const bool whole = std::any_of(first.targets.begin(), first.targets.end(), [&](const TargetEntry& t) {
    return t.name.starts_with(o.to == AdaptOptions::To::Nnx ? "optimizer/" : "opt_state/");
  });
  if (!whole) {  // weights only: the like's weights, and our own non-weight leaves as they are
    Node root = Node::dict();
    if (const Node* w = e.root.find(weights)) root.add(weights, *w);
    visit_leaves(first.target, [&](const Path& p, const Node& n) {
      if (p.front() != weights) insert_path(root, join_path(p), n);
    });
    e.root = std::move(root);
  }
  if (Node* s = find_path(e.root, "step"); s && std::holds_alternative<std::int64_t>(s->value())) {
    if (const Node* produced = find_path(first.target, "step"); produced && produced->is_tensor())
      *s = Node::tensor(ops::fill({orbax::scalar_storage_dtype(*s), {}}, 0, "expected layout"));
  }
  return e;
}

bool is_scanned_layers(std::string_view k) { return k == "layers"; }
bool is_unscanned_layer(std::string_view k) {  // layers_<digits>
  return k.size() > 7 && k.starts_with("layers_") && is_digits(std::string(k.substr(7)));
}

// The second stage: scanned `layers` <-> `layers_<i>`, RNG state on axis 0, the rest on
// `axis`; every other leaf unchanged.
json layers_stage(bool unscan, int axis) {
  json rules = json::array();
  // `from`/`to` are the path below the layer group, as a pattern and as its template
  auto rule = [&](const std::string& from, const std::string& to, int ax) {
    const std::string scanned = "{a:*}/layers/", unscanned = "{a:*}/layers_{i:int}/";
    rules.push_back({{unscan ? "unstack" : "stack", (unscan ? scanned : unscanned) + from},
                     {"over", "i"},
                     {"axis", ax},
                     {"to", (unscan ? "{a}/layers_{i}/" : "{a}/layers/") + to}});
  };
  rule("rngs/{c:*}", "rngs/{c}", 0);
  rule("{b:*}/rngs/{c:*}", "{b}/rngs/{c}", 0);
  rule("{b:*}", "{b}", axis);
  rules.push_back({{"map", "{p:*}"}, {"to", "{p}"}});
  return {{"recipe", unscan ? "unscan-layers" : "scan-layers"}, {"rules", rules}};
}

}  // namespace

std::string FlaxLayout::name() const {
  switch (kind) {
    case FlaxKind::LinenFull: return "linen (full training state)";
    case FlaxKind::LinenParams: return "linen (params only)";
    case FlaxKind::NnxFull: return std::string("nnx (model + optimizer, ") + (value_wrappers ? "raw State)" : "pure dict)");
    case FlaxKind::NnxModel: return std::string("nnx (model only, ") + (value_wrappers ? "raw State)" : "pure dict)");
    case FlaxKind::FlaxOptim: return "flax.optim / T5X (weights at " + weights + ", optimizer state at " +
                                     (train_state.empty() ? std::string("none") : train_state) + ")";
    case FlaxKind::Unknown: break;
  }
  return "unknown";
}

nlohmann::ordered_json FlaxLayout::to_json() const {
  nlohmann::ordered_json j;
  j["layout"] = name();
  j["weights"] = weights;
  j["value_wrappers"] = value_wrappers;
  j["step"] = step.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(step + " (" + step_type + ")");
  j["opt_state"] = opt_state.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(opt_state);
  j["chain"] = chain;
  j["rng_state"] = rng;
  return j;
}

namespace {

// flax.optim's Optimizer.state_dict(): `target` (the weights) beside `state` (step,
// param_states); T5X's own test checkpoints hold an empty target.
bool is_flax_optim(const Node& n) {
  if (!n.is_container()) return false;
  const Node* target = n.find("target");
  const Node* state = n.find("state");
  if (!target || !target->is_container() || (state && !state->is_container())) return false;
  const bool has_state = state && (state->find("step") || state->find("param_states"));
  return has_state || (!target->is_empty_container() && !state);
}

// "optimizer" (or "_optimizer", as T5X's Orbax checkpoints name it) when the tree is T5X's
// `{optimizer: {target, state}, ...}`, else "".
std::string flax_optim_base(const Node& root) {
  for (const char* base : {"optimizer", "_optimizer"})
    if (const Node* o = root.find(base); o && is_flax_optim(*o)) return base;
  return "";
}

}  // namespace

FlaxLayout detect_flax_layout(const Node& root) {
  FlaxLayout l;
  if (!root.is_container()) return l;
  const Node* params = root.find("params");
  const Node* model = root.find("model");
  const Node* optimizer = root.find("optimizer");
  std::string opt;
  if (params && params->is_container() && !params->is_empty_container()) {
    const Node* inner = params->find("params");
    l.weights = inner && inner->is_container() ? "params/params" : "params";
    l.step = root.find("step") ? "step" : "";
    opt = "opt_state";
    const Node* o = root.find("opt_state");
    l.kind = o && o->is_container() && !o->is_empty_container() ? FlaxKind::LinenFull : FlaxKind::LinenParams;
    if (const Node* aux = find_path(root, "nnx_aux/model"); aux && aux->is_container()) l.rng.push_back("nnx_aux/model");
  } else if (model && model->is_container()) {
    l.weights = "model";
    const bool full = optimizer && optimizer->is_container();
    if (full) {
      if (const Node* s = optimizer->find("step")) l.step = is_value_wrapper(*s) ? "optimizer/step/value" : "optimizer/step";
      opt = "optimizer/opt_state";
    }
    l.kind = full ? FlaxKind::NnxFull : FlaxKind::NnxModel;
    // RNG state: every subtree of the model under a `rngs` key (outermost only)
    std::function<void(const Node&, const std::string&)> walk = [&](const Node& n, const std::string& p) {
      if (!n.is_container()) return;
      for (const auto& ch : n.container().children) {
        const std::string cp = join(p, ch.key);
        if (is_rng_key(ch.key)) l.rng.push_back(cp);
        else walk(*ch.node, cp);
      }
    };
    walk(*model, "model");
  } else if (const std::string base = flax_optim_base(root); !base.empty() || is_flax_optim(root)) {
    l.kind = FlaxKind::FlaxOptim;
    l.weights = join(base, "target");
    const std::string state = join(base, "state");
    if (const Node* st = find_path(root, state); st && st->is_container()) {
      l.train_state = state;
      if (const Node* s = st->find("step")) l.step = join(state, is_value_wrapper(*s) ? "step/value" : "step");
      opt = join(state, "param_states");
    }
  } else {
    return l;
  }
  if (const Node* w = find_path(root, l.weights)) {
    std::map<std::string, LogicalLeaf> leaves;
    logical_leaves(*w, "", leaves);
    // a raw nnx.State wraps every Variable, RNG state included; empty nodes have no wrapper
    bool any = false, all = true;
    for (const auto& [rel, leaf] : leaves) {
      if (leaf.node->is_container() || std::holds_alternative<NoneValue>(leaf.node->value())) continue;
      any = true;
      all = all && leaf.wrapped;
    }
    l.value_wrappers = any && all;
  }
  if (!l.step.empty()) {
    const Node* s = find_path(root, l.step);
    l.step_type = s->is_tensor() ? std::string(dtype_name(s->tensor().info.dtype))
                                 : std::string(s->type_name()) + " scalar";
  }
  if (const Node* o = find_path(root, opt); o && o->is_container() && !o->is_empty_container()) {
    l.opt_state = opt;
    const auto& kids = o->container().children;
    if (o->container().kind != ContainerKind::Dict) l.chain = "sequence";
    else if (std::all_of(kids.begin(), kids.end(), [](const Child& c) { return is_digits(c.key); })) l.chain = "int-keyed dict";
    else l.chain = "flat";
    if (l.kind == FlaxKind::FlaxOptim) l.chain = "flax.optim param_states";
  }
  return l;
}

Adaptation adapt_flax(const Checkpoint& src, const AdaptOptions& o) {
  Adaptation a;
  a.from = detect_flax_layout(src.root);
  const bool to_nnx = o.to == AdaptOptions::To::Nnx;
  if (a.from.kind == FlaxKind::Unknown)
    throw MappingError(src.path, "neither a Flax Linen (params/params, step, opt_state) nor an NNX (model, optimizer) "
                                 "checkpoint layout");
  if (a.from.kind == FlaxKind::FlaxOptim && !o.weights_only)
    throw MappingError(src.path, "a " + a.from.name() + " checkpoint: its optimizer state (flax.optim param_states, "
                                 "e.g. Adafactor's) has no optax/NNX equivalent; pass --weights-only to adapt the "
                                 "weights alone (the optimizer state is then dropped and listed in the report)");
  if (to_nnx ? a.from.is_nnx() : a.from.is_linen())
    throw MappingError(src.path, "already in the " + std::string(to_nnx ? "NNX" : "Linen") + " layout (" + a.from.name() + ")");

  if (o.opt_chain) {
    const std::string& what = o.opt_chain->origin;
    if (to_nnx) throw UsageError(what + " describes the optax chain for an NNX -> Linen adaptation (--layout linen)");
    if (o.weights_only) throw UsageError(what + " describes the optimizer state, which --weights-only does not carry");
    if (a.from.kind != FlaxKind::NnxFull)
      throw MappingError(src.path, what + " describes the optimizer state, but the source holds none (" + a.from.name() + ")");
    if (!a.from.opt_state.empty() && a.from.chain != "int-keyed dict" && a.from.chain != "sequence") {
      std::string keys;
      for (const auto& ch : find_path(src.root, a.from.opt_state)->container().children)
        keys += (keys.empty() ? "" : ", ") + ch.key;
      throw MappingError(a.from.opt_state, what + " describes an optax chain, but the NNX optimizer state at " +
                                               a.from.opt_state + " is not one (a " + a.from.chain + " state with keys " +
                                               keys + "); pass --like to give its Linen layout");
    }
  }

  FlaxLayout like_layout;
  if (o.like) {
    like_layout = detect_flax_layout(o.like->root);
    if (to_nnx ? !like_layout.is_nnx() : !like_layout.is_linen())
      throw MappingError(o.like->path, "--like must be a checkpoint in the target layout (" +
                                           std::string(to_nnx ? "NNX" : "Linen") + "); it is " + like_layout.name());
  }
  const bool wrap = to_nnx && (o.pure ? !*o.pure : (o.like ? like_layout.value_wrappers : true));

  Generator g(src, o, a.from);
  if (to_nnx) g.to_nnx(wrap);
  else g.to_linen();

  std::string layers = o.layers;
  if (!layers.empty() && layers != "scan" && layers != "unscan")
    throw UsageError("layers must be 'scan' or 'unscan', got '" + layers + "'");
  auto make_recipe = [&](const json& extra_fills) {
    json rules = g.rules;
    for (const auto& f : g.fills()) rules.push_back(f);
    for (const auto& f : extra_fills) rules.push_back(f);
    const std::string from_name = a.from.kind == FlaxKind::FlaxOptim ? "flax-optim" : to_nnx ? "linen" : "nnx";
    const std::string name = from_name + (to_nnx ? "-to-nnx" : "-to-linen");
    json j = {{"recipe", name},
              {"description", "generated by adapt from the source layout: " + a.from.name()},
              {"rules", rules}};
    if (!layers.empty()) {
      j.erase("rules");
      j["stages"] = json::array({{{"recipe", name}, {"rules", rules}},
                                 layers_stage(layers == "unscan", o.scan_axis)});
    }
    return parse_recipe(j, "adapt");
  };
  a.recipe = make_recipe(json::array());
  a.notes = g.notes;
  a.opt_chain = g.opt_chain;
  if (o.like && layers.empty()) {  // the like's layer structure decides
    bool ours_scanned = false, ours_unscanned = false, like_scanned = false, like_unscanned = false;
    visit_leaves(src.root, [&](const Path& p, const Node&) {
      const std::string n = join_path(p);
      ours_scanned |= any_component(n, is_scanned_layers);
      ours_unscanned |= any_component(n, is_unscanned_layer);
    });
    visit_leaves(o.like->root, [&](const Path& p, const Node&) {
      const std::string n = join_path(p);
      like_scanned |= any_component(n, is_scanned_layers);
      like_unscanned |= any_component(n, is_unscanned_layer);
    });
    if (ours_scanned && !ours_unscanned && like_unscanned && !like_scanned) layers = "unscan";
    if (ours_unscanned && !ours_scanned && like_scanned && !like_unscanned) layers = "scan";
    if (!layers.empty()) a.recipe = make_recipe(json::array());
  }
  if (!layers.empty())
    a.notes.push_back(std::string(layers == "unscan" ? "scanned layers sliced into layers_<i>" : "layers_<i> stacked into scanned layers") +
                      " along axis " + std::to_string(o.scan_axis) + " (RNG state along axis 0)");

  if (!o.like) {
    a.plan = build_plan(src, a.recipe);
    if (to_nnx && a.from.rng.empty())
      a.notes.push_back("no --like: NNX-only state (RNG key/count) is not created; restore with partial_restore "
                        "or pass --like with a freshly initialised NNX checkpoint");
  } else {
    Plan first = build_plan(src, a.recipe);
    Checkpoint expect = expected_layout(*o.like, o, wrap, first);
    std::set<std::string> produced;
    for (const auto& t : first.targets) produced.insert(t.name);
    // NNX-only RNG leaves of the target that the source does not hold.
    json extra = json::array();
    std::size_t filled = 0;
    visit_leaves(expect.root, [&](const Path& p, const Node& n) {
      const std::string name = join_path(p);
      if (produced.count(name) || !to_nnx || !n.is_tensor() || !has_rng_component(name)) return;
      const std::string leaf = p.back() == "value" && p.size() > 1 ? p[p.size() - 2] : p.back();
      const auto& info = n.tensor().info;
      json f = {{"fill", lit(name)}};
      const bool key = leaf == "key" || n.attrs.count("random_key_impl");
      const bool threefry_data = info.dtype == DType::U32 && !info.shape.empty() && info.shape.back() == 2;
      if (o.rng == AdaptOptions::Rng::Like || (key && !threefry_data)) {
        // the like's own leaf (the expected layout may have added or removed its `value` level)
        std::string in_like = name;
        if (!find_path(o.like->root, in_like)) in_like = name.ends_with("/value") ? name.substr(0, name.size() - 6) : name + "/value";
        f["from_checkpoint"] = o.like->path;
        f["tensor"] = in_like;
        if (o.rng != AdaptOptions::Rng::Like) {  // not threefry key data: nothing to derive it from
          extra.push_back(f);
          return;
        }
      } else if (key) {
        f["prng_key"] = {{"impl", "threefry2x32"}, {"seed", o.rng_seed}};
        f["shape"] = Shape(info.shape.begin(), info.shape.end() - 1);
      } else {
        f["value"] = 0;
        f["dtype"] = std::string(dtype_name(info.dtype));
        f["shape"] = info.shape;
      }
      extra.push_back(f);
      ++filled;
    });
    if (filled)
      a.notes.push_back(std::to_string(filled) + " NNX RNG leaves filled " +
                        (o.rng == AdaptOptions::Rng::Like ? "with the values of --like " + o.like->path
                                                          : "deterministically: keys key(" + std::to_string(o.rng_seed) +
                                                                ") / split(key(" + std::to_string(o.rng_seed) +
                                                                "), n) (threefry2x32), counts 0"));
    a.recipe = make_recipe(extra);
    PlanOptions po;
    po.expect = &expect;
    a.plan = build_plan(src, a.recipe, po);
  }
  for (const auto& s : g.sequences) make_sequence(a.plan.target, s);
  return a;
}

Checkpoint load_adapted(const Checkpoint& src, const AdaptOptions& o) {
  Adaptation a = adapt_flax(src, o);
  a.plan.check();
  Checkpoint out;
  out.format = src.format;
  out.path = src.path;
  out.root = std::move(a.plan.target);
  return out;
}

}  // namespace ckb
