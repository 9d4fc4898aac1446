// .npy headers (formats/numpy/npy.*): magic, version, header length, the dict literal
// parser (descr, fortran_order, shape), and reads through the byte-swapping / Fortran-order
// sources. The first input byte picks the v2_as_bf16 option.
#include "fuzz/fuzz_common.h"
#include "formats/numpy/npy.h"

CKB_FUZZ_TARGET(npy) {
  if (size == 0) return;
  ckb::NpyReadOptions opts;
  opts.v2_as_bf16 = data[0] & 1;
  ++data, --size;
  ckb::parse_npy_header(ckb::fuzz::bytes(data, size), "fuzz.npy", 0, opts);
  auto ck = ckb::read_npy_file(ckb::fuzz::as_file(data, size), opts);
  ckb::fuzz::read_small_tensors(ck.root);
}
