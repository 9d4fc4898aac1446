// The engine API (engine/api.h) driven directly, without a subprocess: convert with a cast,
// plan / dry-run, the LoRA profiles (openpi, PEFT), the flax profile, profile selection,
// the output guards and cancellation, with the report's contents checked.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "engine/api.h"
#include "test_util.h"

namespace ckb {
namespace {

namespace fs = std::filesystem;
using test::fixture;

// A safetensors file: "a" F32 {1, 1 + 2^-9, FLT_MAX, NaN} and "b" I32 {7, -7}.
std::string write_source(const test::TempDir& tmp) {
  const float a[4] = {1.0f, 1.0f + std::ldexp(1.0f, -9), FLT_MAX, std::nanf("")};
  const std::int32_t b[2] = {7, -7};
  std::string header = R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"I32","shape":[2],"data_offsets":[16,24]}})";
  while (header.size() % 8) header += ' ';
  std::string file = test::le64(header.size()) + header;
  file.append(reinterpret_cast<const char*>(a), 16);
  file.append(reinterpret_cast<const char*>(b), 8);
  const std::string path = tmp / "src.safetensors";
  test::write_file(path, file);
  return path;
}

const engine::TensorReport& tensor_in(const engine::Report& r, const std::string& name) {
  for (const auto& t : r.tensors)
    if (t.name == name) return t;
  throw std::runtime_error("no tensor " + name + " in the report");
}

TEST(Engine, ConvertCastsRoundToNearestEvenAndCountsWhatChanged) {
  test::TempDir tmp;
  engine::Job job;
  job.source = write_source(tmp);
  job.dtype = engine::parse_float_dtype("bf16");
  job.output.path = tmp / "out/";  // a folder: the natural file inside it, the folder created
  job.stats = true;
  const engine::Report r = engine::run(job);
  EXPECT_FALSE(r.dry_run);
  EXPECT_EQ(r.destination, tmp / "out/model.safetensors");
  EXPECT_EQ(r.destination_format, "safetensors");
  ASSERT_EQ(r.tensors.size(), 2u);
  const auto& a = tensor_in(r, "a");
  ASSERT_TRUE(a.cast.has_value());
  EXPECT_EQ(a.dtype, DType::BF16);
  EXPECT_EQ(a.cast->from, DType::F32);
  EXPECT_EQ(a.cast->elements, 4u);
  EXPECT_EQ(a.cast->overflow, 1u);  // FLT_MAX rounds past bf16's largest finite value
  EXPECT_EQ(a.cast->nan, 1u);
  EXPECT_FALSE(tensor_in(r, "b").cast.has_value());  // integers are never cast
  EXPECT_EQ(r.summary.cast_tensors, 1u);
  EXPECT_EQ(r.summary.bytes, 8u + 8u);
  // Bytes by hand: 1.0 -> 0x3F80; 1 + 2^-9 is below the halfway point -> 0x3F80; FLT_MAX
  // (0x7F7FFFFF) rounds up to +inf 0x7F80; the quiet NaN keeps its top bits 0x7FC0.
  Checkpoint out = engine::open(r.destination);
  const std::uint16_t want[4] = {0x3F80, 0x3F80, 0x7F80, 0x7FC0};
  EXPECT_EQ(test::bytes_of(find_path(out.root, "a")->tensor()), std::string(reinterpret_cast<const char*>(want), 8));
  const std::int32_t b[2] = {7, -7};
  EXPECT_EQ(test::bytes_of(find_path(out.root, "b")->tensor()), std::string(reinterpret_cast<const char*>(b), 8));
  // The JSON report says the same.
  const auto j = r.to_json();
  EXPECT_EQ(j["tensors"]["a"]["cast"]["overflow"], 1);
  EXPECT_EQ(j["tensors"]["a"]["dtype"], "BF16");
  EXPECT_EQ(j["tensors"]["b"]["stats"]["min"], -7.0);
  EXPECT_EQ(j["summary"]["tensors"], 2);
  EXPECT_EQ(j["ledger"]["counts"]["sources_consumed"], 2);
}

TEST(Engine, PlanReadsMetadataAndWritesNothing) {
  test::TempDir tmp;
  engine::Job job;
  job.source = write_source(tmp);
  job.dtype = DType::F16;
  job.output.path = tmp / "x.npz";
  const engine::Report r = engine::plan(job);
  EXPECT_TRUE(r.dry_run);
  EXPECT_TRUE(r.problems.empty());
  EXPECT_EQ(r.destination, tmp / "x.npz");
  EXPECT_EQ(r.destination_format, "npz");
  EXPECT_EQ(tensor_in(r, "a").dtype, DType::F16);
  EXPECT_EQ(tensor_in(r, "b").dtype, DType::I32);
  EXPECT_EQ(r.summary.bytes, 0u);
  EXPECT_FALSE(fs::exists(tmp / "x.npz"));
  EXPECT_EQ(r.to_json()["dry_run"], true);
}

