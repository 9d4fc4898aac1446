// Shared scaffolding for the libFuzzer targets in fuzz/*_fuzz.cpp.
//
// Each target is written once as
//     CKB_FUZZ_TARGET(name) { ... body using `data` and `size` ... }
// and compiled two ways:
//  - as a libFuzzer binary (fuzz/CMakeLists.txt, clang -fsanitize=fuzzer): the macro defines
//    LLVMFuzzerTestOneInput, which runs the body and swallows ckb::Error (a clean rejection of
//    bad input is the expected outcome). Any other exception escapes and libFuzzer reports it
//    as a crash, as it does for sanitizer reports, timeouts and allocations over -malloc_limit_mb.
//  - inside the gtest binary (tests/fuzz_regress_test.cpp defines CKB_FUZZ_REGRESS before
//    including every target): the macro registers the body under `name`, and the test replays
//    tests/data/fuzz_regressions/<name>/* through it under the normal (and ASan/UBSan) build.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/tensor.h"
#include "core/tree.h"

namespace ckb::fuzz {

using TargetFn = void (*)(const std::uint8_t*, std::size_t);

inline std::map<std::string, TargetFn>& registry() {
  static std::map<std::string, TargetFn> r;
  return r;
}
inline bool register_target(const char* name, TargetFn fn) {
  registry()[name] = fn;
  return true;
}

inline std::span<const std::byte> bytes(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const std::byte*>(data), size};
}

// The parsers that read whole files take a path: the input is put into one anonymous
// in-memory file per process (memfd, rewritten for every input) and its /proc/self/fd path
// is returned, so no disk I/O happens per execution.
inline std::string as_file(const std::uint8_t* data, std::size_t size) {
  static int fd = -1;
  if (fd < 0) {
    fd = ::memfd_create("ckb-fuzz-input", MFD_CLOEXEC);
    if (fd < 0) ::abort();
  }
  if (::ftruncate(fd, 0) != 0) ::abort();
  std::size_t done = 0;
  while (done < size) {
    ssize_t n = ::pwrite(fd, data + done, size - done, static_cast<off_t>(done));
    if (n <= 0) ::abort();
    done += static_cast<std::size_t>(n);
  }
  return "/proc/self/fd/" + std::to_string(fd);
}

// Reads every tensor of at most `cap` bytes (exercising lazy sources: byte swapping,
// Fortran order, inflation), in two pieces so offset arithmetic is exercised too.
inline void read_small_tensors(const Node& root, std::uint64_t cap = 1u << 20) {
  for (const auto& [name, t] : tensor_list(root)) {
    const std::uint64_t n = t->info.nbytes();
    if (n > cap || !t->source) continue;
    std::vector<std::byte> buf(static_cast<std::size_t>(n));
    const std::uint64_t half = n / 2;
    t->source->read(0, std::span<std::byte>(buf.data(), static_cast<std::size_t>(half)));
    t->source->read(half, std::span<std::byte>(buf.data() + half, static_cast<std::size_t>(n - half)));
  }
}

}  // namespace ckb::fuzz

#ifdef CKB_FUZZ_REGRESS
#define CKB_FUZZ_TARGET(name)                                                                               \
  static void ckb_fuzz_##name(const std::uint8_t* data, std::size_t size);                                  \
  [[maybe_unused]] static const bool ckb_fuzz_registered_##name =                                           \
      ckb::fuzz::register_target(#name, &ckb_fuzz_##name);                                                 \
  static void ckb_fuzz_##name(const std::uint8_t* data, std::size_t size)
#else
#define CKB_FUZZ_TARGET(name)                                                                               \
  static void ckb_fuzz_##name(const std::uint8_t* data, std::size_t size);                                  \
  extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {                       \
    try {                                                                                                   \
      ckb_fuzz_##name(data, size);                                                                          \
    } catch (const ckb::Error&) {                                                                           \
    }                                                                                                       \
    return 0;                                                                                               \
  }                                                                                                         \
  static void ckb_fuzz_##name(const std::uint8_t* data, std::size_t size)
#endif
