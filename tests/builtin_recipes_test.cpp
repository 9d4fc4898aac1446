// recipe/builtin_recipes.h: the built-in recipes are the bytes of recipe/builtin/*.json,
// embedded at build time and named by their files.
#include "recipe/builtin_recipes.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

namespace ckb {
namespace {

std::string source_file(const std::string& rel) {
  std::ifstream f(std::string(CKB_SOURCE_DIR) + "/" + rel, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(BuiltinRecipes, AreTheEmbeddedJsonFiles) {
  EXPECT_EQ(builtin_recipe_names(), "identity, openpi");
  for (const char* name : {"identity", "openpi"}) {
    const std::string file = source_file(std::string("recipe/builtin/") + name + ".json");
    ASSERT_GT(file.size(), 100u) << name;
    EXPECT_EQ(builtin_recipe(name), file) << name;
  }
  EXPECT_EQ(builtin_recipe("openpi.json"), std::nullopt);
  EXPECT_EQ(builtin_recipe("bogus"), std::nullopt);
}

}  // namespace
}  // namespace ckb
