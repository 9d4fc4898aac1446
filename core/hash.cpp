// OpenSSL EVP implementation of core/hash.h.
#include "core/hash.h"

#include <openssl/evp.h>

#include <algorithm>
#include <stdexcept>

namespace ckb {

struct Sha256::Impl {
  EVP_MD_CTX* ctx = nullptr;
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
  impl_->ctx = EVP_MD_CTX_new();
  if (!impl_->ctx || EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("OpenSSL sha256 init failed");
}
Sha256::~Sha256() { EVP_MD_CTX_free(impl_->ctx); }

void Sha256::update(std::span<const std::byte> data) {
  if (!data.empty()) EVP_DigestUpdate(impl_->ctx, data.data(), data.size());
}

std::string Sha256::hex() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(impl_->ctx, md, &n);
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < n; ++i) {
    out += digits[md[i] >> 4];
    out += digits[md[i] & 15];
  }
  return out;
}

std::string sha256_hex(std::span<const std::byte> data) {
  Sha256 h;
  h.update(data);
  return h.hex();
}

std::string tensor_sha256(const Tensor& t) {
  Sha256 h;
  const std::uint64_t n = t.info.nbytes();
  if (const std::byte* p = t.source->contiguous()) {
    h.update({p, static_cast<std::size_t>(n)});
    return h.hex();
  }
  constexpr std::uint64_t kChunk = 16u << 20;
  Bytes buf(static_cast<std::size_t>(std::min<std::uint64_t>(n, kChunk)));
  for (std::uint64_t off = 0; off < n; off += kChunk) {
    std::size_t len = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, n - off));
    t.source->read(off, {buf.data(), len});
    h.update({buf.data(), len});
  }
  return h.hex();
}

}  // namespace ckb
