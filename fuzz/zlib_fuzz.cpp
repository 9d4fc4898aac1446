// zarr zlib and gzip decoding with an output bound (bit 0x40 of the second byte picks gzip).
#include "fuzz/codec_common.h"

CKB_FUZZ_TARGET(zlib) {
  if (size < 2) return;
  ckb::fuzz::run_codec((data[1] & 0x40) ? ckb::zarr::BytesCodecKind::Gzip : ckb::zarr::BytesCodecKind::Zlib, data,
                       size);
}
