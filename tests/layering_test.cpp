// The architecture's include rule (docs/architecture.md), checked on the sources: a layer
// includes only itself and the layers before it; the interfaces (cli/, capi/) include nothing
// below engine/api.h.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

const std::vector<std::string> kLayers = {"core", "codec", "io", "formats", "ops", "recipe", "profiles", "engine", "cli", "capi"};

int rank_of(const std::string& layer) {
  for (std::size_t i = 0; i < kLayers.size(); ++i)
    if (kLayers[i] == layer) return static_cast<int>(i);
  return -1;
}

TEST(Layering, EveryIncludeGoesDownOrSideways) {
  const fs::path root = CKB_SOURCE_DIR;
  const std::regex inc(R"(^\s*#\s*include\s+"([a-z_]+)/([^"]+)\")");
  std::size_t files = 0;
  std::vector<std::string> violations;
  for (const auto& layer : kLayers) {
    for (const auto& e : fs::recursive_directory_iterator(root / layer)) {
      const auto ext = e.path().extension();
      if (ext != ".h" && ext != ".cpp") continue;
      ++files;
      std::ifstream in(e.path());
      std::string line;
      int n = 0;
      while (std::getline(in, line)) {
        ++n;
        std::smatch m;
        if (!std::regex_search(line, m, inc)) continue;
        const std::string target = m[1].str(), header = m[1].str() + "/" + m[2].str();
        const int to = rank_of(target);
        if (to < 0) continue;  // not a layer (e.g. a third-party folder)
        const std::string where = fs::relative(e.path(), root).string() + ":" + std::to_string(n) + " includes " + header;
        if (layer == "cli" || layer == "capi") {  // interfaces: engine/api.h and themselves only
          if (target != layer && header != "engine/api.h") violations.push_back(where);
        } else if (to > rank_of(layer)) {
          violations.push_back(where);
        }
      }
    }
  }
  EXPECT_GT(files, 100u);
  for (const auto& v : violations) ADD_FAILURE() << v;
}

// The CLI does no engine work: no pass over the tree, no report building, no file writing.
TEST(Layering, CliHoldsNoEngineWork) {
  const fs::path root = CKB_SOURCE_DIR;
  const std::vector<std::string> forbidden = {"visit_leaves", "build_plan", "execute(", "AtomicFile", "AtomicDir",
                                              "read_checkpoint", "ledger_json", "cast_tensor(", "\"openpi\""};
  for (const auto& e : fs::directory_iterator(root / "cli")) {
    std::ifstream in(e.path());
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (const auto& f : forbidden)
      EXPECT_EQ(text.find(f), std::string::npos) << e.path().filename() << " contains " << f;
  }
}

}  // namespace
