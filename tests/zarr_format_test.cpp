// Tests of the "zarr" input format (formats/zarr/zarr_format.cpp) and of what issue #15 added
// to the zarr layer: bz2/lz4 compressors, delta/shuffle/fixedscaleoffset filters, zarr v3
// must_understand, missing chunks counted (report, warning) or refused (--strict-chunks).
// Data: tests/data/zarr_cases (tools/make_zarr_cases.py; expected values from zarr-python's
// and numpy's reads, never from ckptbridge).
#include <filesystem>

#include "core/errors.h"
#include "core/hash.h"
#include "formats/format.h"
#include "test_util.h"

namespace ckb {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string cases_dir() { return test::data_path("zarr_cases"); }
json manifest_zarr_format() { return test::load_json(cases_dir() + "/expected.json"); }
std::string case_path(const std::string& rel) { return cases_dir() + "/" + rel; }

TEST(ZarrFormat, ManifestHasTheCasesTheIssueAsksFor) {
  std::set<std::string> paths;
  const json m = manifest_zarr_format();
  for (const auto& c : m.at("cases")) paths.insert(c.at("path").get<std::string>());
  for (const char* p : {"v2/bz2", "v2/lz4", "v2/delta", "v2/shuffle", "v2/fixedscaleoffset", "v2/zstd", "v2/blosc",
                        "v2/gzip", "v2/missing_chunk", "v2/group", "v2/group_consolidated", "v3/must_understand_false",
                        "v3/unknown_codec", "v3/group"})
    EXPECT_TRUE(paths.count(p)) << p;
}

TEST(ZarrFormat, EveryCaseReadsExactlyOrIsRefusedInProcess) {
  const json m = manifest_zarr_format();
  for (const auto& c : m.at("cases")) {
    const std::string path = case_path(c.at("path").get<std::string>());
    SCOPED_TRACE(path);
    EXPECT_EQ(detect_format(path).name, "zarr");
    if (c.at("expect") == "read") {
      Checkpoint ck = read_checkpoint(path);
      EXPECT_EQ(ck.format, "zarr");
      test::expect_matches_manifest(ck, c);
    } else {
      const std::string err = test::error_of([&] {
        Checkpoint ck = read_checkpoint(path);
        for (const auto& [n, t] : tensor_list(ck.root)) tensor_sha256(*t);
      });
      for (const auto& m : c.at("message")) EXPECT_NE(err.find(m.get<std::string>()), std::string::npos) << err;
    }
  }
}

TEST(ZarrFormat, EveryCaseThroughTheCli) {
  const json m = manifest_zarr_format();
  for (const auto& c : m.at("cases")) {
    const std::string path = case_path(c.at("path").get<std::string>());
    SCOPED_TRACE(path);
    auto r = test::run_cli("inspect --json --hash '" + path + "'");
    if (c.at("expect") == "refuse") {
      EXPECT_EQ(r.exit_code, 2) << r.err;
      for (const auto& m : c.at("message")) EXPECT_NE(r.err.find(m.get<std::string>()), std::string::npos) << r.err;
      continue;
    }
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const json j = json::parse(r.out);
    EXPECT_EQ(j.at("format"), "zarr");
    EXPECT_EQ(j.at("tensors").size(), c.at("tensors").size());
    for (const auto& [name, want] : c.at("tensors").items()) {
      ASSERT_TRUE(j.at("tensors").contains(name)) << name;
      EXPECT_EQ(j["tensors"][name].at("sha256"), want.at("sha256")) << name;
      EXPECT_EQ(j["tensors"][name].at("dtype"), want.at("dtype")) << name;
      EXPECT_EQ(j["tensors"][name].at("shape"), want.at("shape")) << name;
    }
  }
}

TEST(ZarrFormat, NamesAttributesAndNesting) {
  Checkpoint bare = read_checkpoint(case_path("v2/bz2/"));  // trailing slash: still named after the folder
  ASSERT_EQ(tensor_list(bare.root).size(), 1u);
  EXPECT_EQ(tensor_list(bare.root)[0].first, "bz2");
  Checkpoint g = read_checkpoint(case_path("v2/group"));
  std::vector<std::string> names;
  for (const auto& [n, t] : tensor_list(g.root)) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"sub/deeper/b", "sub/w", "top"}));
  ASSERT_NE(find_path(g.root, "empty"), nullptr);
  EXPECT_TRUE(find_path(g.root, "empty")->is_empty_container());
  EXPECT_EQ(g.root.attrs.at("zarr.attributes"), R"({"about":"nested groups"})");
  EXPECT_EQ(g.metadata.at("zarr.zarr_format"), "2");
}

