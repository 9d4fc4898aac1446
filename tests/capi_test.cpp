// The C ABI (capi/ckptbridge.h, libckptbridge.so) used as a C caller would: no engine header,
// only the ABI's functions. Checked against the fixtures' manifests and against files parsed
// here (safetensors: 8-byte length, JSON header, data): opening and describing, zero-copy
// pointers, range and region reads, every error kind with its JSON (kind, path, offset,
// problems), trees built in memory and written, runs into caller buffers, in-memory expects,
// targets with problems, cancellation, progress, and dtype conversion of known bit patterns.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "capi/ckptbridge.h"
#include "test_util.h"

namespace {

using nlohmann::json;
using ckb::test::TempDir;
namespace fs = std::filesystem;

std::string single() { return ckb::test::fixture("safetensors_single/model.safetensors"); }
json manifest() { return ckb::test::load_json(ckb::test::fixture("safetensors_single/manifest.json")); }

std::string sha256(const void* p, std::size_t n) {
  unsigned char md[32];
  unsigned int len = 0;
  EXPECT_EQ(EVP_Digest(p, n, md, &len, EVP_sha256(), nullptr), 1);
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (unsigned i = 0; i < len; ++i) s += {hex[md[i] >> 4], hex[md[i] & 15]};
  return s;
}

std::size_t elem_size(const std::string& dt) {
  static const std::map<std::string, std::size_t> sizes = {{"F64", 8}, {"I64", 8}, {"U64", 8}, {"F32", 4}, {"I32", 4},
                                                           {"U32", 4}, {"F16", 2}, {"BF16", 2}, {"I16", 2}, {"U16", 2},
                                                           {"I8", 1},  {"U8", 1},  {"BOOL", 1}};
  return sizes.at(dt);
}
std::uint64_t numel(const json& shape) {
  std::uint64_t n = 1;
  for (const auto& d : shape) n *= d.get<std::uint64_t>();
  return n;
}

json last_error() { return json::parse(ckb_last_error()); }

// A C string the ABI returned, parsed and freed.
json take_json(char* s) {
  EXPECT_NE(s, nullptr);
  if (!s) return nullptr;
  json j = json::parse(s);
  ckb_free(s);
  return j;
}

struct Tree {
  ckb_tree* t = nullptr;
  ~Tree() { ckb_tree_free(t); }
  json describe() const {
    char* s = nullptr;
    EXPECT_EQ(ckb_tree_describe(t, &s), CKB_OK) << ckb_last_error();
    return take_json(s);
  }
};

struct SafetensorsTensor {
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::string bytes;
};
// Parses a safetensors file independently of the library.
std::map<std::string, SafetensorsTensor> parse_safetensors(const std::string& path, json* metadata = nullptr) {
  const std::string f = ckb::test::read_file(path);
  EXPECT_GE(f.size(), 8u);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | static_cast<unsigned char>(f[static_cast<std::size_t>(i)]);
  const json h = json::parse(f.substr(8, n));
  std::map<std::string, SafetensorsTensor> out;
  for (const auto& [k, v] : h.items()) {
    if (k == "__metadata__") {
      if (metadata) *metadata = v;
      continue;
    }
    const auto a = v["data_offsets"][0].get<std::size_t>(), b = v["data_offsets"][1].get<std::size_t>();
    out[k] = {v["dtype"], v["shape"].get<std::vector<std::int64_t>>(), f.substr(8 + n + a, b - a)};
  }
  return out;
}

std::string job_to(const std::string& source, const std::string& out, json extra = json::object()) {
  extra["source"] = source;
  extra["output"] = {{"path", out}, {"format", "safetensors"}};
  return extra.dump();
}

int run(const std::string& job, char** report, std::vector<ckb_tree*> mem = {}, std::vector<const char*> names = {},
        ckb_progress_fn progress = nullptr, void* user = nullptr, ckb_cancel* cancel = nullptr) {
  return ckb_run(job.c_str(), mem.data(), names.data(), mem.size(), 0, progress, user, cancel, report);
}

std::vector<std::string> dir_entries(const std::string& d) {
  std::vector<std::string> v;
  for (const auto& e : fs::directory_iterator(d)) v.push_back(e.path().filename().string());
  std::sort(v.begin(), v.end());
  return v;
}

TEST(CApi, VersionAndErrorBeforeAnyCall) {
  EXPECT_EQ(ckb_abi_version(), CKB_ABI_VERSION);
  EXPECT_STRNE(ckb_version(), "");
}

TEST(CApi, OpenDescribesTheManifestsTensors) {
  Tree t;
  ASSERT_EQ(ckb_open(single().c_str(), nullptr, &t.t), CKB_OK) << ckb_last_error();
  EXPECT_STREQ(ckb_last_error(), "");
  const json d = t.describe();
  EXPECT_EQ(d["format"], "safetensors");
  EXPECT_EQ(d["path"], single());
  const json m = manifest();
  ASSERT_EQ(d["tensors"].size(), m["tensors"].size());
  std::vector<int> seen(d["tensors"].size(), 0);
  for (const auto& x : d["tensors"]) {
    const std::string name = x["name"];
    ASSERT_TRUE(m["tensors"].contains(name)) << name;
    const json& w = m["tensors"][name];
    EXPECT_EQ(x["dtype"], w["dtype"]) << name;
    EXPECT_EQ(x["shape"], w["shape"]) << name;
    EXPECT_EQ(x["nbytes"].get<std::uint64_t>(), numel(w["shape"]) * elem_size(w["dtype"])) << name;
    EXPECT_EQ(x["zero_copy"], true) << name;
  }
  // The tree is one flat dict (safetensors keys), each tensor leaf pointing at its index once.
  ASSERT_EQ(d["tree"]["t"], "dict");
  for (const auto& kv : d["tree"]["c"]) {
    ASSERT_EQ(kv[1]["t"], "tensor") << kv[0];
    const auto i = kv[1]["i"].get<std::size_t>();
    ASSERT_LT(i, seen.size());
    ++seen[i];
    EXPECT_EQ(d["tensors"][i]["name"], kv[0]);
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), static_cast<long>(seen.size()));
  // the file's __metadata__
  EXPECT_EQ(d["metadata"], json({{"format", "pt"}, {"note", "tiny"}}));
}

