// Placeholder registration for the npz format until its reader/writer land.
#include "formats/format.h"

namespace ckb {
Format make_npz_format() {
  Format f;
  f.name = "npz";
  f.description = "npz (not implemented yet)";
  f.detect = [](const std::string&) { return false; };
  return f;
}
}  // namespace ckb
