// check_bytes_only_dtypes() of formats/format.h: the one gate that keeps bytes-only tensors
// (F8_E8M0, FNUZ float8s, packed F4/F6) out of writers whose format has no such type, so
// that no writer can store them under a wrong type name or size.
#include <algorithm>

#include "core/errors.h"
#include "formats/format.h"

namespace ckb {

void check_bytes_only_dtypes(const Node& layout, const Format& fmt) {
  visit_leaves(layout, [&](const Path& path, const Node& n) {
    if (!n.is_tensor()) return;
    const DType t = n.tensor().info.dtype;
    if (!dtype_is_bytes_only(t)) return;
    const auto& ok = fmt.bytes_only_dtypes;
    if (std::find(ok.begin(), ok.end(), t) == ok.end())
      refuse_bytes_only(join_path(path), t, fmt.name + " has no " + std::string(dtype_name(t)) + " type to store it as");
  });
}

}  // namespace ckb
