// Shapes, buffers and the generic sources of core/tensor.h.
#include <sys/mman.h>

#include <mutex>
#include <vector>

#include "core/tensor.h"

#include <cstring>
#include <limits>

#include "core/errors.h"

namespace ckb {

std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i) r += ", ";
    r += std::to_string(s[i]);
  }
  return r + "]";
}

std::uint64_t checked_numel(const Shape& s, const std::string& path) {
  std::uint64_t n = 1;
  for (auto d : s) {
    if (d < 0) throw FormatError(path, "negative dimension in shape " + shape_str(s));
    auto u = static_cast<std::uint64_t>(d);
    if (u != 0 && n > std::numeric_limits<std::uint64_t>::max() / u)
      throw FormatError(path, "shape " + shape_str(s) + " overflows 64-bit element count");
    n *= u;
  }
  return n;
}

std::uint64_t TensorInfo::numel() const {
  std::uint64_t n = 1;
  for (auto d : shape) n *= static_cast<std::uint64_t>(d);
  return n;
}
std::uint64_t TensorInfo::nbytes() const { return dtype_storage_bytes(dtype, numel()); }

namespace {
constexpr std::size_t kHugeAlloc = 32u << 20;
constexpr std::size_t kHugePage = 2u << 20;

// Recently freed large mappings, kept for a next buffer of the same length (the per-layer
// buffers of a stacked tensor's layers are all one size): reusing one costs no page faults
// and no kernel zeroing. At most kRecycleCap bytes are kept; the oldest go first.
constexpr std::size_t kRecycleCap = 256u << 20;
struct Recycled {
  std::mutex mu;
  std::vector<std::pair<std::byte*, std::size_t>> kept;  // oldest first
  std::size_t bytes = 0;
};
Recycled& recycled() {
  static Recycled* r = new Recycled;  // never destroyed: buffers may be freed during exit
  return *r;
}
std::byte* take_recycled(std::size_t len) {
  Recycled& r = recycled();
  std::lock_guard lock(r.mu);
  for (std::size_t i = r.kept.size(); i-- > 0;)
    if (r.kept[i].second == len) {
      std::byte* p = r.kept[i].first;
      r.kept.erase(r.kept.begin() + static_cast<std::ptrdiff_t>(i));
      r.bytes -= len;
      return p;
    }
  return nullptr;
}
}  // namespace

void BytesDeleter::operator()(std::byte* p) const {
  if (!mapped) {
    delete[] p;
    return;
  }
  if (mapped <= kRecycleCap) {
    Recycled& r = recycled();
    std::vector<std::pair<std::byte*, std::size_t>> evicted;
    {
      std::lock_guard lock(r.mu);
      r.kept.emplace_back(p, mapped);
      r.bytes += mapped;
      std::size_t drop = 0;
      while (r.bytes > kRecycleCap) {
        r.bytes -= r.kept[drop].second;
        evicted.push_back(r.kept[drop++]);
      }
      r.kept.erase(r.kept.begin(), r.kept.begin() + static_cast<std::ptrdiff_t>(drop));
    }
    for (auto [q, len] : evicted) ::munmap(q, len);
    return;
  }
  ::munmap(p, mapped);
}

Bytes::Bytes(std::size_t n) : size_(n) {
  if (n == 0) return;
  if (n >= kHugeAlloc) {
    const std::size_t len = (n + kHugePage - 1) / kHugePage * kHugePage;
    if (std::byte* q = take_recycled(len)) {
      data_ = std::unique_ptr<std::byte[], BytesDeleter>(q, BytesDeleter{len});
      return;
    }
    void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) {
      ::madvise(p, len, MADV_HUGEPAGE);
      data_ = std::unique_ptr<std::byte[], BytesDeleter>(static_cast<std::byte*>(p), BytesDeleter{len});
      return;
    }
  }
  data_ = std::unique_ptr<std::byte[], BytesDeleter>(new std::byte[n], BytesDeleter{0});
}

Bytes Tensor::read_all() const {
  Bytes b(info.nbytes());
  if (b.size()) source->read(0, b.span());
  return b;
}

