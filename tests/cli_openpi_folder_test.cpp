// `convert CKPT OUT_DIR --recipe openpi` writes the folder openpi's converter writes:
// OUT_DIR/model.safetensors, OUT_DIR/config.json and OUT_DIR/assets/<asset_id>/norm_stats.json
// copied byte for byte from where openpi keeps them (training `<step>/assets`, released
// `<ckpt>/assets`), from `<step>`, `<ckpt>`, the params folder itself or a CheckpointManager
// root; a file output gets the weights alone and touches nothing beside it; a folder holding
// other files or a sidecar the user did not ask to replace is refused; EMA vs raw weights
// (`--weights`); float32 by default when LoRA is merged, `--dtype bf16` with the measured
// drift; the detection notes and the error for a LoRA shape openpi does not ship. Inputs:
// the tiny openpi fixtures (written by openpi's own code; they have no assets, so the tests
// add them to temporary copies, and no train_state, which one test writes).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "formats/format.h"
#include "ops/cast.h"
#include "tests/checkpoint_files.h"
#include "tests/test_util.h"

namespace ckb {
namespace {

namespace fs = std::filesystem;
using test::fixture;
using test::run_cli;
using test::TempDir;

const std::string kLora = "openpi_pi0_tiny_lora";
const std::string kFull = "openpi_pi0_tiny_full";

std::string model_json(const std::string& fx) { return fixture(fx + "/model.json"); }

// Every regular file under `dir`, relative, with its sha256.
std::map<std::string, std::string> files_under(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file())
      out[fs::relative(e.path(), dir).generic_string()] = test::sha256_of_string(test::read_file(e.path().string()));
  return out;
}

std::set<std::string> dtypes_of(const std::string& safetensors) {
  std::set<std::string> out;
  const nlohmann::json header = test::safetensors_header(safetensors);
  for (const auto& [k, v] : header.items())
    if (k != "__metadata__") out.insert(v["dtype"].get<std::string>());
  return out;
}

// Two norm-stats files as openpi's normalize.save writes them (pydantic, indent 2), one under
// an asset_id with a '/' (a LeRobot repo id), under `folder`/assets.
std::map<std::string, std::string> add_assets(const std::string& folder) {
  const std::map<std::string, std::string> files = {
      {"lerobot/aloha_sim/norm_stats.json",
       "{\n  \"norm_stats\": {\n    \"state\": {\n      \"mean\": [\n        0.25,\n        -1.5\n      ],\n      \"std\": [\n"
       "        1.0,\n        0.5\n      ],\n      \"q01\": null,\n      \"q99\": null\n    }\n  }\n}"},
      {"trossen/norm_stats.json",
       "{\n  \"norm_stats\": {\n    \"actions\": {\n      \"mean\": [\n        3.0\n      ],\n      \"std\": [\n        2.0\n"
       "      ],\n      \"q01\": [\n        -1.0\n      ],\n      \"q99\": [\n        7.0\n      ]\n    }\n  }\n}"},
  };
  std::map<std::string, std::string> hashes;
  for (const auto& [rel, text] : files) {
    const fs::path p = fs::path(folder) / "assets" / rel;
    fs::create_directories(p.parent_path());
    test::write_file(p.string(), text);
    hashes["assets/" + rel] = test::sha256_of_string(text);
  }
  return hashes;
}

std::string copy_fixture(const TempDir& tmp, const std::string& rel, const std::string& to) {
  fs::create_directories(fs::path(tmp / to).parent_path());
  fs::copy(fixture(rel), tmp / to, fs::copy_options::recursive);
  return tmp / to;
}

// The folder: weights (every tensor F32: LoRA merged), config.json, the norm stats byte for
// byte, nothing else; the same from the step, its params folder and the CheckpointManager root.
TEST(OpenpiFolder, TrainingLayoutGivesWeightsConfigAndNormStats) {
  TempDir tmp;
  const std::string step = copy_fixture(tmp, kLora + "/train/checkpoints/100", "run/checkpoints/100");
  std::map<std::string, std::string> want = add_assets(step);
  const std::string flags = " --recipe openpi --openpi-config " + model_json(kLora);
  auto r = run_cli("convert " + step + " " + tmp / "out" + flags);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto got = files_under(tmp / "out");
  std::set<std::string> names;
  for (const auto& [k, v] : got) names.insert(k);
  EXPECT_EQ(names, (std::set<std::string>{"model.safetensors", "config.json", "assets/lerobot/aloha_sim/norm_stats.json",
                                          "assets/trossen/norm_stats.json"}));
  for (const auto& [rel, sha] : want) EXPECT_EQ(got.at(rel), sha) << rel;
  EXPECT_EQ(dtypes_of(tmp / "out/model.safetensors"), std::set<std::string>{"F32"});  // the fixture's base is BF16
  const auto cfg = test::load_json(tmp / "out/config.json");
  EXPECT_EQ(cfg["precision"], "float32");
  EXPECT_EQ(cfg["action_dim"], test::load_json(model_json(kLora))["action_dim"]);
  EXPECT_EQ(cfg["lora_merged"].size(), 10u);
  for (const std::string f : {"config.json", "assets/lerobot/aloha_sim/norm_stats.json", "assets/trossen/norm_stats.json"})
    EXPECT_NE(r.err.find("wrote " + tmp / "out/" + f + "\n"), std::string::npos) << f << "\n" << r.err;
  EXPECT_NE(r.err.find("norm stats of lerobot/aloha_sim, trossen"), std::string::npos) << r.err;
  // The params folder itself and the CheckpointManager root find the same step and assets.
  for (const std::string& src : {step + "/params", tmp / "run/checkpoints"}) {
    fs::remove_all(tmp / "again");
    r = run_cli("convert " + src + " " + tmp / "again" + flags + " -q");
    ASSERT_EQ(r.exit_code, 0) << src << "\n" << r.err;
    EXPECT_EQ(files_under(tmp / "again"), got) << src;
  }
}

TEST(OpenpiFolder, ReleasedLayoutFromTheCheckpointOrItsParams) {
  TempDir tmp;
  const std::string ckpt = copy_fixture(tmp, kFull + "/release", "pi0_tiny");
  const auto want = add_assets(ckpt);
  for (const std::string& src : {ckpt, ckpt + "/params"}) {
    fs::remove_all(tmp / "out");
    auto r = run_cli("convert " + src + " " + tmp / "out/ --recipe openpi -q");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto got = files_under(tmp / "out");
    EXPECT_EQ(got.size(), 4u) << src;
    for (const auto& [rel, sha] : want) EXPECT_EQ(got.at(rel), sha) << rel;
    EXPECT_EQ(test::load_json(tmp / "out/config.json")["lora_merged"], nlohmann::json::array());
    // No LoRA: the stored dtypes are kept (the released fixture is all F32).
    EXPECT_EQ(dtypes_of(tmp / "out/model.safetensors"), std::set<std::string>{"F32"});
  }
}

// A file output: the weights alone; a config.json already beside it is not touched.
TEST(OpenpiFolder, AFileOutputGetsTheWeightsAloneAndTouchesNothingBesideIt) {
  TempDir tmp;
  const std::string ckpt = copy_fixture(tmp, kFull + "/release", "ckpt");
  add_assets(ckpt);
  fs::create_directories(tmp / "dir");
  test::write_file(tmp / "dir/config.json", "{\"mine\": true}");
  auto r = run_cli("convert " + ckpt + " " + tmp / "dir/pi0.safetensors --recipe openpi");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(test::read_file(tmp / "dir/config.json"), "{\"mine\": true}");
  std::set<std::string> names;
  for (const auto& [k, v] : files_under(tmp / "dir")) names.insert(k);
  EXPECT_EQ(names, (std::set<std::string>{"config.json", "pi0.safetensors"}));
  EXPECT_NE(r.err.find("the output is a file: it gets the weights alone"), std::string::npos) << r.err;
}

TEST(OpenpiFolder, NeverOverwritesAFileTheUserDidNotName) {
  TempDir tmp;
  const std::string ckpt = copy_fixture(tmp, kFull + "/release", "ckpt");
  add_assets(ckpt);
  const std::string cmd = "convert " + ckpt + " " + tmp / "out --recipe openpi -q";
  // a config.json of the user's in the output folder
  fs::create_directories(tmp / "out");
  test::write_file(tmp / "out/config.json", "{\"mine\": true}");
  auto r = run_cli(cmd);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(tmp / "out/config.json exists"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("pass --overwrite"), std::string::npos) << r.err;
  EXPECT_EQ(files_under(tmp / "out").size(), 1u);
  EXPECT_EQ(test::read_file(tmp / "out/config.json"), "{\"mine\": true}");
  // a folder holding anything else is refused, even with --overwrite
  test::write_file(tmp / "out/notes.txt", "mine");
  for (const std::string extra : {"", " --overwrite"}) {
    r = run_cli(cmd + extra);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("refusing to write into " + tmp / "out: it holds files this output does not write (notes.txt)"),
              std::string::npos)
        << r.err;
    EXPECT_EQ(files_under(tmp / "out").size(), 2u);
    EXPECT_EQ(test::read_file(tmp / "out/notes.txt"), "mine");
  }
  // a previous output: replaced only with --overwrite, with the same bytes
  fs::remove_all(tmp / "out");
  ASSERT_EQ(run_cli(cmd).exit_code, 0);
  const auto first = files_under(tmp / "out");
  test::write_file(tmp / "out/assets/trossen/norm_stats.json", "edited");
  r = run_cli(cmd);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("exists; pass --overwrite"), std::string::npos) << r.err;
  EXPECT_EQ(test::read_file(tmp / "out/assets/trossen/norm_stats.json"), "edited");
  r = run_cli(cmd + " --overwrite");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(files_under(tmp / "out"), first);
  // sharded (assets/ is a folder of sidecars, not a foreign file)
  r = run_cli(cmd + " --overwrite --shard-size 200KB");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(tmp / "out/model.safetensors.index.json"));
  EXPECT_EQ(test::read_file(tmp / "out/assets/trossen/norm_stats.json"), test::read_file(ckpt + "/assets/trossen/norm_stats.json"));
}

