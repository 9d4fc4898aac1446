// zarr blosc decoding with an output bound (the blosc header's sizes, typesize, flags,
// block starts, inner compressors). Also runs the crc32c codec over the same input.
#include "fuzz/codec_common.h"

CKB_FUZZ_TARGET(blosc) {
  try {
    ckb::fuzz::run_codec(ckb::zarr::BytesCodecKind::Crc32c, data, size);
  } catch (const ckb::Error&) {
  }
  ckb::fuzz::run_codec(ckb::zarr::BytesCodecKind::Blosc, data, size);
}
