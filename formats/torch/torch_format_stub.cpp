// Placeholder registration for the torch format until its reader/writer land.
#include "formats/format.h"

namespace ckb {
Format make_torch_format() {
  Format f;
  f.name = "torch";
  f.description = "torch (not implemented yet)";
  f.detect = [](const std::string&) { return false; };
  return f;
}
}  // namespace ckb
