// Shared helpers for the test suite: fixture paths, manifest comparison, temp dirs,
// running the CLI.
#pragma once

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <string>

#include "core/tree.h"

namespace ckb::test {

// tests/data/fixtures/<rel>
std::string fixture(const std::string& rel);
std::string data_path(const std::string& rel);
nlohmann::json load_json(const std::string& path);

// Checks that `ck`'s tensors equal the manifest's "tensors" exactly: same name set, dtype,
// shape and sha256. Non-fatal failures name the tensor.
void expect_matches_manifest(const Checkpoint& ck, const nlohmann::json& manifest);

// A tensor's C-order little-endian bytes (read whole), for exact comparisons.
std::string bytes_of(const Tensor& t);

// An Orbax item's array_metadatas/process_0 entries, sorted by param name (their order in the
// file is not part of the format), for comparing two items' array metadata.
nlohmann::json sorted_array_metadatas(const std::string& orbax_item);

// A fresh empty directory under the system temp dir, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

struct CliResult {
  int exit_code;
  std::string out;  // stdout
  std::string err;  // stderr
};
// Runs the built ckptbridge binary with `args` (shell-quoted by the caller).
CliResult run_cli(const std::string& args);

// Runs `fn` and returns the FormatError message it throws, "WRONG TYPE: ..." for any other
// exception, or "NO ERROR".
std::string error_of(const std::function<void()>& fn);

// Byte-level helpers for corrupting copies of fixtures.
std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& data);
// `n` as 8 little-endian bytes (safetensors' header length).
std::string le64(std::uint64_t n);
// The bytes {0x.., 0x..} as a string.
std::string byte_string(std::initializer_list<int> bytes);
// A checkpoint's tensors by their joined path.
std::map<std::string, const Tensor*> tensors_by_name(const Checkpoint& ck);
// A safetensors file's JSON header, parsed here (not by the library).
nlohmann::json safetensors_header(const std::string& path);
// Round-to-nearest-even of a double to bfloat16's 8 significant bits, independent of the
// library's casts.
double round_to_bf16(double x);
// tests/data/fixtures/maxtext_linen_nnx/<rel>
std::string maxtext_fixture(const std::string& rel);

}  // namespace ckb::test
