// safetensors reader/writer against the real library's files, round trips, and bad input.
#include <filesystem>

#include "core/errors.h"
#include "core/hash.h"
#include "formats/format.h"
#include "formats/safetensors/safetensors.h"
#include "test_util.h"

namespace ckb {
namespace {
using test::fixture;

TEST(Safetensors, SingleFileMatchesManifest) {
  auto ck = read_checkpoint(fixture("safetensors_single/model.safetensors"));
  EXPECT_EQ(ck.format, "safetensors");
  test::expect_matches_manifest(ck, test::load_json(fixture("safetensors_single/manifest.json")));
}

TEST(Safetensors, HubSavedDirectoryMatchesManifest) {
  auto ck = read_checkpoint(fixture("safetensors_sharded"));
  test::expect_matches_manifest(ck, test::load_json(fixture("safetensors_sharded/manifest.json")));
  EXPECT_EQ(ck.metadata.at("format"), "pt");
}

TEST(Safetensors, ReadsAreZeroCopy) {
  auto ck = read_checkpoint(fixture("safetensors_single/model.safetensors"));
  for (const auto& [name, t] : tensor_list(ck.root)) EXPECT_NE(t->source->contiguous(), nullptr) << name;
}

TEST(Safetensors, RoundTripIsByteIdenticalAndKeepsMetadata) {
  test::TempDir tmp;
  auto src = fixture("safetensors_single/model.safetensors");
  auto ck = read_checkpoint(src);
  WriteOptions wo;
  wo.metadata = ck.metadata;
  write_checkpoint(ck, tmp / "out.safetensors", format_by_name("safetensors"), wo);
  auto back = read_checkpoint(tmp / "out.safetensors");
  test::expect_matches_manifest(back, test::load_json(fixture("safetensors_single/manifest.json")));
  EXPECT_EQ(back.metadata, ck.metadata);
  // Header is 8-byte aligned and the file tiles exactly.
  auto bytes = test::read_file(tmp / "out.safetensors");
  std::uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  // No temporary files left behind.
  std::size_t files = 0;
  for (auto& e : std::filesystem::directory_iterator(tmp.path())) files += e.is_regular_file(), (void)e;
  EXPECT_EQ(files, 1u);
}

TEST(Safetensors, ShardedWriteAndReadBack) {
  test::TempDir tmp;
  auto ck = read_checkpoint(fixture("safetensors_single/model.safetensors"));
  WriteOptions wo;
  wo.options["shard-size"] = std::to_string(100 * 1024);  // "big" (384 KiB) gets a shard of its own
  write_checkpoint(ck, tmp / "sharded", format_by_name("safetensors"), wo);
  EXPECT_TRUE(std::filesystem::exists(tmp / "sharded/model.safetensors.index.json"));
  EXPECT_TRUE(std::filesystem::exists(tmp / "sharded/model-00001-of-00003.safetensors"));
  EXPECT_TRUE(std::filesystem::exists(tmp / "sharded/model-00003-of-00003.safetensors"));
  auto idx = test::load_json(tmp / "sharded/model.safetensors.index.json");
  std::uint64_t total = 0;  // the fixture's own size: file size minus header
  for (const auto& [name, t] : tensor_list(ck.root)) total += t->info.nbytes();
  auto raw = test::read_file(test::fixture("safetensors_single/model.safetensors"));
  std::uint64_t header;
  std::memcpy(&header, raw.data(), 8);
  EXPECT_EQ(total, raw.size() - 8 - header);
  EXPECT_EQ(idx["metadata"]["total_size"].get<std::uint64_t>(), total);
  EXPECT_EQ(idx["weight_map"]["big"], "model-00002-of-00003.safetensors");
  auto back = read_checkpoint(tmp / "sharded");
  test::expect_matches_manifest(back, test::load_json(fixture("safetensors_single/manifest.json")));
  // The index file itself is also accepted as the path.
  auto via_index = read_checkpoint(tmp / "sharded/model.safetensors.index.json");
  EXPECT_EQ(tensor_list(via_index.root).size(), 16u);
}

TEST(Safetensors, ShardedIndexMustAgreeWithShards) {
  test::TempDir tmp;
  auto ck = read_checkpoint(fixture("safetensors_single/model.safetensors"));
  WriteOptions wo;
  wo.options["shard-size"] = std::to_string(100 * 1024);
  write_checkpoint(ck, tmp / "s", format_by_name("safetensors"), wo);
  auto idx = test::load_json(tmp / "s/model.safetensors.index.json");
  idx["weight_map"]["ghost"] = "model-00001-of-00003.safetensors";
  test::write_file(tmp / "s/model.safetensors.index.json", idx.dump());
  try {
    read_checkpoint(tmp / "s");
    FAIL() << "expected FormatError";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("ghost"), std::string::npos) << e.what();
  }
}

// Writes a safetensors file with the given raw header and buffer.
std::string make_file_safetensors(const std::string& dir, const std::string& header, const std::string& buffer,
                      std::uint64_t declared = 0) {
  std::string out(8, '\0');
  std::uint64_t n = declared ? declared : header.size();
  std::memcpy(out.data(), &n, 8);
  out += header + buffer;
  auto path = dir + "/bad.safetensors";
  test::write_file(path, out);
  return path;
}

void expect_format_error(const std::string& path, const std::string& needle) {
  try {
    auto ck = safetensors::read(path);
    for (auto& [n, t] : tensor_list(ck.root)) tensor_sha256(*t);
    FAIL() << "expected FormatError containing '" << needle << "'";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("bad.safetensors"), std::string::npos) << e.what();
  }
}

TEST(Safetensors, BadInputGivesClearErrors) {
  test::TempDir tmp;
  auto d = tmp.path();
  expect_format_error(make_file_safetensors(d, "{}", "", 1000), "truncated: header declares 1000 bytes but the file has 2");
  expect_format_error(make_file_safetensors(d, "{}", "", 200'000'000), "exceeds the 100 MB limit");
  expect_format_error(make_file_safetensors(d, R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "1234"), "beyond the end");
  expect_format_error(make_file_safetensors(d, R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", "12345678"), "do not hold");
  expect_format_error(make_file_safetensors(d, R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})", "12345678"), "overlap");
  expect_format_error(make_file_safetensors(d, R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}})", "1234"), "overflow");
  expect_format_error(make_file_safetensors(d, R"({"a":{"dtype":"X9","shape":[1],"data_offsets":[0,4]}})", "1234"), "unsupported dtype");
  expect_format_error(make_file_safetensors(d, R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", "1234"), "non-negative");
  expect_format_error(make_file_safetensors(d, R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551615]}})", "1234"), "do not hold");
  expect_format_error(make_file_safetensors(d, std::string(100, '[') + std::string(100, ']'), ""), "start with '{'");
  expect_format_error(make_file_safetensors(d, "{\"a\":" + std::string(200, '[') + std::string(200, ']') + "}", ""), "nested deeper");
  expect_format_error(make_file_safetensors(d, "{\"a\":1", ""), "not valid JSON");
  // Truncated copy of a real file.
  auto real = test::read_file(fixture("safetensors_single/model.safetensors"));
  test::write_file(d + "/bad.safetensors", real.substr(0, real.size() - 100));
  expect_format_error(d + "/bad.safetensors", "beyond the end");
}

}  // namespace
}  // namespace ckb
