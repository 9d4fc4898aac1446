// libzstd one-shot compression with a thread-local context, for codec/zstd_encode.h.
#include "codec/zstd_encode.h"

#include <zstd.h>

#include <memory>
#include <stdexcept>

namespace ckb {
namespace {

struct CctxFree {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};

ZSTD_CCtx* thread_cctx() {
  thread_local std::unique_ptr<ZSTD_CCtx, CctxFree> ctx(ZSTD_createCCtx());
  if (!ctx) throw std::bad_alloc();
  return ctx.get();
}

std::size_t compress_into(void* dst, std::size_t cap, const void* src, std::size_t n, int level) {
  ZSTD_CCtx* c = thread_cctx();
  ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
  ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1);
  ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 0);
  const std::size_t r = ZSTD_compress2(c, dst, cap, src, n);
  if (ZSTD_isError(r)) throw std::runtime_error(std::string("zstd compression failed: ") + ZSTD_getErrorName(r));
  return r;
}

}  // namespace

std::size_t zstd_bound(std::size_t n) { return ZSTD_compressBound(n); }

std::size_t zstd_encode_into(std::span<const std::byte> in, std::span<std::byte> out, int level) {
  return compress_into(out.data(), out.size(), in.data(), in.size(), level);
}

std::string zstd_encode_string(std::string_view in, int level) {
  std::string out(ZSTD_compressBound(in.size()), '\0');
  out.resize(compress_into(out.data(), out.size(), in.data(), in.size(), level));
  return out;
}

}  // namespace ckb