TEST(CApi, PointersReadsAndRegionsGiveTheManifestsBytes) {
  Tree t;
  ASSERT_EQ(ckb_open(single().c_str(), "{\"strict_chunks\": true}", &t.t), CKB_OK) << ckb_last_error();
  const json d = t.describe(), m = manifest();
  for (std::size_t i = 0; i < d["tensors"].size(); ++i) {
    const std::string name = d["tensors"][i]["name"];
    const auto n = d["tensors"][i]["nbytes"].get<std::uint64_t>();
    const void* p = nullptr;
    ASSERT_EQ(ckb_tensor_pointer(t.t, i, &p), CKB_OK) << ckb_last_error();
    if (n) {
      ASSERT_NE(p, nullptr) << name;
    }
    EXPECT_EQ(sha256(p, n), m["tensors"][name]["sha256"]) << name;
    std::vector<unsigned char> buf(n + 1, 0xEE);
    ASSERT_EQ(ckb_tensor_read(t.t, i, 0, buf.data(), n, 2), CKB_OK) << ckb_last_error();
    EXPECT_EQ(sha256(buf.data(), n), m["tensors"][name]["sha256"]) << name;
    EXPECT_EQ(buf[n], 0xEE) << name;  // nothing past nbytes
  }
  // "big" F32 [256, 384]: a range at an offset, then a region, against the mapped bytes
  std::size_t big = 0;
  while (d["tensors"][big]["name"] != "big") ++big;
  const void* p = nullptr;
  ASSERT_EQ(ckb_tensor_pointer(t.t, big, &p), CKB_OK);
  const auto* bytes = static_cast<const unsigned char*>(p);
  std::vector<unsigned char> range(5001);
  ASSERT_EQ(ckb_tensor_read(t.t, big, 1003, range.data(), range.size(), 0), CKB_OK) << ckb_last_error();
  EXPECT_EQ(std::memcmp(range.data(), bytes + 1003, range.size()), 0);
  ASSERT_EQ(ckb_tensor_read(t.t, big, 393216 - 7, range.data(), 7, 1), CKB_OK) << ckb_last_error();
  EXPECT_EQ(std::memcmp(range.data(), bytes + 393216 - 7, 7), 0);
  ASSERT_EQ(ckb_tensor_read(t.t, big, 393216, nullptr, 0, 1), CKB_OK) << ckb_last_error();  // empty at the end

  const std::int64_t start[2] = {10, 7}, stop[2] = {200, 300};
  std::vector<unsigned char> reg(190 * 293 * 4);
  ASSERT_EQ(ckb_tensor_read_region(t.t, big, 2, start, stop, reg.data(), reg.size(), 3), CKB_OK) << ckb_last_error();
  for (std::size_t r = 0; r < 190; ++r)
    ASSERT_EQ(std::memcmp(reg.data() + r * 293 * 4, bytes + ((10 + r) * 384 + 7) * 4, 293 * 4), 0) << r;

  // errors: past the end, wrong region rank, wrong buffer size, a bad index
  EXPECT_EQ(ckb_tensor_read(t.t, big, 393216 - 3, range.data(), 4, 0), CKB_USAGE_ERROR);
  json e = last_error();
  EXPECT_EQ(e["kind"], "UsageError");
  EXPECT_EQ(e["message"], "big: bytes [393213, 393217) lie outside its 393216 bytes");
  EXPECT_EQ(e["offset"], nullptr);
  EXPECT_EQ(ckb_tensor_read_region(t.t, big, 1, start, stop, reg.data(), reg.size(), 0), CKB_USAGE_ERROR);
  EXPECT_EQ(last_error()["message"], "big: a region of a 2-d tensor needs 2 start and stop indices, got 1 and 1");
  EXPECT_EQ(ckb_tensor_read_region(t.t, big, 2, start, stop, reg.data(), reg.size() - 4, 0), CKB_USAGE_ERROR);
  EXPECT_EQ(last_error()["message"], "big: the region holds 222680 bytes, the buffer 222676");
  EXPECT_EQ(ckb_tensor_pointer(t.t, 16, &p), CKB_USAGE_ERROR);
  EXPECT_EQ(last_error()["message"], "tensor index 16 out of range (16 tensors)");
  // a success clears the thread's last error
  ASSERT_EQ(ckb_tensor_pointer(t.t, big, &p), CKB_OK);
  EXPECT_STREQ(ckb_last_error(), "");
}

TEST(CApi, OpenErrorsCarryKindPathAndOffset) {
  TempDir tmp;
  Tree t;
  const std::string missing = tmp / "missing.safetensors";
  EXPECT_EQ(ckb_open(missing.c_str(), nullptr, &t.t), CKB_IO_ERROR);
  json e = last_error();
  EXPECT_EQ(e["kind"], "IoError");
  EXPECT_EQ(e["path"], missing);
  EXPECT_EQ(e["offset"], nullptr);
  EXPECT_EQ(e["message"], missing + ": no such file or directory");
  EXPECT_EQ(e["problems"], json::array());
  EXPECT_EQ(t.t, nullptr);

  // Cut inside the data of "big": the error names the tensor and the file offset its data begins at.
  const std::string whole = ckb::test::read_file(single());
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | static_cast<unsigned char>(whole[static_cast<std::size_t>(i)]);
  const json h = json::parse(whole.substr(8, n));
  const std::uint64_t big_at = 8 + n + h["big"]["data_offsets"][0].get<std::uint64_t>();
  const std::string cut = tmp / "cut.safetensors";
  ckb::test::write_file(cut, whole.substr(0, big_at + 4));
  EXPECT_EQ(ckb_open(cut.c_str(), nullptr, &t.t), CKB_FORMAT_ERROR);
  e = last_error();
  EXPECT_EQ(e["kind"], "FormatError");
  EXPECT_EQ(e["path"], cut);
  EXPECT_EQ(e["offset"], big_at);
  EXPECT_NE(e["detail"].get<std::string>().find("tensor 'big'"), std::string::npos) << e;
  EXPECT_EQ(e["message"].get<std::string>().rfind(cut + " (offset " + std::to_string(big_at) + "): ", 0), 0u) << e;

  // Cut inside the header: offset 0, the header's declared length in the message.
  ckb::test::write_file(cut, whole.substr(0, 300));
  EXPECT_EQ(ckb_open(cut.c_str(), nullptr, &t.t), CKB_FORMAT_ERROR);
  e = last_error();
  EXPECT_EQ(e["path"], cut);
  EXPECT_EQ(e["offset"], 0);
  EXPECT_NE(e["detail"].get<std::string>().find("declares " + std::to_string(n) + " bytes"), std::string::npos) << e;

  EXPECT_EQ(ckb_open(single().c_str(), "{\"stepp\": 1}", &t.t), CKB_USAGE_ERROR);
  EXPECT_EQ(last_error()["message"], "open: unknown option 'stepp' (step, strict_chunks)");
  EXPECT_EQ(ckb_open(single().c_str(), "{not json", &t.t), CKB_USAGE_ERROR);
  EXPECT_EQ(last_error()["kind"], "UsageError");
  EXPECT_EQ(t.t, nullptr);
}

