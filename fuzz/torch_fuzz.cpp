// Whole torch files: zip (data.pkl + data/N records, byteorder, version) or legacy
// (magic, protocol, sys info, pickle, storage keys, raw storages), through the tree builder
// and lazy tensor reads.
#include "fuzz/fuzz_common.h"
#include "formats/torch/torch_format.h"

CKB_FUZZ_TARGET(torch) {
  auto ck = ckb::torch_format::read(ckb::fuzz::as_file(data, size));
  ckb::fuzz::read_small_tensors(ck.root);
}
