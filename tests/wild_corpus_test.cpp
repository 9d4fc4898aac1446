// The corpus test from the wild (issue #15): files other projects wrote (zarr-python's,
// zarrita.js', zarrs' fixtures, NumPy's, safetensors', candle's and picklescan's test data,
// T5X's and Orbax's checkpoints), vendored under tests/data/wild/<project>/ with a
// MANIFEST.json of expected values computed by the reference implementations
// (tools/make_wild_manifest.py; never by ckptbridge). One parameterised case per manifest
// entry, so a failure names the file. Each runs the real CLI as a child process:
//   "read"   -> `inspect --json --hash` exits 0 and prints the manifest's format and every
//               tensor's dtype, shape and sha256 (and its leaves where the manifest lists them);
//               entries marked "convert" are also converted to safetensors and the output's
//               tensors must hash the same;
//   "refuse" -> exit 2, no signal, no hang, and the message holds each expected substring and
//               names the file.
#include <algorithm>
#include <filesystem>
#include <set>

#include "child_process.h"
#include "test_util.h"

namespace ckb {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct WildCase {
  std::string project;  // the manifest's folder name
  std::string file;     // absolute path of the case's input
  json spec;            // the manifest entry
  std::string id;       // GoogleTest parameter name
};

// GoogleTest prints the parameter of a failing case: the manifest and the path, not the bytes.
void PrintTo(const WildCase& c, std::ostream* os) { *os << c.project << "/" << c.spec.value("path", ""); }

std::string sanitize(const std::string& s) {
  std::string out;
  for (char c : s) out += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return out;
}

std::vector<WildCase> load_cases() {
  std::vector<WildCase> cases;
  const fs::path root = test::data_path("wild");
  if (!fs::is_directory(root)) return cases;
  std::vector<fs::path> manifests;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory() && fs::is_regular_file(e.path() / "MANIFEST.json")) manifests.push_back(e.path() / "MANIFEST.json");
  std::sort(manifests.begin(), manifests.end());
  std::set<std::string> ids;
  for (const auto& m : manifests) {
    const json j = test::load_json(m.string());
    const std::string project = m.parent_path().filename().string();
    for (const auto& c : j.at("cases")) {
      WildCase wc{project, (m.parent_path() / c.at("path").get<std::string>()).string(), c, ""};
      std::string id = sanitize(project + "/" + c.at("path").get<std::string>());
      for (int k = 2; !ids.insert(id).second; ++k) id = sanitize(project + "/" + c.at("path").get<std::string>()) + "_" + std::to_string(k);
      wc.id = id;
      cases.push_back(std::move(wc));
    }
  }
  return cases;
}

const std::vector<WildCase>& all_cases() {
  static const std::vector<WildCase> cases = load_cases();
  return cases;
}

// The read cases the manifest marks "convert": true.
std::vector<WildCase> convert_cases() {
  std::vector<WildCase> out;
  for (const auto& c : all_cases())
    if (c.spec.at("expect") == "read" && c.spec.value("convert", false)) out.push_back(c);
  return out;
}

test::ChildResult run(const std::vector<std::string>& args) {
  test::ChildLimits lim;
  lim.timeout_s = 120;
  return test::run_cli_child(args, lim);
}

std::string describe_wild_corpus(const test::ChildResult& r) {
  return "exit " + std::to_string(r.exit_code) + ", signal " + std::to_string(r.signal) +
         (r.timed_out ? ", TIMED OUT" : "") + "\nstderr: " + r.err.substr(0, 2000);
}

// Every tensor of `printed` (inspect --json's "tensors") equals the manifest's, by name.
void expect_tensors(const json& printed, const json& expected, const std::string& what) {
  std::set<std::string> got, want;
  for (const auto& [k, v] : printed.items()) got.insert(k);
  for (const auto& [k, v] : expected.items()) want.insert(k);
  EXPECT_EQ(got, want) << what << ": tensor names differ";
  for (const auto& [name, t] : expected.items()) {
    if (!printed.contains(name)) continue;
    const json& p = printed.at(name);
    EXPECT_EQ(p.value("dtype", ""), t.at("dtype").get<std::string>()) << what << ": " << name;
    EXPECT_EQ(p.value("shape", json::array()), t.at("shape")) << what << ": " << name;
    EXPECT_EQ(p.value("sha256", ""), t.at("sha256").get<std::string>()) << what << ": " << name;
  }
}

class WildCorpus : public ::testing::TestWithParam<WildCase> {};

