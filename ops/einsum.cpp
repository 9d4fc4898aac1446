// Implementation of ops/einsum.h.
#include "ops/einsum.h"

// GCC 12 reports a false -Wfree-nonheap-object inside std::vector when vectors of doubles
// are moved out of structured bindings here (GCC bug 106199 family); nothing is freed wrongly.
#pragma GCC diagnostic ignored "-Wfree-nonheap-object"

#include <cblas.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "core/errors.h"
#include "core/thread_pool.h"
#include "ops/cast.h"
#include "ops/ops.h"

namespace ckb {
namespace {

std::uint64_t prod(const Shape& s) {
  std::uint64_t p = 1;
  for (auto d : s) p *= static_cast<std::uint64_t>(d);
  return p;
}

// Products are computed by many workers at once and are small (a LoRA rank deep): OpenBLAS's
// own threads would only contend with the workers.
void single_threaded_blas() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

// Copies `data` (shape `shape`) into the axis order `perm` (output axis i = input axis perm[i]).
std::vector<double> permute_f64(const double* data, const Shape& shape, const std::vector<std::size_t>& perm) {
  const std::size_t rank = shape.size();
  std::vector<double> out(prod(shape));
  if (out.empty()) return out;
  std::vector<std::uint64_t> istride(rank, 1);
  for (std::size_t d = rank; d-- > 1;) istride[d - 1] = istride[d] * static_cast<std::uint64_t>(shape[d]);
  Shape oshape(rank);
  std::vector<std::uint64_t> ostride(rank);
  for (std::size_t i = 0; i < rank; ++i) {
    oshape[i] = shape[perm[i]];
    ostride[i] = istride[perm[i]];
  }
  std::vector<std::int64_t> idx(rank, 0);
  std::uint64_t off = 0;
  for (double& o : out) {
    o = data[off];
    for (std::size_t d = rank; d-- > 0;) {
      off += ostride[d];
      if (++idx[d] < oshape[d]) break;
      off -= ostride[d] * static_cast<std::uint64_t>(oshape[d]);
      idx[d] = 0;
    }
  }
  return out;
}

// Sums out every axis whose label is not in `keep`; returns the reduced data and labels.
std::pair<std::vector<double>, std::string> reduce_f64(const double* data, const Shape& shape, const std::string& labels,
                                                       const std::set<char>& keep, Shape& out_shape) {
  std::string kept;
  out_shape.clear();
  std::vector<bool> keep_axis(labels.size());
  for (std::size_t d = 0; d < labels.size(); ++d) {
    keep_axis[d] = keep.count(labels[d]) > 0;
    if (keep_axis[d]) {
      kept += labels[d];
      out_shape.push_back(shape[d]);
    }
  }
  std::vector<double> out(prod(out_shape), 0.0);
  const std::uint64_t n = prod(shape);
  std::vector<std::int64_t> idx(shape.size(), 0);
  for (std::uint64_t k = 0; k < n; ++k) {
    std::uint64_t o = 0;
    for (std::size_t d = 0; d < shape.size(); ++d)
      if (keep_axis[d]) o = o * static_cast<std::uint64_t>(shape[d]) + static_cast<std::uint64_t>(idx[d]);
    out[o] += data[k];
    for (std::size_t d = shape.size(); d-- > 0;) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  return {std::move(out), kept};
}

}  // namespace

EinsumSpec parse_einsum(const std::string& equation, const std::vector<Shape>& shapes, const std::string& what) {
  std::string eq;
  for (char c : equation)
    if (c != ' ') eq += c;
  EinsumSpec s;
  auto arrow = eq.find("->");
  if (arrow == std::string::npos) throw MappingError(what, "einsum '" + eq + "' needs an explicit '->' output");
  std::string lhs = eq.substr(0, arrow);
  s.output = eq.substr(arrow + 2);
  std::size_t start = 0;
  while (true) {
    auto comma = lhs.find(',', start);
    s.inputs.push_back(lhs.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (s.inputs.size() != shapes.size())
    throw MappingError(what, "einsum '" + eq + "' has " + std::to_string(s.inputs.size()) + " operands, got " +
                                 std::to_string(shapes.size()) + " tensors");
  if (s.inputs.size() > 2) throw MappingError(what, "einsum with more than two operands is not supported: " + eq);
  std::map<char, std::int64_t> dims;
  for (std::size_t k = 0; k < shapes.size(); ++k) {
    const auto& lab = s.inputs[k];
    if (lab.size() != shapes[k].size())
      throw MappingError(what, "einsum operand " + std::to_string(k) + " '" + lab + "' does not match shape " +
                                   shape_str(shapes[k]));
    std::set<char> seen;
    for (std::size_t d = 0; d < lab.size(); ++d) {
      char c = lab[d];
      if (!std::isalpha(static_cast<unsigned char>(c))) throw MappingError(what, "einsum labels must be letters: " + eq);
      if (!seen.insert(c).second) throw MappingError(what, "einsum operand repeats label '" + std::string(1, c) + "': " + eq);
      auto [it, fresh] = dims.emplace(c, shapes[k][d]);
      if (!fresh && it->second != shapes[k][d])
        throw MappingError(what, std::string("einsum label '") + c + "' has sizes " + std::to_string(it->second) + " and " +
                                     std::to_string(shapes[k][d]));
    }
  }
  std::set<char> out_seen;
  for (char c : s.output) {
    if (!dims.count(c)) throw MappingError(what, std::string("einsum output label '") + c + "' is not an input label");
    if (!out_seen.insert(c).second) throw MappingError(what, "einsum output repeats a label: " + eq);
  }
  return s;
}

Shape einsum_shape(const EinsumSpec& spec, const std::vector<Shape>& shapes) {
  Shape out;
  for (char c : spec.output)
    for (std::size_t k = 0; k < shapes.size(); ++k) {
      auto pos = spec.inputs[k].find(c);
      if (pos != std::string::npos) {
        out.push_back(shapes[k][pos]);
        break;
      }
    }
  return out;
}

std::vector<double> einsum_f64(const EinsumSpec& spec, const std::vector<const double*>& data,
                               const std::vector<Shape>& shapes) {
  const std::set<char> out_labels(spec.output.begin(), spec.output.end());
  if (spec.inputs.size() == 1) {
    Shape rs;
    auto [r, lab] = reduce_f64(data[0], shapes[0], spec.inputs[0], out_labels, rs);
    std::vector<std::size_t> perm;
    for (char c : spec.output) perm.push_back(lab.find(c));
    return permute_f64(r.data(), rs, perm);
  }
  // Pre-sum labels only one operand has and the output lacks.
  std::set<char> in0(spec.inputs[0].begin(), spec.inputs[0].end()), in1(spec.inputs[1].begin(), spec.inputs[1].end());
  std::set<char> keep0 = out_labels, keep1 = out_labels;
  for (char c : in0)
    if (in1.count(c)) keep0.insert(c), keep1.insert(c);
  Shape s0, s1;
  auto [a, la] = reduce_f64(data[0], shapes[0], spec.inputs[0], keep0, s0);
  auto [b, lb] = reduce_f64(data[1], shapes[1], spec.inputs[1], keep1, s1);
  std::string batch, m, n, k;
  for (char c : la) {
    bool inb = lb.find(c) != std::string::npos, ino = out_labels.count(c) > 0;
    if (inb && ino) batch += c;
    else if (inb) k += c;
    else m += c;
  }
  for (char c : lb)
    if (la.find(c) == std::string::npos) n += c;
  auto size_of = [&](char c) {
    auto p = la.find(c);
    return p != std::string::npos ? s0[p] : s1[lb.find(c)];
  };
  auto span_of = [&](const std::string& labels) {
    std::uint64_t p = 1;
    for (char c : labels) p *= static_cast<std::uint64_t>(size_of(c));
    return p;
  };
  std::vector<std::size_t> pa, pb;
  for (char c : batch + m + k) pa.push_back(la.find(c));
  for (char c : batch + k + n) pb.push_back(lb.find(c));
  auto A = permute_f64(a.data(), s0, pa);
  auto B = permute_f64(b.data(), s1, pb);
  const std::uint64_t nb = span_of(batch), nm = span_of(m), nk = span_of(k), nn = span_of(n);
  // dgemm with beta = 0 writes every element of C: no zero fill needed (it cost a memset
  // and a page fault per page of every block).
  const std::uint64_t nc = nb * nm * nn;
  std::unique_ptr<double[]> C(new double[std::max<std::uint64_t>(nc, 1)]);
  if (!(nm && nn && nk)) std::fill(C.get(), C.get() + nc, 0.0);
  if (nm && nn && nk) {
    single_threaded_blas();
    for (std::uint64_t i = 0; i < nb; ++i)
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(nm), static_cast<int>(nn),
                  static_cast<int>(nk), 1.0, A.data() + i * nm * nk, static_cast<int>(nk), B.data() + i * nk * nn,
                  static_cast<int>(nn), 0.0, C.get() + i * nm * nn, static_cast<int>(nn));
  }
  std::string have = batch + m + n;
  Shape cs;
  for (char c : have) cs.push_back(size_of(c));
  std::vector<std::size_t> po;
  for (char c : spec.output) po.push_back(have.find(c));
  return permute_f64(C.get(), cs, po);
}

namespace {

// A two-operand einsum seen as one batched product laid out like its output:
// out[b, m, n] = sum_k A'[b, m, k] * B'[b, k, n], where b, m and n are groups of output labels
// (batch labels, then all free labels of one operand, then all of the other's) and A', B' are
// the operands with their private labels summed out, permuted to [b, m, k] and [b, k, n].
// Every LoRA delta has this shape (and openpi's attn_vec is the case with a private label),
// so a range of output elements is a run of GEMM rows computed straight from A' and B'.
struct GemmLayout {
  std::size_t first = 0;                 // the operand playing A
  std::array<std::set<char>, 2> keep;    // labels each operand keeps
  std::string a_order, b_order;          // labels of A' (b+m+k) and B' (b+k+n)
  std::uint64_t nb = 1, nm = 1, nk = 1, nn = 1;
};

std::optional<GemmLayout> gemm_layout(const EinsumSpec& spec, const std::vector<Shape>& shapes) {
  if (spec.inputs.size() != 2) return std::nullopt;
  const std::string& out = spec.output;
  std::map<char, std::uint64_t> dim;
  for (std::size_t k = 0; k < 2; ++k)
    for (std::size_t d = 0; d < spec.inputs[k].size(); ++d)
      dim[spec.inputs[k][d]] = static_cast<std::uint64_t>(shapes[k][d]);
  auto has = [](const std::string& s, char c) { return s.find(c) != std::string::npos; };
  GemmLayout g;
  std::array<std::string, 2> kept;
  for (std::size_t k = 0; k < 2; ++k)
    for (char c : spec.inputs[k])
      if (has(out, c) || has(spec.inputs[1 - k], c)) {
        g.keep[k].insert(c);
        kept[k] += c;
      }
  std::string batch, contracted;
  std::array<std::string, 2> free;
  for (char c : kept[0])
    if (has(kept[1], c) && !has(out, c)) contracted += c;
  std::size_t p = 0;
  while (p < out.size() && has(kept[0], out[p]) && has(kept[1], out[p])) batch += out[p++];
  for (std::size_t k = 0; k < 2; ++k)
    for (char c : out.substr(p))
      if (has(kept[k], c)) free[k] += c;
  const std::string rest = out.substr(p);
  if (free[0].size() + free[1].size() != rest.size()) return std::nullopt;  // a batch label after a free one
  g.first = !rest.empty() && has(free[1], rest[0]) ? 1 : 0;
  const std::string& m = free[g.first];
  const std::string& n = free[1 - g.first];
  if (rest != m + n) return std::nullopt;  // the operands' labels interleave in the output
  g.a_order = batch + m + contracted;
  g.b_order = batch + contracted + n;
  auto span = [&](const std::string& labels) {
    std::uint64_t r = 1;
    for (char c : labels) r *= dim[c];
    return r;
  };
  g.nb = span(batch);
  g.nm = span(m);
  g.nk = span(contracted);
  g.nn = span(n);
  return g;
}

constexpr std::uint64_t kMaxHelpers = 4;            // threads merging one request of a streamed base
constexpr std::uint64_t kHelperElems = 1u << 20;     // at least this many elements per helper

// Per-thread scratch reused across ranges (no allocation, and no page faults, per range), one
// per nesting level: a merge whose base is itself a merge (several LoRA terms summed) reads
// that base while its own scratch holds its partial sums.
struct Scratch {
  std::vector<double> y, base;
  std::vector<std::byte> raw;
};
struct ScratchPool {
  std::vector<std::unique_ptr<Scratch>> levels;
  std::size_t depth = 0;
};
ScratchPool& scratch_pool() {
  thread_local ScratchPool p;
  return p;
}
class ScratchLease {
 public:
  ScratchLease() : pool_(scratch_pool()) {
    if (pool_.levels.size() == pool_.depth) pool_.levels.push_back(std::make_unique<Scratch>());
    s_ = pool_.levels[pool_.depth++].get();
  }
  ~ScratchLease() { --pool_.depth; }
  ScratchLease(const ScratchLease&) = delete;
  ScratchLease& operator=(const ScratchLease&) = delete;
  Scratch& get() { return *s_; }

 private:
  ScratchPool& pool_;
  Scratch* s_;
};

class EinsumAddSource final : public TensorSource {
 public:
  EinsumAddSource(std::optional<Tensor> base, std::vector<Tensor> ops, EinsumSpec spec, Shape out_shape, double scale,
                  DType out, std::uint64_t block_elems, std::string what, std::shared_ptr<CastStats> rounding)
      : base_(std::move(base)), ops_(std::move(ops)), spec_(std::move(spec)), shape_(std::move(out_shape)), scale_(scale),
        out_(out), what_(std::move(what)), rounding_(std::move(rounding)) {
    std::vector<Shape> shapes;
    for (const auto& t : ops_) shapes.push_back(t.info.shape);
    gemm_ = gemm_layout(spec_, shapes);
    const std::size_t rank = shape_.size();
    axis_ = 0;
    inner_ = prod(shape_);
    if (rank == 0) {
      rows_ = 1;
      return;
    }
    // Smallest k with prod(shape[k+1:]) <= block_elems.
    for (axis_ = 0; axis_ < rank; ++axis_) {
      inner_ = 1;
      for (std::size_t d = axis_ + 1; d < rank; ++d) inner_ *= static_cast<std::uint64_t>(shape_[d]);
      if (inner_ <= block_elems) break;
    }
    if (axis_ == rank) axis_ = rank - 1;
    rows_ = std::max<std::uint64_t>(1, block_elems / std::max<std::uint64_t>(1, inner_));
    rows_ = std::min<std::uint64_t>(rows_, static_cast<std::uint64_t>(shape_[axis_]));
  }

  void read(std::uint64_t offset, std::span<std::byte> out) const override {
    if (gemm_) read_gemm(offset, out);
    else read_blocks(offset, out);
  }
  std::string describe() const override { return what_; }
  // The GEMM path holds the prepared operands (float64) plus what the base keeps (a decoded
  // chunk, say); the block path one block and the inputs' own.
  std::uint64_t resident_bytes() const override {
    std::uint64_t r = 0;
    if (gemm_) {
      r = 8 * (gemm_->nb * gemm_->nk * (gemm_->nm + gemm_->nn));
    } else {
      r = rows_ * inner_ * (dtype_size(out_) + 3 * 8);
      for (const auto& t : ops_) r += t.source->resident_bytes();
    }
    if (base_) r += base_->source->resident_bytes();
    return r;
  }
  // Ranges compute independently, so a large merge is split across workers, unless the base
  // streams (a zarr array in row bands, formats/zarr/zarr_array.h): then one worker reads it
  // front to back, decoding as it merges with nothing resident, while the other workers merge
  // other tensors; split, each worker would wait for one thread to decode the whole chunk.
  bool parallel_reads() const override { return !base_streams(); }
  std::uint64_t sequential_resident_bytes() const override {
    std::uint64_t r = resident_bytes();
    if (base_streams()) r -= base_->source->resident_bytes() - base_->source->sequential_resident_bytes();
    return r;
  }
  StreamOrigin stream_origin(std::uint64_t offset) const override {
    if (!base_) return {};
    return base_->source->stream_origin(offset / dtype_size(out_) * dtype_size(base_->info.dtype));
  }
  void release() const override {
    std::lock_guard lock(mu_);
    cache_.reset();
    cached_ = ~0ull;
    prepared_.reset();
    if (base_) base_->source->release();
  }

 private:
  // The base holds less when read front to back (a streamed zarr array) than for random access.
  bool base_streams() const {
    return base_ && base_->source->sequential_resident_bytes() < base_->source->resident_bytes();
  }

  struct Prepared {
    std::vector<double> a, b;  // A' [nb, nm, nk], B' [nb, nk, nn]
  };

  // A' and B' from the operands, once per tensor (they are small: rank-deep factors).
  std::shared_ptr<const Prepared> prepared() const {
    std::lock_guard lock(mu_);
    if (prepared_) return prepared_;
    auto p = std::make_shared<Prepared>();
    for (std::size_t role = 0; role < 2; ++role) {
      const std::size_t k = role == 0 ? gemm_->first : 1 - gemm_->first;
      const std::string& order = role == 0 ? gemm_->a_order : gemm_->b_order;
      auto v = ops::to_doubles(ops_[k]);
      Shape rs;
      auto [r, lab] = reduce_f64(v.data(), ops_[k].info.shape, spec_.inputs[k], gemm_->keep[k], rs);
      std::vector<std::size_t> perm;
      for (char c : order) perm.push_back(lab.find(c));
      (role == 0 ? p->a : p->b) = permute_f64(r.data(), rs, perm);
    }
    prepared_ = p;
    return p;
  }

  // out elements [e0, e0 + count) of scale * einsum into y.
  void product(const Prepared& p, std::uint64_t e0, std::uint64_t count, double* y) const {
    const GemmLayout& g = *gemm_;
    if (g.nk == 0) {
      std::fill(y, y + count, 0.0);
      return;
    }
    std::uint64_t pos = e0;
    const std::uint64_t end = e0 + count;
    while (pos < end) {
      const std::uint64_t row = pos / g.nn, col = pos % g.nn;
      const std::uint64_t bi = row / g.nm, mi = row % g.nm;
      const double* a = p.a.data() + (bi * g.nm + mi) * g.nk;
      const double* b = p.b.data() + bi * g.nk * g.nn;
      std::uint64_t rows = 1, cols = std::min(g.nn - col, end - pos);
      if (col == 0 && cols == g.nn) rows = std::min((end - pos) / g.nn, g.nm - mi);  // whole rows, one batch
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), static_cast<int>(cols),
                  static_cast<int>(g.nk), scale_, a, static_cast<int>(g.nk), b + col, static_cast<int>(g.nn), 0.0,
                  y + (pos - e0), static_cast<int>(rows > 1 ? g.nn : cols));
      pos += rows * cols;
    }
  }

  void read_gemm(std::uint64_t offset, std::span<std::byte> out) const {
    single_threaded_blas();
    const std::size_t esz = dtype_size(out_);
    const std::uint64_t e_begin = offset / esz, e_end = (offset + out.size() + esz - 1) / esz;
    if (offset % esz || out.size() % esz) {  // unaligned: compute the covering elements
      Bytes whole((e_end - e_begin) * esz);
      read_gemm(e_begin * esz, whole.span());
      std::memcpy(out.data(), whole.data() + (offset - e_begin * esz), out.size());
      return;
    }
    auto p = prepared();
    const std::uint64_t count = e_end - e_begin;
    const unsigned parts = static_cast<unsigned>(
        std::min<std::uint64_t>({kMaxHelpers, std::max(2u, std::thread::hardware_concurrency() / 4), count / kHelperElems}));
    if (parts <= 1 || !base_streams()) {
      merge_range(*p, e_begin, count, nullptr, out.data());
      return;
    }
    // A streaming base is read by this one worker, front to back: its bytes for the whole
    // request are fetched in one pass, then helpers merge disjoint parts of them, so a big
    // tensor's merge is not one thread's work.
    const std::size_t bsz = dtype_size(base_->info.dtype);
    Bytes raw(static_cast<std::size_t>(count * bsz));
    base_->source->read(e_begin * bsz, raw.span());
    const std::uint64_t per = (count + parts - 1) / parts;
    const auto caller = std::this_thread::get_id();
    parallel_for(parts, parts, [&](std::size_t k) {
      const std::uint64_t e0 = k * per, n = std::min(per, count - std::min(count, e0));
      if (n == 0) return;
      merge_range(*p, e_begin + e0, n, raw.data() + e0 * bsz, out.data() + e0 * esz);
      // A pool worker keeps no scratch between requests (as a thread that ends would not).
      if (std::this_thread::get_id() != caller && scratch_pool().depth == 0) scratch_pool().levels.clear();
    });
  }

  // Elements [e, e + count) into dst: scale * delta + base, rounded once. The base's bytes for
  // the range are `base_raw` when given, else read from the base per step.
  void merge_range(const Prepared& p, std::uint64_t e_begin, std::uint64_t count, const std::byte* base_raw,
                   std::byte* dst) const {
    ScratchLease lease;
    Scratch& s = lease.get();
    // Elements per step: small enough for the working set to stay in cache, at least 16 GEMM
    // rows so packing B' is amortised.
    const std::uint64_t kStep = std::clamp<std::uint64_t>(16 * gemm_->nn, 1u << 14, 1u << 18);
    s.y.resize(kStep);
    const DType bt = base_ ? base_->info.dtype : DType::F64;
    const std::size_t bsz = dtype_size(bt), esz = dtype_size(out_);
    if (base_) {
      s.base.resize(kStep);
      s.raw.resize(kStep * bsz);
    }
    for (std::uint64_t e = e_begin; e < e_begin + count; e += kStep) {
      const std::uint64_t n = std::min(kStep, e_begin + count - e);
      double* y = s.y.data();
      product(p, e, n, y);  // y = scale * delta, as the block path's y *= scale
      if (base_) {
        const std::byte* b = base_raw ? base_raw + (e - e_begin) * bsz : s.raw.data();
        if (!base_raw) base_->source->read(e * bsz, {s.raw.data(), static_cast<std::size_t>(n * bsz)});
        convert_elements(bt, DType::F64, b, reinterpret_cast<std::byte*>(s.base.data()), n, nullptr);
        for (std::uint64_t i = 0; i < n; ++i) y[i] += s.base[i];
      }
      convert_elements(DType::F64, out_, reinterpret_cast<const std::byte*>(y), dst + (e - e_begin) * esz, n,
                       rounding_.get());
    }
  }

  void read_blocks(std::uint64_t offset, std::span<std::byte> out) const {
    const std::uint64_t esz = dtype_size(out_);
    const std::uint64_t row_bytes = inner_ * esz;  // one index along axis_
    const std::uint64_t axis_len = shape_.empty() ? 1 : static_cast<std::uint64_t>(shape_[axis_]);
    const std::uint64_t blocks_per_prefix = (axis_len + rows_ - 1) / rows_;
    std::uint64_t pos = offset, end = offset + out.size();
    while (pos < end) {
      // Which prefix (fixed indices before axis_) and which row range.
      std::uint64_t prefix = pos / (row_bytes * axis_len);
      std::uint64_t row = (pos % (row_bytes * axis_len)) / row_bytes;
      std::uint64_t blk = prefix * blocks_per_prefix + row / rows_;
      std::uint64_t r0 = (row / rows_) * rows_, r1 = std::min(axis_len, r0 + rows_);
      std::uint64_t blk_start = (prefix * axis_len + r0) * row_bytes, blk_len = (r1 - r0) * row_bytes;
      std::uint64_t within = pos - blk_start, n = std::min(blk_len - within, end - pos);
      {
        std::lock_guard lock(mu_);
        if (cached_ == blk) {
          std::memcpy(out.data() + (pos - offset), cache_->data() + within, n);
          pos += n;
          continue;
        }
      }
      // Computed outside the lock: several workers may produce disjoint ranges at once.
      auto block = std::make_shared<Bytes>(compute(prefix, r0, r1));
      std::memcpy(out.data() + (pos - offset), block->data() + within, n);
      pos += n;
      std::lock_guard lock(mu_);
      cache_ = std::move(block);
      cached_ = blk;
    }
  }

  // Restricts tensor `t` (labels `lab`) to the block: fixed indices for output axes < axis_
  // (given by `fixed`), [r0, r1) on axis_. Returns the sub-tensor and its remaining labels.
  std::pair<Tensor, std::string> restrict(const Tensor& t, std::string lab, const std::vector<std::int64_t>& fixed,
                                          std::uint64_t r0, std::uint64_t r1) const {
    Tensor x = t;
    for (std::size_t j = 0; j < fixed.size(); ++j) {
      auto p = lab.find(spec_.output[j]);
      if (p == std::string::npos) continue;
      x = ops::index(x, static_cast<int>(p), fixed[j], what_);
      lab.erase(p, 1);
    }
    if (!shape_.empty()) {
      auto p = lab.find(spec_.output[axis_]);
      if (p != std::string::npos)
        x = ops::slice(x, static_cast<int>(p), static_cast<std::int64_t>(r0), static_cast<std::int64_t>(r1), what_);
    }
    return {x, lab};
  }

  Bytes compute(std::uint64_t prefix, std::uint64_t r0, std::uint64_t r1) const {
    std::vector<std::int64_t> fixed(axis_);
    for (std::size_t j = axis_; j-- > 0;) {
      fixed[j] = static_cast<std::int64_t>(prefix % static_cast<std::uint64_t>(shape_[j]));
      prefix /= static_cast<std::uint64_t>(shape_[j]);
    }
    EinsumSpec sub;
    std::vector<std::vector<double>> vals;
    std::vector<Shape> shapes;
    for (std::size_t k = 0; k < ops_.size(); ++k) {
      auto [t, lab] = restrict(ops_[k], spec_.inputs[k], fixed, r0, r1);
      sub.inputs.push_back(lab);
      shapes.push_back(t.info.shape);
      vals.push_back(ops::to_doubles(t));
    }
    sub.output = spec_.output.substr(axis_);
    std::vector<const double*> ptrs;
    for (const auto& v : vals) ptrs.push_back(v.data());
    std::vector<double> y = einsum_f64(sub, ptrs, shapes);
    for (double& v : y) v *= scale_;
    if (base_) {
      auto [bt, blab] = restrict(*base_, spec_.output, fixed, r0, r1);
      auto bv = ops::to_doubles(bt);
      for (std::size_t i = 0; i < y.size(); ++i) y[i] += bv[i];
    }
    return ops::from_doubles(y, out_, rounding_.get());
  }

  std::optional<Tensor> base_;
  std::vector<Tensor> ops_;
  EinsumSpec spec_;
  Shape shape_;
  double scale_;
  DType out_;
  std::string what_;
  std::shared_ptr<CastStats> rounding_;  // the final float64 -> out_ rounding, when someone counts it
  std::optional<GemmLayout> gemm_;
  std::size_t axis_ = 0;
  std::uint64_t inner_ = 1, rows_ = 1;
  mutable std::mutex mu_;
  mutable std::shared_ptr<const Bytes> cache_;
  mutable std::uint64_t cached_ = ~0ull;
  mutable std::shared_ptr<const Prepared> prepared_;
};

}  // namespace

Tensor einsum_add(const std::optional<Tensor>& base, const std::vector<Tensor>& operands, const std::string& equation,
                  double scale, DType out, const std::string& what, std::uint64_t block_elems,
                  std::shared_ptr<CastStats> rounding) {
  std::vector<Shape> shapes;
  for (const auto& t : operands) {
    if (dtype_is_complex(t.info.dtype)) throw MappingError(what, "complex tensors are not supported by einsum");
    if (dtype_is_bytes_only(t.info.dtype)) refuse_bytes_only(what, t.info.dtype, "einsum computes with its values");
    shapes.push_back(t.info.shape);
  }
  if (base && dtype_is_bytes_only(base->info.dtype)) refuse_bytes_only(what, base->info.dtype, "einsum adds to its values");
  if (dtype_is_bytes_only(out)) refuse_bytes_only(what, out, "einsum cannot compute into it");
  auto spec = parse_einsum(equation, shapes, what);
  Shape shape = einsum_shape(spec, shapes);
  if (base && base->info.shape != shape)
    throw MappingError(what, "einsum '" + equation + "' gives " + shape_str(shape) + " but the base is " +
                                 shape_str(base->info.shape));
  TensorInfo info{out, shape};
  return Tensor{info, std::make_shared<EinsumAddSource>(base, operands, spec, shape, scale, out,
                                                        std::max<std::uint64_t>(block_elems, 1), what, std::move(rounding))};
}

}  // namespace ckb