TEST(ZarrFormat, OrbaxDirectoriesStayOrbaxAndTheirArraysAreZarr) {
  EXPECT_EQ(detect_format(test::fixture("orbax_plain_zarr2/ckpt")).name, "orbax");
  EXPECT_EQ(detect_format(test::fixture("orbax_plain_zarr3/ckpt")).name, "orbax");
  // One array of that checkpoint, opened on its own, is a bare zarr array with the same bytes.
  const json m = test::load_json(test::fixture("orbax_plain_zarr2/manifest.json"));
  Checkpoint a = read_checkpoint(test::fixture("orbax_plain_zarr2/ckpt/embed.weight"));
  EXPECT_EQ(a.format, "zarr");
  const auto tensors = tensor_list(a.root);
  ASSERT_EQ(tensors.size(), 1u);
  EXPECT_EQ(tensors[0].first, "embed.weight");
  EXPECT_EQ(tensor_sha256(*tensors[0].second), m.at("tensors").at("embed/weight").at("sha256"));
}

TEST(ZarrMissingChunks, CountedByDefaultAndRefusedWhenStrict) {
  const std::string path = case_path("v2/missing_chunk");
  Checkpoint ck = read_checkpoint(path);
  const Tensor& t = *tensor_list(ck.root).at(0).second;
  EXPECT_EQ(t.source->missing_chunks(), 0u);  // nothing read yet
  tensor_sha256(t);
  tensor_sha256(t);  // a chunk is counted once however often it is read
  EXPECT_EQ(t.source->missing_chunks(), 1u);

  ReadOptions strict;
  strict.strict_chunks = true;
  const std::string err = test::error_of([&] {
    Checkpoint s = read_checkpoint(path, strict);
    tensor_sha256(*tensor_list(s.root).at(0).second);
  });
  EXPECT_NE(err.find("array 'missing_chunk'"), std::string::npos) << err;
  EXPECT_NE(err.find("chunk '1.0' is missing"), std::string::npos) << err;
  EXPECT_NE(err.find(path + "/1.0"), std::string::npos) << err;
}

TEST(ZarrMissingChunks, CliStrictOptionReportAndWarning) {
  const std::string path = case_path("v2/missing_chunk");
  auto strict = test::run_cli("inspect --json --hash --strict-chunks '" + path + "'");
  EXPECT_EQ(strict.exit_code, 2);
  EXPECT_NE(strict.err.find("array 'missing_chunk'"), std::string::npos) << strict.err;
  EXPECT_NE(strict.err.find("chunk '1.0' is missing"), std::string::npos) << strict.err;

  test::TempDir tmp;
  auto conv = test::run_cli("convert --strict-chunks '" + path + "' " + tmp / "s.safetensors");
  EXPECT_EQ(conv.exit_code, 2);
  EXPECT_NE(conv.err.find("chunk '1.0' is missing"), std::string::npos) << conv.err;
  EXPECT_FALSE(fs::exists(tmp / "s.safetensors"));
  auto diff = test::run_cli("diff --strict-chunks '" + path + "' '" + path + "'");
  EXPECT_EQ(diff.exit_code, 2) << diff.err;

  // Default: converts, the report counts the chunk per tensor and in total, stderr warns.
  auto ok = test::run_cli("convert '" + path + "' " + tmp / "o.safetensors" + " --report " + tmp / "r.json");
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_NE(ok.err.find("warning: 1 missing zarr chunk read as the fill value: missing_chunk (1)"), std::string::npos)
      << ok.err;
  const json rep = test::load_json(tmp / "r.json");
  EXPECT_EQ(rep.at("tensors").at("missing_chunk").at("missing_chunks"), 1);
  EXPECT_EQ(rep.at("summary").at("missing_chunks"), 1);
  // The output holds zarr-python's values (fill value 7.25 in the missing chunk).
  auto back = test::run_cli("inspect --json --hash " + tmp / "o.safetensors");
  ASSERT_EQ(back.exit_code, 0) << back.err;
  json want;
  const json m = manifest_zarr_format();
  for (const auto& c : m.at("cases"))
    if (c.at("path") == "v2/missing_chunk") want = c.at("tensors").at("missing_chunk");
  EXPECT_EQ(json::parse(back.out).at("tensors").at("missing_chunk").at("sha256"), want.at("sha256"));

  // Complete input: zero in the report, no warning.
  auto full = test::run_cli("convert '" + case_path("v2/bz2") + "' " + tmp / "f.safetensors" + " --report " + tmp / "f.json");
  ASSERT_EQ(full.exit_code, 0) << full.err;
  EXPECT_EQ(full.err.find("warning"), std::string::npos) << full.err;
  EXPECT_EQ(test::load_json(tmp / "f.json").at("summary").at("missing_chunks"), 0);
  EXPECT_EQ(test::load_json(tmp / "f.json").at("tensors").at("bz2").at("missing_chunks"), 0);
}

