// Recipes compiled into the binary, written in the same JSON language as user recipes.
#pragma once

#include <optional>
#include <string>

namespace ckb {

std::optional<std::string> builtin_recipe(const std::string& name);
std::string builtin_recipe_names();  // "identity, ..."

}  // namespace ckb
