// Recipe files (recipe/recipe.*): JSON, rules of every kind, ops, patterns, stages, and
// the automatic inversion (which must either succeed or refuse with an error).
#include "fuzz/fuzz_common.h"
#include "recipe/recipe.h"

CKB_FUZZ_TARGET(recipe) {
  auto r = ckb::load_recipe(ckb::fuzz::as_file(data, size));
  auto inv = ckb::invert(r);
  ckb::recipe_to_json(inv).dump();
}
