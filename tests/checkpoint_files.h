// Test helpers over checkpoint files on disk: a content hash of a file or a directory tree,
// and a safetensors file of pseudo-random F32 tensors of a chosen size.
#pragma once

#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <string>

#include "core/hash.h"
#include "test_util.h"

namespace ckb::test {

inline std::string sha256_of_string(const std::string& s) {
  return sha256_hex(std::span(reinterpret_cast<const std::byte*>(s.data()), s.size()));
}

// A content hash of a file, or of a directory tree (relative names + contents), or "" if absent.
inline std::string tree_hash(const std::string& p) {
  namespace fs = std::filesystem;
  if (!fs::exists(p)) return "";
  if (!fs::is_directory(p)) return sha256_of_string(read_file(p));
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(p))
    if (e.path().filename() != "_CHECKPOINT_METADATA")  // holds the write time
      files[fs::relative(e.path(), p).string()] = e.is_regular_file() ? sha256_of_string(read_file(e.path().string())) : "d";
  std::string all;
  for (const auto& [k, v] : files) all += k + "\n" + v + "\n";
  return sha256_of_string(all);
}

// A safetensors file with `n` F32 tensors ("layers.<i>.w") of `each` bytes of pseudo-random
// data in [-1, 1) (incompressible, so compressing writers still write every byte).
inline void make_safetensors(const std::string& path, int n, std::size_t each, std::uint32_t seed) {
  std::string header = "{";
  for (int i = 0; i < n; ++i) {
    if (i) header += ",";
    header += "\"layers." + std::to_string(i) + ".w\":{\"dtype\":\"F32\",\"shape\":[" + std::to_string(each / 4) +
              "],\"data_offsets\":[" + std::to_string(i * each) + "," + std::to_string((i + 1) * each) + "]}";
  }
  header += "}";
  while (header.size() % 8) header += ' ';
  std::string out(8 + header.size() + n * each, '\0');
  std::uint64_t hl = header.size();
  std::memcpy(out.data(), &hl, 8);
  std::memcpy(out.data() + 8, header.data(), header.size());
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  float* f = reinterpret_cast<float*>(out.data() + 8 + header.size());  // 8-aligned offset
  for (std::size_t i = 0; i < n * each / 4; ++i) f[i] = dist(rng);
  write_file(path, out);
}

}  // namespace ckb::test
