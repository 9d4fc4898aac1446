// Flax msgpack (formats/msgpack/msgpack.*): every msgpack type, ext 1-4, chunked arrays,
// nesting depth, lengths, and the tensors it hands out.
#include "fuzz/fuzz_common.h"
#include "formats/msgpack/msgpack.h"

CKB_FUZZ_TARGET(msgpack) {
  ckb::looks_like_msgpack_map(ckb::fuzz::bytes(data, size));
  auto ck = ckb::read_msgpack_file(ckb::fuzz::as_file(data, size));
  ckb::fuzz::read_small_tensors(ck.root);
}
