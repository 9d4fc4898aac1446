// Implementation of recipe/plan.h.
#include "recipe/plan.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "core/errors.h"
#include "formats/format.h"
#include "ops/cast.h"
#include "ops/einsum.h"
#include "ops/ops.h"
#include "ops/prng.h"
#include "ops/rearrange.h"

namespace ckb {
namespace {

struct SourceRef {
  const Node* node;
  std::size_t entry;  // index into Plan::sources
};

std::string key_of(const Captures& c, const std::vector<std::string>& names, const std::string& skip = "") {
  std::string k;
  for (const auto& n : names)
    if (n != skip) k += n + "=" + c.at(n) + "\x1f";
  return k;
}

class Planner {
 public:
  Planner(const Checkpoint& src, const Recipe& recipe, const PlanOptions& opts)
      : src_(src), recipe_(recipe), opts_(opts) {
    sizes_ = recipe.sizes;
    for (const auto& [k, v] : opts.sizes) sizes_[k] = v;
    plan_.recipe = recipe.name;
    visit_leaves(src.root, [&](const Path& p, const Node& n) {
      SourceEntry e;
      e.name = join_path(p);
      e.type = std::string(n.type_name());
      if (n.is_tensor()) e.info = n.tensor().info;
      by_name_[e.name] = plan_.sources.size();
      refs_.push_back({&n, plan_.sources.size()});
      plan_.sources.push_back(std::move(e));
    });
  }

  Plan run() {
    // Fills run last so that copy_of can name a target produced by any other rule.
    for (const auto& rule : recipe_.rules)
      if (rule.kind != Rule::Kind::Fill && active(rule)) apply(rule);
    for (const auto& rule : recipe_.rules)
      if (rule.kind == Rule::Kind::Fill && active(rule)) apply(rule);
    for (const auto& s : plan_.sources)
      if (s.status == "unused") problem("unused source '" + s.name + "' (" + s.type + describe_info(s) + "): no rule maps or drops it");
    adopt_container_kinds(plan_.target, src_.root);
    if (opts_.expect) check_expected();
    return std::move(plan_);
  }

 private:
  static std::string describe_info(const SourceEntry& s) {
    return s.type == "tensor" ? " " + std::string(dtype_name(s.info.dtype)) + " " + shape_str(s.info.shape) : "";
  }
  void problem(std::string p) { plan_.problems.push_back(std::move(p)); }

  // Rule::when: "NAME" needs the size set and non-zero, "!NAME" needs it absent or zero.
  bool active(const Rule& rule) const {
    if (rule.when.empty()) return true;
    const bool negated = rule.when[0] == '!';
    auto it = sizes_.find(negated ? rule.when.substr(1) : rule.when);
    const bool set = it != sizes_.end() && it->second != 0;
    return set != negated;
  }

  // Unclaimed sources matching `p`, in tree order, with their captures.
  std::vector<std::pair<std::size_t, Captures>> matches(const Pattern& p) {
    std::vector<std::pair<std::size_t, Captures>> out;
    for (std::size_t i = 0; i < plan_.sources.size(); ++i) {
      if (plan_.sources[i].status != "unused") continue;
      if (auto c = p.match(plan_.sources[i].name)) out.emplace_back(i, std::move(*c));
    }
    return out;
  }

  const Tensor& tensor_of(std::size_t i, const Rule& rule) {
    const Node* n = refs_[i].node;
    if (!n->is_tensor())
      throw MappingError(plan_.sources[i].name, rule.describe() + " needs a tensor but this leaf is a " + plan_.sources[i].type);
    return n->tensor();
  }

  void claim(std::size_t i, const Rule& rule, std::vector<std::string> targets) {
    auto& s = plan_.sources[i];
    s.status = "consumed";
    s.rule = rule.index;
    s.targets = std::move(targets);
  }

  void emit(const std::string& name, Node leaf, const Rule& rule, std::vector<std::string> from, std::string how,
            const char* status = "produced") {
    if (produced_.count(name)) {
      problem("target '" + name + "' is produced twice (rules " + std::to_string(produced_[name]) + " and " +
              std::to_string(rule.index) + ")");
      return;
    }
    produced_[name] = rule.index;
    TargetEntry t;
    t.name = name;
    t.type = std::string(leaf.type_name());
    if (leaf.is_tensor()) t.info = leaf.tensor().info;
    t.status = status;
    t.rule = rule.index;
    t.from = std::move(from);
    t.how = std::move(how);
    plan_.targets.push_back(std::move(t));
    for (const auto& [k, v] : rule.attrs) leaf.attrs[k] = v;
    insert_path(plan_.target, name, std::move(leaf));
  }

