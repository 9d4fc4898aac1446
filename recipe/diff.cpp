// Implementation of recipe/diff.h.
#include "recipe/diff.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <thread>

#include "core/thread_pool.h"
#include "ops/cast.h"

namespace ckb {
namespace {

// Sign-magnitude float bits mapped to a monotonic integer line (for ULP distances).
std::int64_t ordered_bits(DType t, const std::byte* p) {
  std::uint64_t bits = 0;
  std::size_t w = dtype_size(t);
  std::memcpy(&bits, p, w);
  std::uint64_t sign = bits >> (8 * w - 1);
  std::uint64_t mag = bits & ((w == 8) ? ~0ull >> 1 : ((1ull << (8 * w - 1)) - 1));
  return sign ? -static_cast<std::int64_t>(mag) : static_cast<std::int64_t>(mag);
}

// Bytes-only dtypes have no values to compare: equal bytes or different (mismatches counts
// the differing bytes).
void compare_raw(const Tensor& a, const Tensor& b, LeafDiff& d) {
  d.detail = a.info.dtype == b.info.dtype ? "compared as raw " + std::string(dtype_name(a.info.dtype)) + " bytes"
                                          : "dtype " + std::string(dtype_name(a.info.dtype)) + " vs " +
                                                std::string(dtype_name(b.info.dtype)) + " (bytes-only: values not compared)";
  if (a.info.dtype != b.info.dtype) {
    d.status = "different";
    return;
  }
  const std::uint64_t n = a.info.nbytes(), kBlock = 1u << 20;
  std::vector<std::byte> ba, bb;
  for (std::uint64_t off = 0; off < n; off += kBlock) {
    const std::size_t len = static_cast<std::size_t>(std::min(kBlock, n - off));
    ba.resize(len);
    bb.resize(len);
    a.source->read(off, ba);
    b.source->read(off, bb);
    for (std::size_t k = 0; k < len; ++k) d.mismatches += ba[k] != bb[k];
  }
  d.status = d.mismatches ? "different" : "equal";
}

std::string dtypes(const Tensor& a, const Tensor& b) {
  return std::string(dtype_name(a.info.dtype)) + " vs " + std::string(dtype_name(b.info.dtype));
}

void compare_tensors(const Tensor& a, const Tensor& b, const DiffOptions& o, LeafDiff& d) {
  if (a.info.shape != b.info.shape) {
    d.status = "shape_mismatch";
    d.detail = shape_str(a.info.shape) + " vs " + shape_str(b.info.shape);
    if (a.info.dtype != b.info.dtype) d.detail += ", dtype " + dtypes(a, b);
    return;
  }
  if (dtype_is_bytes_only(a.info.dtype) || dtype_is_bytes_only(b.info.dtype)) return compare_raw(a, b, d);
  const bool same_dtype = a.info.dtype == b.info.dtype;
  const bool numeric = !dtype_is_complex(a.info.dtype) && !dtype_is_complex(b.info.dtype);
  d.ulp_compared = same_dtype && dtype_is_float(a.info.dtype);
  const std::size_t wa = dtype_size(a.info.dtype), wb = dtype_size(b.info.dtype);
  const std::uint64_t n = a.info.numel();
  const std::uint64_t kElems = 1u << 20;
  std::vector<std::byte> ba, bb;
  std::vector<double> da, db;
  bool bytes_equal = same_dtype;  // every byte equal
  bool values_equal = true;       // every value equal (NaN = NaN, -0 = +0)
  for (std::uint64_t e0 = 0; e0 < n; e0 += kElems) {
    std::size_t cnt = static_cast<std::size_t>(std::min(kElems, n - e0));
    ba.resize(cnt * wa);
    bb.resize(cnt * wb);
    a.source->read(e0 * wa, ba);
    b.source->read(e0 * wb, bb);
    if (same_dtype && std::memcmp(ba.data(), bb.data(), ba.size()) == 0) continue;
    bytes_equal = false;
    if (!numeric) {  // complex: equal elements or not
      for (std::size_t k = 0; k < cnt; ++k)
        if (!same_dtype || std::memcmp(ba.data() + k * wa, bb.data() + k * wb, wa) != 0) ++d.mismatches;
      values_equal = false;
      continue;
    }
    da.resize(cnt);
    db.resize(cnt);
    convert_elements(a.info.dtype, DType::F64, ba.data(), reinterpret_cast<std::byte*>(da.data()), cnt, nullptr);
    convert_elements(b.info.dtype, DType::F64, bb.data(), reinterpret_cast<std::byte*>(db.data()), cnt, nullptr);
    for (std::size_t k = 0; k < cnt; ++k) {
      double x = da[k], y = db[k];
      if (std::isnan(x) || std::isnan(y)) {
        if (!(std::isnan(x) && std::isnan(y))) ++d.mismatches, values_equal = false;
        continue;
      }
      if (x == y) continue;  // includes equal infinities and +0/-0
      values_equal = false;
      double abs = std::fabs(x - y);
      double rel = y != 0 ? abs / std::fabs(y) : INFINITY;
      d.max_abs = std::max(d.max_abs, abs);
      d.max_rel = std::max(d.max_rel, rel);
      std::uint64_t ulp = 0;
      if (d.ulp_compared) {
        auto ux = ordered_bits(a.info.dtype, ba.data() + k * wa);
        auto uy = ordered_bits(b.info.dtype, bb.data() + k * wb);
        ulp = static_cast<std::uint64_t>(ux > uy ? ux - uy : uy - ux);
        d.max_ulp = std::max(d.max_ulp, ulp);
      }
      const bool ok = abs <= o.atol + o.rtol * std::fabs(y) || (d.ulp_compared && o.ulp && ulp <= o.ulp);
      if (!ok) ++d.mismatches;
    }
  }
  if (d.mismatches) {
    d.status = "different";
    if (!same_dtype) d.detail = "dtype " + dtypes(a, b);
  } else if (!same_dtype) {
    d.status = o.ignore_dtype ? (values_equal ? "equal" : "close") : "dtype_mismatch";
    d.detail = (values_equal ? "values equal, dtypes differ: " : "values within tolerance, dtypes differ: ") + dtypes(a, b);
  } else if (bytes_equal) {
    d.status = "equal";
  } else {
    d.status = "close";
    if (values_equal) d.detail = "values equal, bits differ (signed zeros or NaN payloads)";
  }
}

}  // namespace

bool DiffResult::within_tolerance() const {
  return std::all_of(leaves.begin(), leaves.end(), [](const LeafDiff& d) { return d.status == "equal" || d.status == "close"; });
}

nlohmann::ordered_json DiffResult::to_json() const {
  nlohmann::ordered_json j;
  j["within_tolerance"] = within_tolerance();
  std::map<std::string, int> counts;
  j["leaves"] = nlohmann::ordered_json::object();
  for (const auto& d : leaves) {
    counts[d.status]++;
    nlohmann::ordered_json e = {{"status", d.status}};
    if (!d.detail.empty()) e["detail"] = d.detail;
    if (d.status == "close" || d.status == "different" || d.status == "dtype_mismatch") {
      e["max_abs"] = d.max_abs;
      e["max_rel"] = d.max_rel;  // infinite (JSON null) where b is 0 and a is not
      if (d.ulp_compared) e["max_ulp"] = d.max_ulp;
      e["mismatches"] = d.mismatches;
    }
    j["leaves"][d.name] = e;
  }
  j["counts"] = counts;
  return j;
}

DiffResult diff_trees(const Node& a, const Node& b, const DiffOptions& opts) {
  std::map<std::string, const Node*> la, lb;
  std::vector<std::string> order;
  visit_leaves(a, [&](const Path& p, const Node& n) {
    la[join_path(p)] = &n;
    order.push_back(join_path(p));
  });
  visit_leaves(b, [&](const Path& p, const Node& n) {
    auto k = join_path(p);
    lb[k] = &n;
    if (!la.count(k)) order.push_back(k);
  });
  DiffResult r;
  r.leaves.resize(order.size());
  auto compare = [&](std::size_t i) {
    auto& d = r.leaves[i];
    d.name = order[i];
    auto ia = la.find(d.name), ib = lb.find(d.name);
    if (ia == la.end()) { d.status = "only_in_b"; return; }
    if (ib == lb.end()) { d.status = "only_in_a"; return; }
    const Node &x = *ia->second, &y = *ib->second;
    if (x.is_tensor() && y.is_tensor()) compare_tensors(x.tensor(), y.tensor(), opts, d);
    else if (x.type_name() != y.type_name()) {
      d.status = "type_mismatch";
      d.detail = std::string(x.type_name()) + " vs " + std::string(y.type_name());
    } else {
      d.status = leaf_values_equal(x, y) ? "equal" : "different";
    }
  };
  parallel_for(order.size(), opts.threads ? opts.threads : std::max(1u, std::thread::hardware_concurrency()), compare);
  return r;
}

}  // namespace ckb
