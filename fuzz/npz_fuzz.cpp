// .npz archives: zip members that are .npy files, stored or deflated.
#include "fuzz/fuzz_common.h"
#include "formats/numpy/npy.h"

CKB_FUZZ_TARGET(npz) {
  auto ck = ckb::read_npz_file(ckb::fuzz::as_file(data, size));
  ckb::fuzz::read_small_tensors(ck.root);
}
