// All fuzz targets in one libFuzzer binary, the target picked by the CKB_FUZZ_TARGET
// environment variable (e.g. CKB_FUZZ_TARGET=pickle ckb_fuzz_multi corpus/). One binary
// instead of sixteen keeps what tools/fuzz.sh ships to a remote fuzzing host small; each
// process still runs exactly one target, so coverage feedback is per target.
#define CKB_FUZZ_REGRESS 1

#include <cstdio>
#include <cstdlib>

#include "fuzz/fuzz_common.h"
#include "fuzz/all_targets.inc"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const ckb::fuzz::TargetFn fn = [] {
    const char* name = std::getenv("CKB_FUZZ_TARGET");
    auto it = name ? ckb::fuzz::registry().find(name) : ckb::fuzz::registry().end();
    if (it == ckb::fuzz::registry().end()) {
      std::fprintf(stderr, "set CKB_FUZZ_TARGET to one of:");
      for (const auto& [n, f] : ckb::fuzz::registry()) std::fprintf(stderr, " %s", n.c_str());
      std::fprintf(stderr, "\n");
      std::abort();
    }
    return it->second;
  }();
  try {
    fn(data, size);
  } catch (const ckb::Error&) {
  }
  return 0;
}
