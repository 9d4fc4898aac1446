// Tests of the format table's typed write options, names and capabilities (formats/format.h,
// formats/registry.cpp) and of core/units: an unknown or malformed option is a UsageError
// naming it (also for a library caller of make_writer), names and extensions resolve as users
// type them, and each format's declared capabilities match what its writer actually does.
#include <cstring>
#include <filesystem>
#include <set>

#include "core/errors.h"
#include "core/units.h"
#include "formats/format.h"
#include "test_util.h"

namespace ckb {
namespace {

namespace fs = std::filesystem;

// The UsageError message `fn` throws; "NO ERROR" or "WRONG TYPE" otherwise.
std::string usage_error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const UsageError& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("WRONG TYPE: ") + e.what();
  }
  return "NO ERROR";
}

std::string make_writer_error(const std::string& format, const OptionValues& o, const std::string& dir) {
  return usage_error_of([&] {
    WriteOptions wo;
    wo.options = o;
    format_by_name(format).make_writer(dir + "/out", wo);
  });
}

TEST(FormatOptions, UnknownOptionNamesItAndTheFormatsThatTakeIt) {
  test::TempDir tmp;
  // Through make_writer itself, as a library caller would use it: nothing is written.
  EXPECT_EQ(make_writer_error("orbax", {{"shard-size", "5GB"}}, tmp.path()),
            "--shard-size applies to safetensors output, not orbax");
  EXPECT_EQ(make_writer_error("npz", {{"zarr-version", "3"}}, tmp.path()), "--zarr-version applies to orbax output, not npz");
  EXPECT_EQ(make_writer_error("safetensors", {{"zip64", "1"}}, tmp.path()),
            "--zip64 applies to torch output, not safetensors");
  EXPECT_EQ(make_writer_error("msgpack", {{"colour", "red"}}, tmp.path()), "--colour is not a write option of any format");
  EXPECT_TRUE(fs::is_empty(tmp.path()));
  EXPECT_EQ(usage_error_of([] { validate_write_options(format_by_name("discard"), {{"step", "3"}}); }),
            "--step applies to orbax output, not discard");
}

TEST(FormatOptions, MalformedValuesAreUsageErrorsQuotingTheText) {
  test::TempDir tmp;
  EXPECT_EQ(make_writer_error("safetensors", {{"shard-size", "5XB"}}, tmp.path()),
            "--shard-size: bad size '5XB' (unknown unit 'XB'; e.g. 5GB, 500MiB, 1048576)");
  EXPECT_EQ(make_writer_error("safetensors", {{"shard-size", "99999999999999999999GB"}}, tmp.path()),
            "--shard-size: bad size '99999999999999999999GB' (too large; e.g. 5GB, 500MiB, 1048576)");
  EXPECT_EQ(make_writer_error("safetensors", {{"shard-size", "20000000000TB"}}, tmp.path()),
            "--shard-size: bad size '20000000000TB' (too large; e.g. 5GB, 500MiB, 1048576)");
  EXPECT_EQ(make_writer_error("orbax", {{"step", "-1"}}, tmp.path()), "--step must not be negative, got '-1'");
  EXPECT_EQ(make_writer_error("orbax", {{"step", "1e3"}}, tmp.path()), "--step: expected an integer, got '1e3'");
  EXPECT_EQ(make_writer_error("orbax", {{"compression", "gzip"}}, tmp.path()),
            "--compression must be one of zstd, none, got 'gzip'");
  EXPECT_EQ(make_writer_error("orbax", {{"chunk-size", "lots"}}, tmp.path()),
            "--chunk-size: bad size 'lots' (expected digits; e.g. 5GB, 500MiB, 1048576)");
  EXPECT_EQ(make_writer_error("orbax", {{"no-ocdbt", "yes"}}, tmp.path()), "--no-ocdbt is a flag; got the value 'yes'");
  EXPECT_EQ(make_writer_error("orbax", {{"zarr-version", "4"}}, tmp.path()), "--zarr-version must be one of 2, 3, got '4'");
  EXPECT_EQ(make_writer_error("orbax", {{"item", ""}}, tmp.path()), "--item needs a value");
  EXPECT_TRUE(fs::is_empty(tmp.path()));
  // Well-formed values pass.
  EXPECT_NO_THROW(validate_write_options(format_by_name("orbax"), {{"step", "+7"}, {"compression", "none"},
                                                                    {"chunk-size", "64MiB"}, {"zarr-version", "3"}, {"no-ocdbt", "true"}}));
}