// A training step with EMA on, as openpi's checkpoints.py saves it: params/ holds the EMA
// weights, train_state/ the raw ones under `params` (plus step and optimizer state). The raw
// weights here differ from the EMA ones: every F32 tensor rounded through bfloat16.
struct EmaStep {
  std::string step, ema_alone, raw_alone;
};

EmaStep ema_step(const TempDir& tmp) {
  EmaStep s{tmp / "run/100", tmp / "ema_alone", tmp / "raw_alone"};
  copy_fixture(tmp, kLora + "/train/checkpoints/100/params", "run/100/params");
  copy_fixture(tmp, kLora + "/train/checkpoints/100/params", "ema_alone/params");
  Checkpoint ema = read_checkpoint(s.step + "/params");
  Node raw = *ema.root.find("params");
  visit_leaves_mut(raw, [](const Path&, Node& n) {
    if (n.is_tensor() && n.tensor().info.dtype == DType::F32)
      n.tensor() = cast_tensor(cast_tensor(n.tensor(), DType::BF16, nullptr), DType::F32, nullptr);
  });
  Checkpoint ts;
  ts.root.add("step", Node(Node::Value(std::int64_t{100})));
  ts.root.add("params", raw);
  Node opt = Node::dict();
  opt.add("mu", raw);
  ts.root.add("opt_state", std::move(opt));
  write_checkpoint(ts, s.step + "/train_state", format_by_name("orbax"), {}, 1);
  Checkpoint alone;
  alone.root.add("params", raw);
  write_checkpoint(alone, s.raw_alone + "/params", format_by_name("orbax"), {}, 1);
  return s;
}