  Tensor apply_ops(Tensor t, const std::vector<OpSpec>& ops, const std::string& what, std::string& how) {
    for (const auto& op : ops) {
      switch (op.kind) {
        case OpSpec::Kind::Rearrange:
          t = rearrange(t, op.rearrange, sizes_, what);
          how += (how.empty() ? "" : ", ") + std::string("rearrange '") + op.rearrange + "'";
          break;
        case OpSpec::Kind::Cast:
          if (op.from && *op.from != t.info.dtype)
            throw MappingError(what, "cast expects " + std::string(dtype_name(*op.from)) + " but the tensor is " +
                                         std::string(dtype_name(t.info.dtype)));
          t = cast_tensor(t, op.to, std::make_shared<CastStats>());
          how += (how.empty() ? "" : ", ") + std::string("cast ") + std::string(dtype_name(op.to));
          break;
        case OpSpec::Kind::Index:
          t = ops::index(t, op.axis, op.start, what);
          how += (how.empty() ? "" : ", ") + std::string("index ") + std::to_string(op.start) + " on axis " + std::to_string(op.axis);
          break;
        case OpSpec::Kind::Slice:
          t = ops::slice(t, op.axis, op.start, op.stop, what);
          how += (how.empty() ? "" : ", ") + std::string("slice ") + std::to_string(op.start) + ":" + std::to_string(op.stop);
          break;
      }
    }
    return t;
  }

  void apply(const Rule& rule) {
    try {
      switch (rule.kind) {
        case Rule::Kind::Map: return apply_map(rule);
        case Rule::Kind::Drop:
          for (auto& [i, c] : matches(rule.inputs[0])) {
            auto& s = plan_.sources[i];
            s.status = "dropped";
            s.rule = rule.index;
            s.reason = rule.reason;
          }
          return;
        case Rule::Kind::Stack: return apply_stack(rule);
        case Rule::Kind::Unstack: return apply_unstack(rule);
        case Rule::Kind::Concat: return apply_concat(rule);
        case Rule::Kind::Split: return apply_split(rule);
        case Rule::Kind::Fill: return apply_fill(rule);
        case Rule::Kind::EinsumAdd: return apply_einsum_add(rule);
      }
    } catch (const MappingError& e) {
      problem(rule.describe() + ": " + e.what());
    }
  }

  void apply_map(const Rule& rule) {
    for (auto& [i, caps] : matches(rule.inputs[0])) {
      std::string target = rule.outputs[0].format(caps);
      const Node* n = refs_[i].node;
      std::string how;
      Node leaf;
      if (n->is_tensor()) {
        leaf = Node::tensor(apply_ops(n->tensor(), rule.ops, plan_.sources[i].name, how));
        leaf.attrs = n->attrs;
      } else if (!rule.ops.empty()) {  // a numeric scalar leaf becomes a 0-d tensor (e.g. a Python-int step)
        leaf = Node::tensor(apply_ops(scalar_tensor(*n, plan_.sources[i].name), rule.ops, plan_.sources[i].name, how));
        how = "scalar -> 0-d tensor, " + how;
      } else {
        leaf = *n;
        leaf.attrs = n->attrs;
      }
      claim(i, rule, {target});
      emit(target, std::move(leaf), rule, {plan_.sources[i].name}, how.empty() ? "rename" : how);
    }
  }

  void apply_stack(const Rule& rule) {
    const auto& p = rule.inputs[0];
    if (std::find(p.names().begin(), p.names().end(), rule.over) == p.names().end())
      throw MappingError(p.text(), "stack 'over' names {" + rule.over + "}, which the pattern does not capture");
    std::map<std::string, std::vector<std::pair<std::int64_t, std::size_t>>> groups;
    std::map<std::string, Captures> group_caps;
    for (auto& [i, caps] : matches(p)) {
      auto k = key_of(caps, p.names(), rule.over);
      const auto& v = caps.at(rule.over);
      if (v.empty() || !std::all_of(v.begin(), v.end(), ::isdigit))
        throw MappingError(plan_.sources[i].name, "stack index {" + rule.over + "} = '" + v + "' is not an integer");
      groups[k].emplace_back(std::stoll(v), i);
      group_caps[k] = caps;
    }
    for (auto& [k, members] : groups) {
      std::sort(members.begin(), members.end());
      std::vector<Tensor> ts;
      std::vector<std::string> from;
      for (std::size_t j = 0; j < members.size(); ++j) {
        if (members[j].first != static_cast<std::int64_t>(j))
          throw MappingError(plan_.sources[members[j].second].name,
                             "stack needs indices 0.." + std::to_string(members.size() - 1) + " without gaps; index " +
                                 std::to_string(j) + " is missing");
        std::string how;
        ts.push_back(apply_ops(tensor_of(members[j].second, rule), rule.ops, plan_.sources[members[j].second].name, how));
        from.push_back(plan_.sources[members[j].second].name);
      }
      std::string target = rule.outputs[0].format(group_caps[k]);
      Tensor t = ops::stack(ts, rule.axis, target);
      for (auto& [idx, i] : members) claim(i, rule, {target});
      emit(target, Node::tensor(std::move(t)), rule, from, "stack " + std::to_string(members.size()) + " on axis " + std::to_string(rule.axis));
    }
  }

