// Orbax `_METADATA` (tree_metadata entries, key paths, value types, use_ocdbt/use_zarr3,
// custom metadata) as formats/orbax/orbax_metadata.* parses it.
#include "fuzz/fuzz_common.h"
#include "formats/orbax/orbax_metadata.h"

CKB_FUZZ_TARGET(orbax_metadata) {
  auto t = ckb::orbax::parse_tree_metadata(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz/_METADATA");
  for (const auto& e : t.entries) e.param_name();
}
