// libzstd streaming decode with a hard output limit, for codec/zstd_decode.h.
#include "codec/zstd_decode.h"

#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "core/errors.h"

namespace ckb {
namespace {
struct DctxFree {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

// The frame header's content size (ZSTD_CONTENTSIZE_UNKNOWN when absent), checked against
// the limit before anything is decoded.
template <class Fail>
unsigned long long checked_content_size(std::span<const std::byte> in, std::uint64_t limit, bool exact, Fail fail) {
  if (in.size() < 4) throw fail("zstd frame truncated (" + std::to_string(in.size()) + " bytes)");
  const unsigned long long declared = ZSTD_getFrameContentSize(in.data(), in.size());
  if (declared == ZSTD_CONTENTSIZE_ERROR) throw fail("not a valid zstd frame");
  if (declared != ZSTD_CONTENTSIZE_UNKNOWN) {
    if (declared > limit)
      throw fail("zstd frame declares " + std::to_string(declared) + " decoded bytes, more than the " +
                 std::to_string(limit) + " expected");
    if (exact && declared != limit)
      throw fail("zstd frame declares " + std::to_string(declared) + " decoded bytes, expected " +
                 std::to_string(limit));
  }
  return declared;
}

std::unique_ptr<ZSTD_DCtx, DctxFree> new_dctx() {
  std::unique_ptr<ZSTD_DCtx, DctxFree> dctx(ZSTD_createDCtx());
  if (!dctx) throw std::bad_alloc();
  return dctx;
}
}  // namespace

Bytes zstd_decode(std::span<const std::byte> in, std::uint64_t limit, bool exact, const std::string& path,
                  std::uint64_t offset, const std::string& what) {
  auto fail = [&](const std::string& msg) -> FormatError { return FormatError(path, what + ": " + msg, offset); };
  const unsigned long long declared = checked_content_size(in, limit, exact, fail);
  if (declared != ZSTD_CONTENTSIZE_UNKNOWN) {  // decoded straight into a buffer of the declared size
    Bytes out(static_cast<std::size_t>(declared));
    ZstdStream stream(in, declared, path, offset, what);
    stream.read(out.span());
    stream.finish();
    return out;
  }
  auto dctx = new_dctx();
  // Output grows in steps; never more than limit (+1 byte to detect overrun).
  const std::uint64_t cap = limit + 1;
  Bytes out(static_cast<std::size_t>(std::min<std::uint64_t>(cap, 1u << 20)));
  std::size_t produced = 0;
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  std::size_t ret = 1;
  while (true) {
    if (produced == out.size()) {
      if (out.size() >= cap)
        throw fail("zstd data decodes to more than the " + std::to_string(limit) + " bytes expected");
      std::uint64_t next = std::min<std::uint64_t>(cap, std::max<std::uint64_t>(out.size() * 2, 1u << 16));
      Bytes bigger(static_cast<std::size_t>(next));
      if (produced) std::memcpy(bigger.data(), out.data(), produced);
      out = std::move(bigger);
    }
    ZSTD_outBuffer ob{out.data() + produced, out.size() - produced, 0};
    ret = ZSTD_decompressStream(dctx.get(), &ob, &ib);
    if (ZSTD_isError(ret)) throw fail(std::string("corrupt zstd data: ") + ZSTD_getErrorName(ret));
    produced += ob.pos;
    if (produced > limit)
      throw fail("zstd data decodes to more than the " + std::to_string(limit) + " bytes expected");
    if (ret == 0) break;  // frame complete
    if (ib.pos == ib.size && ob.pos < ob.size) throw fail("zstd frame truncated");
  }
  if (ib.pos != ib.size)
    throw fail(std::to_string(ib.size - ib.pos) + " trailing bytes after the zstd frame");
  if (exact && produced != limit)
    throw fail("zstd data decoded to " + std::to_string(produced) + " bytes, expected " + std::to_string(limit));
  if (produced == out.size()) return out;
  Bytes exact_out(produced);
  if (produced) std::memcpy(exact_out.data(), out.data(), produced);
  return exact_out;
}

struct ZstdStream::State {
  std::unique_ptr<ZSTD_DCtx, DctxFree> dctx;
  ZSTD_inBuffer in{};         // the current piece of the frame
  std::uint64_t base = 0;     // its offset in the frame
  std::uint64_t in_size = 0;  // the frame's size
  Input input;                // null: the whole frame is `in`
  std::size_t ret = 1;        // 0 once the frame is complete
};

ZstdStream::ZstdStream(std::span<const std::byte> in, std::uint64_t total, std::string path, std::uint64_t offset,
                       std::string what)
    : s_(std::make_unique<State>()), total_(total), path_(std::move(path)), offset_(offset), what_(std::move(what)) {
  checked_content_size(in, total, true, [&](const std::string& m) { return fail(m); });
  s_->dctx = new_dctx();
  s_->in = {in.data(), in.size(), 0};
  s_->in_size = in.size();
}

ZstdStream::ZstdStream(std::uint64_t in_size, Input input, std::uint64_t total, std::string path,
                       std::uint64_t offset, std::string what)
    : s_(std::make_unique<State>()), total_(total), path_(std::move(path)), offset_(offset), what_(std::move(what)) {
  s_->in_size = in_size;
  std::span<const std::byte> first;
  if (in_size > 0) {
    first = input(0);
    if (first.empty() || first.size() > in_size) throw fail("input piece out of range");
  }
  checked_content_size(first, total, true, [&](const std::string& m) { return fail(m); });
  s_->dctx = new_dctx();
  s_->in = {first.data(), first.size(), 0};
  s_->input = std::move(input);
}

ZstdStream::~ZstdStream() = default;

// The offset named is where decoding stopped: the frame's start plus the input consumed
// without error (libzstd does not advance past a block it refuses).
FormatError ZstdStream::fail(const std::string& msg) const {
  return FormatError(path_, what_ + ": " + msg, offset_ + consumed());
}

std::uint64_t ZstdStream::consumed() const { return s_->base + s_->in.pos; }

bool ZstdStream::more_input() {
  const std::uint64_t next = s_->base + s_->in.size;
  if (!s_->input || s_->in.pos < s_->in.size || next >= s_->in_size) return false;
  auto piece = s_->input(next);
  if (piece.empty() || piece.size() > s_->in_size - next) throw fail("input piece out of range");
  s_->base = next;
  s_->in = {piece.data(), piece.size(), 0};
  return true;
}

void ZstdStream::read(std::span<std::byte> out) {
  if (out.size() > total_ - produced_) throw fail("read past the " + std::to_string(total_) + " decoded bytes");
  ZSTD_outBuffer ob{out.data(), out.size(), 0};
  while (ob.pos < ob.size) {
    if (s_->ret == 0)
      throw fail("zstd frame ends after " + std::to_string(produced_ + ob.pos) + " decoded bytes, expected " +
                 std::to_string(total_));
    if (s_->in.pos == s_->in.size) more_input();
    const std::size_t before = s_->in.pos, had = ob.pos;
    s_->ret = ZSTD_decompressStream(s_->dctx.get(), &ob, &s_->in);
    if (ZSTD_isError(s_->ret)) throw fail(std::string("corrupt zstd data: ") + ZSTD_getErrorName(s_->ret));
    if (s_->ret != 0 && s_->in.pos == s_->in.size && s_->in.pos == before && ob.pos == had && !more_input())
      throw fail("zstd frame truncated");
  }
  produced_ += out.size();
}

void ZstdStream::finish() {
  if (produced_ != total_)
    throw fail("zstd stream finished after " + std::to_string(produced_) + " of " + std::to_string(total_) + " bytes");
  // The frame may still hold its last (empty) block or checksum: decoding on must end it
  // without producing anything.
  std::byte extra[1];
  while (s_->ret != 0) {
    if (s_->in.pos == s_->in.size) more_input();
    ZSTD_outBuffer ob{extra, sizeof extra, 0};
    const std::size_t before = s_->in.pos;
    s_->ret = ZSTD_decompressStream(s_->dctx.get(), &ob, &s_->in);
    if (ZSTD_isError(s_->ret)) throw fail(std::string("corrupt zstd data: ") + ZSTD_getErrorName(s_->ret));
    if (ob.pos) throw fail("zstd data decodes to more than the " + std::to_string(total_) + " bytes expected");
    if (s_->ret != 0 && s_->in.pos == s_->in.size && s_->in.pos == before && !more_input())
      throw fail("zstd frame truncated");
  }
  if (consumed() != s_->in_size)
    throw fail(std::to_string(s_->in_size - consumed()) + " trailing bytes after the zstd frame");
}

}  // namespace ckb
