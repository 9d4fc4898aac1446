// Placeholder registration for the npy format until its reader/writer land.
#include "formats/format.h"

namespace ckb {
Format make_npy_format() {
  Format f;
  f.name = "npy";
  f.description = "npy (not implemented yet)";
  f.detect = [](const std::string&) { return false; };
  return f;
}
}  // namespace ckb
