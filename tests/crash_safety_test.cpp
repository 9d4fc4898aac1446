// Crash safety of every writer, through the real CLI:
//  - a convert SIGKILLed at random points leaves the destination absent or byte-identical to
//    the previous complete output (or, if the kill came after the final rename, the new
//    complete output), never a partial file or directory; anything else left behind is a
//    hidden, clearly named temporary (".ckb-tmp-<pid>-...-<name>": a killed process cannot
//    clean up), which the next run for that destination removes (its process is gone) and
//    reports on stderr;
//  - a full disk (RLIMIT_FSIZE, SIGXFSZ ignored) is exit 2 with a message naming the output,
//    and leaves neither the destination nor a temporary;
//  - the input is never modified (sha256 before and after every run).
#include <filesystem>
#include <map>
#include <random>

#include "checkpoint_files.h"
#include "child_process.h"
#include "test_util.h"

namespace ckb {
namespace {
namespace fs = std::filesystem;

bool is_hidden_temporary(const std::string& name, const std::string& dst_name) {
  return name.rfind(".ckb-tmp-", 0) == 0 && name.find("-" + dst_name) != std::string::npos;
}

struct Target {
  const char* dst;          // destination name
  std::vector<std::string> extra;  // extra CLI arguments
};

const Target kTargets[] = {
    {"out.safetensors", {}},
    {"out.pt", {}},
    {"out.npz", {}},
    {"out.msgpack", {}},
    // Per-array zarr directories: deterministic bytes (OCDBT data files get random names). The
    // OCDBT layout goes through the same AtomicDir.
    {"out_orbax", {"--to", "orbax", "--no-ocdbt", "--drop-non-tensors"}},
    {"out_sharded", {"--to", "safetensors", "--shard-size", "8MB"}},
};

class CrashSafety : public ::testing::Test {
 protected:
  std::vector<std::string> convert_args(const std::string& src, const Target& t) {
    std::vector<std::string> a{"convert", src, tmp / t.dst, "--overwrite"};
    a.insert(a.end(), t.extra.begin(), t.extra.end());
    return a;
  }
  test::TempDir tmp;
};

TEST_F(CrashSafety, KilledConvertLeavesPreviousOrNoOutput) {
  const std::string small = tmp / "small.safetensors", big = tmp / "big.safetensors";
  test::make_safetensors(small, 4, 1 << 16, 1);
  // 48 MiB (24 MiB under ASan, where every byte costs more): long enough that random kill
  // points land inside the run, short enough for CI.
  test::make_safetensors(big, test::under_asan() ? 6 : 12, 4 << 20, 2);
  const std::string small_hash = test::tree_hash(small), big_hash = test::tree_hash(big);
  std::mt19937 rng(12345);
  int kills_before_commit = 0, kills_total = 0;
  for (const auto& t : kTargets) {
    SCOPED_TRACE(t.dst);
    const std::string dst = tmp / t.dst;
    // The complete outputs of both inputs (and how long the big one takes).
    auto r = test::run_cli_child(convert_args(big, t));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string new_hash = test::tree_hash(dst);
    const double full = r.seconds;
    r = test::run_cli_child(convert_args(small, t));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string prev_hash = test::tree_hash(dst);
    ASSERT_NE(prev_hash, new_hash);

    for (int k = 0; k < 3; ++k) {
      const bool had_previous = k % 2 == 0;  // alternate: a previous output exists / none does
      if (!had_previous) fs::remove_all(dst);
      test::ChildLimits lim;
      lim.kill_after_s = std::uniform_real_distribution<double>(0.05, 0.9)(rng) * full;
      auto killed = test::run_cli_child(convert_args(big, t), lim);
      ++kills_total;
      const std::string now = test::tree_hash(dst);
      if (killed.killed_by_us && killed.signal == SIGKILL) {
        if (now != new_hash) ++kills_before_commit;
        if (had_previous)
          EXPECT_TRUE(now == prev_hash || now == new_hash) << "kill at " << lim.kill_after_s << " s left a different output";
        else
          EXPECT_TRUE(now.empty() || now == new_hash) << "kill at " << lim.kill_after_s << " s left a partial output";
      } else {
        EXPECT_EQ(killed.exit_code, 0) << killed.err;  // finished before the kill
        EXPECT_EQ(now, new_hash);
      }
      // Nothing else in the directory but the inputs, the destination and hidden temporaries.
      std::vector<std::string> leftovers;
      for (const auto& e : fs::directory_iterator(tmp.path())) {
        const auto name = e.path().filename().string();
        if (name == "small.safetensors" || name == "big.safetensors" || name == t.dst) continue;
        EXPECT_TRUE(is_hidden_temporary(name, t.dst)) << "unexpected file after a kill: " << name;
        leftovers.push_back(name);
      }
      // A run from scratch afterwards succeeds and removes the dead run's temporaries.
      fs::remove_all(dst);
      auto again = test::run_cli_child(convert_args(small, t));
      ASSERT_EQ(again.exit_code, 0) << again.err;
      EXPECT_EQ(test::tree_hash(dst), prev_hash);
      for (const auto& name : leftovers) {
        EXPECT_FALSE(fs::exists(tmp / name)) << "stale temporary not removed: " << name;
        EXPECT_NE(again.err.find("removed stale temporary " + (tmp / name)), std::string::npos) << again.err;
      }
    }
    fs::remove_all(dst);
    for (const auto& e : fs::directory_iterator(tmp.path()))
      if (is_hidden_temporary(e.path().filename().string(), t.dst)) fs::remove_all(e.path());
  }
  EXPECT_EQ(test::tree_hash(small), small_hash);
  EXPECT_EQ(test::tree_hash(big), big_hash);
  // Most kills must have hit a run in progress, or the test proves little.
  EXPECT_GE(kills_before_commit, kills_total / 2);
  RecordProperty("kills_before_commit", kills_before_commit);
}

TEST_F(CrashSafety, DiskFullIsACleanErrorAndLeavesNothing) {
  const std::string src = tmp / "src.safetensors";
  test::make_safetensors(src, 4, 1 << 20, 3);  // 4 MiB of incompressible data
  const std::string src_hash = test::tree_hash(src);
  for (const auto& t : kTargets) {
    SCOPED_TRACE(t.dst);
    test::ChildLimits lim;
    lim.file_size = 256 << 10;  // no file may grow past 256 KiB
    auto r = test::run_cli_child(convert_args(src, t), lim);
    EXPECT_EQ(r.signal, 0) << "killed by signal " << r.signal;
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find("ckptbridge: error: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(t.dst), std::string::npos) << "message does not name the output: " << r.err;
    EXPECT_NE(r.err.find("File too large"), std::string::npos) << r.err;
    for (const auto& e : fs::directory_iterator(tmp.path()))
      EXPECT_EQ(e.path().filename().string(), "src.safetensors") << "left behind: " << e.path();
  }
  EXPECT_EQ(test::tree_hash(src), src_hash);
}

TEST_F(CrashSafety, DiskFullDoesNotReplaceThePreviousOutput) {
  const std::string src = tmp / "src.safetensors", prev = tmp / "prev.safetensors";
  test::make_safetensors(prev, 2, 1 << 10, 4);
  test::make_safetensors(src, 4, 1 << 20, 5);
  for (const auto& t : kTargets) {
    SCOPED_TRACE(t.dst);
    auto ok = test::run_cli_child(convert_args(prev, t));
    ASSERT_EQ(ok.exit_code, 0) << ok.err;
    const std::string before = test::tree_hash(tmp / t.dst);
    test::ChildLimits lim;
    lim.file_size = 256 << 10;
    auto r = test::run_cli_child(convert_args(src, t), lim);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_EQ(test::tree_hash(tmp / t.dst), before);
    fs::remove_all(tmp / t.dst);
  }
}

}  // namespace
}  // namespace ckb
