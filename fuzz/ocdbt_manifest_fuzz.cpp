// OCDBT manifests: the framing (magic, length, version, compression incl. zstd, crc32c) and
// the manifest body (config, data-file table, inline versions, version-node refs).
// Inputs whose frame is not valid are also parsed as a raw body, so the body parser is
// reached without the fuzzer having to forge a crc32c.
#include "fuzz/fuzz_common.h"
#include "io/ocdbt/framing.h"
#include "io/ocdbt/manifest.h"

CKB_FUZZ_TARGET(ocdbt_manifest) {
  auto in = ckb::fuzz::bytes(data, size);
  try {
    auto body = ckb::ocdbt::decode_framed(in, nullptr, ckb::ocdbt::kManifestMagic, "fuzz/manifest.ocdbt", 0, "manifest");
    ckb::ocdbt::parse_manifest(body.bytes, "fuzz/manifest.ocdbt", body.file_offset);
    return;
  } catch (const ckb::Error&) {
  }
  ckb::ocdbt::parse_manifest(in, "fuzz/manifest.ocdbt", 0);
}