TEST(CApi, BadJobsAreUsageErrors) {
  TempDir tmp;
  char* report = nullptr;
  EXPECT_EQ(run("{\"source\": ", &report), CKB_USAGE_ERROR);
  json e = last_error();
  EXPECT_EQ(e["kind"], "UsageError");
  EXPECT_EQ(e["message"].get<std::string>().rfind("job JSON: ", 0), 0u) << e;
  EXPECT_EQ(run("[1, 2]", &report), CKB_USAGE_ERROR);
  EXPECT_EQ(last_error()["message"], "job JSON: expected an object");
  EXPECT_EQ(run(job_to(single(), tmp / "o.safetensors", {{"sorce", "x"}}), &report), CKB_USAGE_ERROR);
  EXPECT_EQ(last_error()["message"], "job: unknown key 'sorce'");
  EXPECT_EQ(run(R"({"source": "x", "output": {"path": "y", "fromat": "npz"}})", &report), CKB_USAGE_ERROR);
  EXPECT_EQ(last_error()["message"], "job.output: unknown key 'fromat' (path, format, options, metadata, overwrite)");
  EXPECT_EQ(run(job_to(single(), tmp / "o.safetensors", {{"threads", "four"}}), &report), CKB_USAGE_ERROR);
  EXPECT_EQ(last_error()["message"], "job.threads: wrong type (string)");
  EXPECT_EQ(report, nullptr);
  EXPECT_TRUE(dir_entries(tmp.path()).empty());
}

const char* kPartialRecipe = R"({"recipe": "only-embed", "rules": [{"map": "embed.weight", "to": "embed.weight"}]})";

TEST(CApi, UnmappedTensorsAreAMappingErrorListingEachOne) {
  TempDir tmp;
  ckb::test::write_file(tmp / "partial.json", kPartialRecipe);
  const std::string out = tmp / "out.safetensors";
  const std::string job = job_to(single(), out, {{"recipe", tmp / "partial.json"}});
  char* report = nullptr;
  EXPECT_EQ(run(job, &report), CKB_MAPPING_ERROR);
  const json e = last_error();
  EXPECT_EQ(e["kind"], "MappingError");
  EXPECT_EQ(e["path"], "plan");
  const json m = manifest();
  ASSERT_EQ(e["problems"].size(), m["tensors"].size() - 1) << e;
  for (const auto& [name, w] : m["tensors"].items()) {
    int hits = 0;
    for (const auto& p : e["problems"]) hits += p.get<std::string>().rfind("unused source '" + name + "' ", 0) == 0;
    EXPECT_EQ(hits, name == "embed.weight" ? 0 : 1) << name;
  }
  EXPECT_NE(e["message"].get<std::string>().find("15 problem(s) in the plan for recipe 'only-embed'"), std::string::npos);
  EXPECT_FALSE(fs::exists(out));

  // a dry run plans without failing and lists the same problems in its report
  ASSERT_EQ(ckb_run(job.c_str(), nullptr, nullptr, 0, 1, nullptr, nullptr, nullptr, &report), CKB_OK) << ckb_last_error();
  const json r = take_json(report);
  EXPECT_EQ(r["problems"], e["problems"]);
  EXPECT_FALSE(fs::exists(out));

  // a target: refused with problems, or (allow_problems) the part that maps, problems in its report
  const std::string tjob = json({{"source", single()}, {"recipe", tmp / "partial.json"}}).dump();
  Tree tg;
  EXPECT_EQ(ckb_target(tjob.c_str(), nullptr, nullptr, 0, 0, &tg.t), CKB_MAPPING_ERROR);
  EXPECT_EQ(last_error()["problems"], e["problems"]);
  ASSERT_EQ(ckb_target(tjob.c_str(), nullptr, nullptr, 0, 1, &tg.t), CKB_OK) << ckb_last_error();
  const json d = tg.describe();
  ASSERT_EQ(d["tensors"].size(), 1u);
  EXPECT_EQ(d["tensors"][0]["name"], "embed.weight");
  EXPECT_EQ(d["report"]["problems"], e["problems"]);
  std::vector<unsigned char> buf(64 * 16 * 4);
  ASSERT_EQ(ckb_tensor_read(tg.t, 0, 0, buf.data(), buf.size(), 0), CKB_OK) << ckb_last_error();
  EXPECT_EQ(sha256(buf.data(), buf.size()), m["tensors"]["embed.weight"]["sha256"]);
}

