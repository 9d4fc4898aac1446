// Parsing, printing and inversion of recipes (recipe/recipe.h).
#include <regex>
#include "recipe/recipe.h"

#include <filesystem>

#include "core/errors.h"
#include "core/json_bounded.h"
#include "io/file.h"
#include "recipe/builtin_recipes.h"
#include "ops/rearrange.h"

namespace ckb {
namespace {

using json = nlohmann::json;

DType parse_dtype(const json& j, const std::string& where) {
  if (!j.is_string()) throw MappingError(where, "dtype must be a string");
  auto s = j.get<std::string>();
  if (auto d = dtype_from_name(s)) return *d;
  if (auto d = dtype_from_numpy_name(s)) return *d;
  throw MappingError(where, "unknown dtype '" + s + "'");
}

std::string str_field(const json& r, const char* key, const std::string& where) {
  if (!r.contains(key) || !r[key].is_string()) throw MappingError(where, std::string("needs a string '") + key + "'");
  return r[key].get<std::string>();
}

OpSpec parse_op(const json& j, const std::string& where) {
  if (!j.is_object() || j.size() < 1) throw MappingError(where, "an op is an object like {\"rearrange\": \"a b -> b a\"}");
  OpSpec op{};
  if (j.contains("rearrange")) {
    op.kind = OpSpec::Kind::Rearrange;
    op.rearrange = j["rearrange"].get<std::string>();
  } else if (j.contains("transpose")) {  // [1, 0] sugar for a rearrange
    op.kind = OpSpec::Kind::Rearrange;
    auto perm = j["transpose"].get<std::vector<int>>();
    std::string lhs, rhs;
    for (std::size_t i = 0; i < perm.size(); ++i) {
      lhs += (i ? " a" : "a") + std::to_string(i);
      rhs += (i ? " a" : "a") + std::to_string(perm[i]);
    }
    op.rearrange = lhs + " -> " + rhs;
  } else if (j.contains("cast")) {
    op.kind = OpSpec::Kind::Cast;
    op.to = parse_dtype(j["cast"], where);
    if (j.contains("from")) op.from = parse_dtype(j["from"], where);
  } else if (j.contains("index")) {
    op.kind = OpSpec::Kind::Index;
    op.axis = j["index"].value("axis", 0);
    op.start = j["index"].at("i").get<std::int64_t>();
  } else if (j.contains("slice")) {
    op.kind = OpSpec::Kind::Slice;
    op.axis = j["slice"].value("axis", 0);
    op.start = j["slice"].at("start").get<std::int64_t>();
    op.stop = j["slice"].at("stop").get<std::int64_t>();
  } else {
    throw MappingError(where, "unknown op " + j.dump());
  }
  return op;
}

json op_to_json(const OpSpec& op) {
  switch (op.kind) {
    case OpSpec::Kind::Rearrange: return {{"rearrange", op.rearrange}};
    case OpSpec::Kind::Cast: {
      json j = {{"cast", std::string(dtype_name(op.to))}};
      if (op.from) j["from"] = std::string(dtype_name(*op.from));
      return j;
    }
    case OpSpec::Kind::Index: return {{"index", {{"axis", op.axis}, {"i", op.start}}}};
    case OpSpec::Kind::Slice: return {{"slice", {{"axis", op.axis}, {"start", op.start}, {"stop", op.stop}}}};
  }
  return {};
}

Pattern pat(const json& j, const std::string& where) {
  if (j.is_object() && j.contains("regex")) return Pattern::regex(j["regex"].get<std::string>());
  if (!j.is_string()) throw MappingError(where, "a pattern is a string (or {\"regex\": ...})");
  return Pattern(j.get<std::string>());
}

json pat_json(const Pattern& p) { return p.is_regex() ? json{{"regex", p.text()}} : json(p.text()); }

Rule parse_rule(const json& r, int index, const std::string& origin) {
  const std::string where = origin + ": rule " + std::to_string(index);
  if (!r.is_object()) throw MappingError(where, "a rule is a JSON object");
  Rule rule;
  rule.index = index;
  auto outputs = [&] {
    if (!r.contains("to")) throw MappingError(where, "needs 'to'");
    if (r["to"].is_array())
      for (const auto& t : r["to"]) rule.outputs.push_back(pat(t, where));
    else
      rule.outputs.push_back(pat(r["to"], where));
  };
  if (r.contains("map")) {
    rule.kind = Rule::Kind::Map;
    rule.inputs.push_back(pat(r["map"], where));
    outputs();
    if (r.contains("ops"))
      for (const auto& o : r["ops"]) rule.ops.push_back(parse_op(o, where));
  } else if (r.contains("drop")) {
    rule.kind = Rule::Kind::Drop;
    rule.inputs.push_back(pat(r["drop"], where));
    rule.reason = str_field(r, "reason", where);
    if (r.contains("reverse")) rule.reverse = r["reverse"];
  } else if (r.contains("stack") || r.contains("unstack")) {
    rule.kind = r.contains("stack") ? Rule::Kind::Stack : Rule::Kind::Unstack;
    rule.inputs.push_back(pat(r.contains("stack") ? r["stack"] : r["unstack"], where));
    outputs();
    rule.axis = r.value("axis", 0);
    rule.over = str_field(r, "over", where);
    // unstack: ops apply to each slice; stack: to each member before stacking.
    if (r.contains("ops"))
      for (const auto& o : r["ops"]) rule.ops.push_back(parse_op(o, where));
  } else if (r.contains("concat")) {
    rule.kind = Rule::Kind::Concat;
    for (const auto& p : r["concat"]) rule.inputs.push_back(pat(p, where));
    outputs();
    rule.axis = r.value("axis", 0);
  } else if (r.contains("split")) {
    rule.kind = Rule::Kind::Split;
    rule.inputs.push_back(pat(r["split"], where));
    outputs();
    rule.axis = r.value("axis", 0);
  } else if (r.contains("fill")) {
    rule.kind = Rule::Kind::Fill;
    rule.outputs.push_back(pat(r["fill"], where));
    if (r.contains("dtype")) rule.dtype = parse_dtype(r["dtype"], where);
    if (r.contains("shape")) {
      if (!r["shape"].is_array()) throw MappingError(where, "fill 'shape' must be a list");
      for (const auto& d : r["shape"]) {  // a number, or a size name resolved when planning
        if (d.is_string()) rule.shape.push_back(0), rule.shape_sizes.push_back(d.get<std::string>());
        else rule.shape.push_back(d.get<std::int64_t>()), rule.shape_sizes.push_back("");
      }
    }
    if (r.contains("value")) {
      if (!r["value"].is_number()) throw MappingError(where, "fill 'value' must be a number");
      rule.value = r["value"].get<double>();
    }
    rule.copy_of = r.value("copy_of", "");
    rule.from_checkpoint = r.value("from_checkpoint", "");
    rule.tensor = r.value("tensor", "");
    if (r.contains("leaf")) {
      const auto& l = r["leaf"];
      if (!(l.is_null() || l.is_primitive() || ((l.is_object() || l.is_array()) && l.empty())))
        throw MappingError(where, "fill 'leaf' must be null, a number, a bool, a string, {} or []");
      rule.leaf = l;
    }
    if (r.contains("prng_key")) {
      const auto& k = r["prng_key"];
      if (!k.is_object() || k.value("impl", "threefry2x32") != "threefry2x32" || !k.contains("seed") ||
          !k["seed"].is_number_unsigned())
        throw MappingError(where, "fill 'prng_key' is {\"impl\": \"threefry2x32\", \"seed\": N} (N >= 0)");
      rule.prng_seed = k["seed"].get<std::uint64_t>();
      if (!r.contains("shape")) throw MappingError(where, "fill with 'prng_key' needs the key shape (without the trailing 2)");
    }
    int ways = rule.value.has_value() + !rule.copy_of.empty() + !rule.from_checkpoint.empty() + rule.leaf.has_value() +
               rule.prng_seed.has_value();
    if (ways != 1)
      throw MappingError(where, "fill needs exactly one of 'value', 'copy_of', 'from_checkpoint', 'leaf', 'prng_key'");
    if (rule.value && (!rule.dtype || !r.contains("shape"))) throw MappingError(where, "fill with 'value' needs dtype and shape");
  } else if (r.contains("einsum_add")) {
    rule.kind = Rule::Kind::EinsumAdd;
    const auto& e = r["einsum_add"];
    rule.inputs.push_back(pat(e.at("base"), where));
    // "operands" + "scale" (one term), or "terms": [{"operands", "scale"}, ...] (summed)
    if (e.contains("terms")) {
      if (e.contains("operands") || !e["terms"].is_array() || e["terms"].empty())
        throw MappingError(where, "einsum_add takes 'operands' or a non-empty 'terms' list, not both");
      for (const auto& t : e["terms"]) {
        if (!t.contains("operands") || t["operands"].size() != e["terms"][0]["operands"].size())
          throw MappingError(where, "every einsum_add term needs the same number of 'operands'");
        for (const auto& p : t["operands"]) rule.inputs.push_back(pat(p, where));
        rule.term_scales.push_back(t.value("scale", 1.0));
      }
    } else {
      for (const auto& p : e.at("operands")) rule.inputs.push_back(pat(p, where));
    }
    rule.equation = e.at("equation").get<std::string>();
    rule.scale = e.value("scale", 1.0);
    if (e.contains("magnitude")) {
      rule.inputs.push_back(pat(e["magnitude"], where));
      rule.magnitude_axis = e.value("magnitude_axis", 0);
      if (rule.magnitude_axis < 0) throw MappingError(where, "magnitude_axis must be >= 0");
    }
    if (r.contains("dtype")) rule.dtype = parse_dtype(r["dtype"], where);
    outputs();
  } else {
    throw MappingError(where, "unknown rule kind (expected map, drop, stack, unstack, concat, split, fill, einsum_add): " +
                                  r.dump());
  }
  if (rule.kind != Rule::Kind::Fill && rule.kind != Rule::Kind::Drop && rule.outputs.empty())
    throw MappingError(where, "needs 'to'");
  if (r.contains("when")) {
    static const std::regex name(R"(!?[A-Za-z_][A-Za-z0-9_]*)");
    if (!r["when"].is_string() || !std::regex_match(r["when"].get<std::string>(), name))
      throw MappingError(where, "'when' is a size name, or '!' and a size name");
    rule.when = r["when"].get<std::string>();
  }
  if (r.contains("attrs")) {
    if (!r["attrs"].is_object()) throw MappingError(where, "'attrs' must be an object of strings");
    for (const auto& [k, v] : r["attrs"].items()) {
      if (!v.is_string()) throw MappingError(where, "'attrs' must be an object of strings");
      rule.attrs[k] = v.get<std::string>();
    }
  }
  return rule;
}

}  // namespace

std::string Rule::describe() const {
  static const char* names[] = {"map", "drop", "stack", "unstack", "concat", "split", "fill", "einsum_add"};
  std::string s = "rule " + std::to_string(index) + " (" + names[static_cast<int>(kind)];
  if (!inputs.empty()) s += " '" + inputs[0].text() + "'" + (inputs.size() > 1 ? ",..." : "");
  if (!outputs.empty()) s += " -> '" + outputs[0].text() + "'" + (outputs.size() > 1 ? ",..." : "");
  return s + ")";
}

Recipe parse_recipe(const json& j, const std::string& origin) {
  if (j.is_object() && j.contains("stages")) {
    if (!j["stages"].is_array() || j["stages"].empty() || j.contains("rules"))
      throw MappingError(origin, "'stages' must be a non-empty list of recipes (and no 'rules' beside it)");
    Recipe r;
    r.name = j.value("recipe", std::filesystem::path(origin).stem().string());
    r.description = j.value("description", "");
    if (j.contains("sizes")) r.sizes = j["sizes"].get<std::map<std::string, std::int64_t>>();
    int k = 0;
    for (const auto& s : j["stages"]) {
      Recipe st = parse_recipe(s, origin + " stage " + std::to_string(k));
      if (!s.contains("recipe")) st.name = r.name + "#" + std::to_string(k);
      for (const auto& [name, v] : r.sizes) st.sizes.emplace(name, v);  // shared sizes as defaults
      r.stages.push_back(std::move(st));
      ++k;
    }
    return r;
  }
  if (!j.is_object() || !j.contains("rules") || !j["rules"].is_array())
    throw MappingError(origin, "a recipe is a JSON object with a 'rules' list (or a 'stages' list of recipes)");
  Recipe r;
  r.name = j.value("recipe", std::filesystem::path(origin).stem().string());
  r.description = j.value("description", "");
  if (j.contains("sizes")) r.sizes = j["sizes"].get<std::map<std::string, std::int64_t>>();
  int i = 0;
  for (const auto& rule : j["rules"]) r.rules.push_back(parse_rule(rule, i++, origin));
  return r;
}

Recipe load_recipe(const std::string& path_or_name) {
  if (auto text = builtin_recipe(path_or_name)) return parse_recipe(parse_json_bounded(*text, "builtin:" + path_or_name), "builtin:" + path_or_name);
  if (!path_exists(path_or_name))
    throw UsageError("recipe '" + path_or_name + "' is neither a file nor a built-in recipe (" + builtin_recipe_names() + ")");
  try {
    // Recipes nest a few levels; a hostile file nesting thousands of "stages" would
    // otherwise overflow the stack in parse_recipe's recursion (the parser caps depth at 64).
    return parse_recipe(parse_json_bounded(read_text_file(path_or_name), path_or_name), path_or_name);
  } catch (const json::exception& e) {
    throw MappingError(path_or_name, std::string("recipe is not valid JSON: ") + e.what());
  }
}

json recipe_to_json(const Recipe& r) {
  json j;
  j["recipe"] = r.name;
  if (!r.description.empty()) j["description"] = r.description;
  if (!r.sizes.empty()) j["sizes"] = r.sizes;
  if (!r.stages.empty()) {
    for (const auto& s : r.stages) j["stages"].push_back(recipe_to_json(s));
    return j;
  }
  j["rules"] = json::array();
  for (const auto& rule : r.rules) {
    json o;
    auto to = [&] {
      if (rule.outputs.size() == 1 && rule.kind != Rule::Kind::Split) o["to"] = pat_json(rule.outputs[0]);
      else for (const auto& p : rule.outputs) o["to"].push_back(pat_json(p));
    };
    switch (rule.kind) {
      case Rule::Kind::Map:
        o["map"] = pat_json(rule.inputs[0]);
        to();
        for (const auto& op : rule.ops) o["ops"].push_back(op_to_json(op));
        break;
      case Rule::Kind::Drop:
        o["drop"] = pat_json(rule.inputs[0]);
        o["reason"] = rule.reason;
        if (!rule.reverse.is_null()) o["reverse"] = rule.reverse;
        break;
      case Rule::Kind::Stack:
      case Rule::Kind::Unstack:
        o[rule.kind == Rule::Kind::Stack ? "stack" : "unstack"] = pat_json(rule.inputs[0]);
        to();
        o["axis"] = rule.axis;
        o["over"] = rule.over;
        for (const auto& op : rule.ops) o["ops"].push_back(op_to_json(op));
        break;
      case Rule::Kind::Concat:
        for (const auto& p : rule.inputs) o["concat"].push_back(pat_json(p));
        to();
        o["axis"] = rule.axis;
        break;
      case Rule::Kind::Split:
        o["split"] = pat_json(rule.inputs[0]);
        to();
        o["axis"] = rule.axis;
        break;
      case Rule::Kind::Fill:
        o["fill"] = pat_json(rule.outputs[0]);
        if (rule.dtype) o["dtype"] = std::string(dtype_name(*rule.dtype));
        if (rule.value || rule.prng_seed) {
          for (std::size_t d = 0; d < rule.shape.size(); ++d)
            o["shape"].push_back(d < rule.shape_sizes.size() && !rule.shape_sizes[d].empty() ? json(rule.shape_sizes[d])
                                                                                             : json(rule.shape[d]));
          if (rule.value) o["value"] = *rule.value;
          else o["prng_key"] = {{"impl", "threefry2x32"}, {"seed", *rule.prng_seed}};
        }
        if (rule.leaf) o["leaf"] = *rule.leaf;
        if (!rule.copy_of.empty()) o["copy_of"] = rule.copy_of;
        if (!rule.from_checkpoint.empty()) o["from_checkpoint"] = rule.from_checkpoint, o["tensor"] = rule.tensor;
        break;
      case Rule::Kind::EinsumAdd: {
        json e = {{"base", pat_json(rule.inputs[0])}, {"equation", rule.equation}};
        const std::size_t n_ops = rule.inputs.size() - (rule.magnitude_axis >= 0 ? 1 : 0);
        if (rule.term_scales.empty()) {
          e["scale"] = rule.scale;
          for (std::size_t k = 1; k < n_ops; ++k) e["operands"].push_back(pat_json(rule.inputs[k]));
        } else {
          const std::size_t per = (n_ops - 1) / rule.term_scales.size();
          for (std::size_t t = 0; t < rule.term_scales.size(); ++t) {
            json term = {{"operands", json::array()}, {"scale", rule.term_scales[t]}};
            for (std::size_t k = 0; k < per; ++k) term["operands"].push_back(pat_json(rule.inputs[1 + t * per + k]));
            e["terms"].push_back(term);
          }
        }
        if (rule.magnitude_axis >= 0) e["magnitude"] = pat_json(rule.inputs.back()), e["magnitude_axis"] = rule.magnitude_axis;
        o["einsum_add"] = e;
        if (rule.dtype) o["dtype"] = std::string(dtype_name(*rule.dtype));
        to();
        break;
      }
    }
    if (!rule.attrs.empty()) o["attrs"] = rule.attrs;
    if (!rule.when.empty()) o["when"] = rule.when;
    j["rules"].push_back(o);
  }
  return j;
}

namespace {

// A template used as a pattern in the inverse recipe: its placeholders get the kinds they
// had in the forward rule's patterns ("{p}" written after "{p:*}" matched becomes "{p:*}"),
// so an inverted rule matches exactly what the forward rule produced.
std::vector<Pattern> as_patterns(const std::vector<Pattern>& templates, const std::vector<Pattern>& forward) {
  static const std::regex ph(R"(\{([A-Za-z_][A-Za-z0-9_]*)(:[^}]*)?\})");
  std::map<std::string, std::string> kinds;
  for (const auto& p : forward)
    for (std::sregex_iterator it(p.text().begin(), p.text().end(), ph), end; it != end; ++it)
      if ((*it)[2].matched) kinds[(*it)[1].str()] = (*it)[2].str();
  std::vector<Pattern> out;
  for (const auto& t : templates) {
    std::string s;
    std::size_t last = 0;
    for (std::sregex_iterator it(t.text().begin(), t.text().end(), ph), end; it != end; ++it) {
      s += t.text().substr(last, static_cast<std::size_t>(it->position()) - last);
      const std::string name = (*it)[1].str();
      auto k = kinds.find(name);
      s += "{" + name + ((*it)[2].matched ? (*it)[2].str() : (k != kinds.end() ? k->second : "")) + "}";
      last = static_cast<std::size_t>(it->position() + it->length());
    }
    s += t.text().substr(last);
    out.emplace_back(s);
  }
  return out;
}

// The ops that undo `rule.ops`, in reverse order.
std::vector<OpSpec> invert_ops(const Rule& rule) {
  std::vector<OpSpec> out;
  for (auto it = rule.ops.rbegin(); it != rule.ops.rend(); ++it) {
    OpSpec op = *it;
    if (op.kind == OpSpec::Kind::Rearrange) {
      op.rearrange = invert_rearrange(op.rearrange);
    } else if (op.kind == OpSpec::Kind::Cast) {
      if (!op.from) throw MappingError("recipe", rule.describe() + " is not invertible: cast has no 'from' dtype");
      std::swap(op.to, *op.from);
    } else {
      throw MappingError("recipe", rule.describe() + " is not invertible: index/slice discard data");
    }
    out.push_back(op);
  }
  return out;
}

}  // namespace

Recipe invert(const Recipe& r) {
  Recipe inv;
  inv.name = r.name + ".reverse";
  inv.description = "reverse of " + r.name;
  inv.sizes = r.sizes;
  for (auto it = r.stages.rbegin(); it != r.stages.rend(); ++it) inv.stages.push_back(invert(*it));
  auto fail = [](const Rule& rule, const std::string& why) -> Recipe {
    throw MappingError("recipe", rule.describe() + " is not invertible: " + why);
  };
  for (const auto& rule : r.rules) {
    for (const auto& p : rule.inputs)
      if (p.is_regex()) fail(rule, "it matches with a regex");
    Rule out = rule;
    out.attrs.clear();  // writer hints describe the forward target, not the reverse one
    out.inputs.clear();
    out.outputs.clear();
    switch (rule.kind) {
      case Rule::Kind::Map:
        out.inputs = as_patterns(rule.outputs, rule.inputs);
        out.outputs = rule.inputs;
        out.ops = invert_ops(rule);
        break;
      case Rule::Kind::Stack:
      case Rule::Kind::Unstack:
        // unstack-then-ops inverts to inverse-ops-then-stack, and back.
        out.kind = rule.kind == Rule::Kind::Stack ? Rule::Kind::Unstack : Rule::Kind::Stack;
        out.inputs = as_patterns(rule.outputs, rule.inputs);
        out.outputs = rule.inputs;
        out.ops = invert_ops(rule);
        break;
      case Rule::Kind::Concat:
        out.kind = Rule::Kind::Split;
        out.inputs = as_patterns(rule.outputs, rule.inputs);
        out.outputs = rule.inputs;
        break;
      case Rule::Kind::Split:
        out.kind = Rule::Kind::Concat;
        out.inputs = as_patterns(rule.outputs, rule.inputs);
        out.outputs = rule.inputs;
        break;
      case Rule::Kind::Drop: {
        if (rule.reverse.is_null()) fail(rule, "a drop needs a 'reverse' fill to be invertible");
        json f = rule.reverse;
        f["fill"] = rule.inputs[0].text();
        out = parse_rule(f, rule.index, "reverse of " + rule.describe());
        out.when = rule.when;
        break;
      }
      case Rule::Kind::Fill:
        out.kind = Rule::Kind::Drop;
        out.inputs = as_patterns(rule.outputs, rule.inputs);
        out.reason = "filled by " + r.name + " " + rule.describe();
        if (!rule.copy_of.empty()) out.reverse = json{{"copy_of", rule.copy_of}};
        break;
      case Rule::Kind::EinsumAdd:
        fail(rule, "a merged delta cannot be separated from its base");
    }
    out.index = rule.index;
    inv.rules.push_back(std::move(out));
  }
  return inv;
}

}  // namespace ckb
