// Runs under MPI (issue #21): `mpirun -np 2|4 ckptbridge convert ...` against the same job run
// by one process. Sharded safetensors must be byte-identical file for file, the gathered
// ledger and per-tensor report equal to the single-process ones, and a rank that fails or is
// killed half-way must leave no visible output and no temporaries. Built only with MPI.
#include <gtest/gtest.h>
#include <signal.h>

#include <cerrno>
#include <chrono>
#include <thread>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mpi_run.h"
#include "test_util.h"

namespace ckb::test {
namespace {

namespace fs = std::filesystem;

const std::string kSharedSource = mpi_test_source();

// Every entry under `dir` (hidden ones too) -> its bytes ("<dir>" for folders).
std::map<std::string, std::string> tree_bytes_of(const std::string& dir) {
  std::map<std::string, std::string> m;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const std::string rel = fs::relative(e.path(), dir).string();
    m[rel] = e.is_directory() ? "<dir>" : read_file(e.path().string());
  }
  return m;
}

std::vector<std::string> entries_of(const std::string& dir) {
  std::vector<std::string> v;
  for (const auto& e : fs::directory_iterator(dir)) v.push_back(e.path().filename().string());
  std::sort(v.begin(), v.end());
  return v;
}

// Waits (up to 10 s) until process `pid` no longer exists.
void wait_until_gone(int pid) {
  for (int i = 0; i < 1000 && pid > 0 && (::kill(pid, 0) == 0 || errno != ESRCH); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

class SharedSafetensors : public ::testing::TestWithParam<int> {};

TEST_P(SharedSafetensors, ByteIdenticalToOneProcessWithTheGatheredLedger) {
  const int np = GetParam();
  TempDir d;
  const std::string opts = " --shard-size 100KB --dtype bf16 --stats -q --report ";
  auto one = run_cli("convert " + kSharedSource + " " + d / "one/" + opts + d / "one.json");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  auto many = run_mpi(np, "convert " + kSharedSource + " " + d / "many/" + opts + d / "many.json");
  ASSERT_EQ(many.exit_code, 0) << many.err;

  // The same files with the same bytes: 5 shards of at most 100 KB (355 KiB as bf16) and the index.
  const auto a = tree_bytes_of(d / "one"), b = tree_bytes_of(d / "many");
  ASSERT_EQ(a.size(), 6u);
  ASSERT_TRUE(a.count("model.safetensors.index.json"));
  ASSERT_TRUE(a.count("model-00005-of-00005.safetensors"));
  for (const auto& [name, bytes] : a) {
    ASSERT_TRUE(b.count(name)) << name;
    EXPECT_TRUE(b.at(name) == bytes) << name << " differs";
  }
  EXPECT_EQ(b.size(), a.size());

  const auto ra = load_json(d / "one.json"), rb = load_json(d / "many.json");
  EXPECT_EQ(ra["ledger"], rb["ledger"]);
  EXPECT_EQ(rb["ledger"]["counts"]["sources_consumed"], 50);
  // Stats and cast counts of every tensor, gathered from the rank that wrote it.
  EXPECT_EQ(ra["tensors"], rb["tensors"]);
  for (const char* k : {"tensors", "bytes", "inexact", "overflow", "nan", "cast_tensors", "max_abs_error", "max_rel_error",
                        "worst_rel_error"})
    EXPECT_EQ(ra["summary"][k], rb["summary"][k]) << k;
  EXPECT_EQ(rb["summary"]["bytes"], 363920);  // 50 tensors of 181,960 elements as bf16

  // Per rank: every rank wrote a share, the shares add up, the slowest is the one named.
  const auto& ranks = rb["ranks"];
  ASSERT_EQ(ranks["size"], np);
  ASSERT_EQ(ranks["per_rank"].size(), static_cast<std::size_t>(np));
  std::uint64_t bytes = 0, tensors = 0;
  double slowest = -1;
  int slowest_rank = -1;
  for (int k = 0; k < np; ++k) {
    const auto& r = ranks["per_rank"][static_cast<std::size_t>(k)];
    EXPECT_EQ(r["rank"], k);
    EXPECT_GT(r["bytes"].get<std::uint64_t>(), 0u) << "rank " << k;
    bytes += r["bytes"].get<std::uint64_t>();
    tensors += r["tensors"].get<std::uint64_t>();
    if (r["seconds"].get<double>() > slowest) slowest = r["seconds"], slowest_rank = k;
  }
  EXPECT_EQ(bytes, 363920u);
  EXPECT_EQ(tensors, 50u);
  EXPECT_EQ(ranks["slowest"], slowest_rank);
  EXPECT_EQ(entries_of(d.path()), (std::vector<std::string>{"many", "many.json", "one", "one.json"}));
}

TEST_P(SharedSafetensors, TheHumanSummaryNamesTheSlowestRank) {
  const int np = GetParam();
  TempDir d;
  auto r = run_mpi(np, "convert " + kSharedSource + " " + d / "out/" + " --shard-size 200KB");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("wrote 50 tensors (710.8 KiB) as safetensors to " + d / "out"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(std::to_string(np) + " ranks: slowest rank "), std::string::npos) << r.err;
  // Only rank 0 speaks.
  EXPECT_EQ(r.err.find("wrote 50 tensors"), r.err.rfind("wrote 50 tensors")) << r.err;
}

TEST_P(SharedSafetensors, AFailingRankLeavesNoOutputAndNoTemporaries) {
  const int np = GetParam();
  for (int failing : {0, np - 1}) {
    TempDir d;
    auto r = run_mpi(np, "convert " + kSharedSource + " " + d / "out/" + " --shard-size 100KB",
                     {{"CKB_TEST_FAIL_RANK", std::to_string(failing)}});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    if (failing == 0)
      EXPECT_NE(r.err.find("ckptbridge: error: " + d / "out" + ": injected failure (CKB_TEST_FAIL_RANK)"), std::string::npos) << r.err;
    else
      EXPECT_NE(r.err.find("ckptbridge: error: " + d / "out" + ": rank " + std::to_string(failing) + " of " + std::to_string(np) +
                           " failed: injected failure (CKB_TEST_FAIL_RANK)"),
                std::string::npos)
          << r.err;
    EXPECT_TRUE(entries_of(d.path()).empty()) << "rank " << failing << " left " << entries_of(d.path()).front();
  }
}

TEST_P(SharedSafetensors, AKilledRankLeavesNoVisibleOutput) {
  const int np = GetParam();
  for (int killed : {np - 1, 0}) {
    TempDir d;
    // mpirun ends the other ranks (SIGTERM, then SIGKILL a second later; with several ranks
    // per core they may get SIGKILL first). Nothing is visible whichever rank dies; what a
    // SIGKILLed rank could not remove is hidden (.ckb-tmp-<pid>-...) and the next run for the
    // same output removes it.
    auto r = run_mpi(np, "convert " + kSharedSource + " " + d / "out/" + " --shard-size 100KB",
                     {{"CKB_TEST_KILL_RANK", std::to_string(killed)}});
    EXPECT_NE(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("rank " + std::to_string(killed) + " with PID"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("exited on signal 9"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(d / "out"));
    for (const auto& e : entries_of(d.path())) {
      EXPECT_EQ(e.rfind(".ckb-tmp-", 0), 0u) << e;
      wait_until_gone(std::atoi(e.c_str() + 9));  // mpirun may return before a killed rank is reaped
    }
    auto again = run_mpi(np, "convert " + kSharedSource + " " + d / "out/" + " --shard-size 100KB --report " + d / "r.json");
    ASSERT_EQ(again.exit_code, 0) << again.err;
    EXPECT_EQ(entries_of(d.path()), (std::vector<std::string>{"out", "r.json"}));
  }
}

TEST_P(SharedSafetensors, OneSafetensorsFileIsWrittenByEveryRank) {
  const int np = GetParam();
  TempDir d;
  ASSERT_EQ(run_cli("convert " + kSharedSource + " " + d / "one.safetensors -q").exit_code, 0);
  auto r = run_mpi(np, "convert " + kSharedSource + " " + d / "many.safetensors -q --report " + d / "r.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(read_file(d / "one.safetensors") == read_file(d / "many.safetensors"));
  const auto rep = load_json(d / "r.json");
  std::uint64_t bytes = 0;
  for (const auto& x : rep["ranks"]["per_rank"]) {
    EXPECT_GT(x["bytes"].get<std::uint64_t>(), 0u) << x.dump();
    bytes += x["bytes"].get<std::uint64_t>();
  }
  EXPECT_EQ(bytes, 727840u);
  // A failing rank: rank 0's temporary file is removed, nothing is published.
  r = run_mpi(np, "convert " + kSharedSource + " " + d / "failed.safetensors", {{"CKB_TEST_FAIL_RANK", std::to_string(np - 1)}});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(entries_of(d.path()), (std::vector<std::string>{"many.safetensors", "one.safetensors", "r.json"}));
}

TEST_P(SharedSafetensors, ASingleFileOfOtherFormatsIsWrittenByRankZeroAlone) {
  const int np = GetParam();
  TempDir d;
  // (a .pt archive's folder is named after the file: the same name in two folders)
  ASSERT_EQ(run_cli("convert " + kSharedSource + " " + d / "one/model.pt -q").exit_code, 0);
  auto r = run_mpi(np, "convert " + kSharedSource + " " + d / "many/model.pt --report " + d / "r.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(read_file(d / "one/model.pt") == read_file(d / "many/model.pt"));
  EXPECT_NE(r.err.find("note: torch output is one file, written by one process: rank 0 wrote it alone"), std::string::npos)
      << r.err;
  const auto rep = load_json(d / "r.json");
  EXPECT_EQ(rep["ranks"]["per_rank"][0]["bytes"], 727840);
  EXPECT_EQ(rep["ranks"]["per_rank"][1]["bytes"], 0);
}

TEST_P(SharedSafetensors, PlanErrorsAreReportedOnceAndEveryRankExits) {
  const int np = GetParam();
  TempDir d;
  write_file(d / "taken", "x");
  auto r = run_mpi(np, "convert " + kSharedSource + " " + d / "taken --to safetensors");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  const std::string msg = "output " + d / "taken" + " exists; pass --overwrite to replace it";
  EXPECT_NE(r.err.find(msg), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find(msg), r.err.rfind(msg)) << r.err;
  EXPECT_EQ(read_file(d / "taken"), "x");
}

INSTANTIATE_TEST_SUITE_P(Ranks, SharedSafetensors, ::testing::Values(2, 4), [](const auto& info) {
  return "np" + std::to_string(info.param);
});

}  // namespace
}  // namespace ckb::test