  void apply_unstack(const Rule& rule) {
    for (auto& [i, caps] : matches(rule.inputs[0])) {
      const Tensor& t = tensor_of(i, rule);
      int axis = ops::norm_axis(rule.axis, t.info.shape.size(), plan_.sources[i].name);
      std::vector<std::string> names, hows;
      std::vector<Tensor> parts;
      for (std::int64_t l = 0; l < t.info.shape[static_cast<std::size_t>(axis)]; ++l) {
        Captures c = caps;
        c[rule.over] = std::to_string(l);
        names.push_back(rule.outputs[0].format(c));
        std::string how = "index " + std::to_string(l) + " on axis " + std::to_string(axis);
        parts.push_back(apply_ops(ops::index(t, axis, l, names.back()), rule.ops, names.back(), how));
        hows.push_back(how);
      }
      claim(i, rule, names);
      for (std::size_t l = 0; l < parts.size(); ++l)
        emit(names[l], Node::tensor(parts[l]), rule, {plan_.sources[i].name}, hows[l]);
    }
  }

  // Sources matching several patterns that share captures, grouped by capture values: for
  // each group, the matching source of every pattern (or nothing), and the captures.
  using Groups = std::map<std::string, std::vector<std::optional<std::size_t>>>;
  std::pair<Groups, std::map<std::string, Captures>> group_by_captures(const std::vector<Pattern>& patterns) {
    Groups groups;
    std::map<std::string, Captures> caps_of;
    const auto names = patterns[0].names();
    for (std::size_t k = 0; k < patterns.size(); ++k)
      for (auto& [i, caps] : matches(patterns[k])) {
        auto key = key_of(caps, names);
        auto& g = groups[key];
        g.resize(patterns.size());
        g[k] = i;
        caps_of[key] = caps;
      }
    return {std::move(groups), std::move(caps_of)};
  }

  void apply_concat(const Rule& rule) {
    auto [groups, group_caps] = group_by_captures(rule.inputs);
    for (auto& [key, members] : groups) {
      std::vector<Tensor> ts;
      std::vector<std::string> from;
      for (std::size_t k = 0; k < members.size(); ++k) {
        if (!members[k]) {
          auto present = std::find_if(members.begin(), members.end(), [](const auto& m) { return m.has_value(); });
          std::string have = plan_.sources[**present].name;
          throw MappingError(have, "concat needs a partner matching '" + rule.inputs[k].text() + "' and there is none");
        }
        ts.push_back(tensor_of(*members[k], rule));
        from.push_back(plan_.sources[*members[k]].name);
      }
      std::string target = rule.outputs[0].format(group_caps[key]);
      Tensor t = ops::concat(ts, rule.axis, target);
      for (auto& m : members) claim(*m, rule, {target});
      emit(target, Node::tensor(std::move(t)), rule, from, "concat on axis " + std::to_string(rule.axis));
    }
  }

  void apply_split(const Rule& rule) {
    for (auto& [i, caps] : matches(rule.inputs[0])) {
      const Tensor& t = tensor_of(i, rule);
      auto parts = ops::split(t, rule.axis, static_cast<std::int64_t>(rule.outputs.size()), plan_.sources[i].name);
      std::vector<std::string> names;
      for (const auto& o : rule.outputs) names.push_back(o.format(caps));
      claim(i, rule, names);
      for (std::size_t k = 0; k < parts.size(); ++k)
        emit(names[k], Node::tensor(parts[k]), rule, {plan_.sources[i].name},
             "part " + std::to_string(k) + " of " + std::to_string(parts.size()) + " on axis " + std::to_string(rule.axis));
    }
  }