TEST(Engine, PlanWithProblemsIsReturnedAndRunRefusesIt) {
  test::TempDir tmp;
  test::write_file(tmp / "r.json", R"({"rules": [{"map": "a", "to": "w"}]})");
  engine::Job job;
  job.source = write_source(tmp);
  job.recipe = tmp / "r.json";
  job.output.path = tmp / "o.safetensors";
  const engine::Report r = engine::plan(job);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_NE(r.problems[0].find("b"), std::string::npos) << r.problems[0];  // "b" unused
  EXPECT_THROW(engine::run(job), MappingError);
  EXPECT_FALSE(fs::exists(tmp / "o.safetensors"));
}

TEST(Engine, OpenpiMergeProfileFoldsEveryLoraPair) {
  test::TempDir tmp;
  engine::Job job;
  job.source = fixture("openpi_pi0_tiny_lora/train/checkpoints/100");
  job.profile = "openpi-merge";
  job.profile_options["openpi-config"] = fixture("openpi_pi0_tiny_lora/model.json");
  job.output.path = tmp / "m.safetensors";
  const engine::Report r = engine::run(job);
  EXPECT_EQ(r.profile, "openpi-merge");
  EXPECT_EQ(r.profile_report["merged"].size(), 10u);
  EXPECT_EQ(r.tensors.size(), 50u);
  for (const auto& t : r.tensors) EXPECT_EQ(t.name.find("lora"), std::string::npos) << t.name;
  EXPECT_EQ(tensor_in(r, "params/PaliGemma/llm/layers/attn/attn_vec_einsum/w/value").dtype, DType::F32);
  // Without alpha, on shapes no shipped variant has (the fixture's model.json: rank 4 / 2), the
  // profile refuses to guess.
  job.profile_options.clear();
  try {
    engine::plan(job);
    ADD_FAILURE() << "no error";
  } catch (const MappingError& e) {
    EXPECT_NE(std::string(e.what()).find("matches no shipped openpi variant"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--openpi-config FILE"), std::string::npos) << e.what();
  }
}

TEST(Engine, PeftProfileChosenByItsOptionMergesAndVerifies) {
  test::TempDir tmp;
  engine::Job job;
  job.source = fixture("peft_llama_lora") + "/base/model.safetensors";
  job.profile_options["adapter"] = fixture("peft_llama_lora") + "/adapter";  // selects the peft profile
  job.profile_options["verify"] = "1";
  job.output.path = tmp / "m.safetensors";
  const engine::Report r = engine::run(job);
  EXPECT_EQ(r.profile, "peft");
  EXPECT_EQ(r.profile_report["merged"].size(), 14u);
  for (const auto& g : r.profile_report["merged"]) EXPECT_DOUBLE_EQ(g["scale"].get<double>(), 8.0 / 4);
  EXPECT_TRUE(r.failures.empty());
  const auto j = r.to_json();
  EXPECT_EQ(j["summary"]["verify"]["ok"], true);
  EXPECT_LT(j["summary"]["verify"]["worst_rel"].get<double>(), 1e-6);
}

TEST(Engine, FlaxProfileAdaptsAndNamesTheSourceLayout) {
  test::TempDir tmp;
  const std::string mx = fixture("maxtext_linen_nnx/");
  engine::Job job;
  job.source = mx + "linen_full";
  job.profile_options = {{"layout", "nnx"}, {"like", mx + "nnx_fresh_raw"}};
  job.output.path = tmp / "nnx";
  job.output.format = "orbax";
  const engine::Report r = engine::run(job);
  EXPECT_EQ(r.profile, "flax");
  ASSERT_FALSE(r.notes.empty());
  EXPECT_EQ(r.notes[0], "source layout: linen (full training state)");
  EXPECT_EQ(r.profile_report["adapt"]["to"], "nnx");
  // The output restores as the NNX layout, in the source's zarr version.
  const engine::Inspection in = engine::inspect(tmp / "nnx");
  EXPECT_NE(in.flax_layout.find("nnx"), std::string::npos) << in.flax_layout;
  EXPECT_EQ(in.checkpoint->layout_options.at("zarr-version"),
            engine::open(mx + "linen_full").layout_options.at("zarr-version"));
  // A recipe does not combine with a profile that generates its own.
  job.recipe = "identity";
  EXPECT_THROW(engine::plan(job), UsageError);
}

TEST(Engine, ProfileOptionsNamingSeveralProfilesNeedAProfile) {
  test::TempDir tmp;
  engine::Job job;
  job.source = write_source(tmp);
  job.profile_options["variant"] = "gemma_2b";  // openpi and openpi-merge both take it
  job.output.path = tmp / "o.safetensors";
  try {
    engine::plan(job);
    ADD_FAILURE() << "no error";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("pass --profile"), std::string::npos) << e.what();
  }
  job.profile_options = {{"bogus", "1"}};
  EXPECT_THROW(engine::plan(job), UsageError);
}

std::string usage_error(const engine::Job& job) {
  try {
    engine::plan(job);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "NO ERROR";
}

TEST(Engine, OutputGuards) {
  test::TempDir tmp;
  const std::string src = write_source(tmp);
  engine::Job job;
  job.source = src;
  // The input itself.
  job.output.path = src;
  job.output.overwrite = true;
  EXPECT_NE(usage_error(job).find("refusing to overwrite the input " + src), std::string::npos) << usage_error(job);
  // An existing output without --overwrite.
  test::write_file(tmp / "old.safetensors", "x");
  job.output = {};
  job.output.path = tmp / "old.safetensors";
  EXPECT_NE(usage_error(job).find("output " + tmp / "old.safetensors" + " exists; pass --overwrite"), std::string::npos);
  // An extension that names another format.
  job.output = {};
  job.output.path = tmp / "w.safetensors";
  job.output.format = "pt";
  EXPECT_NE(usage_error(job).find("says safetensors but the output format is torch"), std::string::npos) << usage_error(job);
  // A folder holding something else is never replaced, with or without --overwrite.
  fs::create_directories(tmp / "mine");
  test::write_file(tmp / "mine/notes.txt", "keep me");
  job.output = {};
  job.output.path = tmp / "mine";
  job.output.format = "orbax";
  job.output.overwrite = true;
  EXPECT_NE(usage_error(job).find("does not hold a checkpoint in the orbax format"), std::string::npos) << usage_error(job);
  EXPECT_EQ(test::read_file(tmp / "mine/notes.txt"), "keep me");
  // An unknown write option, and a valid one for another format.
  job.output = {};
  job.output.path = tmp / "n.npz";
  job.output.options["shard-size"] = "1MB";
  EXPECT_NE(usage_error(job).find("--shard-size applies to safetensors output, not npz"), std::string::npos) << usage_error(job);
  // A missing parent folder is created for any format.
  job.output = {};
  job.output.path = tmp / "a/b/c.npz";
  engine::run(job);
  EXPECT_TRUE(fs::exists(tmp / "a/b/c.npz"));
}

TEST(Engine, ACancelledRunThrowsAndLeavesNoOutput) {
  test::TempDir tmp;
  engine::Job job;
  job.source = write_source(tmp);
  job.output.path = tmp / "o.safetensors";
  CancelToken token;
  token.cancel(2);
  engine::RunOptions ro;
  ro.cancel = &token;
  try {
    engine::run(job, ro);
    ADD_FAILURE() << "no error";
  } catch (const Cancelled& e) {
    EXPECT_EQ(e.exit_code(), 130);
  }
  EXPECT_FALSE(fs::exists(tmp / "o.safetensors"));
  for (const auto& e : fs::directory_iterator(tmp.path()))
    EXPECT_EQ(e.path().filename().string().find("ckb-tmp"), std::string::npos) << e.path();
}

TEST(Engine, DtypeNamesUsersType) {
  for (const char* n : {"bf16", "BF16", "bfloat16", "BFloat16"}) EXPECT_EQ(engine::parse_float_dtype(n), DType::BF16) << n;
  for (const char* n : {"fp16", "f16", "F16", "float16", "half"}) EXPECT_EQ(engine::parse_float_dtype(n), DType::F16) << n;
  for (const char* n : {"fp32", "f32", "F32", "float32", "float"}) EXPECT_EQ(engine::parse_float_dtype(n), DType::F32) << n;
  for (const char* n : {"fp64", "float64", "double"}) EXPECT_EQ(engine::parse_float_dtype(n), DType::F64) << n;
  EXPECT_EQ(engine::parse_float_dtype("auto"), std::nullopt);
  EXPECT_EQ(engine::parse_float_dtype(""), std::nullopt);
  EXPECT_THROW(engine::parse_float_dtype("int8"), UsageError);
  EXPECT_THROW(engine::parse_float_dtype("bf17"), UsageError);
}

}  // namespace
}  // namespace ckb
