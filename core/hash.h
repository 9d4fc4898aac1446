// SHA-256 (OpenSSL) of tensor bytes, streamed so huge tensors are hashed in bounded memory.
// The definition matches the fixtures' manifest.json: sha256 over the tensor's C-order
// little-endian bytes.
#pragma once

#include <memory>
#include <span>
#include <string>

#include "core/tensor.h"

namespace ckb {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  void update(std::span<const std::byte> data);
  std::string hex();  // finalises

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

std::string sha256_hex(std::span<const std::byte> data);
// Hashes a tensor by reading it in chunks (zero-copy when the source is contiguous).
std::string tensor_sha256(const Tensor& t);

}  // namespace ckb
