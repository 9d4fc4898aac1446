// Implementation of ops/ops.h.
#include "ops/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "core/concat_source.h"
#include "core/errors.h"
#include "core/thread_pool.h"
#include "ops/cast.h"
#include "ops/einsum.h"
#include "ops/permute_kernel.h"

namespace ckb::ops {
namespace {

std::uint64_t prod(const Shape& s, std::size_t from, std::size_t to) {
  std::uint64_t p = 1;
  for (std::size_t i = from; i < to; ++i) p *= static_cast<std::uint64_t>(s[i]);
  return p;
}

// Bytes of `base` produced once on first read and kept (for ops that need random access).
class Materialized {
 public:
  explicit Materialized(Tensor t) : t_(std::move(t)) {}
  // Valid until release(); callers hold the owning source's lock.
  const std::byte* get() const {
    if (!ptr_) {
      if (const std::byte* p = t_.source->contiguous()) {
        ptr_ = p;
      } else {
        buf_ = t_.read_all();
        ptr_ = buf_.data();
      }
    }
    return ptr_;
  }
  void release() const {
    buf_ = Bytes();
    ptr_ = nullptr;
  }
  std::uint64_t resident() const { return t_.source->contiguous() ? 0 : t_.info.nbytes(); }
  const Tensor& tensor() const { return t_; }

 private:
  Tensor t_;
  mutable Bytes buf_;
  mutable const std::byte* ptr_ = nullptr;
};

// Computes the whole output once, on first read, then serves ranges.
class ComputedSource : public TensorSource {
 public:
  ComputedSource(std::uint64_t nbytes, std::string what) : nbytes_(nbytes), what_(std::move(what)) {}
  void read(std::uint64_t offset, std::span<std::byte> out) const override {
    std::lock_guard lock(mu_);
    if (!ready_) {
      buf_ = compute();
      release_inputs();
      ready_ = true;
    }
    if (offset > buf_.size() || out.size() > buf_.size() - offset) throw MappingError(what_, "read past end");
    if (!out.empty()) std::memcpy(out.data(), buf_.data() + offset, out.size());
  }
  std::string describe() const override { return what_; }
  std::uint64_t resident_bytes() const override { return nbytes_ + inputs_resident(); }
  void release() const override {
    std::lock_guard lock(mu_);
    buf_ = Bytes();
    ready_ = false;
    release_inputs();
  }

 protected:
  virtual Bytes compute() const = 0;
  virtual void release_inputs() const {}
  virtual std::uint64_t inputs_resident() const { return 0; }
  std::uint64_t nbytes_;
  std::string what_;

 private:
  mutable std::mutex mu_;
  mutable bool ready_ = false;
  mutable Bytes buf_;
};

// A slice along one axis: output block o (of `len` bytes) comes from input offset
// o * in_row + start.
class SliceSource final : public TensorSource {
 public:
  SliceSource(Tensor base, std::uint64_t in_row, std::uint64_t start, std::uint64_t len, std::string what)
      : base_(std::move(base)), in_row_(in_row), start_(start), len_(len), what_(std::move(what)) {}
  void read(std::uint64_t offset, std::span<std::byte> out) const override {
    std::uint64_t pos = offset, end = offset + out.size();
    std::byte* dst = out.data();
    while (pos < end) {
      std::uint64_t o = pos / len_, within = pos % len_;
      std::uint64_t n = std::min(len_ - within, end - pos);
      base_.source->read(o * in_row_ + start_ + within, {dst, static_cast<std::size_t>(n)});
      dst += n;
      pos += n;
    }
  }
  const std::byte* contiguous() const override {
    if (len_ != in_row_ && base_.info.nbytes() / in_row_ > 1) return nullptr;
    const std::byte* p = base_.source->contiguous();
    return p ? p + start_ : nullptr;
  }
  std::string describe() const override { return what_; }
  std::uint64_t resident_bytes() const override { return base_.source->resident_bytes(); }
  void release() const override { base_.source->release(); }
  void prefetch(std::uint64_t offset, std::uint64_t len) const override {
    // The base rows the range touches (with the bytes between slices: one hint, not many).
    if (len_ == 0) return;
    const std::uint64_t first = offset / len_, last = (offset + len + len_ - 1) / len_;
    base_.source->prefetch(first * in_row_ + start_, (last - first) * in_row_);
  }
  StreamOrigin stream_origin(std::uint64_t offset) const override {
    return base_.source->stream_origin(offset / len_ * in_row_ + start_ + offset % len_);
  }