TEST(CApi, TreeBuiltInMemoryIsWrittenWithItsExactBytes) {
  TempDir tmp;
  Tree t;
  ASSERT_EQ(ckb_tree_new(&t.t), CKB_OK);
  const float w[6] = {1.5f, -2.0f, 0.0f, 3.25f, -0.0f, 1e-30f};
  const std::uint16_t h[4] = {0x3F80, 0xC000, 0x7F80, 0x0001};  // bf16 bits
  const std::int64_t step = -1234567890123;
  const std::uint8_t mask[3] = {1, 0, 1};
  const std::int64_t s23[2] = {2, 3}, s4[1] = {4}, s3[1] = {3}, s0[2] = {0, 5};
  ASSERT_EQ(ckb_tree_add_tensor(t.t, "dense.w", "F32", 2, s23, w, sizeof w), CKB_OK) << ckb_last_error();
  ASSERT_EQ(ckb_tree_add_tensor(t.t, "dense.b", "BF16", 1, s4, h, sizeof h), CKB_OK) << ckb_last_error();
  ASSERT_EQ(ckb_tree_add_tensor(t.t, "step", "I64", 0, nullptr, &step, 8), CKB_OK) << ckb_last_error();
  ASSERT_EQ(ckb_tree_add_tensor(t.t, "mask", "BOOL", 1, s3, mask, 3), CKB_OK) << ckb_last_error();
  const char none = 0;
  ASSERT_EQ(ckb_tree_add_tensor(t.t, "nothing", "F16", 2, s0, &none, 0), CKB_OK) << ckb_last_error();
  ASSERT_EQ(ckb_tree_set_metadata(t.t, "origin", "capi test"), CKB_OK);
  // wrong sizes, dtypes and duplicate paths are refused
  EXPECT_EQ(ckb_tree_add_tensor(t.t, "bad", "F32", 2, s23, w, 20), CKB_USAGE_ERROR);
  EXPECT_EQ(last_error()["message"], "bad: 20 bytes given, [2, 3] needs 24");
  EXPECT_EQ(ckb_tree_add_tensor(t.t, "bad", "F33", 2, s23, w, 24), CKB_USAGE_ERROR);
  EXPECT_EQ(last_error()["message"], "bad: unknown dtype 'F33'");
  EXPECT_EQ(ckb_tree_add_tensor(t.t, "step", "I64", 0, nullptr, &step, 8), CKB_USAGE_ERROR);
  EXPECT_EQ(last_error()["message"], "'step' is already in the tree");
  const std::int64_t negative[2] = {2, -3}, huge[2] = {std::int64_t{1} << 40, std::int64_t{1} << 40};
  EXPECT_EQ(ckb_tree_add_tensor(t.t, "bad", "F32", 2, negative, nullptr, 0), CKB_USAGE_ERROR);
  EXPECT_EQ(last_error()["message"], "bad: negative dimension in shape [2, -3]");
  EXPECT_EQ(ckb_tree_add_tensor(t.t, "bad", "F32", 2, huge, nullptr, 0), CKB_USAGE_ERROR);
  EXPECT_EQ(last_error()["message"], "bad: shape [1099511627776, 1099511627776] overflows 64-bit element count");
  EXPECT_EQ(ckb_tree_add_tensor(t.t, "a//b", "F32", 2, s23, w, 24), CKB_USAGE_ERROR);
  EXPECT_EQ(last_error()["message"], "'a//b': empty path component");

  // the tree reads back its borrowed bytes
  const json d = t.describe();
  ASSERT_EQ(d["tensors"].size(), 5u);
  EXPECT_EQ(d["tensors"][0], json({{"name", "dense.w"}, {"dtype", "F32"}, {"shape", {2, 3}}, {"nbytes", 24}, {"zero_copy", true}}));
  const void* p = nullptr;
  ASSERT_EQ(ckb_tensor_pointer(t.t, 0, &p), CKB_OK);
  EXPECT_EQ(p, static_cast<const void*>(w));

  const std::string out = tmp / "mem.safetensors";
  ckb_tree* mem[1] = {t.t};
  const char* names[1] = {"state"};
  char* report = nullptr;
  ASSERT_EQ(ckb_run(job_to("state", out).c_str(), mem, names, 1, 0, nullptr, nullptr, nullptr, &report), CKB_OK)
      << ckb_last_error();
  const json r = take_json(report);
  EXPECT_EQ(r["source"], json({{"path", "state"}, {"format", "memory"}}));
  json meta;
  const auto got = parse_safetensors(out, &meta);
  ASSERT_EQ(got.size(), 5u);
  auto bytes = [](const void* p, std::size_t n) { return std::string(static_cast<const char*>(p), n); };
  EXPECT_EQ(got.at("dense.w").dtype, "F32");
  EXPECT_EQ(got.at("dense.w").shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(got.at("dense.w").bytes, bytes(w, sizeof w));
  EXPECT_EQ(got.at("dense.b").dtype, "BF16");
  EXPECT_EQ(got.at("dense.b").bytes, bytes(h, sizeof h));
  EXPECT_EQ(got.at("step").dtype, "I64");
  EXPECT_EQ(got.at("step").shape, std::vector<std::int64_t>{});
  EXPECT_EQ(got.at("step").bytes, bytes(&step, 8));
  EXPECT_EQ(got.at("mask").dtype, "BOOL");
  EXPECT_EQ(got.at("mask").bytes, bytes(mask, 3));
  EXPECT_EQ(got.at("nothing").shape, (std::vector<std::int64_t>{0, 5}));
  EXPECT_EQ(got.at("nothing").bytes, "");
  // The tree's metadata is its own (describe); a file's metadata comes from the job's output
  // (string metadata carries over only between checkpoints of one format).
  EXPECT_EQ(t.describe()["metadata"], json({{"origin", "capi test"}}));
  EXPECT_EQ(meta, nullptr);
  json with_meta = json::parse(job_to("state", out));
  with_meta["output"]["metadata"] = {{"origin", "capi test"}};
  with_meta["output"]["overwrite"] = true;
  ASSERT_EQ(ckb_run(with_meta.dump().c_str(), mem, names, 1, 0, nullptr, nullptr, nullptr, &report), CKB_OK)
      << ckb_last_error();
  ckb_free(report);
  EXPECT_EQ(parse_safetensors(out, &meta).at("dense.w").bytes, bytes(w, sizeof w));
  EXPECT_EQ(meta, json({{"origin", "capi test"}}));
  // the name "state" was never a file: nothing but the output was written
  EXPECT_EQ(dir_entries(tmp.path()), std::vector<std::string>{"mem.safetensors"});
}

TEST(CApi, AbstractTensorsHaveNoBytes) {
  Tree t;
  ASSERT_EQ(ckb_tree_new(&t.t), CKB_OK);
  const std::int64_t shape[2] = {1024, 1024};
  ASSERT_EQ(ckb_tree_add_tensor(t.t, "model/w", "BF16", 2, shape, nullptr, 0), CKB_OK) << ckb_last_error();
  const json d = t.describe();
  EXPECT_EQ(d["tensors"][0], json({{"name", "model/w"}, {"dtype", "BF16"}, {"shape", {1024, 1024}}, {"nbytes", 2097152}, {"zero_copy", false}}));
  EXPECT_EQ(d["tree"]["c"][0][0], "model");  // containers made from the '/' path
  EXPECT_EQ(d["tree"]["c"][0][1]["t"], "dict");
  const void* p = &shape;
  ASSERT_EQ(ckb_tensor_pointer(t.t, 0, &p), CKB_OK);
  EXPECT_EQ(p, nullptr);
  std::vector<char> buf(16);
  EXPECT_EQ(ckb_tensor_read(t.t, 0, 0, buf.data(), 16, 0), CKB_USAGE_ERROR);
  json e = last_error();
  EXPECT_EQ(e["kind"], "UsageError");
  EXPECT_EQ(e["message"], "model/w: an abstract tensor (shape and dtype only) has no bytes to read");
  const std::int64_t a[2] = {0, 0}, b[2] = {1, 8};
  EXPECT_EQ(ckb_tensor_read_region(t.t, 0, 2, a, b, buf.data(), 16, 0), CKB_USAGE_ERROR);
  EXPECT_EQ(last_error()["message"], "model/w: an abstract tensor (shape and dtype only) has no bytes to read");
}

TEST(CApi, InMemoryExpectChecksTheLayout) {
  // An abstract tree as the expected layout (names, dtypes, shapes), given by name.
  auto expect_tree = [](const char* dtype_of_embed) {
    ckb_tree* t = nullptr;
    EXPECT_EQ(ckb_tree_new(&t), CKB_OK);
    const json m = manifest();
    for (const auto& [name, w] : m["tensors"].items()) {
      const auto shape = w["shape"].get<std::vector<std::int64_t>>();
      const std::string dt = name == "embed.weight" ? dtype_of_embed : w["dtype"].get<std::string>();
      EXPECT_EQ(ckb_tree_add_tensor(t, name.c_str(), dt.c_str(), shape.size(), shape.data(), nullptr, 0), CKB_OK)
          << ckb_last_error();
    }
    return t;
  };
  Tree good{expect_tree("F32")}, bad{expect_tree("F16")};
  const std::string job = json({{"source", single()}, {"expect", "want"}}).dump();
  const char* names[1] = {"want"};
  char* report = nullptr;
  ckb_tree* g[1] = {good.t};
  ASSERT_EQ(ckb_run(job.c_str(), g, names, 1, 1, nullptr, nullptr, nullptr, &report), CKB_OK) << ckb_last_error();
  EXPECT_FALSE(take_json(report).contains("problems"));
  ckb_tree* b[1] = {bad.t};
  EXPECT_EQ(ckb_run(job.c_str(), b, names, 1, 1, nullptr, nullptr, nullptr, &report), CKB_OK) << ckb_last_error();
  const json r = take_json(report);
  ASSERT_EQ(r["problems"].size(), 1u) << r;
  EXPECT_EQ(r["problems"][0], "target 'embed.weight' is F32 [64, 16] but the expected layout has F16 [64, 16]");
  Tree tg;
  EXPECT_EQ(ckb_target(job.c_str(), b, names, 1, 0, &tg.t), CKB_MAPPING_ERROR);
  EXPECT_EQ(last_error()["problems"], r["problems"]);
}

struct IntoCall {
  std::size_t index;
  std::string name, dtype;
  std::vector<std::int64_t> shape;
  std::uint64_t nbytes;
  std::vector<char> buf;
};
void* into_vectors(void* user, size_t index, const char* name, const char* dtype, size_t ndim, const int64_t* shape,
                   uint64_t nbytes) {
  auto& calls = *static_cast<std::vector<IntoCall>*>(user);
  calls.push_back({index, name, dtype, std::vector<std::int64_t>(shape, shape + ndim), nbytes, std::vector<char>(nbytes + 1, '\x5a')});
  return calls.back().buf.data();
}

TEST(CApi, RunIntoFillsTheCallersBuffersAsAFileWouldBe) {
  TempDir tmp;
  for (const json& extra : {json::object(), json({{"dtype", "BF16"}}), json({{"dtype", "F16"}, {"threads", 3}})}) {
    json j = extra;
    j["source"] = single();
    std::vector<IntoCall> calls;
    calls.reserve(64);
    char* report = nullptr;
    ASSERT_EQ(ckb_run_into(j.dump().c_str(), nullptr, nullptr, 0, into_vectors, &calls, nullptr, nullptr, nullptr, &report),
              CKB_OK)
        << ckb_last_error();
    EXPECT_EQ(take_json(report)["destination"], json({{"path", "memory"}, {"format", "memory"}}));
    const std::string out = tmp / "ref.safetensors";
    std::filesystem::remove(out);
    ASSERT_EQ(run(job_to(single(), out, extra), &report), CKB_OK) << ckb_last_error();
    ckb_free(report);
    const auto file = parse_safetensors(out);
    ASSERT_EQ(calls.size(), file.size()) << extra;
    for (std::size_t i = 0; i < calls.size(); ++i) {
      const IntoCall& c = calls[i];
      EXPECT_EQ(c.index, i);
      ASSERT_TRUE(file.count(c.name)) << c.name;
      const auto& f = file.at(c.name);
      EXPECT_EQ(c.dtype, f.dtype) << c.name << " " << extra;
      EXPECT_EQ(c.shape, f.shape) << c.name;
      EXPECT_EQ(c.nbytes, f.bytes.size()) << c.name;
      EXPECT_EQ(std::string(c.buf.data(), c.nbytes), f.bytes) << c.name << " " << extra;
      EXPECT_EQ(c.buf[c.nbytes], '\x5a') << c.name;  // nothing written past its nbytes
    }
    if (extra.contains("dtype")) {
      const auto& big = file.at("big");
      EXPECT_EQ(big.dtype, extra["dtype"]);
      EXPECT_EQ(file.at("i32").dtype, "I32");  // integers are not cast
    }
  }
  // An into callback without a buffer fails the run naming the tensor.
  auto refuse = [](void*, size_t, const char* name, const char*, size_t, const int64_t*, uint64_t) -> void* {
    static char sink[1 << 20];  // never written: the run fails while it asks for the buffers
    return std::string(name) == "big" ? nullptr : sink;
  };
  char* report = nullptr;
  const std::string j = json({{"source", single()}}).dump();
  EXPECT_EQ(ckb_run_into(j.c_str(), nullptr, nullptr, 0, refuse, nullptr, nullptr, nullptr, nullptr, &report), CKB_USAGE_ERROR);
  EXPECT_EQ(last_error()["message"], "big: no buffer to read into");
  // A run into memory takes no output.
  std::vector<IntoCall> calls;
  EXPECT_EQ(ckb_run_into(job_to(single(), tmp / "x.safetensors").c_str(), nullptr, nullptr, 0, into_vectors, &calls,
                         nullptr, nullptr, nullptr, &report),
            CKB_USAGE_ERROR);
  EXPECT_EQ(last_error()["message"], "a run into memory takes no output path");
  EXPECT_TRUE(calls.empty());
}

TEST(CApi, RunIntoNeedsNonTensorLeavesDropped) {
  Tree t;
  ASSERT_EQ(ckb_tree_new(&t.t), CKB_OK);
  const std::int32_t w[3] = {7, -8, 9};
  const std::int64_t s3[1] = {3};
  ASSERT_EQ(ckb_tree_add_tensor(t.t, "params/w", "I32", 1, s3, w, sizeof w), CKB_OK);
  ASSERT_EQ(ckb_tree_add_value(t.t, "epoch", "3"), CKB_OK) << ckb_last_error();
  ASSERT_EQ(ckb_tree_add_value(t.t, "cfg/name", "\"tiny\""), CKB_OK) << ckb_last_error();
  ASSERT_EQ(ckb_tree_add_value(t.t, "cfg/lr", "0.5"), CKB_OK) << ckb_last_error();
  EXPECT_EQ(ckb_tree_add_value(t.t, "cfg/list", "[1]"), CKB_USAGE_ERROR);
  ckb_tree* mem[1] = {t.t};
  const char* names[1] = {"sd"};
  std::vector<IntoCall> calls;
  calls.reserve(8);
  char* report = nullptr;
  EXPECT_EQ(ckb_run_into(R"({"source": "sd"})", mem, names, 1, into_vectors, &calls, nullptr, nullptr, nullptr, &report),
            CKB_MAPPING_ERROR);
  const json e = last_error();
  EXPECT_EQ(e["kind"], "MappingError");
  EXPECT_EQ(e["detail"],
            "only tensors can be read into memory; drop the other leaves (drop_non_tensors): epoch (int), cfg/name "
            "(string), cfg/lr (float)");
  EXPECT_TRUE(calls.empty());  // refused before any buffer was asked for

  ASSERT_EQ(ckb_run_into(R"({"source": "sd", "drop_non_tensors": true})", mem, names, 1, into_vectors, &calls, nullptr,
                         nullptr, nullptr, &report),
            CKB_OK)
      << ckb_last_error();
  ckb_free(report);
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].name, "params/w");
  EXPECT_EQ(calls[0].dtype, "I32");
  EXPECT_EQ(calls[0].shape, std::vector<std::int64_t>{3});
  EXPECT_EQ(std::memcmp(calls[0].buf.data(), w, sizeof w), 0);
}