TEST(FormatOptions, TypedAccessors) {
  const OptionValues v = {{"a", "1"}, {"b", "false"}, {"n", "-12"}, {"s", "2KiB"}, {"t", "params"}};
  EXPECT_TRUE(option_flag(v, "a"));
  EXPECT_FALSE(option_flag(v, "b"));
  EXPECT_FALSE(option_flag(v, "missing"));
  EXPECT_EQ(option_int(v, "n"), -12);
  EXPECT_EQ(option_int(v, "missing"), std::nullopt);
  EXPECT_EQ(option_size(v, "s"), 2048u);
  EXPECT_EQ(option_text(v, "t"), "params");
  EXPECT_EQ(usage_error_of([&] { option_size(v, "t"); }),
            "--t: bad size 'params' (expected digits; e.g. 5GB, 500MiB, 1048576)");
}

TEST(FormatNames, AliasesAreCaseInsensitive) {
  EXPECT_EQ(format_by_name("pt").name, "torch");
  EXPECT_EQ(format_by_name("PT").name, "torch");
  EXPECT_EQ(format_by_name("pytorch").name, "torch");
  EXPECT_EQ(format_by_name("Torch").name, "torch");
  EXPECT_EQ(format_by_name("flax").name, "msgpack");
  EXPECT_EQ(format_by_name("SafeTensors").name, "safetensors");
  const std::string e = usage_error_of([] { format_by_name("onnx"); });
  EXPECT_EQ(e.rfind("unknown format 'onnx' (known: orbax, zarr, safetensors, torch/pt/pytorch/pth, npz, npy, "
                    "msgpack/flax, discard)",
                    0),
            0u)
      << e;
  EXPECT_EQ(usage_error_of([] { format_by_name(""); }).rfind("unknown format ''", 0), 0u);
}

TEST(FormatNames, FromExtension) {
  EXPECT_EQ(format_from_extension("a/model.pt"), "torch");
  EXPECT_EQ(format_from_extension("model.pth"), "torch");
  EXPECT_EQ(format_from_extension("pytorch_model.bin"), "torch");
  EXPECT_EQ(format_from_extension("last.ckpt"), "torch");
  EXPECT_EQ(format_from_extension("x.safetensors"), "safetensors");
  EXPECT_EQ(format_from_extension("x.npz"), "npz");
  EXPECT_EQ(format_from_extension("x.npy"), "npy");
  EXPECT_EQ(format_from_extension("x.msgpack"), "msgpack");
  EXPECT_EQ(format_from_extension("MODEL.SAFETENSORS"), "safetensors");
  EXPECT_EQ(format_from_extension("Model.PT"), "torch");
  EXPECT_EQ(format_from_extension("x.onnx"), "");
  EXPECT_EQ(format_from_extension("checkpoints/100"), "");
  EXPECT_EQ(format_from_extension("run.v2/model"), "");  // a dot in a folder name says nothing
  EXPECT_EQ(format_from_extension("x.pt.tmp"), "");
}

TEST(FormatNames, NamesAliasesAndExtensionsAreUnique) {
  std::set<std::string> names, exts;
  for (const auto& f : formats()) {
    EXPECT_TRUE(names.insert(f.name).second) << f.name;
    for (const auto& a : f.aliases) EXPECT_TRUE(names.insert(a).second) << a;
    for (const auto& e : f.extensions) EXPECT_TRUE(exts.insert(e).second) << e;
  }
}

Tensor f32_tensor_format_options(std::vector<float> v) {
  Bytes b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return make_memory_tensor({DType::F32, {static_cast<std::int64_t>(v.size())}}, std::move(b));
}

