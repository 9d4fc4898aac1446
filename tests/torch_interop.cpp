// Torch interop tool, not part of the test suite: exports files for a machine with PyTorch
// to load (tools/verify_torch_load.py), and checks files PyTorch wrote. Both need a directory,
// so they run only when asked and fail without it:
//   CKB_TORCH_EXPORT_DIR=/tmp/x build/tests/ckb_torch_interop --gtest_filter=TorchInterop.Export
//   python3 tools/verify_torch_load.py /tmp/x /tmp/x/expected.json --mmap
//   CKB_TORCH_SAMPLES_DIR=/tmp/s build/tests/ckb_torch_interop --gtest_filter=TorchInterop.Samples
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <limits>

#include "core/hash.h"
#include "formats/format.h"
#include "test_util.h"
#include "torch_samples.h"

namespace ckb {
namespace {

using test::all_kinds_checkpoint;
using test::fixture_file;

// Reads every <name>.pt in CKB_TORCH_SAMPLES_DIR and
// compares it with expected.json ({name: {tensor: {dtype, shape, sha256}}}), e.g. files a
// machine with torch wrote (module state_dicts with _metadata, Parameters, uint16/32/64 and
// float8 via _rebuild_tensor_v3, views, a bare tensor, nested optimizer-like dicts).
TEST(TorchInterop, Samples) {
  const char* dir = std::getenv("CKB_TORCH_SAMPLES_DIR");
  ASSERT_NE(dir, nullptr) << "set CKB_TORCH_SAMPLES_DIR to a directory of torch-written samples";
  auto expected = test::load_json(std::string(dir) + "/expected.json");
  for (const auto& [name, tensors] : expected.items()) {
    SCOPED_TRACE(name);
    Checkpoint ck = read_checkpoint(std::string(dir) + "/" + name + ".pt");
    test::expect_matches_manifest(ck, nlohmann::json{{"tensors", tensors}});
  }
}


// Writes every torch fixture's round trip, a forced-zip64 file and the all-kinds checkpoint
// into CKB_TORCH_EXPORT_DIR, plus expected.json for tools/verify_torch_load.py.
TEST(TorchInterop, Export) {
  const char* dir = std::getenv("CKB_TORCH_EXPORT_DIR");
  ASSERT_NE(dir, nullptr) << "set CKB_TORCH_EXPORT_DIR to the directory to export into";
  std::filesystem::create_directories(dir);
  nlohmann::json expected;
  auto manifest_of = [](const Checkpoint& ck) {
    nlohmann::json m;
    for (const auto& [name, t] : tensor_list(ck.root))
      m["tensors"][name] = {{"dtype", dtype_name(t->info.dtype)}, {"shape", t->info.shape}, {"sha256", tensor_sha256(*t)}};
    return m;
  };
  for (std::string fx : {"torch_zip", "torch_legacy", "torch_with_extras"}) {
    Checkpoint in = read_checkpoint(fixture_file(fx));
    write_checkpoint(in, std::string(dir) + "/" + fx + ".pt", format_by_name("torch"));
    expected[fx + ".pt"] = test::load_json(test::fixture(fx + "/manifest.json"));
    expected[fx + ".pt"].erase("shared_storage");
  }
  {
    WriteOptions z64;
    z64.options["zip64"] = "1";
    write_checkpoint(read_checkpoint(fixture_file("torch_zip")), std::string(dir) + "/forced_zip64.pt",
                     format_by_name("torch"), z64);
    expected["forced_zip64.pt"] = expected["torch_zip.pt"];
  }
  // Round trips of torch-written samples (see TorchInterop.Samples), when present.
  if (const char* samples = std::getenv("CKB_TORCH_SAMPLES_DIR")) {
    auto want = test::load_json(std::string(samples) + "/expected.json");
    for (const auto& [name, tensors] : want.items()) {
      write_checkpoint(read_checkpoint(std::string(samples) + "/" + name + ".pt"),
                       std::string(dir) + "/rt_" + name + ".pt", format_by_name("torch"));
      expected["rt_" + name + ".pt"] = {{"tensors", tensors}};
    }
  }
  Checkpoint all = all_kinds_checkpoint();
  write_checkpoint(all, std::string(dir) + "/all_kinds.pt", format_by_name("torch"));
  expected["all_kinds.pt"] = manifest_of(all);
  expected["all_kinds.pt"]["non_tensor_leaves"] = {
      {"extra", {{"neg", -5}, {"i16", 40000}, {"i32", -2000000000}, {"big", std::int64_t{1} << 40},
                 {"min", std::numeric_limits<std::int64_t>::min()}, {"max", std::numeric_limits<std::int64_t>::max()},
                 {"pi", 3.141592653589793}, {"yes", true}, {"no", false}, {"text", "héllo/ünïcode"}, {"nothing", nullptr},
                 {"tup", {0, 1, 2, 3, 4}}, {"pair", {"a"}}}}};
  test::write_file(std::string(dir) + "/expected.json", expected.dump(1));
  SUCCEED() << "exported to " << dir;
}

}  // namespace
}  // namespace ckb