TEST(CApi, CancelBeforeTheRunWritesNothing) {
  TempDir tmp;
  ckb_cancel* c = ckb_cancel_new();
  ASSERT_NE(c, nullptr);
  ckb_cancel_request(c);
  const std::string out = tmp / "out.safetensors";
  char* report = nullptr;
  EXPECT_EQ(run(job_to(single(), out), &report, {}, {}, nullptr, nullptr, c), CKB_CANCELLED);
  EXPECT_EQ(last_error()["kind"], "Cancelled");
  EXPECT_EQ(report, nullptr);
  EXPECT_FALSE(fs::exists(out));
  EXPECT_TRUE(dir_entries(tmp.path()).empty());  // no temporaries left either
  std::vector<IntoCall> calls;
  EXPECT_EQ(ckb_run_into(json({{"source", single()}}).dump().c_str(), nullptr, nullptr, 0, into_vectors, &calls, nullptr,
                         nullptr, c, &report),
            CKB_CANCELLED);
  ckb_cancel_free(c);
  // a fresh token runs
  c = ckb_cancel_new();
  ASSERT_EQ(run(job_to(single(), out), &report, {}, {}, nullptr, nullptr, c), CKB_OK) << ckb_last_error();
  ckb_free(report);
  ckb_cancel_free(c);
  EXPECT_EQ(dir_entries(tmp.path()), std::vector<std::string>{"out.safetensors"});
}

