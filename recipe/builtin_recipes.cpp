// The built-in recipes: the JSON files of recipe/builtin/, compiled in (recipe/builtin_data.h).
// Adding one is adding a file there; the recipe's name is the file name.
#include "recipe/builtin_recipes.h"

#include "recipe/builtin_data.h"

namespace ckb {

std::optional<std::string> builtin_recipe(const std::string& name) {
  for (std::size_t i = 0; i < kEmbeddedRecipeCount; ++i)
    if (kEmbeddedRecipes[i].name == name) return std::string(kEmbeddedRecipes[i].text);
  return std::nullopt;
}

std::string builtin_recipe_names() {
  std::string s;
  for (std::size_t i = 0; i < kEmbeddedRecipeCount; ++i) s += (s.empty() ? "" : ", ") + std::string(kEmbeddedRecipes[i].name);
  return s;
}

}  // namespace ckb
