// MPI runs with object storage (the local S3 server of tests/remote_servers.h): every rank reads
// its share straight from s3:// and the output equals one process's byte for byte; writing to
// s3:// from several processes is refused before anything is written (each rank's objects would
// become visible on their own).
#include <gtest/gtest.h>

#include <filesystem>

#include "core/hash.h"
#include "io/remote/object_store.h"
#include "mpi_run.h"
#include "remote_servers.h"
#include "test_util.h"

namespace ckb {
namespace mpi_remote_test {

std::map<std::string, std::string> s3_env() {
  return {{"AWS_ACCESS_KEY_ID", "CKBTESTKEY"}, {"AWS_SECRET_ACCESS_KEY", "'ckb-test-secret/+='"},
          {"AWS_REGION", "us-east-1"}, {"AWS_ENDPOINT_URL", test::s3().endpoint}};
}

std::map<std::string, std::string> files_with_sha(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string bytes = test::read_file(e.path().string());
    out[e.path().filename().string()] = sha256_hex(std::as_bytes(std::span<const char>(bytes.data(), bytes.size())));
  }
  return out;
}

class MpiRemote : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    test::s3_credentials_env();
    remote::set_default_options(test::s3_options(test::s3().endpoint));
  }
  std::string url(const std::string& key) const { return "s3://" + test::s3().bucket + "/" + key; }
};

TEST_P(MpiRemote, RanksReadTheirShareFromS3AndWriteWhatOneProcessWrites) {
  const int np = GetParam();
  test::TempDir d;
  const std::string key = "mpi-read-" + std::to_string(np) + "/params";
  auto up = test::run_cli("convert " + test::mpi_test_source() + " " + url(key) + " --to orbax -q --endpoint " +
                          test::s3().endpoint);
  ASSERT_EQ(up.exit_code, 0) << up.err;
  const std::string opts = " --to safetensors --shard-size 100KB -q";
  auto one = test::run_cli("convert " + url(key) + " " + d / "one" + opts + " --endpoint " + test::s3().endpoint);
  ASSERT_EQ(one.exit_code, 0) << one.err;
  auto many = test::run_mpi(np, "convert " + url(key) + " " + d / "many" + opts, s3_env());
  ASSERT_EQ(many.exit_code, 0) << many.err;
  const auto a = files_with_sha(d / "one"), b = files_with_sha(d / "many");
  EXPECT_GE(a.size(), 3u);
  EXPECT_EQ(a, b);
}

TEST_P(MpiRemote, WritingToS3FromSeveralProcessesIsRefusedBeforeAnythingIsWritten) {
  const int np = GetParam();
  const std::string prefix = "mpi-write-" + std::to_string(np);
  auto r = test::run_mpi(np, "convert " + test::mpi_test_source() + " " + url(prefix + "/out") +
                                 " --to safetensors --shard-size 100KB", s3_env());
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("from " + std::to_string(np) + " processes is not supported"), std::string::npos) << r.err;
  const auto store = remote::open_remote(url("")).store;
  EXPECT_TRUE(store->list(prefix + "/").empty());
}

INSTANTIATE_TEST_SUITE_P(Ranks, MpiRemote, ::testing::Values(2, 4));

}  // namespace mpi_remote_test
}  // namespace ckb