  // A numeric scalar leaf as a 0-d tensor of its natural dtype (int64, float64, bool).
  static Tensor scalar_tensor(const Node& n, const std::string& what) {
    const auto& v = n.value();
    auto make = [&](DType t, const void* p, std::size_t size) {
      Bytes b(size);
      std::memcpy(b.data(), p, size);
      return make_memory_tensor({t, {}}, std::move(b), what);
    };
    if (const auto* i = std::get_if<std::int64_t>(&v)) return make(DType::I64, i, 8);
    if (const auto* d = std::get_if<double>(&v)) return make(DType::F64, d, 8);
    if (const auto* b = std::get_if<bool>(&v)) {
      const std::uint8_t u = *b;
      return make(DType::BOOL, &u, 1);
    }
    throw MappingError(what, "ops apply to tensors and numeric scalars only; this is a " + std::string(n.type_name()));
  }

  static Node json_leaf(const nlohmann::json& j) {
    if (j.is_null()) return Node::none();
    if (j.is_boolean()) return Node(j.get<bool>());
    if (j.is_number_integer()) return Node(j.get<std::int64_t>());
    if (j.is_number()) return Node(j.get<double>());
    if (j.is_string()) return Node(j.get<std::string>());
    return j.is_array() ? Node::list() : Node::dict();
  }

  void apply_fill(const Rule& rule) {
    std::string target = rule.outputs[0].format({});
    if (rule.value || rule.prng_seed) {
      Shape shape = rule.shape;
      for (std::size_t d = 0; d < rule.shape_sizes.size(); ++d) {
        if (rule.shape_sizes[d].empty()) continue;
        auto it = sizes_.find(rule.shape_sizes[d]);
        if (it == sizes_.end()) {
          problem(rule.describe() + ": size '" + rule.shape_sizes[d] + "' of the fill shape is not known (give it in sizes or --size)");
          return;
        }
        shape[d] = it->second;
      }
      if (rule.prng_seed) {
        Node key = Node::tensor(threefry_key_tensor(shape, *rule.prng_seed, target));
        key.attrs["random_key_impl"] = "threefry2x32";
        emit(target, std::move(key), rule, {},
             shape.empty() ? "threefry2x32 key(" + std::to_string(*rule.prng_seed) + ")"
                           : "threefry2x32 split(key(" + std::to_string(*rule.prng_seed) + "), " + shape_str(shape) + ")",
             "filled");
        return;
      }
      auto t = ops::fill({*rule.dtype, shape}, *rule.value, target);
      emit(target, Node::tensor(std::move(t)), rule, {}, "constant " + std::to_string(*rule.value), "filled");
      return;
    }
    if (rule.leaf) {
      emit(target, json_leaf(*rule.leaf), rule, {}, "leaf " + rule.leaf->dump(), "filled");
      return;
    }
    if (!rule.copy_of.empty()) {
      // A source of that name, else a target another rule produced (as in inverted recipes).
      const Node* orig = nullptr;
      if (auto it = by_name_.find(rule.copy_of); it != by_name_.end()) orig = refs_[it->second].node;
      else if (produced_.count(rule.copy_of)) orig = find_path(plan_.target, rule.copy_of);
      if (!orig) throw MappingError(target, "fill copy_of '" + rule.copy_of + "': no such source or target");
      Node leaf = *orig;
      if (leaf.is_tensor() && rule.dtype) leaf = Node::tensor(cast_tensor(leaf.tensor(), *rule.dtype, std::make_shared<CastStats>()));
      emit(target, std::move(leaf), rule, {rule.copy_of}, "copy of " + rule.copy_of, "filled");
      return;
    }
    auto& other = other_checkpoints_[rule.from_checkpoint];
    if (!other) other = std::make_shared<Checkpoint>(read_checkpoint(rule.from_checkpoint));
    const Node* n = find_path(other->root, rule.tensor.empty() ? target : rule.tensor);
    if (!n) throw MappingError(rule.from_checkpoint, "has no leaf '" + (rule.tensor.empty() ? target : rule.tensor) + "'");
    emit(target, *n, rule, {}, "from " + rule.from_checkpoint + ":" + (rule.tensor.empty() ? target : rule.tensor), "filled");
  }

