// The built-in recipes' JSON text.
#include "transform/builtin_recipes.h"

#include <map>

namespace ckb {
namespace {
const std::map<std::string, std::string>& table() {
  static const std::map<std::string, std::string> t = {
      {"identity", R"({"recipe": "identity",
        "description": "every leaf to the same name, unchanged",
        "rules": [{"map": "{path:*}", "to": "{path}"}]})"},
  };
  return t;
}
}  // namespace

std::optional<std::string> builtin_recipe(const std::string& name) {
  auto it = table().find(name);
  if (it == table().end()) return std::nullopt;
  return it->second;
}

std::string builtin_recipe_names() {
  std::string s;
  for (const auto& [k, v] : table()) s += (s.empty() ? "" : ", ") + k;
  return s;
}

}  // namespace ckb
