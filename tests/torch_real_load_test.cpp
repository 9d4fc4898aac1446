// Proof with real PyTorch: .pt files written by ckptbridge (from several fixtures, flat and
// nested) are loaded by torch.load(weights_only=True), and every tensor's dtype, shape and
// sha256 match. Runs when the system Python has torch (CI installs Debian's python3-torch);
// skipped otherwise.
#include <cstdlib>
#include <fstream>

#include "core/hash.h"
#include "formats/format.h"
#include "test_util.h"

namespace ckb {
namespace {

bool system_python_has_torch() {
  return std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
}

TEST(TorchRealLoad, OurPtFilesLoadWithWeightsOnly) {
  if (!system_python_has_torch()) GTEST_SKIP() << "/usr/bin/python3 has no torch";
  test::TempDir tmp;
  nlohmann::json expected;
  const std::pair<const char*, const char*> cases[] = {
      {"torch_zip.pt", "torch_zip/model.pt"},
      {"torch_legacy.pt", "torch_legacy/model.pt"},
      {"extras.pt", "torch_with_extras/checkpoint.pt"},
      {"from_safetensors.pt", "safetensors_single/model.safetensors"},
      {"from_msgpack.pt", "flax_msgpack/params.msgpack"},
      {"from_orbax_openpi.pt", "openpi_pi0_tiny_lora/release/params"},
  };
  // torch < 2 has no BINFLOAT in its weights_only unpickler, so even torch's own file with a
  // float leaf (lr) does not load there; the device run checks it with torch 2.11.
  const bool modern = std::system("/usr/bin/python3 -c 'import torch,sys; sys.exit(int(torch.__version__.split(\".\")[0]) < 2)'") == 0;
  for (const auto& [out, src] : cases) {
    if (!modern && std::string(out) == "extras.pt") continue;
    Checkpoint ck = read_checkpoint(test::fixture(src));
    write_checkpoint(ck, tmp / out, format_by_name("torch"));
    nlohmann::json m;
    for (const auto& [name, t] : tensor_list(ck.root))
      m["tensors"][name] = {{"dtype", std::string(dtype_name(t->info.dtype))}, {"shape", t->info.shape}, {"sha256", tensor_sha256(*t)}};
    if (std::string(out) == "extras.pt") m["non_tensor_leaves"] = test::load_json(test::fixture("torch_with_extras/manifest.json"))["non_tensor_leaves"];
    expected[out] = m;
  }
  test::write_file(tmp / "expected.json", expected.dump());
  std::string cmd = "/usr/bin/python3 " + std::string(CKB_SOURCE_DIR) + "/tools/verify_torch_load.py " + tmp.path() + " " +
                    tmp / "expected.json" + " > " + tmp / "log.txt" + " 2>&1";
  int rc = std::system(cmd.c_str());
  std::string log = test::read_file(tmp / "log.txt");
  EXPECT_EQ(rc, 0) << log;
  std::cout << log;
}

}  // namespace
}  // namespace ckb
