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
  // Totals computed from the manifest, not from the tool's own output.
  auto m = test::load_json(fixture("safetensors_single/manifest.json"));
  std::uint64_t elements = 0;
  for (const auto& [name, t] : m["tensors"].items()) {
    std::uint64_t n = 1;
    for (auto d : t["shape"]) n *= d.get<std::uint64_t>();
    elements += n;
  }
  std::string count = std::to_string(elements);
  for (int pos = static_cast<int>(count.size()) - 3; pos > 0; pos -= 3) count.insert(static_cast<std::size_t>(pos), ",");
  EXPECT_NE(r.out.find(std::to_string(m["tensors"].size()) + " tensors, " + count + " elements"), std::string::npos) << r.out;
}

TEST(Cli, ConvertWithCastWritesReportAndRoundsToBf16) {
  test::TempDir tmp;
  auto r = run_cli("convert " + fixture("safetensors_single/model.safetensors") + " " + tmp / "o.safetensors" +
                   " --dtype bfloat16 --report " + tmp / "r.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto rep = test::load_json(tmp / "r.json");
  EXPECT_EQ(rep["tensors"]["big"]["dtype"], "BF16");
  EXPECT_EQ(rep["tensors"]["big"]["cast"]["from"], "F32");
  EXPECT_EQ(rep["tensors"]["big"]["cast"]["elements"], 256 * 384);
  EXPECT_EQ(rep["ledger"]["sources"]["big"]["status"], "consumed");
  EXPECT_TRUE(rep["ledger"]["ok"].get<bool>());
  // Stats of the written data: bf16_specials holds inf and nan.
  EXPECT_GE(rep["tensors"]["bf16_specials"]["stats"]["nan"].get<int>(), 1);
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

TEST(Cli, PlanAndDiffThroughARecipe) {
  test::TempDir tmp;
  // Rename every tensor under "model/" and transpose the 2-D "big"; drop the rest explicitly.
  test::write_file(tmp / "r.json", R"({"recipe": "t", "rules": [
    {"map": "big", "to": "model/big_t", "ops": [{"rearrange": "a b -> b a"}]},
    {"map": "layers.{i:int}.attn.q.kernel", "to": "model/q/{i}"},
    {"drop": "{x:*}", "reason": "not needed"}]})");
  auto src = fixture("safetensors_single/model.safetensors");
  auto plan = run_cli("plan " + src + " --recipe " + tmp / "r.json --json");
  ASSERT_EQ(plan.exit_code, 0) << plan.err << plan.out;
  auto led = nlohmann::json::parse(plan.out);
  EXPECT_EQ(led["targets"]["model/big_t"]["shape"], (std::vector<int>{384, 256}));
  EXPECT_EQ(led["sources"]["i8"]["status"], "dropped");
  EXPECT_EQ(led["counts"]["sources_consumed"], 3);
  auto conv = run_cli("convert " + src + " " + tmp / "o.safetensors --recipe " + tmp / "r.json");
  ASSERT_EQ(conv.exit_code, 0) << conv.err;
  auto out = run_cli("inspect --json " + tmp / "o.safetensors");
  auto j = nlohmann::json::parse(out.out);
  EXPECT_EQ(j["tensors"].size(), 3u);
  EXPECT_EQ(j["tensors"]["model/q/1"]["dtype"], "BF16");
  // diff maps the source through the same recipe: exactly equal.
  auto same = run_cli("diff " + src + " " + tmp / "o.safetensors --recipe " + tmp / "r.json");
  EXPECT_EQ(same.exit_code, 0) << same.out << same.err;
  // Without the recipe the trees differ.
  EXPECT_EQ(run_cli("diff " + src + " " + tmp / "o.safetensors").exit_code, 1);
}

TEST(Cli, PlanWithUnusedSourceFailsNamingIt) {
  test::TempDir tmp;
  test::write_file(tmp / "r.json", R"({"rules": [{"map": "big", "to": "big"}]})");
  auto r = run_cli("convert " + fixture("safetensors_single/model.safetensors") + " " + tmp / "o.safetensors --recipe " +
                   tmp / "r.json --report " + tmp / "rep.json");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unused source 'embed.weight'"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp / "o.safetensors"));
  auto rep = test::load_json(tmp / "rep.json");
  EXPECT_FALSE(rep["ledger"]["ok"].get<bool>());
  EXPECT_EQ(rep["ledger"]["sources"]["mask"]["status"], "unused");
}