TEST(OpenpiFolder, EmaByDefaultRawOnRequestAndSaidWhich) {
  TempDir tmp;
  const EmaStep s = ema_step(tmp);
  const std::string flags = " --recipe openpi --openpi-config " + model_json(kLora);
  auto r = run_cli("convert " + s.step + " " + tmp / "ema" + flags + " --report " + tmp / "ema.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("note: weights: EMA, from " + s.step + "/params (what openpi serves); the raw weights in " + s.step +
                       "/train_state are not converted (--weights raw converts them)"),
            std::string::npos)
      << r.err;
  const auto rep = test::load_json(tmp / "ema.json");
  EXPECT_EQ(rep["weights"]["set"], "ema");
  EXPECT_EQ(rep["weights"]["ema_and_raw"], true);
  r = run_cli("convert " + s.step + " " + tmp / "raw" + flags + " --weights raw");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("note: weights: raw, from " + s.step + "/train_state/params"), std::string::npos) << r.err;
  // Each equals the conversion of that set alone, and the two differ.
  ASSERT_EQ(run_cli("convert " + s.ema_alone + " " + tmp / "ref_ema" + flags + " -q").exit_code, 0);
  ASSERT_EQ(run_cli("convert " + s.raw_alone + " " + tmp / "ref_raw" + flags + " -q").exit_code, 0);
  const std::string st = "/model.safetensors";
  EXPECT_EQ(test::read_file(tmp / "ema" + st), test::read_file(tmp / "ref_ema" + st));
  EXPECT_EQ(test::read_file(tmp / "raw" + st), test::read_file(tmp / "ref_raw" + st));
  EXPECT_NE(test::read_file(tmp / "ema" + st), test::read_file(tmp / "raw" + st));
  // The params folder named alone still sees its step's train_state.
  r = run_cli("convert " + s.step + "/params " + tmp / "raw2" + flags + " --weights raw -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(test::read_file(tmp / "raw2" + st), test::read_file(tmp / "raw" + st));
  // merge-lora: the same option, the same meaning.
  ASSERT_EQ(run_cli("merge-lora " + s.step + " " + tmp / "m_raw.safetensors --weights raw -q --openpi-config " +
                    model_json(kLora)).exit_code, 0);
  ASSERT_EQ(run_cli("merge-lora " + s.raw_alone + " " + tmp / "m_ref.safetensors -q --openpi-config " + model_json(kLora)).exit_code,
            0);
  EXPECT_EQ(test::read_file(tmp / "m_raw.safetensors"), test::read_file(tmp / "m_ref.safetensors"));
  // --weights ema where there is one set only
  r = run_cli("convert " + s.ema_alone + " " + tmp / "x" + flags + " --weights ema");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--weights ema: " + s.ema_alone + " holds one weight set"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp / "x"));
}

