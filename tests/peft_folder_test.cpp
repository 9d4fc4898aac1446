// `merge-lora BASE_DIR --adapter ADAPTER_DIR -o OUT_DIR` writes a Hugging Face model folder
// (profiles/hf_model_folder.h): the base's config/generation/tokenizer files copied byte for
// byte, weights as model.safetensors or shards + model.safetensors.index.json, the base's
// safetensors metadata kept, every tensor in the base's dtype (merged in float64, rounded
// once), `--dtype f32` widening all; `merge-lora ADAPTER_DIR` finds a local base; an adapter
// given as the base and an existing config.json the user did not name are refused. Inputs:
// the shared PEFT fixture (tests/data/fixtures/peft_llama_lora, an F32 single-file base) and
// a bf16 sharded base made from it with the CLI itself.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "formats/format.h"
#include "ops/ops.h"
#include "tests/test_util.h"

namespace ckb {
namespace {

namespace fs = std::filesystem;
using test::fixture;
using test::run_cli;
using test::TempDir;

std::string fx() { return fixture("peft_llama_lora"); }

std::set<std::string> files_in(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

// The shard files an index names; each "model-0000i-of-0000N.safetensors" for i = 1..N.
std::set<std::string> shard_names(const nlohmann::json& index) {
  std::set<std::string> out;
  for (const auto& [name, shard] : index["weight_map"].items()) out.insert(shard.get<std::string>());
  char buf[64];
  std::size_t i = 0;
  for (const auto& s : out) {
    std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", ++i, out.size());
    EXPECT_EQ(s, buf);
  }
  return out;
}

// The bf16 base: the fixture's base converted with the CLI (--dtype bf16, sharded), its
// model-folder files beside it, a tokenizer's files and a file that is not one of them.
std::string bf16_sharded_base(const TempDir& tmp) {
  const std::string base = tmp / "base_bf16";
  auto r = run_cli("convert " + fx() + "/base/model.safetensors " + base + "/ --dtype bf16 --shard-size 20KB -q");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  for (const char* f : {"config.json", "generation_config.json"}) fs::copy_file(fx() + "/base/" + f, base + "/" + f);
  test::write_file(base + "/tokenizer.json", "{\"version\": \"1.0\", \"model\": {\"type\": \"BPE\"}}");
  test::write_file(base + "/tokenizer_config.json", "{\"model_max_length\": 64}");
  test::write_file(base + "/special_tokens_map.json", "{\"bos_token\": \"<s>\"}");
  test::write_file(base + "/tokenizer.model", std::string("\x0a\x00\xff\x10 sentencepiece", 19));
  test::write_file(base + "/README.md", "# not part of a saved model\n");
  return base;
}

TEST(PeftFolder, F32BaseFolderGivesAModelFolderWithTheBasesFilesAndMetadata) {
  TempDir tmp;
  auto r = run_cli("merge-lora " + fx() + "/base --adapter " + fx() + "/adapter -o " + tmp / "out -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // 104.6 KiB of weights is far below transformers' 50GB default shard size: one file, no index
  EXPECT_EQ(files_in(tmp / "out"), (std::set<std::string>{"config.json", "generation_config.json", "model.safetensors"}));
  for (const char* f : {"config.json", "generation_config.json"})
    EXPECT_EQ(test::read_file(tmp / "out/" + f), test::read_file(fx() + "/base/" + f)) << f;
  const auto h = test::safetensors_header(tmp / "out/model.safetensors");
  EXPECT_EQ(h["__metadata__"], nlohmann::json({{"format", "pt"}}));
  // the weights equal the file-to-file merge (peft_test.cpp checks that one against PEFT)
  r = run_cli("merge-lora " + fx() + "/base/model.safetensors --adapter " + fx() + "/adapter -o " + tmp / "m.safetensors -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(test::read_file(tmp / "out/model.safetensors"), test::read_file(tmp / "m.safetensors"));
  std::size_t n = 0;
  for (const auto& [k, v] : h.items())
    if (k != "__metadata__") {
      EXPECT_EQ(v["dtype"], "F32") << k;
      ++n;
    }
  EXPECT_EQ(n, 21u);
}

TEST(PeftFolder, Bf16ShardedBaseStaysBf16MergedInFloat64RoundedOnceAndSharded) {
  TempDir tmp;
  const std::string base = bf16_sharded_base(tmp);
  ASSERT_TRUE(fs::exists(base + "/model.safetensors.index.json"));
  auto r = run_cli("merge-lora " + base + " --adapter " + fx() + "/adapter -o " + tmp / "out --shard-size 30KB -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;

  // the folder: the model-folder files (never README.md), shards and their index
  const auto idx = test::load_json(tmp / "out/model.safetensors.index.json");
  const std::set<std::string> shards = shard_names(idx);
  ASSERT_GE(shards.size(), 2u);  // 53.6 KB of bf16 in shards of at most 30 KB
  std::set<std::string> want = shards;
  want.insert({"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
               "tokenizer.model", "model.safetensors.index.json"});
  EXPECT_EQ(files_in(tmp / "out"), want);
  for (const char* f : {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                        "special_tokens_map.json", "tokenizer.model"})
    EXPECT_EQ(test::read_file(tmp / "out/" + f), test::read_file(base + "/" + f)) << f;

  // the index lists every tensor once, in the shard that holds it; sizes add up
  std::map<std::string, std::string> in_shards;
  std::uint64_t total = 0;
  for (const auto& s : shards) {
    const auto h = test::safetensors_header(tmp / "out/" + s);
    EXPECT_EQ(h["__metadata__"], nlohmann::json({{"format", "pt"}})) << s;
    std::uint64_t in_shard = 0;
    for (const auto& [k, v] : h.items()) {
      if (k == "__metadata__") continue;
      EXPECT_TRUE(in_shards.emplace(k, s).second) << k;
      EXPECT_EQ(v["dtype"], "BF16") << k;
      in_shard += v["data_offsets"][1].get<std::uint64_t>() - v["data_offsets"][0].get<std::uint64_t>();
    }
    EXPECT_LE(in_shard, 30000u) << s;  // no single tensor exceeds 30 KB here
    total += in_shard;
  }
  EXPECT_EQ(in_shards.size(), 21u);
  EXPECT_EQ(idx["weight_map"].size(), 21u);
  for (const auto& [k, s] : in_shards) EXPECT_EQ(idx["weight_map"][k], s) << k;
  EXPECT_EQ(idx["metadata"]["total_size"].get<std::uint64_t>(), total);
  EXPECT_EQ(total, 53568u);  // 26784 parameters x 2 bytes

  // values: untouched tensors are the base's bytes; merged ones W + 2 * B @ A in float64
  // from the bf16 base and the F32 adapter, rounded once to bf16
  Checkpoint out = read_checkpoint(tmp / "out"), in = read_checkpoint(base),
             ad = read_checkpoint(fx() + "/adapter/adapter_model.safetensors");
  const auto ot = test::tensors_by_name(out), it = test::tensors_by_name(in), at = test::tensors_by_name(ad);
  std::size_t merged = 0;
  for (const auto& [name, t] : ot) {
    const Tensor& b = *it.at(name);
    ASSERT_EQ(t->info, b.info) << name;
    const auto w = ops::to_doubles(b), got = ops::to_doubles(*t);
    const std::string stem = "base_model.model." + name.substr(0, name.size() - std::string(".weight").size());
    if (!at.count(stem + ".lora_A.weight")) {
      EXPECT_EQ(got, w) << name;
      continue;
    }
    ++merged;
    const Tensor& A = *at.at(stem + ".lora_A.weight");
    const Tensor& B = *at.at(stem + ".lora_B.weight");
    const auto a = ops::to_doubles(A), bb = ops::to_doubles(B);
    const std::int64_t rows = b.info.shape[0], cols = b.info.shape[1], rank = A.info.shape[0];
    ASSERT_EQ(B.info.shape, (Shape{rows, rank}));
    std::size_t changed = 0;
    for (std::int64_t o = 0; o < rows; ++o)
      for (std::int64_t i = 0; i < cols; ++i) {
        double d = 0;
        for (std::int64_t k = 0; k < rank; ++k) d += bb[static_cast<std::size_t>(o * rank + k)] * a[static_cast<std::size_t>(k * cols + i)];
        const std::size_t at_oi = static_cast<std::size_t>(o * cols + i);
        const double want_v = test::round_to_bf16(w[at_oi] + 2.0 * d);  // lora_alpha 8 / r 4
        EXPECT_EQ(got[at_oi], want_v) << name << " [" << o << "," << i << "]";
        changed += got[at_oi] != w[at_oi];
      }
    EXPECT_GT(changed, 0u) << name;
  }
  EXPECT_EQ(merged, 14u);
}

// The real thing: a base that transformers saved sharded in bfloat16, a PEFT adapter on it and
// PEFT's own merge (tools/fixtures/make_peft_sharded_bf16.py). Ours is W + 2 B A in float64
// rounded once; PEFT rounds the delta to bf16 and then the sum, so it may differ from ours by
// those two roundings: at most 2^-8 (|delta| + |W'|) per element (bf16 keeps 8 significant bits).
TEST(PeftFolder, TransformersShardedBf16BaseMergesAndMatchesPeftWithinItsRoundings) {
  TempDir tmp;
  const std::string c = fixture("peft_llama_sharded_bf16");
  auto r = run_cli("merge-lora " + c + "/base --adapter " + c + "/adapter -o " + tmp / "out -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // 53.6 KB of weights: one file under transformers' default shard size, no index
  EXPECT_EQ(files_in(tmp / "out"), (std::set<std::string>{"config.json", "generation_config.json", "model.safetensors"}));
  for (const char* f : {"config.json", "generation_config.json"})
    EXPECT_EQ(test::read_file(tmp / "out/" + f), test::read_file(c + "/base/" + f)) << f;
  EXPECT_EQ(test::safetensors_header(tmp / "out/model.safetensors")["__metadata__"], nlohmann::json({{"format", "pt"}}));
  Checkpoint out = read_checkpoint(tmp / "out"), in = read_checkpoint(c + "/base"), peft = read_checkpoint(c + "/merged"),
             ad = read_checkpoint(c + "/adapter/adapter_model.safetensors");
  const auto ot = test::tensors_by_name(out), it = test::tensors_by_name(in), pt = test::tensors_by_name(peft),
             at = test::tensors_by_name(ad);
  ASSERT_EQ(ot.size(), 21u);
  std::size_t merged = 0, differs_from_peft = 0;
  for (const auto& [name, t] : ot) {
    ASSERT_EQ(t->info.dtype, DType::BF16) << name;
    const auto w = ops::to_doubles(*it.at(name)), got = ops::to_doubles(*t), theirs = ops::to_doubles(*pt.at(name));
    const std::string stem = "base_model.model." + name.substr(0, name.size() - std::string(".weight").size());
    if (!at.count(stem + ".lora_A.weight")) {
      EXPECT_EQ(got, w) << name;
      EXPECT_EQ(theirs, w) << name;
      continue;
    }
    ++merged;
    const auto a = ops::to_doubles(*at.at(stem + ".lora_A.weight")), b = ops::to_doubles(*at.at(stem + ".lora_B.weight"));
    const std::int64_t rows = t->info.shape[0], cols = t->info.shape[1], rank = at.at(stem + ".lora_A.weight")->info.shape[0];
    for (std::int64_t o = 0; o < rows; ++o)
      for (std::int64_t i = 0; i < cols; ++i) {
        double d = 0;
        for (std::int64_t k = 0; k < rank; ++k) d += b[static_cast<std::size_t>(o * rank + k)] * a[static_cast<std::size_t>(k * cols + i)];
        d *= 2.0;  // lora_alpha 8 / r 4
        const std::size_t at_oi = static_cast<std::size_t>(o * cols + i);
        EXPECT_EQ(got[at_oi], test::round_to_bf16(w[at_oi] + d)) << name << " [" << o << "," << i << "]";
        EXPECT_LE(std::abs(got[at_oi] - theirs[at_oi]), std::ldexp(std::abs(d) + std::abs(got[at_oi]), -8)) << name;
        differs_from_peft += got[at_oi] != theirs[at_oi];
      }
  }
  EXPECT_EQ(merged, 14u);  // 7 target modules x 2 layers
  std::printf("bf16 merge: %zu elements differ from PEFT's double-rounded merge\n", differs_from_peft);
}

TEST(PeftFolder, DtypeF32WidensEveryTensor) {
  TempDir tmp;
  const std::string base = bf16_sharded_base(tmp);
  auto r = run_cli("merge-lora " + base + " --adapter " + fx() + "/adapter -o " + tmp / "out --dtype f32 -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(files_in(tmp / "out"), (std::set<std::string>{"config.json", "generation_config.json", "tokenizer.json",
                                                          "tokenizer_config.json", "special_tokens_map.json",
                                                          "tokenizer.model", "model.safetensors"}));
  const auto h = test::safetensors_header(tmp / "out/model.safetensors");
  EXPECT_EQ(h["__metadata__"], nlohmann::json({{"format", "pt"}}));
  std::size_t n = 0;
  for (const auto& [k, v] : h.items())
    if (k != "__metadata__") {
      EXPECT_EQ(v["dtype"], "F32") << k;
      ++n;
    }
  EXPECT_EQ(n, 21u);
  // an untouched tensor is the bf16 value widened exactly
  const Checkpoint out_ck = read_checkpoint(tmp / "out"), in_ck = read_checkpoint(base);
  const auto out = test::tensors_by_name(out_ck), in = test::tensors_by_name(in_ck);
  EXPECT_EQ(ops::to_doubles(*out.at("model.norm.weight")), ops::to_doubles(*in.at("model.norm.weight")));
}

TEST(PeftFolder, AnAdapterGivenAsTheBaseIsRefusedNamingIt) {
  TempDir tmp;
  for (const std::string& given : {fx() + "/adapter", fx() + "/adapter/adapter_model.safetensors"}) {
    auto r = run_cli("merge-lora " + given + " --adapter " + fx() + "/adapter -o " + tmp / "out");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find(given + " is a PEFT adapter (it holds adapter_config.json), not a base model"), std::string::npos)
        << r.err;
    EXPECT_FALSE(fs::exists(tmp / "out"));
  }
}

// A copy of the fixture's adapter whose config names `base`.
std::string adapter_naming(const TempDir& tmp, const std::string& dir, const nlohmann::json& base) {
  const std::string d = tmp / dir;
  fs::create_directories(d);
  fs::copy_file(fx() + "/adapter/adapter_model.safetensors", d + "/adapter_model.safetensors");
  auto cfg = test::load_json(fx() + "/adapter/adapter_config.json");
  cfg["base_model_name_or_path"] = base;
  test::write_file(d + "/adapter_config.json", cfg.dump(2));
  return d;
}

TEST(PeftFolder, AnAdapterAloneMergesIntoTheLocalBaseItNames) {
  TempDir tmp;
  fs::create_directories(tmp / "models");
  fs::copy(fx() + "/base", tmp / "models/base", fs::copy_options::recursive);
  auto r = run_cli("merge-lora " + fx() + "/base --adapter " + fx() + "/adapter -o " + tmp / "explicit -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string relative = adapter_naming(tmp, "models/lora", "../base");
  const std::string absolute = adapter_naming(tmp, "abs_lora", tmp / "models/base");
  for (const auto& [adapter, out] : {std::pair{relative, tmp / "from_relative"}, std::pair{absolute, tmp / "from_absolute"}}) {
    r = run_cli("merge-lora " + adapter + " -o " + out + " --report " + tmp / "r.json -q");
    ASSERT_EQ(r.exit_code, 0) << adapter << r.err;
    EXPECT_EQ(files_in(out), (std::set<std::string>{"config.json", "generation_config.json", "model.safetensors"}));
    for (const char* f : {"config.json", "generation_config.json", "model.safetensors"})
      EXPECT_EQ(test::read_file(out + "/" + f), test::read_file(tmp / "explicit/" + f)) << adapter << " " << f;
    const auto rep = test::load_json(tmp / "r.json");
    EXPECT_EQ(rep["profile"], "peft");
    EXPECT_EQ(rep["merged"].size(), 14u);
    EXPECT_EQ(fs::path(rep["source"]["path"].get<std::string>()), fs::path(tmp / "models/base").lexically_normal()) << rep["source"];
    EXPECT_EQ(rep["model_folder"]["files"], nlohmann::json({"config.json", "generation_config.json"}));
  }
  // no local base: say so and say to pass it
  const std::string unset = fx() + "/adapter";  // the fixture's own config: base_model_name_or_path null
  r = run_cli("merge-lora " + unset + " -o " + tmp / "x");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(unset + "/adapter_config.json does not name its base model"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("pass the base model: merge-lora BASE_DIR --adapter " + unset), std::string::npos) << r.err;
  const std::string hub = adapter_naming(tmp, "hub_lora", "meta-llama/Llama-3.2-1B");
  r = run_cli("merge-lora " + hub + " -o " + tmp / "x");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("names its base model 'meta-llama/Llama-3.2-1B', which is not a local folder"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp / "x"));
}

TEST(PeftFolder, NeverOverwritesAFileTheUserDidNotName) {
  TempDir tmp;
  fs::create_directories(tmp / "out");
  test::write_file(tmp / "out/config.json", "{\"mine\": true}");
  const std::string cmd = "merge-lora " + fx() + "/base --adapter " + fx() + "/adapter -o " + tmp / "out -q";
  auto r = run_cli(cmd);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(tmp / "out"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("pass --overwrite"), std::string::npos) << r.err;
  EXPECT_EQ(files_in(tmp / "out"), std::set<std::string>{"config.json"});
  EXPECT_EQ(test::read_file(tmp / "out/config.json"), "{\"mine\": true}");
  // asked to: the folder becomes the model folder
  r = run_cli(cmd + " --overwrite");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(test::read_file(tmp / "out/config.json"), test::read_file(fx() + "/base/config.json"));
  // and a second run replaces its own output (sidecars included), sharded this time
  r = run_cli(cmd + " --overwrite --shard-size 40KB");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::set<std::string> want = shard_names(test::load_json(tmp / "out/model.safetensors.index.json"));
  EXPECT_GE(want.size(), 3u);  // 107 KB of F32 in shards of at most 40 KB
  want.insert({"config.json", "generation_config.json", "model.safetensors.index.json"});
  EXPECT_EQ(files_in(tmp / "out"), want);
  // a folder holding anything else is never replaced, even with --overwrite
  test::write_file(tmp / "out/notes.txt", "mine");
  r = run_cli(cmd + " --overwrite");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("refusing to replace " + tmp / "out"), std::string::npos) << r.err;
  EXPECT_EQ(test::read_file(tmp / "out/notes.txt"), "mine");
}

TEST(PeftFolder, AFileOutputGetsTheWeightsAlone) {
  TempDir tmp;
  auto r = run_cli("merge-lora " + fx() + "/base --adapter " + fx() + "/adapter -o " + tmp / "m.safetensors -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(files_in(tmp.path()), std::set<std::string>{"m.safetensors"});
}

}  // namespace
}  // namespace ckb