  void apply_einsum_add(const Rule& rule) {
    auto [groups, group_caps] = group_by_captures(rule.inputs);
    for (auto& [key, members] : groups) {
      std::vector<Tensor> operands;
      std::vector<std::string> from;
      for (std::size_t k = 0; k < members.size(); ++k) {
        if (!members[k])
          throw MappingError(rule.outputs[0].format(group_caps[key]), "einsum_add is missing its input '" + rule.inputs[k].text() + "'");
        from.push_back(plan_.sources[*members[k]].name);
        if (k > 0) operands.push_back(tensor_of(*members[k], rule));
      }
      const Tensor& base = tensor_of(*members[0], rule);
      DType out = rule.dtype.value_or(base.info.dtype);
      std::string target = rule.outputs[0].format(group_caps[key]);
      std::optional<Tensor> magnitude;
      if (rule.magnitude_axis >= 0) {
        magnitude = operands.back();
        operands.pop_back();
      }
      // Several terms: each but the last adds to the float64 sum so far; only the last rounds.
      const std::vector<double> scales = rule.term_scales.empty() ? std::vector<double>{rule.scale} : rule.term_scales;
      if (operands.size() % scales.size())
        throw MappingError(target, "einsum_add has " + std::to_string(operands.size()) + " operands, not " +
                                       std::to_string(scales.size()) + " equal groups (one per term scale)");
      const std::size_t per = operands.size() / scales.size();
      std::optional<Tensor> sum = base;
      std::string how = "base";
      for (std::size_t k = 0; k < scales.size(); ++k) {
        const bool last = k + 1 == scales.size();
        const DType dt = last && !magnitude ? out : DType::F64;  // DoRA: W + s*dW in float64, then rescaled
        std::vector<Tensor> term(operands.begin() + static_cast<std::ptrdiff_t>(k * per),
                                 operands.begin() + static_cast<std::ptrdiff_t>((k + 1) * per));
        std::shared_ptr<CastStats> rounding;  // the one rounding of the float64 sum, measured (report "rounded")
        if (dt != DType::F64) rounding = plan_.rounded[target] = std::make_shared<CastStats>();
        sum = einsum_add(sum, term, rule.equation, scales[k], dt, target, 1u << 16, rounding);
        how += " + " + std::to_string(scales[k]) + " * einsum '" + rule.equation + "'";
      }
      Tensor t = magnitude ? ops::rescale_to_norm(*sum, *magnitude, rule.magnitude_axis, out, target) : *sum;
      for (auto& m : members) claim(*m, rule, {target});
      emit(target, Node::tensor(std::move(t)), rule, from, how + (magnitude ? ", rescaled to the magnitude's norm (DoRA)" : ""));
    }
  }

  void check_expected() {
    std::map<std::string, const Node*> want;
    visit_leaves(opts_.expect->root, [&](const Path& p, const Node& n) { want[join_path(p)] = &n; });
    std::set<std::string> have;
    for (auto& t : plan_.targets) {
      have.insert(t.name);
      auto it = want.find(t.name);
      if (it == want.end()) {
        problem("unexpected target '" + t.name + "': the expected layout has no such leaf");
        continue;
      }
      const Node* w = it->second;
      if (w->is_tensor() != (t.type == "tensor")) {
        problem("target '" + t.name + "' is a " + t.type + " but the expected layout has a " + std::string(w->type_name()));
      } else if (w->is_tensor() && !(w->tensor().info == t.info)) {
        problem("target '" + t.name + "' is " + std::string(dtype_name(t.info.dtype)) + " " + shape_str(t.info.shape) +
                " but the expected layout has " + std::string(dtype_name(w->tensor().info.dtype)) + " " +
                shape_str(w->tensor().info.shape));
      }
    }
    for (auto& [name, n] : want)
      if (!have.count(name)) {
        TargetEntry t;
        t.name = name;
        t.type = std::string(n->type_name());
        if (n->is_tensor()) t.info = n->tensor().info;
        t.status = "missing";
        plan_.targets.push_back(t);
        problem("missing target '" + name + "': no rule produces it");
      }
  }

