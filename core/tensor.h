// Tensors as the engine sees them: metadata (dtype, shape) plus a lazy source of bytes.
//
// Contract: a TensorSource yields the tensor's bytes in C (row-major) order, little-endian,
// exactly nbytes() bytes (numel * bits / 8); nothing is read until read() is called. Sources are
// immutable and safe to read from several threads at once. Formats provide their own
// sources (an mmap'd range, a strided view of a torch storage, a zarr chunk set, ...).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace ckb {

using Shape = std::vector<std::int64_t>;

std::string shape_str(const Shape& s);  // "[3, 4]"

// numel of a shape; throws FormatError(path) on negative dims or uint64 overflow.
std::uint64_t checked_numel(const Shape& s, const std::string& path);

struct TensorInfo {
  DType dtype = DType::F32;
  Shape shape;
  std::uint64_t numel() const;   // shape must already be validated
  std::uint64_t nbytes() const;  // numel * bits / 8 (dtype_storage_bytes)
  bool operator==(const TensorInfo&) const = default;
};

// Frees a Bytes buffer: large buffers are anonymous mappings advised to use transparent
// huge pages (512x fewer page faults on first touch for the decoded chunks and transform
// blocks that dominate conversions); small ones come from operator new[]. Freed mappings of up
// to 256 MiB in all are kept and reused for a next buffer of the same mapped length (no page
// faults or kernel zeroing for the same-sized per-layer buffers of a stacked tensor).
struct BytesDeleter {
  std::size_t mapped = 0;  // mapping length, 0 for operator new[]
  void operator()(std::byte* p) const;
};

// An owned, uninitialised byte buffer (no zero-fill cost for large tensors).
class Bytes {
 public:
  Bytes() = default;
  explicit Bytes(std::size_t n);
  std::byte* data() { return data_.get(); }
  const std::byte* data() const { return data_.get(); }
  std::size_t size() const { return size_; }
  std::span<std::byte> span() { return {data_.get(), size_}; }
  std::span<const std::byte> span() const { return {data_.get(), size_}; }

 private:
  std::unique_ptr<std::byte[], BytesDeleter> data_;
  std::size_t size_ = 0;
};

class TensorSource {
 public:
  virtual ~TensorSource() = default;
  // Copies bytes [offset, offset + out.size()) of the C-order little-endian serialisation.
  // Throws FormatError/IoError naming the file on bad or missing data.
  virtual void read(std::uint64_t offset, std::span<std::byte> out) const = 0;
  // Zero-copy pointer to all bytes when they lie contiguously in memory (mmap), else null.
  virtual const std::byte* contiguous() const { return nullptr; }
  // Where the bytes live, for messages ("model.pt:data/3 +128").
  virtual std::string describe() const = 0;
  // Bytes this source must hold in memory while it is being read (a computed result, a
  // materialised input); 0 for sources that stream. Used to bound memory.
  virtual std::uint64_t resident_bytes() const { return 0; }
  // What resident_bytes() becomes when the tensor is read once, front to back, by one reader
  // (as the executor reads a tensor it does not split): a source that decodes a stream into
  // the reader's buffers holds nothing then.
  virtual std::uint64_t sequential_resident_bytes() const { return resident_bytes(); }
  // True when reads of disjoint ranges from several threads at once are efficient (each
  // computes only its range). The executor then splits a large tensor across workers.
  virtual bool parallel_reads() const { return false; }
  // A hint that bytes [offset, offset + len) will be read soon: a source over a mapped file
  // asks the kernel to start reading them from disk in the background, so the reads that
  // follow overlap with the writes before them. Never blocks; the default does nothing.
  virtual void prefetch(std::uint64_t offset, std::uint64_t len) const {
    (void)offset;
    (void)len;
  }
  // Drops cached/computed data once the consumer has read everything it needs. A later
  // read recomputes. Must be safe to call when nothing is cached.
  virtual void release() const {}
  // The consumer is done with bytes [offset, offset + len) and reads them front to back: a
  // source may drop what it holds of them (a mapped file its pages), as release() does for
  // all. Only a hint; a later read still works. Must be safe to call for any range.
  virtual void release_range(std::uint64_t /*offset*/, std::uint64_t /*len*/) const {}
  // Where byte `offset` of this tensor is read from, when its bytes come through one stored
  // source that is best read front to back (a zarr array: a stacked [layers, ...] weight
  // whose per-layer tensors are unstacked views of it): that source and the byte offset
  // in it. {nullptr, 0} when there is none (the default; mmap'd and in-memory bytes read at
  // any offset for the same cost). Views (slices, casts, permutes, LoRA merges onto a base)
  // pass their input's origin on. The executor runs the tensors sharing an origin one after
  // another in origin order, so the stored array is decoded once, as a stream, for all of them.
  struct StreamOrigin {
    const TensorSource* source = nullptr;
    std::uint64_t offset = 0;
  };
  virtual StreamOrigin stream_origin(std::uint64_t offset) const {
    (void)offset;
    return {};
  }
  // Chunked formats (zarr): how many distinct stored chunks were absent and read as the fill
  // value by the reads so far (reported, never silent); 0 for everything else.
  virtual std::uint64_t missing_chunks() const { return 0; }
};

using SourcePtr = std::shared_ptr<const TensorSource>;

struct Tensor {
  TensorInfo info;
  SourcePtr source;
  // Reads all bytes into a new buffer.
  Bytes read_all() const;
};

// Bytes held in memory (already decoded, or produced by a transform).
class MemorySource final : public TensorSource {
 public:
  MemorySource(std::shared_ptr<const Bytes> bytes, std::string what)
      : bytes_(std::move(bytes)), what_(std::move(what)) {}
  void read(std::uint64_t offset, std::span<std::byte> out) const override;
  const std::byte* contiguous() const override { return bytes_->data(); }
  std::string describe() const override { return what_; }

 private:
  std::shared_ptr<const Bytes> bytes_;
  std::string what_;
};

Tensor make_memory_tensor(TensorInfo info, Bytes bytes, std::string what = "memory");

// A strided view over the bytes of another source (a storage): element (i0..ik) is at
// element offset `offset + sum(i_d * stride_d)` of the base. Strides and offset are in
// elements, as torch stores them. The view must lie inside the base (checked at creation).
class StridedSource final : public TensorSource {
 public:
  StridedSource(SourcePtr base, std::uint64_t base_nbytes, DType dtype, Shape shape,
                std::vector<std::int64_t> strides, std::uint64_t offset, std::string what);
  void read(std::uint64_t offset, std::span<std::byte> out) const override;
  const std::byte* contiguous() const override;
  std::string describe() const override { return what_; }
  std::uint64_t resident_bytes() const override { return base_->resident_bytes(); }
  void release() const override { base_->release(); }
  void release_range(std::uint64_t offset, std::uint64_t len) const override {
    if (is_contiguous()) base_->release_range(offset_ * elem_ + offset, len);
  }

 private:
  bool is_contiguous() const;
  SourcePtr base_;
  std::size_t elem_;
  Shape shape_;
  std::vector<std::int64_t> strides_;
  std::uint64_t offset_;
  std::string what_;
};

}  // namespace ckb
