// End-to-end tests of the ckptbridge binary: inspect output, convert between formats,
// exit codes and messages on bad input, no output left behind on failure.
#include <filesystem>

#include "test_util.h"

namespace ckb {
namespace {
using test::fixture;
using test::run_cli;
namespace fs = std::filesystem;

TEST(Cli, InspectJsonHashMatchesManifest) {
  auto r = run_cli("inspect --json --hash " + fixture("safetensors_single/model.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["format"], "safetensors");
  auto m = test::load_json(fixture("safetensors_single/manifest.json"));
  EXPECT_EQ(j["tensors"], m["tensors"]);
  EXPECT_TRUE(j["leaves"].empty());
}

TEST(Cli, InspectTableShowsTotals) {
  auto r = run_cli("inspect " + fixture("safetensors_single/model.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("big                     F32    [256, 384]  384.0 KiB"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("16 tensors, 100,930 elements, 391.2 KiB"), std::string::npos) << r.out;
}

TEST(Cli, ConvertWithCastWritesReportAndRoundsToBf16) {
  test::TempDir tmp;
  auto r = run_cli("convert " + fixture("safetensors_single/model.safetensors") + " " + tmp / "o.safetensors" +
                   " --dtype bfloat16 --report " + tmp / "r.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto rep = test::load_json(tmp / "r.json");
  EXPECT_EQ(rep["tensors"]["big"]["dtype"], "BF16");
  EXPECT_EQ(rep["tensors"]["big"]["cast_from"], "F32");
  EXPECT_EQ(rep["tensors"]["big"]["cast"]["elements"], 256 * 384);
  EXPECT_EQ(rep["tensors"]["i64"]["dtype"], "I64");  // integers are not cast
  EXPECT_EQ(rep["tensors"]["bf16_specials"].count("cast"), 0u);
  auto back = run_cli("inspect --json " + tmp / "o.safetensors");
  auto j = nlohmann::json::parse(back.out);
  EXPECT_EQ(j["tensors"]["f16_specials"]["dtype"], "BF16");
}

TEST(Cli, UsageAndDataErrorsHaveDistinctExitCodes) {
  test::TempDir tmp;
  EXPECT_EQ(run_cli("frobnicate").exit_code, 1);
  EXPECT_EQ(run_cli("convert " + fixture("safetensors_single/model.safetensors") + " " + tmp / "x.unknown").exit_code, 1);
  test::write_file(tmp / "junk.bin", "this is not a checkpoint");
  auto r = run_cli("inspect " + tmp / "junk.bin");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("junk.bin"), std::string::npos) << r.err;
  auto missing = run_cli("inspect " + tmp / "nope.safetensors");
  EXPECT_EQ(missing.exit_code, 2);
}

TEST(Cli, RefusesToOverwriteInputOrExistingOutput) {
  test::TempDir tmp;
  auto src = tmp / "a.safetensors";
  fs::copy_file(fixture("safetensors_single/model.safetensors"), src);
  auto before = test::read_file(src);
  auto r = run_cli("convert " + src + " " + src + " --overwrite");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("refusing to overwrite the input"), std::string::npos) << r.err;
  EXPECT_EQ(test::read_file(src), before);
  test::write_file(tmp / "b.safetensors", "old");
  EXPECT_EQ(run_cli("convert " + src + " " + tmp / "b.safetensors").exit_code, 1);
  EXPECT_EQ(test::read_file(tmp / "b.safetensors"), "old");
  EXPECT_EQ(run_cli("convert " + src + " " + tmp / "b.safetensors --overwrite").exit_code, 0);
  EXPECT_NE(test::read_file(tmp / "b.safetensors"), "old");
}

TEST(Cli, FailedConvertLeavesNoOutput) {
  test::TempDir tmp;
  // A safetensors file whose last tensor is cut off: reading fails mid-conversion.
  auto real = test::read_file(fixture("safetensors_single/model.safetensors"));
  test::write_file(tmp / "cut.safetensors", real.substr(0, real.size() - 10));
  auto r = run_cli("convert " + tmp / "cut.safetensors" + " " + tmp / "out.safetensors");
  EXPECT_EQ(r.exit_code, 2);
  std::vector<std::string> names;
  for (auto& e : fs::directory_iterator(tmp.path())) names.push_back(e.path().filename().string());
  EXPECT_EQ(names, std::vector<std::string>{"cut.safetensors"});
}

}  // namespace
}  // namespace ckb