  const Checkpoint& src_;
  const Recipe& recipe_;
  const PlanOptions& opts_;
  std::map<std::string, std::int64_t> sizes_;
  Plan plan_;
  std::vector<SourceRef> refs_;
  std::map<std::string, std::size_t> by_name_;
  std::map<std::string, int> produced_;
  std::map<std::string, std::shared_ptr<Checkpoint>> other_checkpoints_;  // fill from_checkpoint, read once
};

}  // namespace

void adopt_container_kinds(Node& target, const Node& like) {
  if (!target.is_container() || !like.is_container()) return;
  auto& tc = target.container();
  const auto& lc = like.container();
  bool indices = true;
  for (std::size_t i = 0; i < tc.children.size() && indices; ++i) indices = tc.children[i].key == std::to_string(i);
  if (lc.kind == ContainerKind::Dict || indices) {
    tc.kind = lc.kind;
    for (const auto& [k, v] : like.attrs) target.attrs.emplace(k, v);
  }
  for (auto& ch : tc.children)
    if (const Node* l = like.find(ch.key); l && ch.node->is_container()) adopt_container_kinds(*ch.node, *l);
}

void insert_path(Node& root, const std::string& name, Node leaf) {
  Node* cur = &root;
  std::size_t start = 0;
  while (true) {
    auto slash = name.find('/', start);
    std::string key = name.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (slash == std::string::npos) {
      cur->add(key, std::move(leaf));
      return;
    }
    Node* next = cur->find(key);
    if (!next) next = &cur->add(key, Node::dict());
    if (!next->is_container())
      throw MappingError(name, "'" + name.substr(0, slash) + "' is both a leaf and a prefix of another target");
    cur = next;
    start = slash + 1;
  }
}

Plan build_plan(const Checkpoint& src, const Recipe& recipe, const PlanOptions& opts) {
  if (recipe.stages.empty()) return Planner(src, recipe, opts).run();
  Plan all;
  all.recipe = recipe.name;
  Checkpoint cur = src;
  for (std::size_t k = 0; k < recipe.stages.size(); ++k) {
    PlanOptions o = opts;
    if (k + 1 < recipe.stages.size()) o.expect = nullptr;  // the expected layout is the final one
    for (const auto& [name, v] : recipe.sizes) o.sizes.emplace(name, v);
    Plan p = build_plan(cur, recipe.stages[k], o);
    for (const auto& pr : p.problems) all.problems.push_back("stage " + std::to_string(k) + " (" + p.recipe + "): " + pr);
    if (k == 0) all.sources = p.sources;
    if (k + 1 == recipe.stages.size()) {
      all.targets = p.targets;
      all.target = p.target;
    }
    const bool ok = p.ok();
    all.rounded.insert(p.rounded.begin(), p.rounded.end());
    cur = Checkpoint{src.format, src.path, p.target, src.metadata};
    all.stages.push_back(std::move(p));
    if (!ok) break;  // later stages would only report the consequences
  }
  return all;
}

nlohmann::ordered_json Plan::ledger_json() const {
  nlohmann::ordered_json j;
  j["recipe"] = recipe;
  j["ok"] = ok();
  j["problems"] = problems;
  auto info = [](nlohmann::ordered_json& e, const std::string& type, const TensorInfo& i) {
    e["type"] = type;
    if (type == "tensor") e["dtype"] = std::string(dtype_name(i.dtype)), e["shape"] = i.shape;
  };
  j["sources"] = nlohmann::ordered_json::object();
  for (const auto& s : sources) {
    nlohmann::ordered_json e;
    e["status"] = s.status;
    info(e, s.type, s.info);
    if (s.rule >= 0) e["rule"] = s.rule;
    if (!s.targets.empty()) e["targets"] = s.targets;
    if (!s.reason.empty()) e["reason"] = s.reason;
    j["sources"][s.name] = e;
  }
  j["targets"] = nlohmann::ordered_json::object();
  for (const auto& t : targets) {
    nlohmann::ordered_json e;
    e["status"] = t.status;
    info(e, t.type, t.info);
    if (t.rule >= 0) e["rule"] = t.rule;
    if (!t.from.empty()) e["from"] = t.from;
    if (!t.how.empty()) e["how"] = t.how;
    j["targets"][t.name] = e;
  }
  std::map<std::string, int> counts;
  for (const auto& s : sources) counts["sources_" + s.status]++;
  for (const auto& t : targets) counts["targets_" + t.status]++;
  j["counts"] = counts;
  if (!stages.empty()) {
    j["stages"] = nlohmann::ordered_json::array();
    for (const auto& s : stages) j["stages"].push_back(s.ledger_json());
  }
  return j;
}

void Plan::check() const {
  if (problems.empty()) return;
  std::string msg = std::to_string(problems.size()) + " problem(s) in the plan for recipe '" + recipe + "':";
  for (std::size_t i = 0; i < problems.size() && i < 40; ++i) msg += "\n  " + problems[i];
  if (problems.size() > 40) msg += "\n  ... and " + std::to_string(problems.size() - 40) + " more (see --report)";
  throw MappingError("plan", msg, problems);
}

}  // namespace ckb
