// Orbax written by `mpirun -np 2|4 ckptbridge convert --to orbax`: every rank its own
// ocdbt.process_<rank>/ database, rank 0 the root database, metadata and commit markers.
// Read back with our reader, tensor for tensor equal to the single-process output; the
// metadata files byte-identical. Built only with MPI.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>

#include "formats/format.h"
#include "mpi_run.h"
#include "test_util.h"

namespace ckb::test {
namespace {

namespace fs = std::filesystem;

const std::string kOrbaxSource = mpi_test_source();

// Every tensor of the checkpoint at `path`: name -> bytes.
std::map<std::string, std::string> tensors_of(const std::string& path, std::optional<std::int64_t> step = std::nullopt) {
  ReadOptions ro;
  ro.step = step;
  Checkpoint ck = read_checkpoint(path, ro);
  std::map<std::string, std::string> m;
  for (const auto& [name, t] : tensors_by_name(ck)) m[name] = bytes_of(*t);
  return m;
}

void expect_same_tensors(const std::map<std::string, std::string>& a, const std::map<std::string, std::string>& b) {
  ASSERT_EQ(a.size(), 50u);
  ASSERT_EQ(b.size(), a.size());
  for (const auto& [name, bytes] : a) {
    ASSERT_TRUE(b.count(name)) << name;
    EXPECT_TRUE(b.at(name) == bytes) << name;
  }
}

class SharedOrbax : public ::testing::TestWithParam<int> {};

TEST_P(SharedOrbax, ProcessDatabasesMergedAndTensorForTensorEqual) {
  const int np = GetParam();
  TempDir d;
  ASSERT_EQ(run_cli("convert " + kOrbaxSource + " " + d / "one --to orbax -q --report " + d / "one.json").exit_code, 0);
  auto r = run_mpi(np, "convert " + kOrbaxSource + " " + d / "many --to orbax -q --report " + d / "many.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same_tensors(tensors_of(d / "one"), tensors_of(d / "many"));
  for (const char* f : {"_METADATA", "_sharding", "array_metadatas/process_0"})
    EXPECT_TRUE(read_file(d / "one/" + f) == read_file(d / "many/" + f)) << f;
  EXPECT_EQ(read_file(d / "many/commit_success.txt"), "Checkpoint commit was successful to " + d / "many");
  // One database per rank, each holding only that rank's arrays, and the root over them.
  for (int k = 0; k < np; ++k) EXPECT_TRUE(fs::exists(d / "many/ocdbt.process_" + std::to_string(k) + "/manifest.ocdbt")) << k;
  EXPECT_FALSE(fs::exists(d / "many/ocdbt.process_" + std::to_string(np)));
  EXPECT_TRUE(fs::exists(d / "many/manifest.ocdbt"));
  const auto a = load_json(d / "one.json"), b = load_json(d / "many.json");
  EXPECT_EQ(a["ledger"], b["ledger"]);
  EXPECT_EQ(b["ranks"]["size"], np);
}

TEST_P(SharedOrbax, ArrayDirectoriesZarr3AndCheckpointManagerSteps) {
  const int np = GetParam();
  TempDir d;
  auto r = run_mpi(np, "convert " + kOrbaxSource + " " + d / "dirs --to orbax --no-ocdbt --zarr-version 3 -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same_tensors(tensors_of(kOrbaxSource), tensors_of(d / "dirs"));
  EXPECT_FALSE(fs::exists(d / "dirs/ocdbt.process_0"));
  EXPECT_FALSE(fs::exists(d / "dirs/manifest.ocdbt"));

  r = run_mpi(np, "convert " + kOrbaxSource + " " + d / "root --to orbax --step 3 -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(d / "root/3/commit_success.txt"));
  EXPECT_TRUE(fs::exists(d / "root/3/default/ocdbt.process_1/manifest.ocdbt"));
  expect_same_tensors(tensors_of(kOrbaxSource), tensors_of(d / "root", 3));
}

TEST_P(SharedOrbax, AFailingRankLeavesNoCommitMarkerAndNoTemporaries) {
  const int np = GetParam();
  TempDir d;
  auto r = run_mpi(np, "convert " + kOrbaxSource + " " + d / "out --to orbax", {{"CKB_TEST_FAIL_RANK", "1"}});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("rank 1 of " + std::to_string(np) + " failed: injected failure"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::is_empty(d.path())) << fs::directory_iterator(d.path())->path();
}

INSTANTIATE_TEST_SUITE_P(Ranks, SharedOrbax, ::testing::Values(2, 4), [](const auto& info) {
  return "np" + std::to_string(info.param);
});

}  // namespace
}  // namespace ckb::test
