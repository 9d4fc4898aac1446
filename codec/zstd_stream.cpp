// libzstd streaming compression with worker threads, for codec/zstd_stream.h.
#include "codec/zstd_stream.h"

#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>

#include "core/tensor.h"

namespace ckb {
namespace {

std::atomic<unsigned> g_active{0};  // encoders alive in this process

[[noreturn]] void fail(std::size_t r) {
  throw std::runtime_error(std::string("zstd compression failed: ") + ZSTD_getErrorName(r));
}

void check(std::size_t r) {
  if (ZSTD_isError(r)) fail(r);
}

}  // namespace

struct ZstdStreamEncoder::Impl {
  ZSTD_CCtx* cctx = nullptr;
  Output out;
  Bytes buf;  // page-aligned (a large Bytes is a mapping), as direct writes of it want
  std::size_t used = 0;
  bool done = false;
  ~Impl() {
    if (cctx) ZSTD_freeCCtx(cctx);
    --g_active;
  }
  void flush() {
    if (used) out(std::span<const std::byte>(buf.data(), used));
    used = 0;
  }
};

ZstdStreamEncoder::ZstdStreamEncoder(int level, std::uint64_t content_size, Output out, std::size_t out_piece)
    : impl_(std::make_unique<Impl>()), content_size_(content_size) {
  const unsigned active = ++g_active;
  impl_->out = std::move(out);
  impl_->buf = Bytes(std::max<std::size_t>(out_piece, ZSTD_CStreamOutSize()));
  impl_->cctx = ZSTD_createCCtx();
  if (!impl_->cctx) throw std::bad_alloc();
  ZSTD_CCtx* c = impl_->cctx;
  check(ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level));
  check(ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1));
  check(ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 0));
  const ZSTD_bounds b = ZSTD_cParam_getBounds(ZSTD_c_nbWorkers);
  if (!ZSTD_isError(b.error) && b.upperBound >= 1) {
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    const int workers = static_cast<int>(std::max(1u, cores / std::max(1u, active)));
    check(ZSTD_CCtx_setParameter(c, ZSTD_c_nbWorkers, std::min(workers, b.upperBound)));
  }
  check(ZSTD_CCtx_setPledgedSrcSize(c, content_size));
}

ZstdStreamEncoder::~ZstdStreamEncoder() = default;

void ZstdStreamEncoder::run(std::span<const std::byte> in, bool end) {
  Impl& m = *impl_;
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  for (;;) {
    ZSTD_outBuffer ob{m.buf.data(), m.buf.size(), m.used};
    const std::size_t left = ZSTD_compressStream2(m.cctx, &ob, &ib, end ? ZSTD_e_end : ZSTD_e_continue);
    check(left);
    m.used = ob.pos;
    if (m.used == m.buf.size()) m.flush();
    if (end ? left == 0 : ib.pos == ib.size) break;
  }
}

void ZstdStreamEncoder::append(std::span<const std::byte> in) {
  if (impl_->done) throw std::logic_error("zstd stream: append() after finish()");
  if (in.size() > content_size_ - consumed_)
    throw std::logic_error("zstd stream: more input than the " + std::to_string(content_size_) + " bytes announced");
  // The first call must not be ZSTD_e_end (libzstd would then compress single-threaded, which
  // writes a different frame), so even an empty frame goes through one ZSTD_e_continue call.
  run(in, false);
  consumed_ += in.size();
}

void ZstdStreamEncoder::finish() {
  if (impl_->done) throw std::logic_error("zstd stream: finish() called twice");
  if (consumed_ != content_size_)
    throw std::logic_error("zstd stream: " + std::to_string(consumed_) + " of " + std::to_string(content_size_) +
                           " announced bytes came in");
  if (consumed_ == 0) run({}, false);
  run({}, true);
  impl_->flush();
  impl_->done = true;
}

}  // namespace ckb
