// "A CLI a user can guess" (issue #16, section 5): every item run as a user would, asserting
// the exit code, the files present or absent and the message text naming the path.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

#include "test_util.h"

namespace ckb {
namespace {

namespace fs = std::filesystem;
using test::fixture;
using test::run_cli;

// A two-tensor safetensors file: "w" F32 [2, 2] = {1, 2, 3, 4}, "n" I64 [1] = {5}.
std::string small_source(const test::TempDir& tmp, const std::string& name = "src.safetensors") {
  const float w[4] = {1, 2, 3, 4};
  const std::int64_t n = 5;
  std::string header = R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"n":{"dtype":"I64","shape":[1],"data_offsets":[16,24]}})";
  while (header.size() % 8) header += ' ';
  std::string file = test::le64(header.size()) + header;
  file.append(reinterpret_cast<const char*>(w), 16);
  file.append(reinterpret_cast<const char*>(&n), 8);
  test::write_file(tmp / name, file);
  return tmp / name;
}

nlohmann::json inspect_json(const std::string& path) {
  auto r = run_cli("inspect --json " + path);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return nlohmann::json::parse(r.out);
}

std::size_t entries(const std::string& dir) {
  return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

TEST(CliGuess, SourceStepIsSrcStepEverywhereAndStepIsTheOutputStep) {
  test::TempDir tmp;
  const std::string root = fixture("maxtext_linen_nnx/linen_full");  // a manager root: step 3, item "items"
  auto r = run_cli("inspect --src-step 3 " + root);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = run_cli("inspect --src-step 4 " + root);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("4"), std::string::npos) << r.err;
  r = run_cli("inspect --step 3 " + root);  // --step is the output step: inspect writes nothing
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--step"), std::string::npos) << r.err;
  // An Orbax --step output keeps the source's item name ("items", MaxText's).
  r = run_cli("convert " + root + " " + tmp / "mgr --to orbax --step 7 -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(tmp / "mgr/7/items/_METADATA"));
  r = run_cli("convert " + root + " " + tmp / "mgr --to orbax --step 8 --item params -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(tmp / "mgr/8/params/_METADATA"));
}

TEST(CliGuess, ToIsAlwaysAFileFormatAndAdaptTakesLayout) {
  test::TempDir tmp;
  const std::string src = fixture("maxtext_linen_nnx/linen_params");
  auto r = run_cli("adapt " + src + " " + tmp / "o --to nnx");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--to names the file format; the target layout is --layout nnx"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp / "o"));
  r = run_cli("adapt " + src + " " + tmp / "o --layout nnx -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The same zarr version as convert: the source's (Orbax) or Orbax's default, zarr 2.
  const bool src_v3 = test::read_file(fixture("maxtext_linen_nnx/linen_params/") +
                                      fs::directory_iterator(src)->path().filename().string() + "/items/_METADATA")
                          .find("\"use_zarr3\": true") != std::string::npos;
  auto meta = [&](const std::string& item) { return test::load_json(item + "/_METADATA")["use_zarr3"].get<bool>(); };
  EXPECT_EQ(meta(tmp / "o"), src_v3);
  r = run_cli("convert " + src + " " + tmp / "c --to orbax -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(meta(tmp / "c"), src_v3);
  const std::string st = small_source(tmp);
  r = run_cli("convert " + st + " " + tmp / "s --to orbax -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(meta(tmp / "s"));  // not from Orbax: Orbax's default, zarr 2
  r = run_cli("adapt " + src + " " + tmp / "o3 --layout nnx --zarr-version 3 -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(meta(tmp / "o3"));
}

TEST(CliGuess, OptionsOfOneConcernOnlyWhereTheyMeanSomething) {
  test::TempDir tmp;
  const std::string st = small_source(tmp);
  for (const char* cmd : {"diff SRC SRC --keep-rng", "inspect SRC --layout nnx", "diff SRC SRC --variant gemma_2b",
                          "inspect SRC --zarr-version 3"}) {
    std::string c = std::regex_replace(std::string(cmd), std::regex("SRC"), st);
    auto r = run_cli(c);
    EXPECT_NE(r.exit_code, 0) << c;
    EXPECT_TRUE(r.err.find("--") != std::string::npos) << c << ": " << r.err;
  }
  // A format's option on another format names who takes it.
  auto r = run_cli("convert " + st + " " + tmp / "x.npz --shard-size 1MB");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--shard-size applies to safetensors output, not npz"), std::string::npos) << r.err;
  r = run_cli("convert " + st + " " + tmp / "x.safetensors --shard-size 5XB");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("5XB"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp / "x.npz"));
}

TEST(CliGuess, DtypeNamesUsersType) {
  test::TempDir tmp;
  const std::string st = small_source(tmp);
  const std::pair<const char*, const char*> cases[] = {{"bf16", "BF16"}, {"BF16", "BF16"},  {"bfloat16", "BF16"},
                                                       {"fp16", "F16"},  {"f16", "F16"},    {"f32", "F32"},
                                                       {"fp32", "F32"},  {"float32", "F32"}, {"auto", "F32"}};
  int i = 0;
  for (const auto& [name, want] : cases) {
    const std::string out = tmp / ("d" + std::to_string(i++) + ".safetensors");
    auto r = run_cli("convert " + st + " " + out + " --dtype " + name + " -q");
    ASSERT_EQ(r.exit_code, 0) << name << r.err;
    EXPECT_EQ(inspect_json(out)["tensors"]["w"]["dtype"], want) << name;
    EXPECT_EQ(inspect_json(out)["tensors"]["n"]["dtype"], "I64") << name;
  }
  auto r = run_cli("convert " + st + " " + tmp / "bad.safetensors --dtype int8");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("'int8'"), std::string::npos) << r.err;
}

TEST(CliGuess, TorchByTheNamesUsersType) {
  test::TempDir tmp;
  const std::string st = small_source(tmp);
  auto r = run_cli("convert " + st + " " + tmp / "a.bin --to pt -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(inspect_json(tmp / "a.bin")["format"], "torch");
  r = run_cli("convert " + tmp / "a.bin" + " " + tmp / "b.ckpt -q");  // .ckpt names torch
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(inspect_json(tmp / "b.ckpt")["format"], "torch");
  r = run_cli("convert " + st + " " + tmp / "c.pt --to PyTorch -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // A pickle under a .safetensors name is refused before anything is written.
  r = run_cli("convert " + st + " " + tmp / "w.safetensors --to torch");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(tmp / "w.safetensors"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("says safetensors but the output format is torch"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp / "w.safetensors"));
}

TEST(CliGuess, OutputFolders) {
  test::TempDir tmp;
  const std::string st = small_source(tmp);
  // A trailing '/' or an existing folder: the natural file inside it (folder created).
  auto r = run_cli("convert " + st + " " + tmp / "new/deeper/ -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::is_regular_file(tmp / "new/deeper/model.safetensors"));
  fs::create_directories(tmp / "existing");
  r = run_cli("convert " + st + " " + tmp / "existing --to npz -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::is_regular_file(tmp / "existing/model.npz"));
  // Sharded output that fits one shard: one plain model.safetensors, no index.
  r = run_cli("convert " + st + " " + tmp / "sharded/ --shard-size 1GB -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::is_regular_file(tmp / "sharded/model.safetensors"));
  EXPECT_EQ(entries(tmp / "sharded"), 1u);
  // Missing parent folders are created for every format.
  for (const char* f : {"a/x.safetensors", "b/x.npz", "c/x.pt", "d/x.msgpack", "e/ckpt"}) {
    const std::string out = tmp / (std::string("parents/") + f);
    r = run_cli("convert " + st + " " + out + (std::string(f) == "e/ckpt" ? " --to orbax" : "") + " -q");
    ASSERT_EQ(r.exit_code, 0) << f << r.err;
    EXPECT_TRUE(fs::exists(out)) << f;
  }
}

TEST(CliGuess, OverwriteReplacesOnlyACheckpointOfTheKindBeingWritten) {
  test::TempDir tmp;
  const std::string st = small_source(tmp);
  fs::create_directories(tmp / "photos");
  test::write_file(tmp / "photos/cat.jpg", "meow");
  auto r = run_cli("convert " + st + " " + tmp / "photos --to orbax --overwrite");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(tmp / "photos"), std::string::npos) << r.err;
  EXPECT_EQ(test::read_file(tmp / "photos/cat.jpg"), "meow");
  EXPECT_EQ(entries(tmp / "photos"), 1u);
  // An Orbax checkpoint there is replaced.
  r = run_cli("convert " + st + " " + tmp / "ob --to orbax -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_cli("convert " + st + " " + tmp / "ob --to orbax -q");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("exists; pass --overwrite"), std::string::npos) << r.err;
  r = run_cli("convert " + st + " " + tmp / "ob --to orbax --overwrite -q --dtype bf16");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(inspect_json(tmp / "ob")["tensors"]["w"]["dtype"], "BF16");
}

TEST(CliGuess, SidecarsGoInsideTheOutputFolderAndAreNotOverwrittenUnasked) {
  test::TempDir tmp;
  fs::copy(fixture("openpi_pi0_tiny_full/release"), tmp / "ckpt", fs::copy_options::recursive);
  auto r = run_cli("convert " + tmp / "ckpt/params" + " " + tmp / "out/ --recipe openpi -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::is_regular_file(tmp / "out/model.safetensors"));
  EXPECT_EQ(test::load_json(tmp / "out/config.json")["action_dim"], 8);
  // A config.json the user did not ask to replace stops the run before anything is written.
  fs::create_directories(tmp / "mine");
  test::write_file(tmp / "mine/config.json", "{\"mine\": true}");
  r = run_cli("convert " + tmp / "ckpt/params" + " " + tmp / "mine/ --recipe openpi");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(tmp / "mine/config.json"), std::string::npos) << r.err;
  EXPECT_EQ(test::read_file(tmp / "mine/config.json"), "{\"mine\": true}");
  EXPECT_FALSE(fs::exists(tmp / "mine/model.safetensors"));
  r = run_cli("convert " + tmp / "ckpt/params" + " " + tmp / "mine/ --recipe openpi --overwrite -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(test::load_json(tmp / "mine/config.json")["action_dim"], 8);
}

TEST(CliGuess, DryRunOnEveryWritingCommandWritesNothing) {
  test::TempDir tmp;
  const std::string st = small_source(tmp);
  const std::string mx = fixture("maxtext_linen_nnx/");
  const std::string peft = fixture("peft_llama_lora");
  const std::string cmds[] = {
      "convert " + st + " " + tmp / "o/x.safetensors --dry-run",
      "adapt " + mx + "linen_params " + tmp / "o/a --layout nnx --dry-run",
      "merge-lora " + peft + "/base/model.safetensors " + tmp / "o/m.safetensors --adapter " + peft + "/adapter --dry-run",
  };
  for (const auto& c : cmds) {
    auto r = run_cli(c);
    EXPECT_EQ(r.exit_code, 0) << c << r.err;
    EXPECT_NE(r.err.find("dry run: would write"), std::string::npos) << c << r.err;
    EXPECT_NE(r.err.find("nothing was written"), std::string::npos) << c << r.err;
    EXPECT_NE(r.out.find("consumed"), std::string::npos) << c << r.out;  // the ledger
  }
  EXPECT_FALSE(fs::exists(tmp / "o"));
}

TEST(CliGuess, ReportOnStdoutAndJson) {
  test::TempDir tmp;
  const std::string st = small_source(tmp);
  for (const char* flag : {"--report -", "--json"}) {
    const std::string out = tmp / (std::string(flag) == "--json" ? "j.npz" : "r.npz");
    auto r = run_cli("convert " + st + " " + out + " " + flag);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);  // stdout holds the JSON report only
    EXPECT_EQ(j["destination"]["path"], out);
    EXPECT_EQ(j["tensors"]["w"]["shape"], nlohmann::json({2, 2}));
    EXPECT_EQ(j["tensors"]["w"]["stats"]["max"], 4.0);
    EXPECT_EQ(j["summary"]["tensors"], 2);
  }
  auto r = run_cli("convert " + st + " " + tmp / "d.npz --dry-run --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["dry_run"], true);
}

TEST(CliGuess, ErrorsSayWhatIsWrongWithWhichPath) {
  test::TempDir tmp;
  auto r = run_cli("convert " + tmp / "nope.safetensors " + tmp / "o.npz");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(tmp / "nope.safetensors"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("no such file or directory"), std::string::npos) << r.err;
  test::write_file(tmp / "junk.bin", "hello, not a checkpoint");
  r = run_cli("inspect " + tmp / "junk.bin");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("not a checkpoint format"), std::string::npos) << r.err;
  // Truncated safetensors, .npz and .pt: the file named, "truncated" said.
  const std::string st = small_source(tmp);
  ASSERT_EQ(run_cli("convert " + st + " " + tmp / "z.npz -q").exit_code, 0);
  ASSERT_EQ(run_cli("convert " + st + " " + tmp / "t.pt -q").exit_code, 0);
  for (const char* name : {"src.safetensors", "z.npz", "t.pt"}) {
    const std::string full = test::read_file(tmp / name);
    const std::string cut = tmp / (std::string("cut_") + name);
    test::write_file(cut, full.substr(0, full.size() * 2 / 3));
    r = run_cli("convert " + cut + " " + tmp / "out.npz");
    EXPECT_EQ(r.exit_code, 2) << name;
    EXPECT_NE(r.err.find(cut), std::string::npos) << name << ": " << r.err;
    EXPECT_NE(r.err.find("truncated"), std::string::npos) << name << ": " << r.err;
  }
  EXPECT_FALSE(fs::exists(tmp / "out.npz"));
}

TEST(CliGuess, DiscardReadsEveryByte) {
  test::TempDir tmp;
  const std::string st = small_source(tmp);
  ASSERT_EQ(run_cli("convert " + st + " " + tmp / "z.npz -q").exit_code, 0);
  // Flip a byte of w's data (stored member): only reading the data can notice (CRC-32).
  std::string z = test::read_file(tmp / "z.npz");
  const auto at = z.find(std::string("\x00\x00\x80\x3f", 4));  // w[0] = 1.0f
  ASSERT_NE(at, std::string::npos);
  z[at + 3] = 0x40;
  test::write_file(tmp / "bad.npz", z);
  ASSERT_EQ(run_cli("inspect " + tmp / "bad.npz").exit_code, 0);  // metadata is intact
  auto r = run_cli("convert " + tmp / "bad.npz" + " " + tmp / "nowhere --to discard");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("CRC-32"), std::string::npos) << r.err;
}

TEST(CliGuess, TimesAndCountsReadNaturally) {
  test::TempDir tmp;
  const std::string st = small_source(tmp);
  auto r = run_cli("convert " + st + " " + tmp / "o.npz");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("wrote 2 tensors ("), std::string::npos) << r.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.err, m, std::regex(" in ([0-9.]+) s\n"))) << r.err;
  std::string digits = m[1].str();
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  digits.erase(0, digits.find_first_not_of('0'));
  EXPECT_LE(digits.size(), 3u) << m[1];  // "0.056 s", "2.31 s": three significant digits at most
  // One tensor is "1 tensor".
  test::write_file(tmp / "pick.json", R"({"rules": [{"map": "w", "to": "w"}, {"drop": "n", "reason": "test"}]})");
  r = run_cli("convert " + st + " " + tmp / "one.safetensors --recipe " + tmp / "pick.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("wrote 1 tensor ("), std::string::npos) << r.err;
}

TEST(CliGuess, OverwriteNeverLosesWhatTheOutputDoesNotHold) {
  test::TempDir tmp;
  const std::string st = small_source(tmp);
  // A Hugging Face style folder: one safetensors file beside config and tokenizer files.
  fs::create_directories(tmp / "hf");
  fs::copy_file(st, tmp / "hf/model.safetensors");
  test::write_file(tmp / "hf/config.json", "{}");
  auto r = run_cli("convert " + st + " " + tmp / "hf/ --shard-size 8 --overwrite");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find(tmp / "hf"), std::string::npos) << r.err;
  EXPECT_EQ(test::read_file(tmp / "hf/config.json"), "{}");
  // A CheckpointManager root is not an item: --overwrite without --step must not replace it.
  fs::copy(fixture("maxtext_linen_nnx/linen_params"), tmp / "root", fs::copy_options::recursive);
  const std::size_t steps = entries(tmp / "root");
  r = run_cli("convert " + st + " " + tmp / "root --to orbax --overwrite");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(entries(tmp / "root"), steps);
  // A step holding another item is not rebuilt around the one item written.
  const std::string step = fs::directory_iterator(tmp / "root")->path().filename().string();
  r = run_cli("convert " + st + " " + tmp / "root --to orbax --step " + step + " --item other --overwrite");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("'items'"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(tmp / ("root/" + step + "/items/_METADATA")));
  // Reading one step of a root and writing another step into it is fine (the root itself as
  // the input is refused: writing into an input folder).
  r = run_cli("convert " + tmp / ("root/" + step) + " " + tmp / "root --to orbax --step 900 -q");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(tmp / "root/900/items/_METADATA"));
}

TEST(CliGuess, ReportsNeverReplaceCheckpointsAndOutputsAreRequired) {
  test::TempDir tmp;
  const std::string st = small_source(tmp);
  const std::string before = test::read_file(st);
  auto r = run_cli("convert " + st + " " + tmp / "o.npz --report " + st);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(test::read_file(st), before);
  r = run_cli("convert " + st + " --dry-run");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no output given"), std::string::npos) << r.err;
  // --json and --report FILE together: both get the report.
  r = run_cli("convert " + st + " " + tmp / "b.npz --json --report " + tmp / "b.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out), test::load_json(tmp / "b.json"));
}

TEST(CliGuess, DiscardWritesNoSidecars) {
  test::TempDir tmp;
  fs::copy(fixture("openpi_pi0_tiny_full/release"), tmp / "ckpt", fs::copy_options::recursive);
  auto r = run_cli("convert " + tmp / "ckpt/params" + " " + tmp / "nowhere --to discard --recipe openpi");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("nothing was written"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp / "config.json"));
  EXPECT_FALSE(fs::exists("config.json"));
}

}  // namespace
}  // namespace ckb
