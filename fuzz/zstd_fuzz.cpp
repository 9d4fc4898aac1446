// zarr / OCDBT zstd decoding with an output bound (declared content size, frames without
// one, multiple frames, skippable frames).
#include "fuzz/codec_common.h"

CKB_FUZZ_TARGET(zstd) { ckb::fuzz::run_codec(ckb::zarr::BytesCodecKind::Zstd, data, size); }
