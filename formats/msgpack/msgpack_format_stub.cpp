// Placeholder registration for the msgpack format until its reader/writer land.
#include "formats/format.h"

namespace ckb {
Format make_msgpack_format() {
  Format f;
  f.name = "msgpack";
  f.description = "msgpack (not implemented yet)";
  f.detect = [](const std::string&) { return false; };
  return f;
}
}  // namespace ckb