TEST_P(WildCorpus, InspectMatchesManifest) {
  const WildCase& c = GetParam();
  ASSERT_TRUE(fs::exists(c.file)) << c.file;
  const std::string expect = c.spec.at("expect");
  const auto r = run({"inspect", "--json", "--hash", c.file});
  ASSERT_FALSE(r.timed_out) << c.file << ": " << describe_wild_corpus(r);
  ASSERT_EQ(r.signal, 0) << c.file << ": killed by a signal; " << describe_wild_corpus(r);
  if (expect == "refuse") {
    EXPECT_EQ(r.exit_code, 2) << c.file << " (" << c.spec.value("why", "") << "): " << describe_wild_corpus(r);
    EXPECT_NE(r.err.find(c.file), std::string::npos) << "the message does not name the file " << c.file << ": " << r.err;
    // The expected words must be in what the message says, not in the path it names ("pcodec" is in both).
    std::string said = r.err;
    for (auto at = said.find(c.file); at != std::string::npos; at = said.find(c.file, at)) said.replace(at, c.file.size(), "<FILE>");
    for (const auto& m : c.spec.at("message"))
      EXPECT_NE(said.find(m.get<std::string>()), std::string::npos)
          << c.file << ": the message lacks '" << m.get<std::string>() << "': " << r.err;
    return;
  }
  ASSERT_EQ(expect, "read") << "unknown expectation in " << c.project << "/MANIFEST.json";
  ASSERT_EQ(r.exit_code, 0) << c.file << ": " << describe_wild_corpus(r);
  json j;
  ASSERT_NO_THROW(j = json::parse(r.out)) << r.out.substr(0, 2000);
  EXPECT_EQ(j.value("format", ""), c.spec.at("format").get<std::string>()) << c.file;
  expect_tensors(j.at("tensors"), c.spec.at("tensors"), c.file);
  if (c.spec.contains("leaves")) {
    std::set<std::string> got, want;
    for (const auto& [k, v] : j.at("leaves").items()) got.insert(k);
    for (const auto& [k, v] : c.spec.at("leaves").items()) {
      want.insert(k);
      if (j.at("leaves").contains(k)) {
        EXPECT_EQ(j.at("leaves").at(k).at("value"), v) << c.file << ": leaf " << k;
      }
    }
    EXPECT_EQ(got, want) << c.file << ": leaf names differ";
  }
}

class WildConvert : public ::testing::TestWithParam<WildCase> {};

// Converting a read case to safetensors keeps every tensor's bytes.
TEST_P(WildConvert, ToSafetensorsKeepsTheBytes) {
  const WildCase& c = GetParam();
  test::TempDir tmp;
  const std::string out = tmp / "out.safetensors";
  const auto r = run({"convert", c.file, out});
  ASSERT_FALSE(r.timed_out) << c.file << ": " << describe_wild_corpus(r);
  ASSERT_EQ(r.signal, 0) << c.file << ": " << describe_wild_corpus(r);
  ASSERT_EQ(r.exit_code, 0) << c.file << ": " << describe_wild_corpus(r);
  const auto back = run({"inspect", "--json", "--hash", out});
  ASSERT_EQ(back.exit_code, 0) << out << ": " << describe_wild_corpus(back);
  const json j = json::parse(back.out);
  EXPECT_EQ(j.value("format", ""), "safetensors");
  expect_tensors(j.at("tensors"), c.spec.at("tensors"), c.file + " -> " + out);
}

INSTANTIATE_TEST_SUITE_P(Wild, WildCorpus, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<WildCase>& i) { return i.param.id; });
INSTANTIATE_TEST_SUITE_P(Wild, WildConvert, ::testing::ValuesIn(convert_cases()),
                         [](const ::testing::TestParamInfo<WildCase>& i) { return i.param.id; });

// The corpus is there and well-formed: every manifest names its source and licence, every
// case a path that exists and an expectation, and the test has cases to run.
TEST(WildCorpusManifest, EveryManifestIsWellFormed) {
  const fs::path root = test::data_path("wild");
  ASSERT_TRUE(fs::is_directory(root));
  int manifests = 0;
  for (const auto& e : fs::directory_iterator(root)) {
    if (!fs::is_regular_file(e.path() / "MANIFEST.json")) continue;
    ++manifests;
    const json m = test::load_json((e.path() / "MANIFEST.json").string());
    const std::string where = e.path().filename().string();
    EXPECT_FALSE(m.value("source", "").empty()) << where;
    EXPECT_FALSE(m.value("license", "").empty()) << where;
    ASSERT_TRUE(m.contains("cases") && m["cases"].is_array() && !m["cases"].empty()) << where;
    for (const auto& c : m["cases"]) {
      EXPECT_TRUE(fs::exists(e.path() / c.value("path", "-"))) << where << ": " << c.dump();
      const std::string x = c.value("expect", "");
      EXPECT_TRUE(x == "read" || x == "refuse") << where << ": " << c.dump();
      if (x == "read") {
        EXPECT_TRUE(c.contains("format") && c.contains("tensors")) << where << ": " << c.dump();
      } else if (x == "refuse") {
        EXPECT_TRUE(c.contains("message") && c["message"].is_array()) << where << ": " << c.dump();
      }
    }
  }
  EXPECT_GE(manifests, 7);
  EXPECT_GE(all_cases().size(), 200u);
  EXPECT_GE(convert_cases().size(), 10u);
}

}  // namespace
}  // namespace ckb