TEST(ZarrMissingChunks, OrbaxItemsFollowTheSameRule) {
  // An Orbax item whose _METADATA allows missing chunks (store_array_data_equal_to_fill_value
  // false): counted by default, an error with strict_chunks.
  test::TempDir tmp;
  const std::string item = tmp / "ckpt";
  fs::copy(test::fixture("orbax_plain_zarr2/ckpt"), item, fs::copy_options::recursive);
  std::string meta = test::read_file(item + "/_METADATA");
  const std::string flag = "\"store_array_data_equal_to_fill_value\": true";
  ASSERT_NE(meta.find(flag), std::string::npos);
  meta.replace(meta.find(flag), flag.size(), "\"store_array_data_equal_to_fill_value\": false");
  test::write_file(item + "/_METADATA", meta);
  fs::remove(item + "/embed.weight/0.0");
  Checkpoint ck = read_checkpoint(item);
  EXPECT_EQ(ck.format, "orbax");
  const Tensor& t = find_path(ck.root, "embed/weight")->tensor();
  tensor_sha256(t);
  EXPECT_EQ(t.source->missing_chunks(), 1u);
  ReadOptions strict;
  strict.strict_chunks = true;
  const std::string err = test::error_of([&] {
    Checkpoint s = read_checkpoint(item, strict);
    tensor_sha256(find_path(s.root, "embed/weight")->tensor());
  });
  EXPECT_NE(err.find("array 'embed.weight': chunk 'embed.weight/0.0' is missing"), std::string::npos) << err;
}

// A copy of case `rel` in a temp dir, to corrupt.
std::string copy_case(const test::TempDir& tmp, const std::string& rel) {
  const std::string dst = tmp / fs::path(rel).filename().string();
  fs::copy(case_path(rel), dst, fs::copy_options::recursive);
  return dst;
}

std::string zarr_read_error(const std::string& path) {
  return test::error_of([&] {
    Checkpoint ck = read_checkpoint(path);
    for (const auto& [n, t] : tensor_list(ck.root)) tensor_sha256(*t);
  });
}

TEST(ZarrCodecs, HostileLz4AndBz2ChunksAreRefused) {
  test::TempDir tmp;
  const std::string lz4 = copy_case(tmp, "v2/lz4");
  std::string chunk = test::read_file(lz4 + "/0.0");
  chunk[0] = '\xff';  // declares a larger decoded size than the 32-byte chunk
  chunk[1] = '\xff';
  chunk[2] = '\xff';
  chunk[3] = '\x7f';
  test::write_file(lz4 + "/0.0", chunk);
  std::string err = zarr_read_error(lz4);
  EXPECT_NE(err.find("lz4 header declares 2147483647 decoded bytes, expected 32"), std::string::npos) << err;
  EXPECT_NE(err.find(lz4 + "/0.0"), std::string::npos) << err;
  chunk = test::read_file(case_path("v2/lz4/0.0"));
  test::write_file(lz4 + "/0.0", chunk.substr(0, chunk.size() - 3));
  err = zarr_read_error(lz4);
  EXPECT_NE(err.find("lz4"), std::string::npos) << err;

  const std::string bz2 = copy_case(tmp, "v2/bz2");
  chunk = test::read_file(bz2 + "/0.0");
  test::write_file(bz2 + "/0.0", chunk.substr(0, chunk.size() / 2));
  err = zarr_read_error(bz2);
  EXPECT_NE(err.find("truncated bz2 stream"), std::string::npos) << err;
  chunk[chunk.size() / 2] ^= 0x55;
  test::write_file(bz2 + "/0.0", chunk);
  err = zarr_read_error(bz2);
  EXPECT_NE(err.find("(bz2)"), std::string::npos) << err;
}

