// Recipes: declarative mapping files (JSON) that turn a source tree into a target tree.
// The schema is documented in docs/recipes.md; built-in recipes use the same language.
//
// Rules are tried in order; the first rule whose pattern matches a source claims it.
//   map         one source -> one target, through ops (rearrange, cast, index, slice)
//   drop        sources dropped on purpose, with a reason (reported)
//   stack       sources that differ only in an integer capture -> one tensor (scanned layers)
//   unstack     one tensor -> one target per index along an axis
//   concat      several patterns sharing captures -> one tensor along an axis (q,k,v -> qkv)
//   split       one tensor -> several targets, equal parts along an axis
//   fill        a target made from nothing: a constant, a copy of a source, a tensor of
//               another checkpoint, a non-tensor leaf (None, a scalar, an empty container)
//               or JAX PRNG key data
//   einsum_add  target = base + scale * einsum(operands) (LoRA-style deltas)
// Any rule may be conditional (`when`): it takes part only when a size is set (or not), so
// one recipe holds alternative layouts of the same tensors and the sizes pick one, in both
// directions (openpi's fused qkv_einsum vs q_einsum + kv_einsum, per expert).
// invert() derives the reverse recipe where every rule is invertible.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"
#include "recipe/pattern.h"

namespace ckb {

struct OpSpec {
  enum class Kind { Rearrange, Cast, Index, Slice } kind;
  std::string rearrange;                         // Rearrange
  DType to = DType::F32;                         // Cast
  std::optional<DType> from;                     // Cast: needed to invert
  int axis = 0;                                  // Index / Slice
  std::int64_t start = 0, stop = 0;              // Index (start) / Slice
};

struct Rule {
  enum class Kind { Map, Drop, Stack, Unstack, Concat, Split, Fill, EinsumAdd } kind = Kind::Map;
  int index = 0;                   // position in the recipe (for the ledger)
  std::vector<Pattern> inputs;     // sources: 1, or n for concat, base + operands for einsum_add
  std::vector<Pattern> outputs;    // targets: 1, or n for split
  std::vector<OpSpec> ops;         // map
  int axis = 0;                    // stack / unstack / concat / split
  std::string over;                // stack / unstack: the integer capture
  std::string reason;              // drop
  nlohmann::json reverse;          // drop: the fill rule the inverse recipe uses
  // fill
  std::optional<DType> dtype;
  Shape shape;
  std::vector<std::string> shape_sizes;  // fill: per dim, a size name resolved from `sizes` ("" = literal)
  std::optional<double> value;
  std::string copy_of, from_checkpoint, tensor;
  std::optional<nlohmann::json> leaf;        // fill: null, a number, bool, string, {} or []
  std::optional<std::uint64_t> prng_seed;    // fill: threefry2x32 key data (ops/prng.h)
  // Any rule: attributes given to every leaf it emits (writer hints such as
  // "orbax.value_type": "scalar"), replacing those of the source leaf.
  std::map<std::string, std::string> attrs;
  // Any rule: "NAME" = the rule takes part only when the size NAME is given and non-zero;
  // "!NAME" = only when it is not; "" = always. Kept by invert().
  std::string when;
  // einsum_add
  std::string equation;
  double scale = 1.0;
  // einsum_add of several terms (LoRA adapters merged together): the operands form equal
  // groups, one per entry, and the output is base + sum_k term_scales[k] * einsum(equation,
  // group k), summed in float64 and rounded once; empty: one term scaled by `scale`
  std::vector<double> term_scales;
  // einsum_add with a DoRA magnitude (the last input): the sum is rescaled so that its norm
  // over every axis but magnitude_axis equals the magnitude; -1 = none
  int magnitude_axis = -1;
  std::string describe() const;   // "rule 3 (map 'a' -> 'b')"
};

// A recipe is a list of rules, or a list of stages: each stage is a recipe applied to the
// previous stage's target tree (e.g. split fused tensors, then unstack and rename), with its
// own ledger. Inverting a staged recipe inverts every stage and reverses their order.
struct Recipe {
  std::string name, description;
  std::map<std::string, std::int64_t> sizes;
  std::vector<Rule> rules;
  std::vector<Recipe> stages;
};

Recipe parse_recipe(const nlohmann::json& j, const std::string& origin);
// A file path, or the name of a built-in recipe ("identity").
Recipe load_recipe(const std::string& path_or_name);
// The reverse recipe; MappingError naming the first rule that cannot be inverted.
Recipe invert(const Recipe& r);
nlohmann::json recipe_to_json(const Recipe& r);

}  // namespace ckb