TEST(Cli, DiffReportsUlpAndHonoursTolerance) {
  test::TempDir tmp;
  auto src = fixture("safetensors_single/model.safetensors");
  // f32 -> bf16 -> f32 changes values by at most half a bf16 ulp (2^-8 relative).
  ASSERT_EQ(run_cli("convert " + src + " " + tmp / "b.safetensors --dtype BF16 -q").exit_code, 0);
  ASSERT_EQ(run_cli("convert " + tmp / "b.safetensors " + tmp / "c.safetensors --dtype F32 -q").exit_code, 0);
  auto exact = run_cli("diff " + src + " " + tmp / "c.safetensors --json");
  EXPECT_EQ(exact.exit_code, 1);
  auto j = nlohmann::json::parse(exact.out);
  EXPECT_EQ(j["leaves"]["big"]["status"], "different");
  EXPECT_LE(j["leaves"]["big"]["max_rel"].get<double>(), 1.0 / 256);
  EXPECT_EQ(j["leaves"]["i64"]["status"], "equal");
  // f16 specials widened to f32 are not f16 any more: the dtype differs, which is a difference
  // unless --ignore-dtype; then the values are compared (in float64) within the tolerances.
  auto dtype = run_cli("diff " + src + " " + tmp / "c.safetensors --rtol 0.00391 --atol 1e-30");
  EXPECT_EQ(dtype.exit_code, 1) << dtype.out;
  EXPECT_NE(dtype.out.find("values equal, dtypes differ: BF16 vs F32"), std::string::npos) << dtype.out;
  auto tol = run_cli("diff " + src + " " + tmp / "c.safetensors --rtol 0.00391 --atol 1e-30 --ignore-dtype");
  EXPECT_EQ(tol.exit_code, 0) << tol.out;
}

TEST(Cli, MergeLoraOpenpiLeavesNoLoraAndWritesFloat32) {
  test::TempDir tmp;
  auto src = fixture("openpi_pi0_tiny_lora/train/checkpoints/100");
  auto r = run_cli("merge-lora " + src + " -o " + tmp / "m.safetensors --openpi-config " +
                   fixture("openpi_pi0_tiny_lora/model.json") + " --report " + tmp / "r.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto rep = test::load_json(tmp / "r.json");
  EXPECT_EQ(rep["merged"].size(), 10u);
  EXPECT_TRUE(rep["ledger"]["ok"].get<bool>());
  EXPECT_EQ(rep["ledger"]["counts"]["sources_consumed"], 70);
  for (const auto& m : rep["merged"]) {
    if (m["module"] == "gating_einsum" || m["module"] == "linear") {
      EXPECT_EQ(m["scale"], 1.0) << m;
    }
  }
  auto j = nlohmann::json::parse(run_cli("inspect --json " + tmp / "m.safetensors").out);
  EXPECT_EQ(j["tensors"].size(), 50u);
  for (const auto& [name, t] : j["tensors"].items()) EXPECT_EQ(name.find("lora"), std::string::npos) << name;
  EXPECT_EQ(j["tensors"]["params/PaliGemma/llm/layers/attn/attn_vec_einsum/w/value"]["dtype"], "F32");
  // Alpha is not in the checkpoint and the fixture's shapes (model.json: widths 64 / 32, LoRA
  // ranks 4 / 2) match no shipped variant: refusing to guess, with what was measured and the
  // --openpi-config JSON to fill in.
  auto no_cfg = run_cli("merge-lora " + src + " -o " + tmp / "x.safetensors");
  EXPECT_EQ(no_cfg.exit_code, 2);
  EXPECT_NE(no_cfg.err.find("matches no shipped openpi variant"), std::string::npos) << no_cfg.err;
  EXPECT_NE(no_cfg.err.find("expert 0: no shipped variant (width 64, depth 2, mlp 128, heads 8, kv heads 1, head dim 16, "
                            "LoRA ranks attn_vec_einsum=4 gating_einsum=4 kv_einsum=4 linear=4 q_einsum=4)"),
            std::string::npos)
      << no_cfg.err;
  EXPECT_NE(no_cfg.err.find("{\"experts\": [{\"attn\": {\"rank\": 4, \"alpha\": ALPHA, \"rslora\": false}, \"ffn\": "
                            "{\"rank\": 4, \"alpha\": ALPHA}}, {\"attn\": {\"rank\": 2, \"alpha\": ALPHA, \"rslora\": "
                            "false}, \"ffn\": {\"rank\": 2, \"alpha\": ALPHA}}]}"),
            std::string::npos)
      << no_cfg.err;
  EXPECT_FALSE(fs::exists(tmp / "x.safetensors"));
}

}  // namespace
}  // namespace ckb

namespace ckb {
namespace {

// `--to discard` reads and transforms everything and writes nothing at all.
TEST(Cli, DiscardOutputReadsEverythingWritesNothing) {
  test::TempDir tmp;
  auto r = test::run_cli("convert " + test::fixture("orbax_ocdbt_zarr3/ckpt") + " " + (tmp / "out") + " --to discard");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("wrote 16 tensors"), std::string::npos) << r.err;
  EXPECT_TRUE(std::filesystem::is_empty(tmp.path()));
  // A corrupt source still fails: discarding does not skip reading.
  test::write_file(tmp / "bad.safetensors", std::string("\x10\0\0\0\0\0\0\0{\"a\":{\"dtype\"", 20));
  EXPECT_EQ(test::run_cli("convert " + (tmp / "bad.safetensors") + " - --to discard").exit_code, 2);
}

}  // namespace
}  // namespace ckb
