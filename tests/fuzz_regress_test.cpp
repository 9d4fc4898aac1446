// Replays fuzzer findings under the normal (and the ASan/UBSan) build, without clang or
// libFuzzer: every fuzz/<name>_fuzz.cpp is compiled in here with CKB_FUZZ_REGRESS, which
// turns its entry point into a registered function, and every file under
// tests/data/fuzz_regressions/<name>/ is run through target <name>. A clean ckb::Error is
// the expected outcome; any other exception fails the test, and crashes or sanitizer
// reports fail the run. Each target also gets a few trivial inputs (empty, one byte, the
// start of each format's magic) so every target is exercised even with no findings.
#define CKB_FUZZ_REGRESS 1

#include "fuzz/fuzz_common.h"

#include "fuzz/all_targets.inc"

#include <filesystem>
#include <set>

#include "test_util.h"

namespace ckb {
namespace {
namespace fs = std::filesystem;

// Runs one input; returns "" when the target accepted or cleanly rejected it.
std::string run_one(fuzz::TargetFn fn, const std::string& bytes) {
  try {
    fn(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  } catch (const Error&) {
  } catch (const std::exception& e) {
    return std::string("non-ckb exception: ") + e.what();
  } catch (...) {
    return "non-ckb exception of unknown type";
  }
  return "";
}

TEST(FuzzRegress, EveryFuzzSourceIsRegistered) {
  std::set<std::string> sources;
  for (const auto& e : fs::directory_iterator(std::string(CKB_SOURCE_DIR) + "/fuzz")) {
    auto n = e.path().filename().string();
    if (n.ends_with("_fuzz.cpp")) sources.insert(n.substr(0, n.size() - 9));
  }
  std::set<std::string> registered;
  for (const auto& [name, fn] : fuzz::registry()) registered.insert(name);
  EXPECT_EQ(sources, registered) << "add the new fuzz/*_fuzz.cpp to fuzz/all_targets.inc";
}

TEST(FuzzRegress, TrivialInputs) {
  const std::string inputs[] = {"", std::string(1, '\0'), "\x80", "{", "[", "PK\x03\x04", "PK\x05\x06",
                                "\x93NUMPY", "\x80\x02}q\x00.", std::string("\x08\0\0\0\0\0\0\0{}      ", 16)};
  for (const auto& [name, fn] : fuzz::registry())
    for (const auto& in : inputs) EXPECT_EQ(run_one(fn, in), "") << "target " << name;
}

TEST(FuzzRegress, ReplayFindings) {
  const fs::path root = test::data_path("fuzz_regressions");
  if (!fs::exists(root)) GTEST_SKIP() << "no findings recorded";
  std::size_t replayed = 0;
  for (const auto& dir : fs::directory_iterator(root)) {
    if (!dir.is_directory()) continue;
    const auto target = dir.path().filename().string();
    auto it = fuzz::registry().find(target);
    ASSERT_NE(it, fuzz::registry().end()) << "tests/data/fuzz_regressions/" << target << " names no fuzz target";
    for (const auto& f : fs::directory_iterator(dir.path())) {
      if (!f.is_regular_file()) continue;
      EXPECT_EQ(run_one(it->second, test::read_file(f.path().string())), "") << f.path();
      ++replayed;
    }
  }
  RecordProperty("replayed", static_cast<int>(replayed));
}

}  // namespace
}  // namespace ckb
