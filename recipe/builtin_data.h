// The built-in recipes' JSON files (recipe/builtin/*.json), embedded at build time: the
// build runs cmake/embed_files.cmake, which writes a source defining these arrays.
#pragma once

#include <cstddef>
#include <string_view>

namespace ckb {

struct EmbeddedFile {
  std::string_view name;  // file name without ".json"
  std::string_view text;  // the file's bytes
};

extern const EmbeddedFile kEmbeddedRecipes[];
extern const std::size_t kEmbeddedRecipeCount;

}  // namespace ckb
