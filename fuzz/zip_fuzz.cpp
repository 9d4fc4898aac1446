// Zip archives (io/zip.*): end of central directory, zip64 locator/record/extra fields,
// central directory entries, local headers, names, stored and deflated members (CRC-32).
#include "fuzz/fuzz_common.h"
#include "io/zip.h"

CKB_FUZZ_TARGET(zip) {
  ckb::ZipReader zr(ckb::MappedFile::open(ckb::fuzz::as_file(data, size)));
  for (const auto& e : zr.entries()) {
    zr.find(e.name);
    try {
      if (e.method == 0) zr.stored_bytes(e);
      auto b = zr.read(e);
      if (b.size() >= 2) {
        auto src = zr.member_source(e, 1, b.size() - 1);
        std::vector<std::byte> out(b.size() - 1);
        src->read(0, out);
      }
    } catch (const ckb::Error&) {
      // one bad member does not end the walk over the others
    }
  }
}
