// safetensors: the 8-byte length, the JSON header (dtypes, shapes, data_offsets, overlaps,
// __metadata__) and reads of the tensors it declares.
#include "fuzz/fuzz_common.h"
#include "formats/safetensors/safetensors.h"

CKB_FUZZ_TARGET(safetensors) {
  auto ck = ckb::safetensors::read(ckb::fuzz::as_file(data, size));
  ckb::fuzz::read_small_tensors(ck.root);
}
