// Placeholder registration for the orbax format until its reader/writer land.
#include "formats/format.h"

namespace ckb {
Format make_orbax_format() {
  Format f;
  f.name = "orbax";
  f.description = "orbax (not implemented yet)";
  f.detect = [](const std::string&) { return false; };
  return f;
}
}  // namespace ckb
