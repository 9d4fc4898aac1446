// The data-only pickle interpreter (formats/torch/pickle.*): every opcode, the allowlist of
// globals, REDUCE of the torch rebuild functions, memo and mark handling. Runs up to four
// consecutive pickles as the legacy torch format does.
#include "fuzz/fuzz_common.h"
#include "formats/torch/pickle.h"

CKB_FUZZ_TARGET(pickle) {
  ckb::pickle::Arena arena;
  ckb::pickle::Unpickler u(ckb::fuzz::bytes(data, size), "fuzz.pkl", 0, arena);
  for (int i = 0; i < 4 && u.pos() < size; ++i) u.load();
}
