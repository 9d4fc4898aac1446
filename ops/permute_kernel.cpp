// Implementation of ops/permute_kernel.h.
#include "ops/permute_kernel.h"

#include <algorithm>
#include <cstring>

#include "core/errors.h"

namespace ckb {
namespace {

// Output axes after dropping size-1 axes and merging runs: dims and input strides (elements).
struct Axes {
  std::vector<std::uint64_t> dim, istride;
};

Axes simplify(const std::vector<std::int64_t>& in_shape, const std::vector<int>& perm) {
  const std::size_t rank = in_shape.size();
  std::vector<std::uint64_t> istr(rank, 1);
  for (std::size_t d = rank; d-- > 1;) istr[d - 1] = istr[d] * static_cast<std::uint64_t>(in_shape[d]);
  Axes a;
  int prev = -2;
  for (std::size_t i = 0; i < rank; ++i) {
    const int p = perm[i];
    const auto n = static_cast<std::uint64_t>(in_shape[static_cast<std::size_t>(p)]);
    if (n == 1) continue;
    if (!a.dim.empty() && p == prev + 1) {  // input axis right after the previous kept one: merge
      a.dim.back() *= n;
      a.istride.back() = istr[static_cast<std::size_t>(p)];
    } else {
      a.dim.push_back(n);
      a.istride.push_back(istr[static_cast<std::size_t>(p)]);
    }
    prev = p;
  }
  return a;
}

template <std::size_t N>
struct Elem {
  std::byte b[N];
};

template <std::size_t N>
class Kernel {
 public:
  using E = Elem<N>;
  Kernel(const Axes& a, const std::byte* src, std::byte* dst) : a_(a), src_(reinterpret_cast<const E*>(src)),
                                                                 dst_(reinterpret_cast<E*>(dst)) {}

  void run(std::uint64_t e0, std::uint64_t e1) {
    const std::size_t rank = a_.dim.size();
    if (rank == 0) {
      if (e1 > e0) dst_[0] = src_[0];
      return;
    }
    const std::size_t last = rank - 1;
    if (a_.istride[last] == 1 || rank == 1) {
      walk(e0, e1, e0);
      return;
    }
    std::size_t q = 0;
    while (a_.istride[q] != 1) ++q;  // the input's innermost axis: it exists and is not `last`
    std::uint64_t U = 1;              // output elements per step of axis q
    for (std::size_t d = q + 1; d < rank; ++d) U *= a_.dim[d];
    const std::uint64_t block = U * a_.dim[q];
    std::uint64_t pos = e0;
    while (pos < e1) {
      const std::uint64_t within = pos % block, aq = within / U, rest = within % U;
      const std::uint64_t steps = std::min(a_.dim[q] - aq, (e1 - pos) / U);
      if (rest == 0 && steps > 0) {
        tiles(pos, aq, steps, q, U, e0);
        pos += steps * U;
      } else {
        const std::uint64_t stop = std::min(e1, pos - rest + U);
        walk(pos, stop, e0);
        pos = stop;
      }
    }
  }

 private:
  // Input element offset of output element e.
  std::uint64_t in_offset(std::uint64_t e) const {
    std::uint64_t off = 0;
    for (std::size_t d = a_.dim.size(); d-- > 0;) {
      off += (e % a_.dim[d]) * a_.istride[d];
      e /= a_.dim[d];
    }
    return off;
  }

  // Element by element, row by row, for output [p0, p1); dst index relative to `origin`.
  void walk(std::uint64_t p0, std::uint64_t p1, std::uint64_t origin) {
    const std::size_t last = a_.dim.size() - 1;
    const std::uint64_t n = a_.dim[last], s = a_.istride[last];
    std::uint64_t pos = p0;
    while (pos < p1) {
      const std::uint64_t col = pos % n, len = std::min(n - col, p1 - pos);
      const E* in = src_ + in_offset(pos);
      E* out = dst_ + (pos - origin);
      if (s == 1) {
        std::memcpy(out, in, len * N);
      } else {
        for (std::uint64_t j = 0; j < len; ++j) out[j] = in[j * s];
      }
      pos += len;
    }
  }

  // `steps` whole steps of axis q starting at output element `pos` (index aq on axis q):
  // for every index of the axes between q and the last one, a tiled transpose of
  // [steps x dim[last]] (input contiguous along q, output contiguous along last).
  void tiles(std::uint64_t pos, std::uint64_t aq, std::uint64_t steps, std::size_t q, std::uint64_t U,
             std::uint64_t origin) {
    (void)aq;
    const std::size_t last = a_.dim.size() - 1;
    const std::uint64_t nl = a_.dim[last], sl = a_.istride[last];
    const std::uint64_t in0 = in_offset(pos);  // input offset of (.., aq, 0, .., 0)
    E* out0 = dst_ + (pos - origin);
    // The middle axes q+1 .. last-1, walked by an odometer.
    const std::size_t mid = last - q - 1;
    std::vector<std::uint64_t> idx(mid, 0);
    std::uint64_t mid_in = 0, mid_out = 0;
    const std::uint64_t mids = U / nl;
    constexpr std::uint64_t T = N >= 8 ? 16 : 32;
    for (std::uint64_t m = 0; m < mids; ++m) {
      const E* in = src_ + in0 + mid_in;
      E* out = out0 + mid_out;
      for (std::uint64_t i0 = 0; i0 < steps; i0 += T) {
        const std::uint64_t i1 = std::min(steps, i0 + T);
        for (std::uint64_t j0 = 0; j0 < nl; j0 += T) {
          const std::uint64_t j1 = std::min(nl, j0 + T);
          for (std::uint64_t i = i0; i < i1; ++i) {
            E* o = out + i * U;
            const E* s = in + i;
            for (std::uint64_t j = j0; j < j1; ++j) o[j] = s[j * sl];
          }
        }
      }
      // Next middle index: output offset advances by nl, input by the axis's stride.
      mid_out += nl;
      for (std::size_t k = mid; k-- > 0;) {
        const std::size_t d = q + 1 + k;
        mid_in += a_.istride[d];
        if (++idx[k] < a_.dim[d]) break;
        mid_in -= a_.istride[d] * a_.dim[d];
        idx[k] = 0;
      }
    }
  }

  const Axes& a_;
  const E* src_;
  E* dst_;
};

}  // namespace

void permute_range(const std::byte* src, const std::vector<std::int64_t>& in_shape, const std::vector<int>& perm,
                   std::size_t elem, std::uint64_t e0, std::uint64_t e1, std::byte* dst) {
  if (e1 <= e0) return;
  const Axes a = simplify(in_shape, perm);
  switch (elem) {
    case 1: Kernel<1>(a, src, dst).run(e0, e1); return;
    case 2: Kernel<2>(a, src, dst).run(e0, e1); return;
    case 4: Kernel<4>(a, src, dst).run(e0, e1); return;
    case 8: Kernel<8>(a, src, dst).run(e0, e1); return;
    case 16: Kernel<16>(a, src, dst).run(e0, e1); return;
    default: throw MappingError("permute", "element size " + std::to_string(elem) + " is not supported");
  }
}

}  // namespace ckb
