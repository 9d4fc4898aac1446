// Implementation of ops/rearrange.h on top of ops::reshape and ops::permute.
#include "ops/rearrange.h"

#include <algorithm>
#include <sstream>

#include "core/errors.h"
#include "ops/ops.h"

namespace ckb {
namespace {

using Groups = std::vector<std::vector<std::string>>;

Groups parse_side(const std::string& side, const std::string& what) {
  Groups g;
  std::string tok;
  bool in_group = false;
  auto flush = [&] {
    if (tok.empty()) return;
    if (in_group) g.back().push_back(tok);
    else g.push_back({tok});
    tok.clear();
  };
  for (char c : side) {
    if (c == '(') {
      flush();
      if (in_group) throw MappingError(what, "nested '(' in rearrange '" + side + "'");
      in_group = true;
      g.emplace_back();
    } else if (c == ')') {
      flush();
      if (!in_group) throw MappingError(what, "unmatched ')' in rearrange '" + side + "'");
      in_group = false;
    } else if (c == ' ') {
      flush();
    } else if (std::isalnum(static_cast<unsigned char>(c)) || c == '_') {
      tok += c;
    } else {
      throw MappingError(what, std::string("bad character '") + c + "' in rearrange '" + side + "'");
    }
  }
  flush();
  if (in_group) throw MappingError(what, "unclosed '(' in rearrange '" + side + "'");
  return g;
}

struct Resolved {
  Shape elementary;        // input split into named axes
  std::vector<int> perm;   // elementary -> output elementary order
  Shape out;               // final output shape
};

Resolved resolve(const Shape& in, const std::string& spec, const std::map<std::string, std::int64_t>& sizes,
                 const std::string& what) {
  auto arrow = spec.find("->");
  if (arrow == std::string::npos) throw MappingError(what, "rearrange '" + spec + "' needs '->'");
  Groups lhs = parse_side(spec.substr(0, arrow), what), rhs = parse_side(spec.substr(arrow + 2), what);
  if (lhs.size() != in.size())
    throw MappingError(what, "rearrange '" + spec + "' expects rank " + std::to_string(lhs.size()) + " but the tensor is " +
                                 shape_str(in));
  std::map<std::string, std::int64_t> dim = sizes;
  std::vector<std::string> order;
  for (std::size_t gi = 0; gi < lhs.size(); ++gi) {
    const auto& grp = lhs[gi];
    std::int64_t known = 1;
    std::string unknown;
    for (const auto& n : grp) {
      if (std::find(order.begin(), order.end(), n) != order.end())
        throw MappingError(what, "axis '" + n + "' appears twice in rearrange '" + spec + "'");
      order.push_back(n);
      if (grp.size() == 1) continue;
      auto it = dim.find(n);
      if (it != dim.end()) known *= it->second;
      else if (unknown.empty()) unknown = n;
      else throw MappingError(what, "rearrange '" + spec + "': cannot infer both '" + unknown + "' and '" + n +
                                        "'; give one in sizes");
    }
    if (grp.size() == 1) {
      auto it = dim.find(grp[0]);
      if (it != dim.end() && it->second != in[gi])
        throw MappingError(what, "rearrange '" + spec + "': axis '" + grp[0] + "' is " + std::to_string(in[gi]) +
                                     ", expected " + std::to_string(it->second));
      dim[grp[0]] = in[gi];
    } else if (!unknown.empty()) {
      if (known == 0 || in[gi] % known)
        throw MappingError(what, "rearrange '" + spec + "': " + std::to_string(in[gi]) + " is not divisible by " +
                                     std::to_string(known));
      dim[unknown] = in[gi] / known;
    } else if (known != in[gi]) {
      throw MappingError(what, "rearrange '" + spec + "': group of size " + std::to_string(known) + " does not match axis " +
                                   std::to_string(in[gi]));
    }
  }
  Resolved r;
  for (const auto& n : order) r.elementary.push_back(dim.at(n));
  std::vector<std::string> out_order;
  for (const auto& grp : rhs) {
    std::int64_t p = 1;
    for (const auto& n : grp) {
      auto pos = std::find(order.begin(), order.end(), n);
      if (pos == order.end()) throw MappingError(what, "rearrange '" + spec + "': output axis '" + n + "' is not an input axis");
      if (std::find(out_order.begin(), out_order.end(), n) != out_order.end())
        throw MappingError(what, "rearrange '" + spec + "': output axis '" + n + "' appears twice");
      out_order.push_back(n);
      r.perm.push_back(static_cast<int>(pos - order.begin()));
      p *= dim.at(n);
    }
    r.out.push_back(p);
  }
  if (out_order.size() != order.size())
    throw MappingError(what, "rearrange '" + spec + "' drops an axis (every input axis must appear in the output)");
  return r;
}

}  // namespace

Tensor rearrange(const Tensor& t, const std::string& spec, const std::map<std::string, std::int64_t>& sizes,
                 const std::string& what) {
  auto r = resolve(t.info.shape, spec, sizes, what);
  Tensor x = ops::reshape(t, r.elementary, what);
  x = ops::permute(x, r.perm, what);
  return ops::reshape(x, r.out, what);
}

Shape rearrange_shape(const Shape& in, const std::string& spec, const std::map<std::string, std::int64_t>& sizes,
                      const std::string& what) {
  return resolve(in, spec, sizes, what).out;
}

std::string invert_rearrange(const std::string& spec) {
  auto arrow = spec.find("->");
  if (arrow == std::string::npos) throw MappingError(spec, "rearrange needs '->'");
  auto trim = [](std::string s) {
    while (!s.empty() && s.front() == ' ') s.erase(s.begin());
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s;
  };
  return trim(spec.substr(arrow + 2)) + " -> " + trim(spec.substr(0, arrow));
}

}  // namespace ckb