 private:
  Tensor base_;
  std::uint64_t in_row_, start_, len_;
  std::string what_;
};

// Serves ranges of the permuted tensor straight from its materialised input
// (ops/permute_kernel.h): the output is never held whole, and disjoint ranges are computed by
// several readers at once.
class PermuteSource final : public TensorSource {
 public:
  PermuteSource(Tensor base, std::vector<int> perm, std::string what)
      : in_(std::move(base)), perm_(std::move(perm)), what_(std::move(what)) {}
  void read(std::uint64_t offset, std::span<std::byte> out) const override {
    const TensorInfo& info = in_.tensor().info;
    const std::size_t elem = dtype_size(info.dtype);
    if (offset > info.nbytes() || out.size() > info.nbytes() - offset) throw MappingError(what_, "read past end");
    if (out.empty()) return;
    const std::byte* src;
    {
      std::lock_guard lock(mu_);
      src = in_.get();
    }
    const std::uint64_t e0 = offset / elem, e1 = (offset + out.size() + elem - 1) / elem;
    if (offset % elem || out.size() % elem) {  // unaligned: the covering elements, then the bytes asked for
      Bytes whole(static_cast<std::size_t>((e1 - e0) * elem));
      permute_range(src, info.shape, perm_, elem, e0, e1, whole.data());
      std::memcpy(out.data(), whole.data() + (offset - e0 * elem), out.size());
      return;
    }
    // A large range (a chain of per-layer tensors runs on one executor worker) is cut into
    // parts that pool threads permute at once; on a small machine the workers are busy anyway.
    const std::uint64_t n = e1 - e0, kPart = (4u << 20) / elem;
    const unsigned parts = static_cast<unsigned>(
        std::min<std::uint64_t>({8, std::max(1u, std::thread::hardware_concurrency() / 2), n / kPart}));
    if (parts <= 1) {
      permute_range(src, info.shape, perm_, elem, e0, e1, out.data());
      return;
    }
    const std::uint64_t per = (n + parts - 1) / parts;
    parallel_for(parts, parts, [&](std::size_t k) {
      const std::uint64_t a = e0 + k * per, b = std::min(e1, a + per);
      if (a < b) permute_range(src, info.shape, perm_, elem, a, b, out.data() + (a - e0) * elem);
    });
  }
  std::string describe() const override { return what_; }
  std::uint64_t resident_bytes() const override { return in_.resident(); }
  bool parallel_reads() const override { return true; }
  void release() const override {
    std::lock_guard lock(mu_);
    in_.release();
  }
  // The whole input is read on first access, from its start.
  StreamOrigin stream_origin(std::uint64_t) const override { return in_.tensor().source->stream_origin(0); }

 private:
  Materialized in_;
  std::vector<int> perm_;
  std::string what_;
  mutable std::mutex mu_;
};

class FillSource final : public TensorSource {
 public:
  FillSource(TensorInfo info, double value, std::string what) : what_(std::move(what)) {
    Bytes one = from_doubles({value}, info.dtype);
    pattern_.assign(one.data(), one.data() + one.size());
  }
  void read(std::uint64_t offset, std::span<std::byte> out) const override {
    // A few periods element by element, then the filled prefix copied onto the rest in
    // doubling steps (each a whole number of periods, so the phase carries over).
    const std::size_t e = pattern_.size(), n = out.size();
    std::size_t filled = std::min(n, e * 64);
    for (std::size_t i = 0; i < filled; ++i) out[i] = pattern_[(offset + i) % e];
    while (filled < n) {
      const std::size_t c = std::min(filled, n - filled);
      std::memcpy(out.data() + filled, out.data(), c);
      filled += c;
    }
  }
  std::string describe() const override { return what_; }

 private:
  std::vector<std::byte> pattern_;
  std::string what_;
};

// A computed source over two inputs that it reads whole as float64; its output has the first
// input's shape.
class TwoInputSource : public ComputedSource {
 public:
  TwoInputSource(Tensor a, Tensor b, DType out, std::string what)
      : ComputedSource(TensorInfo{out, a.info.shape}.nbytes(), std::move(what)), a_(std::move(a)), b_(std::move(b)),
        out_(out) {}

