# Writes a C++ source holding every *.json file of a folder as bytes, so that data files
# (the built-in recipes) are compiled into the library without a code generator.
#   cmake -DIN_DIR=<folder> -DOUT=<file.cpp> -P embed_files.cmake
# The source defines ckb::kEmbeddedRecipes / kEmbeddedRecipeCount (recipe/builtin_data.h):
# one entry per file, named by the file name without ".json", in file-name order.
file(GLOB files RELATIVE "${IN_DIR}" "${IN_DIR}/*.json")
list(SORT files)
set(body "// Generated from ${IN_DIR} by cmake/embed_files.cmake. Do not edit.\n")
string(APPEND body "#include \"recipe/builtin_data.h\"\n\nnamespace ckb {\nnamespace {\n")
set(entries "")
set(i 0)
foreach(f IN LISTS files)
  file(READ "${IN_DIR}/${f}" hex HEX)
  string(LENGTH "${hex}" hex_len)
  math(EXPR size "${hex_len} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  # One line per 32 bytes keeps the generated file readable by tools.
  string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){32})" "\\1\n" bytes "${bytes}")
  string(REGEX REPLACE "\\.json$" "" name "${f}")
  string(APPEND body "// ${f}\nconst unsigned char k${i}[] = {\n${bytes}0x00};\n")
  string(APPEND entries "    {\"${name}\", {reinterpret_cast<const char*>(k${i}), ${size}}},\n")
  math(EXPR i "${i} + 1")
endforeach()
string(APPEND body "}  // namespace\n\nconst EmbeddedFile kEmbeddedRecipes[] = {\n${entries}};\n")
string(APPEND body "const std::size_t kEmbeddedRecipeCount = ${i};\n\n}  // namespace ckb\n")
file(WRITE "${OUT}" "${body}")
