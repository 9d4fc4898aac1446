// safetensors as strictly as the reference library (safetensors/src/tensor.rs,
// SafeTensors::read_metadata + Metadata::validate): the tensors, in data-offset order, cover
// the byte buffer exactly (no gap, no trailing bytes), and a header longer than the file is
// "truncated", not "not a checkpoint format". Every file here is assembled byte by byte.
#include <cstring>
#include <filesystem>

#include "core/errors.h"
#include "formats/format.h"
#include "test_util.h"

namespace ckb {
namespace {

using test::le64;
std::string st_file(const std::string& header, const std::string& data) { return le64(header.size()) + header + data; }

// Kind and full message of the ckb::Error `fn` throws.
std::pair<std::string, std::string> kind_and_message_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const FormatError& e) {
    return {"format", e.what()};
  } catch (const Error& e) {
    return {"other", e.what()};
  }
  return {"none", ""};
}

const std::string kTwo = R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})";

TEST(SafetensorsStrict, ExactCoverageReads) {
  test::TempDir d;
  test::write_file(d / "ok.safetensors", st_file(kTwo, "\x01\x02\x03\x04"));
  auto ck = read_checkpoint(d / "ok.safetensors");
  EXPECT_EQ(tensor_list(ck.root).size(), 2u);
  // Zero-size tensors at the boundaries are fine ([0,0] and [4,4]).
  test::write_file(d / "empty.safetensors",
                   st_file(R"({"z":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"e":{"dtype":"F32","shape":[0,3],"data_offsets":[4,4]}})",
                           "abcd"));
  EXPECT_EQ(tensor_list(read_checkpoint(d / "empty.safetensors").root).size(), 3u);
}

TEST(SafetensorsStrict, TrailingBytesAreRefused) {
  test::TempDir d;
  const std::string p = d / "trail.safetensors";
  test::write_file(p, st_file(kTwo, std::string("\x01\x02\x03\x04", 4) + "extra_bogus_data_for_polyglot_file"));
  auto [kind, msg] = kind_and_message_of([&] { read_checkpoint(p); });
  EXPECT_EQ(kind, "format");
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_NE(msg.find("34 trailing bytes after the last tensor ('b' ends at buffer offset 4)"), std::string::npos) << msg;
  // File offset of the first trailing byte: 8 + header + 4.
  EXPECT_NE(msg.find("(offset " + std::to_string(8 + kTwo.size() + 4) + ")"), std::string::npos) << msg;
  // A header listing no tensors with bytes after it.
  test::write_file(d / "none.safetensors", st_file("{}", "xyz"));
  EXPECT_NE(kind_and_message_of([&] { read_checkpoint(d / "none.safetensors"); }).second.find("3 trailing bytes after the last tensor (the header lists none)"),
            std::string::npos);
}

TEST(SafetensorsStrict, GapsAreRefusedNamingTheTensor) {
  test::TempDir d;
  // 'b' starts 3 bytes after 'a' ends.
  const std::string gap = R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[5,7]}})";
  test::write_file(d / "gap.safetensors", st_file(gap, "1234567"));
  auto msg = kind_and_message_of([&] { read_checkpoint(d / "gap.safetensors"); }).second;
  EXPECT_NE(msg.find("gap of 3 bytes before tensor 'b': its data starts at buffer offset 5 but tensor 'a' ends at 2"),
            std::string::npos) << msg;
  // The first tensor does not start at 0 (the header order is not the offset order).
  const std::string first = R"({"b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})";
  test::write_file(d / "first.safetensors", st_file(first, "12345"));
  msg = kind_and_message_of([&] { read_checkpoint(d / "first.safetensors"); }).second;
  EXPECT_NE(msg.find("gap of 1 bytes before tensor 'a': its data starts at buffer offset 1 but the data buffer starts at 0"),
            std::string::npos) << msg;
}

TEST(SafetensorsStrict, HeaderLongerThanTheFileIsTruncatedViaCli) {
  test::TempDir d;
  const std::string p = d / "trunc.safetensors";
  // Declares 1000 header bytes; the file holds 20 after the length.
  test::write_file(p, le64(1000) + std::string("{\"a\":{\"dtype\":\"U8\",\"s", 20));
  auto r = test::run_cli("inspect " + p);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(p), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("truncated: header declares 1000 bytes but the file has 20"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("not a checkpoint format"), std::string::npos) << r.err;
  // And a complete file cut short inside its data is still the coverage error, naming the tensor.
  test::write_file(d / "cut.safetensors", st_file(kTwo, "\x01\x02\x03"));
  r = test::run_cli("inspect " + d / "cut.safetensors");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("tensor 'b': data ends at buffer offset 4 beyond the end of the file"), std::string::npos) << r.err;
}

TEST(SafetensorsStrict, ShardsAreCheckedTheSameWay) {
  test::TempDir d;
  std::filesystem::create_directories(d / "m");
  test::write_file(d / "m/model.safetensors.index.json",
                   R"({"metadata":{"total_size":6},"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}})");
  test::write_file(d / "m/s1.safetensors", st_file(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", "12"));
  test::write_file(d / "m/s2.safetensors", st_file(R"({"b":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", "34!"));
  auto r = test::run_cli("inspect " + d / "m");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(d / "m/s2.safetensors"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("1 trailing bytes after the last tensor ('b'"), std::string::npos) << r.err;
  test::write_file(d / "m/s2.safetensors", st_file(R"({"b":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", "34"));
  EXPECT_EQ(test::run_cli("inspect " + d / "m").exit_code, 0);
}

}  // namespace
}  // namespace ckb