 protected:
  std::uint64_t inputs_resident() const override { return 8 * (a_.info.numel() + b_.info.numel()); }
  void release_inputs() const override {
    a_.source->release();
    b_.source->release();
  }
  Tensor a_, b_;
  DType out_;
};

// a + scale * b.
class AddSource final : public TwoInputSource {
 public:
  AddSource(Tensor a, Tensor b, double scale, DType out, std::string what)
      : TwoInputSource(std::move(a), std::move(b), out, std::move(what)), scale_(scale) {}

 protected:
  Bytes compute() const override {
    auto x = to_doubles(a_), y = to_doubles(b_);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] += scale_ * y[i];
    return from_doubles(x, out_);
  }

 private:
  double scale_;
};

// v * m[k] / ||v[k]|| along `keep` (DoRA's magnitude renormalisation), k indexing axis `keep`
// of v and the norm taken over every other axis; float64 throughout, rounded once to `out`.
// v is the first input, m the second.
class NormRescaleSource final : public TwoInputSource {
 public:
  NormRescaleSource(Tensor v, Tensor m, int keep, DType out, std::string what)
      : TwoInputSource(std::move(v), std::move(m), out, std::move(what)), keep_(keep) {}

 protected:
  Bytes compute() const override {
    auto x = to_doubles(a_);
    const auto mag = to_doubles(b_);
    const auto& shape = a_.info.shape;
    std::uint64_t inner = 1;
    for (std::size_t d = static_cast<std::size_t>(keep_) + 1; d < shape.size(); ++d) inner *= static_cast<std::uint64_t>(shape[d]);
    const auto len = static_cast<std::uint64_t>(shape[static_cast<std::size_t>(keep_)]);
    std::vector<double> norm(len, 0.0);
    for (std::uint64_t i = 0; i < x.size(); ++i) norm[(i / inner) % len] += x[i] * x[i];
    for (auto& n : norm) n = std::sqrt(n);
    for (std::uint64_t i = 0; i < x.size(); ++i) {
      const std::uint64_t k = (i / inner) % len;
      x[i] *= norm[k] > 0 ? mag[k] / norm[k] : 0.0;
    }
    return from_doubles(x, out_);
  }

 private:
  int keep_;
};

void check_real(const Tensor& t, const std::string& what) {
  if (dtype_is_complex(t.info.dtype)) throw MappingError(what, "complex tensors are not supported by this op");
  if (dtype_is_bytes_only(t.info.dtype)) refuse_bytes_only(what, t.info.dtype, "this op computes with its values");
}

// Ops that address single elements (permute, slice, concat) cannot take packed sub-byte types.
void check_whole_bytes(const Tensor& t, const std::string& what, const char* op) {
  if (dtype_is_subbyte(t.info.dtype))
    refuse_bytes_only(what, t.info.dtype,
                      std::string(op) + " addresses single elements, which are " +
                          std::to_string(dtype_bits(t.info.dtype)) + " bits packed across bytes");
}

}  // namespace

int norm_axis(int axis, std::size_t rank, const std::string& what) {
  int r = static_cast<int>(rank);
  int a = axis < 0 ? axis + r : axis;
  if (a < 0 || a >= r)
    throw MappingError(what, "axis " + std::to_string(axis) + " out of range for rank " + std::to_string(rank));
  return a;
}

std::vector<double> to_doubles(const Tensor& t) {
  check_real(t, t.source->describe());
  auto raw = t.read_all();
  std::vector<double> out(t.info.numel());
  if (!out.empty())
    convert_elements(t.info.dtype, DType::F64, raw.data(), reinterpret_cast<std::byte*>(out.data()), out.size(), nullptr);
  return out;
}

Bytes from_doubles(const std::vector<double>& v, DType dtype, CastStats* stats) {
  Bytes out(v.size() * dtype_size(dtype));
  if (!v.empty())
    convert_elements(DType::F64, dtype, reinterpret_cast<const std::byte*>(v.data()), out.data(), v.size(), stats);
  return out;
}