TEST(ZarrFilters, UnsupportedFiltersAreRefusedByName) {
  test::TempDir tmp;
  const std::string a = copy_case(tmp, "v2/delta");
  auto with_filters = [&](const json& filters) {
    json z = test::load_json(a + "/.zarray");
    z["filters"] = filters;
    test::write_file(a + "/.zarray", z.dump());
    return zarr_read_error(a);
  };
  std::string err = with_filters(json::array({{{"id", "quantize"}, {"digits", 3}, {"dtype", "<f8"}}}));
  EXPECT_NE(err.find("unsupported filter 'quantize'"), std::string::npos) << err;
  EXPECT_NE(err.find(a + "/.zarray"), std::string::npos) << err;
  err = with_filters(json::array({{{"id", "delta"}, {"dtype", "<i4"}, {"astype", "<f4"}}}));
  EXPECT_NE(err.find("filter 'delta': unsupported type combination"), std::string::npos) << err;
  err = with_filters(json::array({{{"id", "delta"}, {"dtype", ">i4"}}}));
  EXPECT_NE(err.find("big-endian"), std::string::npos) << err;
  err = with_filters(json::array({{{"id", "shuffle"}, {"elementsize", 3}}}));  // 80-byte chunks
  EXPECT_NE(err.find("not a multiple of elementsize 3"), std::string::npos) << err;
}

TEST(ZarrFilters, FixedScaleOffsetOutOfRangeIsAnError) {
  // int8 codes decoded into a uint8 array: (-5) / 10 + 0.5 = 0 fits, (-128) / 10 + 0.5 does not.
  test::TempDir tmp;
  const std::string a = tmp / "fso";
  fs::create_directories(a);
  test::write_file(a + "/.zarray", json{{"zarr_format", 2}, {"shape", {2}}, {"chunks", {2}}, {"dtype", "|u1"},
                                        {"compressor", nullptr}, {"fill_value", 0}, {"order", "C"},
                                        {"filters", {{{"id", "fixedscaleoffset"}, {"offset", 0.5}, {"scale", 10},
                                                      {"dtype", "|u1"}, {"astype", "|i1"}}}}}
                                       .dump());
  test::write_file(a + "/0", std::string("\x05\x80", 2));
  const std::string err = zarr_read_error(a);
  EXPECT_NE(err.find("element 1 decodes to -12.3"), std::string::npos) << err;
  EXPECT_NE(err.find("cannot hold"), std::string::npos) << err;
}

TEST(ZarrConsolidated, DisagreementWithTheStoredNodesIsAnError) {
  test::TempDir tmp;
  const std::string g = copy_case(tmp, "v2/group_consolidated");
  json z = test::load_json(g + "/sub/w/.zarray");
  z["fill_value"] = 1.5;
  test::write_file(g + "/sub/w/.zarray", z.dump());
  std::string err = zarr_read_error(g);
  EXPECT_NE(err.find("consolidated metadata for 'sub/w/.zarray' differs"), std::string::npos) << err;
  EXPECT_NE(err.find(g + "/.zmetadata"), std::string::npos) << err;
  fs::copy(case_path("v2/group_consolidated/sub/w/.zarray"), g + "/sub/w/.zarray", fs::copy_options::overwrite_existing);
  fs::copy(case_path("v2/bz2"), g + "/extra", fs::copy_options::recursive);
  err = zarr_read_error(g);
  EXPECT_NE(err.find("does not list 'extra/.zarray'"), std::string::npos) << err;
}

TEST(ZarrFormat, BothV2AndV3MetadataReadsV3AsZarrPython3Does) {
  test::TempDir tmp;
  const std::string a = copy_case(tmp, "v2/zstd");
  // a v3 description of another array: only its declared shape/dtype can be told apart
  test::write_file(a + "/zarr.json", test::read_file(case_path("v3/group/x/zarr.json")));
  const std::string v3_only = copy_case(tmp, "v3/group/x");
  const Checkpoint both = read_checkpoint(a), want = read_checkpoint(v3_only);
  EXPECT_EQ(both.format, "zarr");
  EXPECT_EQ(both.metadata.at("zarr.zarr_format"), "3");
  EXPECT_NE(both.metadata.at("zarr.note").find("read as v3"), std::string::npos);
  const Node* t = find_path(both.root, "zstd");
  const Node* w = find_path(want.root, "x");
  ASSERT_TRUE(t && w && t->is_tensor() && w->is_tensor());
  EXPECT_EQ(t->tensor().info, w->tensor().info);
}

}  // namespace
}  // namespace ckb