void MemorySource::read(std::uint64_t offset, std::span<std::byte> out) const {
  if (offset > bytes_->size() || out.size() > bytes_->size() - offset)
    throw FormatError(what_, "read past the end of an in-memory tensor");
  if (!out.empty()) std::memcpy(out.data(), bytes_->data() + offset, out.size());
}

Tensor make_memory_tensor(TensorInfo info, Bytes bytes, std::string what) {
  auto shared = std::make_shared<const Bytes>(std::move(bytes));
  return Tensor{std::move(info), std::make_shared<MemorySource>(std::move(shared), std::move(what))};
}

StridedSource::StridedSource(SourcePtr base, std::uint64_t base_nbytes, DType dtype, Shape shape,
                             std::vector<std::int64_t> strides, std::uint64_t offset, std::string what)
    : base_(std::move(base)),
      elem_(dtype_size(dtype)),
      shape_(std::move(shape)),
      strides_(std::move(strides)),
      offset_(offset),
      what_(std::move(what)) {
  if (strides_.size() != shape_.size())
    throw FormatError(what_, "stride rank " + std::to_string(strides_.size()) + " != shape rank " +
                                 std::to_string(shape_.size()));
  std::uint64_t numel = checked_numel(shape_, what_);
  std::uint64_t base_elems = base_nbytes / elem_;
  if (numel == 0) return;
  // Highest element index touched, with overflow checks.
  std::uint64_t hi = offset_;
  bool overflow = false;
  for (std::size_t d = 0; d < shape_.size(); ++d) {
    if (strides_[d] < 0) throw FormatError(what_, "negative stride");
    std::uint64_t step = 0;
    overflow |= __builtin_mul_overflow(static_cast<std::uint64_t>(shape_[d] - 1),
                                       static_cast<std::uint64_t>(strides_[d]), &step);
    overflow |= __builtin_add_overflow(hi, step, &hi);
  }
  if (overflow || hi >= base_elems)
    throw FormatError(what_, "view (offset " + std::to_string(offset_) + ", shape " + shape_str(shape_) +
                                 ") reaches past the end of its storage of " + std::to_string(base_elems) +
                                 " elements");
}

bool StridedSource::is_contiguous() const {
  std::int64_t expect = 1;
  for (std::size_t d = shape_.size(); d-- > 0;) {
    if (shape_[d] != 1 && strides_[d] != expect) return false;
    expect *= shape_[d];
  }
  return true;
}

const std::byte* StridedSource::contiguous() const {
  if (!is_contiguous()) return nullptr;
  const std::byte* p = base_->contiguous();
  return p ? p + offset_ * elem_ : nullptr;
}

void StridedSource::read(std::uint64_t offset, std::span<std::byte> out) const {
  if (out.empty()) return;
  if (is_contiguous()) {
    base_->read(offset_ * elem_ + offset, out);
    return;
  }
  // General case: walk elements in C order. Offsets must be element aligned for views.
  if (offset % elem_ || out.size() % elem_)
    throw FormatError(what_, "unaligned read of a strided view");
  const std::size_t rank = shape_.size();
  std::uint64_t first = offset / elem_, count = out.size() / elem_;
  std::vector<std::int64_t> idx(rank, 0);
  std::uint64_t rem = first;
  for (std::size_t d = rank; d-- > 0;) {
    idx[d] = static_cast<std::int64_t>(rem % static_cast<std::uint64_t>(shape_[d]));
    rem /= static_cast<std::uint64_t>(shape_[d]);
  }
  // Read the innermost rows one at a time (each row is strided by strides_[rank-1]).
  const std::byte* base = base_->contiguous();
  std::byte* dst = out.data();
  std::vector<std::byte> tmp(elem_);
  for (std::uint64_t k = 0; k < count; ++k) {
    std::uint64_t e = offset_;
    for (std::size_t d = 0; d < rank; ++d) e += static_cast<std::uint64_t>(idx[d]) * static_cast<std::uint64_t>(strides_[d]);
    if (base) std::memcpy(dst, base + e * elem_, elem_);
    else base_->read(e * elem_, {dst, elem_});
    dst += elem_;
    for (std::size_t d = rank; d-- > 0;) {
      if (++idx[d] < shape_[d]) break;
      idx[d] = 0;
    }
  }
}

}  // namespace ckb