struct ProgressLog {
  std::mutex mu;
  std::vector<std::array<std::uint64_t, 4>> calls;
};
void on_progress(void* user, uint64_t done, uint64_t total, uint64_t tdone, uint64_t ttotal) {
  auto* log = static_cast<ProgressLog*>(user);
  std::lock_guard lock(log->mu);
  log->calls.push_back({done, total, tdone, ttotal});
}

TEST(CApi, ProgressCountsEveryByte) {
  TempDir tmp;
  const json m = manifest();
  std::uint64_t total = 0;
  for (const auto& [name, w] : m["tensors"].items()) total += numel(w["shape"]) * elem_size(w["dtype"]);
  ProgressLog log;
  char* report = nullptr;
  ASSERT_EQ(run(job_to(single(), tmp / "o.safetensors"), &report, {}, {}, on_progress, &log), CKB_OK) << ckb_last_error();
  ckb_free(report);
  ASSERT_FALSE(log.calls.empty());
  for (const auto& c : log.calls) {
    EXPECT_EQ(c[1], total);
    EXPECT_LE(c[0], total);
    EXPECT_EQ(c[3], m["tensors"].size());
  }
  EXPECT_EQ(log.calls.back(), (std::array<std::uint64_t, 4>{total, total, m["tensors"].size(), m["tensors"].size()}));
  // the same for a run into memory
  ProgressLog log2;
  std::vector<IntoCall> calls;
  calls.reserve(64);
  ASSERT_EQ(ckb_run_into(json({{"source", single()}}).dump().c_str(), nullptr, nullptr, 0, into_vectors, &calls, on_progress,
                         &log2, nullptr, &report),
            CKB_OK)
      << ckb_last_error();
  ckb_free(report);
  ASSERT_FALSE(log2.calls.empty());
  EXPECT_EQ(log2.calls.back(), (std::array<std::uint64_t, 4>{total, total, m["tensors"].size(), m["tensors"].size()}));
}