Checkpoint tree(bool with_int) {
  Checkpoint ck;
  ck.root.add("w", Node::tensor(f32_tensor_format_options({1.5f, -2.0f, 3.25f})));
  if (with_int) ck.root.add("step", Node(std::int64_t{7}));
  return ck;
}

std::string output_name(const Format& f) { return f.default_file_name.empty() ? "out" : f.default_file_name; }

// Each writing format: the declared capabilities are what its writer does.
TEST(FormatCapabilities, WritesOutputAndDirectoryOutputMatchTheWriter) {
  int checked = 0;
  for (const auto& f : formats()) {
    if (!f.make_writer) continue;
    ++checked;
    test::TempDir tmp;
    const std::string dst = tmp / output_name(f);
    write_checkpoint(tree(false), dst, f, {}, 1);
    if (!f.caps.writes_output) {
      EXPECT_TRUE(fs::is_empty(tmp.path())) << f.name << " wrote something";
      continue;
    }
    ASSERT_TRUE(fs::exists(dst)) << f.name;
    EXPECT_EQ(fs::is_directory(dst), f.caps.directory_output) << f.name;
    // Only the output itself: no temporaries left beside it.
    EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()), 1) << f.name;
    Checkpoint back = read_checkpoint(dst);
    EXPECT_EQ(back.format, f.name);
    auto ts = tensor_list(back.root);
    ASSERT_EQ(ts.size(), 1u) << f.name;
    EXPECT_EQ(ts[0].first, f.name == "npy" ? "model" : "w");  // a .npy array is named by the file
    Bytes b = ts[0].second->read_all();
    ASSERT_EQ(b.size(), 12u) << f.name;
    float v[3];
    std::memcpy(v, b.data(), 12);
    EXPECT_EQ(v[0], 1.5f);
    EXPECT_EQ(v[1], -2.0f);
    EXPECT_EQ(v[2], 3.25f);
  }
  EXPECT_EQ(checked, 7);  // every format but zarr (read-only: an Orbax item writes zarr arrays)
  EXPECT_FALSE(static_cast<bool>(format_by_name("zarr").make_writer));
}

TEST(FormatCapabilities, NonTensorLeavesMatchTheWriter) {
  for (const auto& f : formats()) {
    if (!f.make_writer) continue;
    test::TempDir tmp;
    const std::string dst = tmp / output_name(f);
    if (!f.caps.non_tensor_leaves) {
      try {
        write_checkpoint(tree(true), dst, f, {}, 1);
        ADD_FAILURE() << f.name << " wrote an int leaf it declares it cannot hold";
      } catch (const MappingError& e) {
        EXPECT_NE(std::string(e.what()).find("step"), std::string::npos) << f.name << ": " << e.what();
      }
      EXPECT_TRUE(fs::is_empty(tmp.path())) << f.name;
      continue;
    }
    write_checkpoint(tree(true), dst, f, {}, 1);
    if (!f.caps.writes_output) continue;
    Checkpoint back = read_checkpoint(dst);
    const Node* s = find_path(back.root, "step");
    ASSERT_NE(s, nullptr) << f.name;
    ASSERT_TRUE(std::holds_alternative<std::int64_t>(s->value())) << f.name << " read back a " << s->type_name();
    EXPECT_EQ(std::get<std::int64_t>(s->value()), 7) << f.name;
  }
}

TEST(FormatCapabilities, Declared) {
  // What the table says, checked against the writers above; here the exact set.
  std::set<std::string> non_tensor, directory, no_output, string_meta, steps;
  for (const auto& f : formats()) {
    if (f.caps.non_tensor_leaves) non_tensor.insert(f.name);
    if (f.caps.directory_output) directory.insert(f.name);
    if (!f.caps.writes_output) no_output.insert(f.name);
    if (f.caps.string_metadata) string_meta.insert(f.name);
    if (f.caps.steps) steps.insert(f.name);
  }
  EXPECT_EQ(non_tensor, (std::set<std::string>{"orbax", "torch", "msgpack", "discard"}));
  EXPECT_EQ(directory, (std::set<std::string>{"orbax"}));
  EXPECT_EQ(no_output, (std::set<std::string>{"discard"}));
  EXPECT_EQ(string_meta, (std::set<std::string>{"safetensors"}));
  EXPECT_EQ(steps, (std::set<std::string>{"orbax"}));
}