Tensor reshape(const Tensor& t, Shape shape, const std::string& what) {
  // One -1 dimension is inferred.
  int infer = -1;
  std::uint64_t known = 1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (infer >= 0) throw MappingError(what, "reshape " + shape_str(shape) + " has more than one -1");
      infer = static_cast<int>(i);
    } else {
      known *= static_cast<std::uint64_t>(checked_numel({shape[i]}, what));
    }
  }
  if (infer >= 0) {
    if (known == 0 || t.info.numel() % known) throw MappingError(what, "cannot infer -1 in reshape " + shape_str(shape));
    shape[static_cast<std::size_t>(infer)] = static_cast<std::int64_t>(t.info.numel() / known);
  }
  if (checked_numel(shape, what) != t.info.numel())
    throw MappingError(what, "cannot reshape " + shape_str(t.info.shape) + " (" + std::to_string(t.info.numel()) +
                                 " elements) to " + shape_str(shape));
  return Tensor{{t.info.dtype, std::move(shape)}, t.source};
}

Tensor permute(const Tensor& t, const std::vector<int>& perm, const std::string& what) {
  const std::size_t rank = t.info.shape.size();
  if (perm.size() != rank)
    throw MappingError(what, "permutation of " + std::to_string(perm.size()) + " axes for a rank-" +
                                 std::to_string(rank) + " tensor " + shape_str(t.info.shape));
  std::vector<bool> used(rank, false);
  Shape out(rank);
  bool identity = true;
  for (std::size_t i = 0; i < rank; ++i) {
    int a = norm_axis(perm[i], rank, what);
    if (used[static_cast<std::size_t>(a)]) throw MappingError(what, "permutation repeats axis " + std::to_string(a));
    used[static_cast<std::size_t>(a)] = true;
    out[i] = t.info.shape[static_cast<std::size_t>(a)];
    identity &= a == static_cast<int>(i);
  }
  if (identity) return t;
  check_whole_bytes(t, what, "permute");
  std::vector<int> p(rank);
  for (std::size_t i = 0; i < rank; ++i) p[i] = norm_axis(perm[i], rank, what);
  auto info = TensorInfo{t.info.dtype, out};
  return Tensor{info, std::make_shared<PermuteSource>(t, p, what)};
}

Tensor slice(const Tensor& t, int axis, std::int64_t start, std::int64_t stop, const std::string& what) {
  const auto& s = t.info.shape;
  int a = norm_axis(axis, s.size(), what);
  const std::int64_t n = s[static_cast<std::size_t>(a)];
  if (start < 0 || stop > n || start > stop)
    throw MappingError(what, "slice [" + std::to_string(start) + ", " + std::to_string(stop) + ") out of range for axis " +
                                 std::to_string(a) + " of size " + std::to_string(n));
  check_whole_bytes(t, what, "slice");
  Shape out = s;
  out[static_cast<std::size_t>(a)] = stop - start;
  const std::uint64_t inner = prod(s, static_cast<std::size_t>(a) + 1, s.size()) * dtype_size(t.info.dtype);
  const std::uint64_t in_row = inner * static_cast<std::uint64_t>(n);
  const std::uint64_t len = inner * static_cast<std::uint64_t>(stop - start);
  TensorInfo info{t.info.dtype, out};
  if (info.nbytes() == 0) return Tensor{info, std::make_shared<MemorySource>(std::make_shared<Bytes>(), what)};
  return Tensor{info, std::make_shared<SliceSource>(t, in_row, inner * static_cast<std::uint64_t>(start), len, what)};
}

Tensor index(const Tensor& t, int axis, std::int64_t i, const std::string& what) {
  int a = norm_axis(axis, t.info.shape.size(), what);
  Tensor s = slice(t, a, i, i + 1, what);
  Shape out = s.info.shape;
  out.erase(out.begin() + a);
  return reshape(s, out, what);
}

std::vector<Tensor> split(const Tensor& t, int axis, std::int64_t parts, const std::string& what) {
  int a = norm_axis(axis, t.info.shape.size(), what);
  const std::int64_t n = t.info.shape[static_cast<std::size_t>(a)];
  if (parts <= 0 || n % parts)
    throw MappingError(what, "cannot split axis " + std::to_string(a) + " of size " + std::to_string(n) + " into " +
                                 std::to_string(parts) + " equal parts");
  std::vector<Tensor> out;
  for (std::int64_t p = 0; p < parts; ++p) out.push_back(slice(t, a, p * (n / parts), (p + 1) * (n / parts), what));
  return out;
}