TEST(CApi, ConvertKnownBitPatterns) {
  // BF16 -> F32 is exact: the f32 bits are the bf16 bits shifted up 16
  const std::uint16_t bf[10] = {0x3F80, 0xC000, 0x7F80, 0xFF80, 0x7FC0, 0x0001, 0x8000, 0x7F7F, 0x4049, 0x0000};
  std::uint32_t f[10];
  ASSERT_EQ(ckb_convert("BF16", bf, 10, "F32", f), CKB_OK) << ckb_last_error();
  for (int i = 0; i < 10; ++i) EXPECT_EQ(f[i], static_cast<std::uint32_t>(bf[i]) << 16) << i;
  // F32 -> BF16 rounds to nearest, ties to even
  const std::uint32_t in[6] = {0x3F808000u,   // halfway 0x3F80 / 0x3F81 -> even 0x3F80
                               0x3F818000u,   // halfway 0x3F81 / 0x3F82 -> even 0x3F82
                               0x3F808001u,   // just above halfway -> 0x3F81
                               0x3F807FFFu,   // just below halfway -> 0x3F80
                               0xC0490FDBu,   // -pi -> 0xC049 (0x0FDB < 0x8000)
                               0x7F800000u};  // inf
  const std::uint16_t want[6] = {0x3F80, 0x3F82, 0x3F81, 0x3F80, 0xC049, 0x7F80};
  std::uint16_t out[6];
  ASSERT_EQ(ckb_convert("F32", in, 6, "BF16", out), CKB_OK) << ckb_last_error();
  for (int i = 0; i < 6; ++i) EXPECT_EQ(out[i], want[i]) << i;
  // F16 -> F32: 1, -2, inf, the smallest subnormal 2^-24, 65504
  const std::uint16_t h[5] = {0x3C00, 0xC000, 0x7C00, 0x0001, 0x7BFF};
  const std::uint32_t hw[5] = {0x3F800000u, 0xC0000000u, 0x7F800000u, 0x33800000u, 0x477FE000u};
  ASSERT_EQ(ckb_convert("F16", h, 5, "F32", f), CKB_OK) << ckb_last_error();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(f[i], hw[i]) << i;
  EXPECT_EQ(ckb_convert("F32", nullptr, 0, "BF16", nullptr), CKB_OK);
  EXPECT_EQ(ckb_convert("BF17", bf, 1, "F32", f), CKB_USAGE_ERROR);
  EXPECT_EQ(last_error()["message"], "ckb_convert: unknown dtype 'BF17'");
  EXPECT_EQ(ckb_convert("F32", in, 1, "F4", out), CKB_USAGE_ERROR);
  EXPECT_EQ(last_error()["message"], "no conversion between F32 and F4 (bytes-only dtype)");
}

TEST(CApi, ErrorsAreKeptPerThread) {
  Tree t;
  EXPECT_EQ(ckb_open("/nonexistent-capi", nullptr, &t.t), CKB_IO_ERROR);
  std::string other;
  std::thread th([&] {
    other = ckb_last_error();
    EXPECT_EQ(ckb_convert("X", nullptr, 0, "F32", nullptr), CKB_USAGE_ERROR);
  });
  th.join();
  EXPECT_EQ(other, "");
  EXPECT_EQ(last_error()["path"], "/nonexistent-capi");
}

}  // namespace