// float32 by default; --dtype bf16 writes bfloat16 and the report carries each merged
// weight's rounding drift, which is what the two outputs show: max |bf16 - f32| over the
// tensors a merged weight becomes agrees with the reported max |bf16 - f64| within f32's own
// rounding.
float as_float(DType d, const std::byte* p) {
  if (d == DType::F32) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
  std::uint16_t h;
  std::memcpy(&h, p, 2);
  const std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

TEST(OpenpiFolder, Bf16WritesBfloat16AndReportsTheMeasuredDrift) {
  TempDir tmp;
  const std::string src = fixture(kLora + "/release");
  const std::string flags = " --recipe openpi --openpi-config " + model_json(kLora);
  ASSERT_EQ(run_cli("convert " + src + " " + tmp / "f32" + flags + " -q --report " + tmp / "f32.json").exit_code, 0);
  auto r = run_cli("convert " + src + " " + tmp / "bf16" + flags + " --dtype bf16 --report " + tmp / "bf16.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(dtypes_of(tmp / "bf16/model.safetensors"), std::set<std::string>{"BF16"});
  EXPECT_EQ(test::load_json(tmp / "bf16/config.json")["precision"], "bfloat16");
  EXPECT_NE(r.err.find("rounded 10 computed tensors once from float64 to BF16: max abs error "), std::string::npos) << r.err;
  const auto f32 = test::load_json(tmp / "f32.json"), bf16 = test::load_json(tmp / "bf16.json");
  ASSERT_EQ(bf16["rounded"].size(), 10u);
  ASSERT_EQ(f32["rounded"].size(), 10u);
  for (const auto& [name, e] : f32["rounded"].items()) {
    EXPECT_EQ(e["to"], "F32");
    EXPECT_GT(e["max_rel_error"].get<double>(), 0) << name;
    EXPECT_LE(e["max_rel_error"].get<double>(), std::ldexp(1.0, -24)) << name;  // half an ulp of float32
  }
  for (const auto& [name, e] : bf16["rounded"].items()) {
    EXPECT_EQ(e["to"], "BF16");
    EXPECT_LE(e["max_rel_error"].get<double>(), std::ldexp(1.0, -8)) << name;  // half an ulp of bfloat16
  }
  // mlp/linear [L, F, D] becomes layers.<i>.mlp.down_proj.weight [D, F] of the PaliGemma LLM.
  const auto& e = bf16["rounded"]["params/PaliGemma/llm/layers/mlp/linear"];
  Checkpoint a = read_checkpoint(tmp / "bf16/model.safetensors"), b = read_checkpoint(tmp / "f32/model.safetensors");
  double max_abs = 0, max_rel = 0, max_y = 0;
  for (int i = 0; i < 2; ++i) {
    const std::string n = "paligemma_with_expert.paligemma.model.language_model.layers." + std::to_string(i) + ".mlp.down_proj.weight";
    const Tensor& ta = find_path(a.root, n)->tensor();
    const Tensor& tb = find_path(b.root, n)->tensor();
    const std::string ba = test::bytes_of(ta), bb = test::bytes_of(tb);
    for (std::size_t k = 0; k < ta.info.numel(); ++k) {
      const double x = as_float(DType::BF16, reinterpret_cast<const std::byte*>(ba.data()) + 2 * k);
      const double y = as_float(DType::F32, reinterpret_cast<const std::byte*>(bb.data()) + 4 * k);
      max_abs = std::max(max_abs, std::fabs(x - y));
      max_y = std::max(max_y, std::fabs(y));
      if (y != 0) max_rel = std::max(max_rel, std::fabs(x - y) / std::fabs(y));
    }
  }
  EXPECT_GT(max_abs, 0);
  // The float32 output is itself the float64 merge rounded once: at most half an ulp away.
  EXPECT_NEAR(e["max_abs_error"].get<double>(), max_abs, max_y * std::ldexp(1.0, -24));
  EXPECT_NEAR(e["max_rel_error"].get<double>(), max_rel, 2 * std::ldexp(1.0, -24));
  // The tensors merely cast carry their drift too, and the summary the largest of all.
  std::size_t cast = 0;
  for (const auto& [name, t] : bf16["tensors"].items())
    if (t.contains("cast")) {
      ++cast;
      EXPECT_LE(t["cast"]["max_rel_error"].get<double>(), std::ldexp(1.0, -8)) << name;
    }
  EXPECT_EQ(cast, bf16["summary"]["cast_tensors"].get<std::size_t>());
  EXPECT_EQ(bf16["summary"]["cast_to"], "BF16");
  EXPECT_GE(bf16["summary"]["max_rel_error"].get<double>(), e["max_rel_error"].get<double>());
}

// The notes say what was detected; LoRA on a shape openpi does not ship fails with the
// measurements and the --openpi-config JSON to fill in, which then converts.
TEST(OpenpiFolder, DetectionNotesAndTheUnknownLoraShapeError) {
  TempDir tmp;
  const auto model = test::load_json(model_json(kLora));
  auto measured = [&](int e) {
    const auto& c = model["configs"][e];
    return "width " + std::to_string(c["width"].get<int>()) + ", depth " + std::to_string(c["depth"].get<int>()) + ", mlp " +
           std::to_string(c["mlp_dim"].get<int>()) + ", heads " + std::to_string(c["num_heads"].get<int>()) + ", kv heads " +
           std::to_string(c["num_kv_heads"].get<int>()) + ", head dim " + std::to_string(c["head_dim"].get<int>());
  };
  auto r = run_cli("convert " + fixture(kFull + "/release") + " " + tmp / "full --recipe openpi");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("note: detected expert 0: no shipped variant (" + measured(0) + ", no LoRA)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("note: detected expert 1: no shipped variant (" + measured(1) + ", no LoRA)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("note: detected model: pi0"), std::string::npos) << r.err;

  r = run_cli("convert " + fixture(kLora + "/release") + " " + tmp / "lora --recipe openpi");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_FALSE(fs::exists(tmp / "lora"));
  for (int e = 0; e < 2; ++e) {
    const std::string rank = std::to_string(model["configs"][e]["lora"]["attn"]["rank"].get<int>());
    EXPECT_NE(r.err.find("expert " + std::to_string(e) + ": no shipped variant (" + measured(e) + ", LoRA ranks attn_vec_einsum=" +
                         rank + " gating_einsum=" + rank + " kv_einsum=" + rank + " linear=" + rank + " q_einsum=" + rank + ")"),
              std::string::npos)
        << r.err;
  }
  const auto at = r.err.find("{\"experts\"");
  ASSERT_NE(at, std::string::npos) << r.err;
  std::string json = r.err.substr(at, r.err.find('\n', at) - at);
  // Fill in each ALPHA from the training config (model.json), in order: attn then ffn per expert.
  std::vector<double> alphas;
  for (const auto& c : model["configs"]) alphas.push_back(c["lora"]["attn"]["alpha"]), alphas.push_back(c["lora"]["ffn"]["alpha"]);
  for (double a : alphas) {
    const auto p = json.find("ALPHA");
    ASSERT_NE(p, std::string::npos) << json;
    json.replace(p, 5, std::to_string(a));
  }
  EXPECT_EQ(json.find("ALPHA"), std::string::npos) << json;
  test::write_file(tmp / "filled.json", json);
  ASSERT_EQ(run_cli("convert " + fixture(kLora + "/release") + " " + tmp / "filled --recipe openpi -q --openpi-config " +
                    tmp / "filled.json").exit_code, 0);
  ASSERT_EQ(run_cli("convert " + fixture(kLora + "/release") + " " + tmp / "ref --recipe openpi -q --openpi-config " +
                    model_json(kLora)).exit_code, 0);
  EXPECT_EQ(test::read_file(tmp / "filled/model.safetensors"), test::read_file(tmp / "ref/model.safetensors"));
}

}  // namespace
}  // namespace ckb