Tensor concat(const std::vector<Tensor>& ts, int axis, const std::string& what) {
  if (ts.empty()) throw MappingError(what, "concat of nothing");
  const auto& s0 = ts[0].info.shape;
  int a = norm_axis(axis, s0.size(), what);
  Shape out = s0;
  out[static_cast<std::size_t>(a)] = 0;
  std::vector<ConcatSource::Part> parts;
  for (const auto& t : ts) {
    check_whole_bytes(t, what, "concat");
    if (t.info.dtype != ts[0].info.dtype)
      throw MappingError(what, "concat of " + std::string(dtype_name(ts[0].info.dtype)) + " and " +
                                   std::string(dtype_name(t.info.dtype)));
    if (t.info.shape.size() != s0.size()) throw MappingError(what, "concat of tensors of different rank");
    for (std::size_t d = 0; d < s0.size(); ++d)
      if (static_cast<int>(d) != a && t.info.shape[d] != s0[d])
        throw MappingError(what, "concat along axis " + std::to_string(a) + " of " + shape_str(s0) + " and " +
                                     shape_str(t.info.shape));
    out[static_cast<std::size_t>(a)] += t.info.shape[static_cast<std::size_t>(a)];
    parts.push_back({t.source, prod(t.info.shape, static_cast<std::size_t>(a), s0.size()) * dtype_size(t.info.dtype)});
  }
  TensorInfo info{ts[0].info.dtype, out};
  const std::uint64_t outer = prod(s0, 0, static_cast<std::size_t>(a));
  if (info.nbytes() == 0) return Tensor{info, std::make_shared<MemorySource>(std::make_shared<Bytes>(), what)};
  return Tensor{info, std::make_shared<ConcatSource>(std::move(parts), outer, what)};
}

Tensor stack(const std::vector<Tensor>& ts, int axis, const std::string& what) {
  if (ts.empty()) throw MappingError(what, "stack of nothing");
  int a = norm_axis(axis, ts[0].info.shape.size() + 1, what);
  std::vector<Tensor> expanded;
  for (const auto& t : ts) {
    if (t.info.shape != ts[0].info.shape)
      throw MappingError(what, "stack of shapes " + shape_str(ts[0].info.shape) + " and " + shape_str(t.info.shape));
    Shape s = t.info.shape;
    s.insert(s.begin() + a, 1);
    expanded.push_back(reshape(t, s, what));
  }
  return concat(expanded, a, what);
}

Tensor add(const Tensor& a, const Tensor& b, double scale, DType out, const std::string& what) {
  if (a.info.shape != b.info.shape)
    throw MappingError(what, "add of shapes " + shape_str(a.info.shape) + " and " + shape_str(b.info.shape));
  check_real(a, what);
  check_real(b, what);
  if (dtype_is_bytes_only(out)) refuse_bytes_only(what, out, "this op cannot compute into it");
  return Tensor{{out, a.info.shape}, std::make_shared<AddSource>(a, b, scale, out, what)};
}

Tensor rescale_to_norm(const Tensor& v, const Tensor& magnitude, int keep_axis, DType out, const std::string& what) {
  const int k = norm_axis(keep_axis, v.info.shape.size(), what);
  if (magnitude.info.numel() != static_cast<std::uint64_t>(v.info.shape[static_cast<std::size_t>(k)]))
    throw MappingError(what, "magnitude of " + std::to_string(magnitude.info.numel()) + " elements does not fit axis " +
                                 std::to_string(k) + " of " + shape_str(v.info.shape));
  check_real(v, what);
  check_real(magnitude, what);
  if (dtype_is_bytes_only(out)) refuse_bytes_only(what, out, "this op cannot compute into it");
  return Tensor{{out, v.info.shape}, std::make_shared<NormRescaleSource>(v, magnitude, k, out, what)};
}

Tensor fill(TensorInfo info, double value, const std::string& what) {
  if (dtype_is_bytes_only(info.dtype)) refuse_bytes_only(what, info.dtype, "a fill computes its value");
  checked_numel(info.shape, what);
  return Tensor{info, std::make_shared<FillSource>(info, value, what)};
}

Tensor einsum(const std::string& equation, const std::vector<Tensor>& ts, double scale, DType out,
              const std::string& what) {
  return einsum_add(std::nullopt, ts, equation, scale, out, what);
}

}  // namespace ckb::ops