namespace {

TEST(CApi, ListsTakeTheirNextIndex) {
  Tree t;
  ASSERT_EQ(ckb_tree_new(&t.t), CKB_OK);
  const float w[2] = {1, 2};
  const std::int64_t s2[1] = {2};
  ASSERT_EQ(ckb_tree_add_value(t.t, "layers", "[]"), CKB_OK) << ckb_last_error();
  ASSERT_EQ(ckb_tree_add_tensor(t.t, "layers/0", "F32", 1, s2, w, 8), CKB_OK) << ckb_last_error();
  ASSERT_EQ(ckb_tree_add_tensor(t.t, "layers/1", "F32", 1, s2, w, 8), CKB_OK) << ckb_last_error();
  EXPECT_EQ(ckb_tree_add_tensor(t.t, "layers/5", "F32", 1, s2, w, 8), CKB_USAGE_ERROR);
  EXPECT_EQ(last_error()["message"], "'layers/5': the next key under a list is 2, not '5'");
  EXPECT_EQ(ckb_tree_add_tensor(t.t, "layers/x/w", "F32", 1, s2, w, 8), CKB_USAGE_ERROR);
  EXPECT_EQ(last_error()["message"], "'layers/x/w': the next key under a list is 2, not 'x'");
  ASSERT_EQ(ckb_tree_add_tensor(t.t, "layers/2/w", "F32", 1, s2, w, 8), CKB_OK) << ckb_last_error();
  ASSERT_EQ(ckb_tree_add_value(t.t, "layers/3", "null"), CKB_OK) << ckb_last_error();
  const json tree = t.describe()["tree"];
  const json& layers = tree["c"][0][1];
  EXPECT_EQ(layers["t"], "list");
  ASSERT_EQ(layers["c"].size(), 4u);
  for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(layers["c"][i][0], std::to_string(i));
  EXPECT_EQ(layers["c"][2][1], json::parse(R"({"t": "dict", "c": [["w", {"t": "tensor", "i": 2}]]})"));
  EXPECT_EQ(layers["c"][3][1], json::parse(R"({"t": "none", "v": null})"));
}

// Bytes of every tensor of a tree, by name.
std::map<std::string, std::string> all_bytes(const ckb_tree* t, const json& d) {
  std::map<std::string, std::string> out;
  for (std::size_t i = 0; i < d["tensors"].size(); ++i) {
    std::string b(d["tensors"][i]["nbytes"].get<std::size_t>(), '\0');
    EXPECT_EQ(ckb_tensor_read(t, i, 0, b.data(), b.size(), 0), CKB_OK) << ckb_last_error();
    out[d["tensors"][i]["name"]] = b;
  }
  return out;
}

TEST(CApi, InMemoryLikeOfAProfile) {
  // flax --layout auto with --like an opened tree given by name: a raw NNX state read as the pure one
  const std::string mx = ckb::test::fixture("maxtext_linen_nnx/");
  Tree like, tg;
  ASSERT_EQ(ckb_open((mx + "nnx_expected_pure").c_str(), nullptr, &like.t), CKB_OK) << ckb_last_error();
  const json job = {{"source", mx + "nnx_expected_raw"},
                    {"profile", "flax"},
                    {"profile_options", {{"layout", "auto"}, {"like", "pure"}}}};
  ckb_tree* mem[1] = {like.t};
  const char* names[1] = {"pure"};
  ASSERT_EQ(ckb_target(job.dump().c_str(), mem, names, 1, 0, &tg.t), CKB_OK) << ckb_last_error();
  const json d = tg.describe(), want = like.describe();
  ASSERT_EQ(d["tensors"].size(), 45u);
  EXPECT_EQ(all_bytes(tg.t, d), all_bytes(like.t, want));
  const auto& notes = d["report"]["notes"];
  EXPECT_NE(std::find(notes.begin(), notes.end(), "NNX leaves unwrapped from `value` to match --like"), notes.end()) << notes;
  // a name that is neither in memory nor a file
  const json bad = {{"source", mx + "nnx_expected_raw"},
                    {"profile", "flax"},
                    {"profile_options", {{"layout", "auto"}, {"like", "puree"}}}};
  Tree none;
  EXPECT_EQ(ckb_target(bad.dump().c_str(), mem, names, 1, 0, &none.t), CKB_IO_ERROR);
  EXPECT_EQ(last_error()["path"], "puree");
}

TEST(CApi, DiffFindsTheChangedTensor) {
  TempDir tmp;
  char* result = nullptr;
  const std::string job = json({{"source", single()}}).dump();
  ASSERT_EQ(ckb_diff(job.c_str(), single().c_str(), nullptr, &result), CKB_OK) << ckb_last_error();
  json r = take_json(result);
  EXPECT_EQ(r["within_tolerance"], true);
  EXPECT_EQ(r["leaves"].size(), 16u);
  // one byte of "big" changed in a copy
  std::string f = ckb::test::read_file(single());
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | static_cast<unsigned char>(f[static_cast<std::size_t>(i)]);
  const json h = json::parse(f.substr(8, n));
  f[8 + n + h["big"]["data_offsets"][0].get<std::size_t>() + 401] ^= 0x10;
  ckb::test::write_file(tmp / "b.safetensors", f);
  ASSERT_EQ(ckb_diff(job.c_str(), (tmp / "b.safetensors").c_str(), "{\"ulp\": 0}", &result), CKB_OK) << ckb_last_error();
  r = take_json(result);
  EXPECT_EQ(r["within_tolerance"], false);
  for (const auto& [name, leaf] : r["leaves"].items()) EXPECT_EQ(leaf["status"] == "equal", name != "big") << name << leaf;
  EXPECT_EQ(ckb_diff(job.c_str(), single().c_str(), "{\"ulps\": 1}", &result), CKB_USAGE_ERROR);
  EXPECT_EQ(last_error()["message"], "diff: unknown option 'ulps' (ulp, abs, rel, ignore_dtype, threads, b_step)");
}

TEST(CApi, FormatAndProfileTables) {
  char* s = nullptr;
  ASSERT_EQ(ckb_formats(&s), CKB_OK);
  const json f = take_json(s);
  auto st = std::find_if(f.begin(), f.end(), [](const json& x) { return x["name"] == "safetensors"; });
  ASSERT_NE(st, f.end());
  EXPECT_EQ((*st)["writes"], true);
  EXPECT_EQ((*st)["caps"]["string_metadata"], true);
  ASSERT_EQ(ckb_profiles(&s), CKB_OK);
  const json p = take_json(s);
  auto flax = std::find_if(p.begin(), p.end(), [](const json& x) { return x["name"] == "flax"; });
  ASSERT_NE(flax, p.end());
  bool layout = false;
  for (const auto& o : (*flax)["options"])
    if (o["name"] == "layout") {
      layout = true;
      EXPECT_EQ(o["choices"], json({"nnx", "linen", "auto"}));
    }
  EXPECT_TRUE(layout);
}

}  // namespace

namespace {

// A computed (cast) tensor read whole with several threads: read_parallel splits the range,
// and every split must fall on an element (a cast source converts whole elements only).
// 3 * 2^22 + 1 F32 elements -> BF16 is 24 MiB + 2 bytes: three parts of 8 MiB + 1 byte if
// split evenly.
TEST(CApi, ThreadedReadsOfACastTensorSplitOnElements) {
  const std::size_t n = 3 * (std::size_t{1} << 22) + 1;
  std::vector<std::uint32_t> f32(n);
  std::vector<std::uint16_t> want(n);
  for (std::size_t i = 0; i < n; ++i) {
    // finite bf16 patterns with both signs; their f32 has zero low bits, so the cast is exact
    want[i] = static_cast<std::uint16_t>((i % 0x7F00) | (i % 3 == 0 ? 0x8000 : 0));
    f32[i] = static_cast<std::uint32_t>(want[i]) << 16;
  }
  Tree t, tg;
  ASSERT_EQ(ckb_tree_new(&t.t), CKB_OK);
  const std::int64_t shape[1] = {static_cast<std::int64_t>(n)};
  ASSERT_EQ(ckb_tree_add_tensor(t.t, "w", "F32", 1, shape, f32.data(), n * 4), CKB_OK) << ckb_last_error();
  ckb_tree* mem[1] = {t.t};
  const char* names[1] = {"m"};
  ASSERT_EQ(ckb_target(R"({"source": "m", "dtype": "BF16"})", mem, names, 1, 0, &tg.t), CKB_OK) << ckb_last_error();
  EXPECT_EQ(tg.describe()["tensors"][0]["dtype"], "BF16");
  for (unsigned threads : {1u, 4u}) {
    std::vector<std::uint16_t> got(n, 0xFFFF);
    ASSERT_EQ(ckb_tensor_read(tg.t, 0, 0, got.data(), n * 2, threads), CKB_OK) << threads << " " << ckb_last_error();
    EXPECT_TRUE(got == want) << threads;
    std::fill(got.begin(), got.end(), 0xFFFF);
    const std::int64_t start[1] = {0};
    ASSERT_EQ(ckb_tensor_read_region(tg.t, 0, 1, start, shape, got.data(), n * 2, threads), CKB_OK)
        << threads << " " << ckb_last_error();
    EXPECT_TRUE(got == want) << threads;
  }
}

}  // namespace
