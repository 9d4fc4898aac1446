// zarr metadata: v2 `.zarray` and v3 `zarr.json` (shape, chunks, dtype, fill value,
// order, compressor/codecs incl. nested sharding_indexed, chunk key encoding), then the
// derived quantities readers compute from it.
#include "fuzz/fuzz_common.h"
#include "formats/zarr/zarr_metadata.h"

CKB_FUZZ_TARGET(zarr_metadata) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  for (int v3 = 0; v3 < 2; ++v3) {
    try {
      auto m = v3 ? ckb::zarr::parse_zarr_json(text, "fuzz/zarr.json") : ckb::zarr::parse_zarray(text, "fuzz/.zarray");
      m.numel();
      m.chunk_numel();
      auto g = m.grid();
      std::vector<std::uint64_t> last(g.size());
      for (std::size_t i = 0; i < g.size(); ++i) last[i] = g[i] ? g[i] - 1 : 0;
      m.chunk_key(last);
    } catch (const ckb::Error&) {
    }
  }
}