TEST(FormatCapabilities, StringMetadataIsStored) {
  test::TempDir tmp;
  WriteOptions wo;
  wo.metadata = {{"format", "pt"}, {"note", "hello"}};
  write_checkpoint(tree(false), tmp / "m.safetensors", format_by_name("safetensors"), wo, 1);
  Checkpoint back = read_checkpoint(tmp / "m.safetensors");
  EXPECT_EQ(back.metadata.at("note"), "hello");
}

TEST(Units, ParseByteSize) {
  EXPECT_EQ(parse_byte_size("0"), 0u);
  EXPECT_EQ(parse_byte_size("1048576"), 1048576u);
  EXPECT_EQ(parse_byte_size("12B"), 12u);
  EXPECT_EQ(parse_byte_size("5GB"), 5000000000u);
  EXPECT_EQ(parse_byte_size("5gb"), 5000000000u);
  EXPECT_EQ(parse_byte_size("500MiB"), 500u * 1024 * 1024);
  EXPECT_EQ(parse_byte_size("3k"), 3072u);
  EXPECT_EQ(parse_byte_size("2T"), 2ull << 40);
  EXPECT_EQ(parse_byte_size("16777215TiB"), 16777215ull << 40);
  EXPECT_EQ(parse_byte_size("18446744073709551615"), 18446744073709551615ull);
  EXPECT_EQ(usage_error_of([] { parse_byte_size("18446744073709551616", "--x"); }),
            "--x: bad size '18446744073709551616' (too large; e.g. 5GB, 500MiB, 1048576)");
  EXPECT_EQ(usage_error_of([] { parse_byte_size("16777216TiB", "--x"); }),
            "--x: bad size '16777216TiB' (too large; e.g. 5GB, 500MiB, 1048576)");
  EXPECT_EQ(usage_error_of([] { parse_byte_size("", "--x"); }),
            "--x: bad size '' (expected digits; e.g. 5GB, 500MiB, 1048576)");
  EXPECT_EQ(usage_error_of([] { parse_byte_size("-5GB", "--x"); }),
            "--x: bad size '-5GB' (expected digits; e.g. 5GB, 500MiB, 1048576)");
  EXPECT_EQ(usage_error_of([] { parse_byte_size("1.5GB", "--x"); }),
            "--x: bad size '1.5GB' (unknown unit '.5GB'; e.g. 5GB, 500MiB, 1048576)");
  EXPECT_EQ(usage_error_of([] { parse_byte_size("5 GB", "--x"); }),
            "--x: bad size '5 GB' (unknown unit ' GB'; e.g. 5GB, 500MiB, 1048576)");
}

TEST(Units, ParseInteger) {
  EXPECT_EQ(parse_integer("0"), 0);
  EXPECT_EQ(parse_integer("+42"), 42);
  EXPECT_EQ(parse_integer("-42"), -42);
  EXPECT_EQ(parse_integer("9223372036854775807"), INT64_MAX);
  EXPECT_EQ(parse_integer("-9223372036854775808"), INT64_MIN);
  EXPECT_EQ(usage_error_of([] { parse_integer("9223372036854775808", "--step"); }),
            "--step: integer out of range, got '9223372036854775808'");
  EXPECT_EQ(usage_error_of([] { parse_integer("", "--step"); }), "--step: expected an integer, got ''");
  EXPECT_EQ(usage_error_of([] { parse_integer("+", "--step"); }), "--step: expected an integer, got '+'");
  EXPECT_EQ(usage_error_of([] { parse_integer("+-5", "--step"); }), "--step: expected an integer, got '+-5'");
  EXPECT_EQ(usage_error_of([] { parse_integer(" 5", "--step"); }), "--step: expected an integer, got ' 5'");
  EXPECT_EQ(usage_error_of([] { parse_integer("5 ", "--step"); }), "--step: expected an integer, got '5 '");
  EXPECT_EQ(usage_error_of([] { parse_integer("0x10", "--step"); }), "--step: expected an integer, got '0x10'");
}

}  // namespace
}  // namespace ckb
