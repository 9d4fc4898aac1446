// Every format through object storage, end to end with the CLI and the engine, against the
// real local servers of tests/remote_servers.h: local -> s3:// -> local round trips checked
// against the fixtures' manifests (sha256 of every tensor, written by the real frameworks),
// the uploaded objects byte-identical to the same conversion written locally, `inspect` of
// remote checkpoints fetching only metadata (counted by the client and, for https, by nginx's
// access log), a flaky server (errors, resets, throttling) that the job survives exactly, and
// failing runs that leave no visible object.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "core/cancel.h"
#include "core/errors.h"
#include "core/hash.h"
#include "engine/api.h"
#include "io/file.h"
#include "io/remote/object_store.h"
#include "child_process.h"
#include "remote_servers.h"
#include "test_util.h"

namespace ckb {
namespace remote_formats_test {

using test::run_cli;

std::span<const std::byte> as_bytes_of(const std::string& s) { return std::as_bytes(std::span<const char>(s.data(), s.size())); }
std::string sha(const std::string& s) { return sha256_hex(as_bytes_of(s)); }

class RemoteFormats : public ::testing::Test {
 protected:
  void SetUp() override {
    test::s3_credentials_env();
    remote::set_default_options(test::s3_options(test::s3().endpoint));
    store_ = remote::open_remote("s3://" + test::s3().bucket).store;
  }
  // The CLI, pointed at the local S3 server.
  test::CliResult cli(const std::string& args, const std::string& endpoint = "") {
    return run_cli(args + " --endpoint " + (endpoint.empty() ? test::s3().endpoint : endpoint));
  }
  std::string url(const std::string& key) const { return "s3://" + test::s3().bucket + "/" + key; }
  std::vector<std::string> keys_under(const std::string& prefix) const {
    std::vector<std::string> out;
    for (const auto& o : store_->list(prefix)) out.push_back(o.key);
    return out;
  }
  // A local safetensors file converted to Orbax (OCDBT, zstd) under `prefix` in the bucket;
  // returns the largest object written (for one large tensor: the data file of its chunk).
  remote::ObjectInfo upload_orbax_of(const std::string& safetensors, const std::string& prefix) {
    EXPECT_EQ(cli("convert " + safetensors + " " + url(prefix) + " --to orbax -q").exit_code, 0);
    remote::ObjectInfo largest;
    for (const auto& o : store_->list(prefix + "/"))
      if (o.size > largest.size) largest = o;
    return largest;
  }
  std::string object(const std::string& key) const {
    auto v = store_->get(key);
    EXPECT_TRUE(v.has_value()) << key;
    return v.value_or("");
  }
  remote::ObjectStorePtr store_;
};

// The same tensors (names, dtypes, shapes, bytes) in both checkpoints.
void expect_same_tensors(const std::string& a, const std::string& b) {
  const Checkpoint ca = engine::open(a), cb = engine::open(b);
  const auto ta = test::tensors_by_name(ca), tb = test::tensors_by_name(cb);
  ASSERT_EQ(ta.size(), tb.size()) << a << " vs " << b;
  for (const auto& [name, t] : ta) {
    auto it = tb.find(name);
    ASSERT_NE(it, tb.end()) << name << " missing from " << b;
    EXPECT_EQ(t->info.dtype, it->second->info.dtype) << name;
    EXPECT_EQ(t->info.shape, it->second->info.shape) << name;
    EXPECT_EQ(sha(test::bytes_of(*t)), sha(test::bytes_of(*it->second))) << name;
  }
}

struct Case {
  const char* fixture;   // under tests/data/fixtures
  const char* manifest;  // its manifest.json (the fixtures whose manifest describes the stored tensors)
  const char* to;        // output format
  const char* name;      // output name (a file, or a folder for folder formats)
  bool single_file;
};

const Case kCases[] = {
    {"safetensors_single/model.safetensors", "safetensors_single/manifest.json", "safetensors", "model.safetensors", true},
    {"safetensors_sharded", "safetensors_sharded/manifest.json", "safetensors", "sharded", false},
    {"torch_zip/model.pt", "torch_zip/manifest.json", "torch", "model.pt", true},
    {"torch_legacy/model.pt", "torch_legacy/manifest.json", "torch", "legacy.pt", true},
    {"flax_msgpack/params.msgpack", "", "msgpack", "params.msgpack", true},
    {"orbax_ocdbt_zarr3/ckpt", "", "orbax", "ocdbt3", false},
    {"orbax_plain_zarr2/ckpt", "", "orbax", "plain2", false},
    {"orbax_sharded_zarr3/ckpt", "", "orbax", "sharded3", false},
};

TEST_F(RemoteFormats, EveryFormatRoundTripsThroughS3Exactly) {
  test::TempDir tmp;
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.fixture);
    // The same file name everywhere: a .pt names its archive folder after it.
    const std::string src = test::fixture(c.fixture), local = tmp / (std::string("local/") + c.name),
                      key = std::string("roundtrip/") + c.name, back = tmp / (std::string("back/") + c.name);
    const std::string sharded = std::string(c.name) == "sharded" ? " --shard-size 40KB" : "";
    std::filesystem::create_directories(tmp / "local");
    std::filesystem::create_directories(tmp / "back");
    auto up = cli("convert " + src + " " + url(key) + " --to " + c.to + sharded + " -q");
    ASSERT_EQ(up.exit_code, 0) << up.err;
    ASSERT_EQ(run_cli("convert " + src + " " + local + " --to " + c.to + sharded + " -q").exit_code, 0);
    if (c.single_file) {
      // The object is the very file a local run writes.
      EXPECT_EQ(sha(object(key)), sha(test::read_file(local)));
    } else {
      EXPECT_FALSE(keys_under(key + "/").empty());
    }
    // Read straight from S3, and after a copy back to local disk: every tensor as the source
    // holds it (and, where the manifest describes the stored tensors, as the framework wrote it).
    expect_same_tensors(src, url(key));
    auto down = cli("convert " + url(key) + " " + back + " --to " + c.to + " -q");
    ASSERT_EQ(down.exit_code, 0) << down.err;
    expect_same_tensors(src, back);
    if (c.manifest[0]) test::expect_matches_manifest(engine::open(url(key)), test::load_json(test::fixture(c.manifest)));
    if (c.single_file) {
      EXPECT_EQ(sha(test::read_file(back)), sha(test::read_file(local)));
    }
  }
}

TEST_F(RemoteFormats, NpzAndNpyRoundTripByteIdentical) {
  test::TempDir tmp;
  for (const std::string name : {"arrays.npz", "arrays_compressed.npz", "big.npy"}) {
    SCOPED_TRACE(name);
    const std::string src = test::fixture("npz/" + name), to = name.ends_with(".npy") ? "npy" : "npz";
    ASSERT_EQ(cli("convert " + src + " " + url("np/" + name) + " --to " + to + " -q").exit_code, 0);
    ASSERT_EQ(run_cli("convert " + src + " " + tmp / name + " --to " + to + " -q").exit_code, 0);
    EXPECT_EQ(sha(object("np/" + name)), sha(test::read_file(tmp / name)));
    test::TempDir back;
    ASSERT_EQ(cli("convert " + url("np/" + name) + " " + back / name + " --to " + to + " -q").exit_code, 0);
    EXPECT_EQ(sha(test::read_file(back / name)), sha(test::read_file(tmp / name)));
  }
}

// A 24 MiB safetensors file: three tensors of 8 MiB of a fixed pattern (several 8 MiB parts
// of a multipart upload on the way up).
std::string write_big_safetensors(const std::string& path, std::uint64_t* header_bytes = nullptr) {
  const std::uint64_t n = 8u << 20;
  std::string header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[" + std::to_string(n / 4) + "],\"data_offsets\":[0," +
                       std::to_string(n) + "]},\"b\":{\"dtype\":\"BF16\",\"shape\":[" + std::to_string(n / 2) +
                       "],\"data_offsets\":[" + std::to_string(n) + "," + std::to_string(2 * n) +
                       "]},\"c\":{\"dtype\":\"U8\",\"shape\":[1024," + std::to_string(n / 1024) + "],\"data_offsets\":[" +
                       std::to_string(2 * n) + "," + std::to_string(3 * n) + "]}}";
  while (header.size() % 8) header += ' ';
  std::string data(3 * n, '\0');
  std::uint32_t x = 12345;
  for (std::size_t i = 0; i < data.size(); ++i) {
    x = x * 1664525u + 1013904223u;
    data[i] = static_cast<char>((x >> 24) & 0x3f);  // finite floats, no NaN patterns
  }
  test::write_file(path, test::le64(header.size()) + header + data);
  if (header_bytes) *header_bytes = 8 + header.size();
  return sha(data.substr(0, n)) + sha(data.substr(n, n)) + sha(data.substr(2 * n));
}

TEST_F(RemoteFormats, LargeFileGoesUpInPartsAndComesBackExact) {
  test::TempDir tmp;
  const std::string expected = write_big_safetensors(tmp / "big.safetensors");
  ASSERT_EQ(cli("convert " + tmp / "big.safetensors" + " " + url("big/model.safetensors") + " -q").exit_code, 0);
  ASSERT_EQ(run_cli("convert " + tmp / "big.safetensors" + " " + tmp / "local.safetensors -q").exit_code, 0);
  EXPECT_EQ(sha(object("big/model.safetensors")), sha(test::read_file(tmp / "local.safetensors")));
  // To a .pt (a zip written in parts: each member's header goes out when the member is done).
  ASSERT_EQ(cli("convert " + url("big/model.safetensors") + " " + url("big/model.pt") + " -q").exit_code, 0);
  std::filesystem::create_directories(tmp / "local");
  ASSERT_EQ(run_cli("convert " + tmp / "big.safetensors" + " " + tmp / "local/model.pt -q").exit_code, 0);
  EXPECT_EQ(sha(object("big/model.pt")), sha(test::read_file(tmp / "local/model.pt")));
  const auto in = engine::inspect(url("big/model.pt"), {}, {.hash = true});
  ASSERT_EQ(in.sha256.size(), 3u);
  EXPECT_EQ(in.sha256[0] + in.sha256[1] + in.sha256[2], expected);
}

// "remote: N requests, M bytes fetched, R retries" from inspect --verbose.
struct Fetched {
  std::uint64_t requests = 0, bytes = ~0ull;
};
Fetched fetched(const std::string& err) {
  std::smatch m;
  const std::regex re("remote: ([0-9]+) requests?, ([0-9]+) bytes fetched");
  if (!std::regex_search(err, m, re)) {
    ADD_FAILURE() << "no transfer line in: " << err;
    return {};
  }
  return {std::stoull(m[1]), std::stoull(m[2])};
}

TEST_F(RemoteFormats, InspectHttpsSafetensorsFetchesOnlyTheHeader) {
  const auto& w = test::web();
  std::uint64_t header = 0;
  write_big_safetensors(w.root + "/inspect-me.safetensors", &header);
  const std::string uri = " /inspect-me.safetensors ";
  const std::size_t logged_before = test::access_log_lines(uri, 0).size();
  auto r = run_cli("inspect -v " + w.http_base + "/inspect-me.safetensors");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("3 tensors, 14,680,064 elements, 24.0 MiB"), std::string::npos) << r.out;
  // What the client counted and what nginx served: the header, rounded up to 16 KiB blocks.
  const Fetched client = fetched(r.err);
  EXPECT_LE(client.bytes, header + 16384);
  auto lines = test::access_log_lines(uri, logged_before + client.requests);
  lines.erase(lines.begin(), lines.begin() + static_cast<std::ptrdiff_t>(std::min(logged_before, lines.size())));
  EXPECT_EQ(lines.size(), client.requests);
  std::uint64_t served = 0;
  for (const std::string& line : lines) {
    std::istringstream f(line);
    std::string method, uri, status;
    std::uint64_t body = 0;
    f >> method >> uri >> status >> body;
    served += body;
  }
  EXPECT_GT(served, 0u);
  EXPECT_LE(served, header + 16384) << "of a " << (24u << 20) << "-byte file";
}

TEST_F(RemoteFormats, InspectS3OrbaxReadsNoChunkData) {
  test::TempDir tmp;
  write_big_safetensors(tmp / "big.safetensors");
  ASSERT_EQ(cli("convert " + tmp / "big.safetensors" + " " + url("orbax-inspect/ckpt") + " --to orbax -q").exit_code, 0);
  std::uint64_t stored = 0;
  for (const auto& o : store_->list("orbax-inspect/ckpt/")) stored += o.size;
  ASSERT_GT(stored, 10u << 20);  // the compressed arrays
  auto r = cli("inspect -v " + url("orbax-inspect/ckpt"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("3 tensors"), std::string::npos) << r.out;
  EXPECT_LT(fetched(r.err).bytes, 256u * 1024) << "of " << stored << " bytes stored";
  EXPECT_TRUE(store_->stat("orbax-inspect/ckpt/commit_success.txt").has_value());
  // One listing of the checkpoint answers every "is there a ...?" of detection and opening
  // (io/remote_snapshot.h): the listing, then one GET per metadata file, manifest and b+tree
  // node (_METADATA, array_metadatas, _strings.json if any, manifest.ocdbt, the root node).
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.err, m, std::regex("remote: ([0-9]+) requests"))) << r.err;
  EXPECT_LE(std::stoull(m[1]), 6u) << r.err;
}

// A checkpoint written by Orbax itself, uploaded byte for byte, read from S3 out of order (a
// byte in the middle of each tensor, then from byte 1 on: back into the open stream, which the
// chunk path serves; then byte 0) gives the same bytes as from disk.
TEST_F(RemoteFormats, RealOrbaxCheckpointReadsFromS3InAnyOrder) {
  const std::string local = test::data_path("fixtures/orbax_ocdbt_zarr3/ckpt");
  for (const auto& rel : list_files_recursive(local)) store_->put("real-orbax/ckpt/" + rel, as_bytes_of(test::read_file(local + "/" + rel)));
  const Checkpoint lc = engine::open(local), rc = engine::open(url("real-orbax/ckpt"));
  const auto lt = test::tensors_by_name(lc), rt = test::tensors_by_name(rc);
  ASSERT_EQ(lt.size(), rt.size());
  ASSERT_GT(lt.size(), 3u);
  for (const auto& [name, t] : lt) {
    ASSERT_EQ(rt.count(name), 1u) << name;
    const Tensor& r = *rt.at(name);
    const std::string want = test::bytes_of(*t);
    std::string got(want.size(), '\0');
    auto out = std::as_writable_bytes(std::span<char>(got.data(), got.size()));
    if (got.size() < 4) continue;
    const std::size_t half = got.size() / 2;
    r.source->read(half, out.subspan(half, 1));
    r.source->read(1, out.subspan(1));
    r.source->read(0, out.first(1));
    EXPECT_EQ(sha(got), sha(want)) << name;
  }
}

// What one engine call learnt about object storage is not kept for the next: an object that
// appears between two calls is seen by the second.
TEST_F(RemoteFormats, ListingsAreNotKeptAcrossCalls) {
  const std::string key = "appears-later/model.safetensors";
  EXPECT_THROW(engine::open(url(key)), Error);
  const std::string header = "{\"x\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}";
  store_->put(key, as_bytes_of(test::le64(header.size()) + header + "abc"));
  const Checkpoint ck = engine::open(url(key));
  const auto tensors = test::tensors_by_name(ck);
  ASSERT_EQ(tensors.count("x"), 1u);
  EXPECT_EQ(test::bytes_of(*tensors.at("x")), "abc");
}

// A safetensors file holding one U8 tensor "w" of n xorshift bytes (incompressible: its zstd
// chunk in Orbax is as large); returns the tensor's bytes.
std::string write_incompressible_safetensors(const std::string& path, std::uint64_t n) {
  std::string data(n, '\0');
  std::uint64_t x = 88172645463325252ull;
  for (std::size_t i = 0; i < n; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    data[i] = static_cast<char>(x >> 56);
  }
  std::string header = "{\"w\":{\"dtype\":\"U8\",\"shape\":[" + std::to_string(n) + "],\"data_offsets\":[0," +
                       std::to_string(n) + "]}}";
  while (header.size() % 8) header += ' ';
  test::write_file(path, test::le64(header.size()) + header + data);
  return data;
}

// A compressed Orbax chunk in object storage is fetched as it is decoded, a few pieces ahead
// (io/sequential_read.h), never whole: reading the first MiB of a 64 MiB chunk fetches at
// most the window (3 pieces of 8 MiB), and reading on gives the source's bytes.
TEST_F(RemoteFormats, OrbaxChunksStreamFromS3PieceByPiece) {
  test::TempDir tmp;
  const std::uint64_t n = 64u << 20, window = 3 * (8u << 20);
  const std::string data = write_incompressible_safetensors(tmp / "w.safetensors", n);
  ASSERT_GT(upload_orbax_of(tmp / "w.safetensors", "orbax-stream/ckpt").size, n);  // the data file of the one chunk

  const Checkpoint ck = engine::open(url("orbax-stream/ckpt"));
  const auto tensors = test::tensors_by_name(ck);
  ASSERT_EQ(tensors.count("w"), 1u);
  const Tensor& w = *tensors.at("w");
  remote::reset_transfer_stats();
  std::string got(n, '\0');
  auto out = std::as_writable_bytes(std::span<char>(got.data(), got.size()));
  w.source->read(0, out.first(1u << 20));
  EXPECT_LE(remote::transfer_stats().bytes_read, window + (1u << 20)) << "fetched for the first MiB of " << n;
  for (std::uint64_t at = 1u << 20; at < n; at += 1u << 20) w.source->read(at, out.subspan(at, 1u << 20));
  EXPECT_EQ(sha(got), sha(data));
  EXPECT_GE(remote::transfer_stats().bytes_read, n);
}

TEST_F(RemoteFormats, FlakyServerStillGivesExactOutput) {
  test::TempDir tmp;
  const std::string expected = write_big_safetensors(tmp / "big.safetensors");
  test::FlakyProxy proxy(test::s3().port, 0.3, 7);
  ::setenv("CKB_REMOTE_RETRIES", "12", 1);
  auto up = cli("convert " + tmp / "big.safetensors" + " " + url("flaky/model.pt") + " -q", proxy.base());
  ASSERT_EQ(up.exit_code, 0) << up.err;
  auto down = cli("convert " + url("flaky/model.pt") + " " + tmp / "back.safetensors -q", proxy.base());
  ::unsetenv("CKB_REMOTE_RETRIES");
  ASSERT_EQ(down.exit_code, 0) << down.err;
  ASSERT_EQ(run_cli("convert " + tmp / "big.safetensors" + " " + tmp / "local.safetensors -q").exit_code, 0);
  EXPECT_EQ(sha(test::read_file(tmp / "back.safetensors")), sha(test::read_file(tmp / "local.safetensors")));
}

// The streamed Orbax chunk (pieces fetched ahead by background requests) survives a server
// failing 30% of its requests: the tensor comes back exact.
TEST_F(RemoteFormats, FlakyServerStillGivesExactOrbaxChunks) {
  test::TempDir tmp;
  const std::string data = write_incompressible_safetensors(tmp / "w.safetensors", 24u << 20);
  upload_orbax_of(tmp / "w.safetensors", "flaky-orbax/ckpt");
  test::FlakyProxy proxy(test::s3().port, 0.3, 11);
  ::setenv("CKB_REMOTE_RETRIES", "12", 1);
  auto down = cli("convert " + url("flaky-orbax/ckpt") + " " + tmp / "back.safetensors -q", proxy.base());
  ::unsetenv("CKB_REMOTE_RETRIES");
  ASSERT_EQ(down.exit_code, 0) << down.err;
  const std::string back = test::read_file(tmp / "back.safetensors");
  ASSERT_GE(back.size(), data.size());
  EXPECT_EQ(sha(back.substr(back.size() - data.size())), sha(data));
}

// An Orbax data file cut short in object storage (its b+tree node, at the end, lost): the job
// fails naming the object and the offset, and writes no output.
TEST_F(RemoteFormats, TruncatedRemoteOrbaxDataFileIsAnErrorNamingIt) {
  test::TempDir tmp;
  write_incompressible_safetensors(tmp / "w.safetensors", 24u << 20);
  const auto [largest, size] = upload_orbax_of(tmp / "w.safetensors", "cut-orbax/ckpt");
  ASSERT_GT(size, 24u << 20);
  const std::string cut = object(largest).substr(0, static_cast<std::size_t>(size - 1000));
  store_->put(largest, as_bytes_of(cut));
  auto r = cli("convert " + url("cut-orbax/ckpt") + " " + tmp / "out.safetensors -q");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find(url(largest) + " (offset "), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(tmp / "out.safetensors"));
}

// A zstd block header corrupted 12 MiB into a streamed chunk (its second piece): the decoder
// stops there with an error naming the object, and no output appears.
TEST_F(RemoteFormats, CorruptBlockInAStreamedRemoteChunkIsAnErrorNamingTheObject) {
  test::TempDir tmp;
  write_incompressible_safetensors(tmp / "w.safetensors", 24u << 20);
  const std::string largest = upload_orbax_of(tmp / "w.safetensors", "bad-orbax/ckpt").key;
  std::string obj = object(largest);
  // The chunk's zstd frame opens the data file: skip its header (RFC 8878 3.1.1.1), then walk
  // the blocks to the first one starting past 12 MiB and give it the reserved block type.
  ASSERT_EQ(obj.substr(0, 4), std::string("\x28\xb5\x2f\xfd", 4));
  const unsigned fhd = static_cast<unsigned char>(obj[4]), fcs = fhd >> 6, single = (fhd >> 5) & 1, did = fhd & 3;
  std::size_t at = 5 + (single ? 0 : 1) + (did == 3 ? 4 : did) + (fcs == 0 ? single : 1u << fcs);
  while (at < (12u << 20)) {
    const std::uint32_t h = static_cast<unsigned char>(obj[at]) | static_cast<unsigned char>(obj[at + 1]) << 8 |
                            static_cast<std::uint32_t>(static_cast<unsigned char>(obj[at + 2])) << 16;
    ASSERT_EQ(h & 1, 0u) << "last block before 12 MiB";
    at += 3 + (((h >> 1) & 3) == 1 ? 1 : h >> 3);
  }
  obj[at] = static_cast<char>(obj[at] | 0x6);
  store_->put(largest, as_bytes_of(obj));
  auto r = cli("convert " + url("bad-orbax/ckpt") + " " + tmp / "out.safetensors -q");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find(url(largest)), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("corrupt zstd data"), std::string::npos) << r.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.err, m, std::regex("\\(offset ([0-9]+)\\)"))) << r.err;
  // The input decoded without error before it: past the first piece, not beyond the block.
  EXPECT_GE(std::stoull(m[1]), 8u << 20) << r.err;
  EXPECT_LE(std::stoull(m[1]), at) << r.err;
  EXPECT_FALSE(std::filesystem::exists(tmp / "out.safetensors"));
}

// The server completes a multipart upload but its answer is lost: the retried completion fails
// (s3rver answers 500 to an upload it already completed), the uploader finds the object it
// made (its parts read back: s3rver's ETag is a plain MD5) and the job succeeds, exactly.
TEST_F(RemoteFormats, LostAnswerToACompletedUploadIsRecognised) {
  test::TempDir tmp;
  write_big_safetensors(tmp / "big.safetensors");
  test::FlakyProxy proxy(test::s3().port, 1.0, 1, "lose-complete");
  auto up = cli("convert " + tmp / "big.safetensors" + " " + url("lost-answer/model.safetensors") + " -q", proxy.base());
  ASSERT_EQ(up.exit_code, 0) << up.err;
  ASSERT_EQ(run_cli("convert " + tmp / "big.safetensors" + " " + tmp / "local.safetensors -q").exit_code, 0);
  EXPECT_EQ(sha(object("lost-answer/model.safetensors")), sha(test::read_file(tmp / "local.safetensors")));
}

// A run cancelled while its workers wait on a server that stopped sending tensor data (the
// proxy stalls every answer over 1 MiB; metadata passes): engine::run throws Cancelled within
// about a second of progress checks instead of waiting out the 50 s request timeout and its
// retries, and leaves no output and no temporary.
TEST_F(RemoteFormats, CancelledRunStopsWaitingForAStalledServerAndLeavesNothing) {
  test::TempDir tmp;
  write_big_safetensors(tmp / "big.safetensors");
  store_->put("stalled/model.safetensors", as_bytes_of(test::read_file(tmp / "big.safetensors")));
  test::FlakyProxy proxy(test::s3().port, 1.0, 1, "stall-large");
  auto o = test::s3_options(proxy.base());
  o.timeout_s = 50;
  remote::set_default_options(o);
  engine::Job job;
  job.source = url("stalled/model.safetensors");
  job.output.path = tmp / "out.safetensors";
  job.threads = 2;
  CancelToken token;
  engine::RunOptions ro;
  ro.cancel = &token;
  std::thread later([&] {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    token.cancel(SIGINT);
  });
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW(engine::run(job, ro), Cancelled);
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  later.join();
  EXPECT_LT(waited, 15.0) << "the run waited for the stalled requests to time out";
  EXPECT_FALSE(std::filesystem::exists(tmp / "out.safetensors"));
  for (const auto& e : std::filesystem::directory_iterator(tmp.path()))
    EXPECT_EQ(e.path().filename().string().find("ckb-tmp"), std::string::npos) << e.path();
}

// A run writing a sharded folder to S3, cancelled once its first shard is visible (every
// request 50 ms late, so the rest is still on its way): Cancelled, and the clean-up, which runs
// although the run's token is cancelled, deletes that shard; nothing is left.
TEST_F(RemoteFormats, CancelledUploadLeavesNothing) {
  test::TempDir tmp;
  write_big_safetensors(tmp / "big.safetensors");
  test::FlakyProxy proxy(test::s3().port, 1.0, 1, "delay");
  remote::set_default_options(test::s3_options(proxy.base()));
  engine::Job job;
  job.source = tmp / "big.safetensors";
  job.output.path = url("cancel-up/sharded");
  job.output.format = "safetensors";
  job.output.options["shard-size"] = "9MB";
  CancelToken token;
  engine::RunOptions ro;
  ro.cancel = &token;
  std::atomic<bool> finished{false}, saw_shard{false};
  std::thread watch([&] {
    while (!finished && !saw_shard) {
      saw_shard = !keys_under("cancel-up/").empty();
      if (!saw_shard) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    token.cancel(SIGTERM);
  });
  EXPECT_THROW(engine::run(job, ro), Cancelled);
  finished = true;
  watch.join();
  EXPECT_TRUE(saw_shard) << "no shard appeared before the run ended: the cancel came too late to test the clean-up";
  EXPECT_TRUE(keys_under("cancel-up/").empty()) << keys_under("cancel-up/").front();
}

TEST_F(RemoteFormats, ServerThatAlwaysFailsGivesAClearErrorAndNoOutput) {
  test::TempDir tmp;
  write_big_safetensors(tmp / "big.safetensors");
  test::FlakyProxy proxy(test::s3().port, 1.0, 3);
  ::setenv("CKB_REMOTE_RETRIES", "3", 1);
  auto r = cli("convert " + tmp / "big.safetensors" + " " + url("down/model.safetensors") + " -q", proxy.base());
  ::unsetenv("CKB_REMOTE_RETRIES");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(url("down/model.safetensors")), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("gave up after 3 attempts"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("ckb-test-secret"), std::string::npos) << "credentials in a message: " << r.err;
  EXPECT_TRUE(keys_under("down/").empty());
}

// `src` converted to a .pt at `dst` whose last member's bytes are damaged: reading it fails the
// CRC-32 check while streaming, after the other tensors were written.
void write_damaged_pt(const std::string& src, const std::string& dst) {
  ASSERT_EQ(run_cli("convert " + src + " " + dst + " -q").exit_code, 0);
  std::string pt = test::read_file(dst);
  pt[pt.size() - 2048] ^= 0x01;  // inside the last member's data, before the central directory
  test::write_file(dst, pt);
}

TEST_F(RemoteFormats, FailingRunLeavesNoVisibleOutput) {
  test::TempDir tmp;
  write_big_safetensors(tmp / "big.safetensors");
  write_damaged_pt(tmp / "big.safetensors", tmp / "bad.pt");
  for (const std::string& dst : {std::string("failed/single.safetensors"), std::string("failed/sharded"),
                                 std::string("failed/orbax")}) {
    SCOPED_TRACE(dst);
    const std::string extra =
        dst.ends_with("sharded") ? " --to safetensors --shard-size 9MB" : dst.ends_with("orbax") ? " --to orbax" : "";
    auto r = cli("convert " + tmp / "bad.pt" + " " + url(dst) + extra + " -q");
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find("CRC-32"), std::string::npos) << r.err;
    EXPECT_TRUE(keys_under("failed/").empty()) << keys_under("failed/").front();
  }
}

// Every object under `prefix` with the sha256 of its bytes.
std::map<std::string, std::string> objects_with_sha(const remote::ObjectStore& store, const std::string& prefix) {
  std::map<std::string, std::string> out;
  for (const auto& o : store.list(prefix)) out[o.key] = sha(store.get(o.key).value_or(""));
  return out;
}

// --overwrite of a folder in object storage by a run that fails while streaming: the previous
// output is exactly as it was (the new files' uploads were never completed, so none of its
// objects was replaced or deleted).
TEST_F(RemoteFormats, FailedOverwriteLeavesThePreviousOutputAsItWas) {
  test::TempDir tmp;
  write_big_safetensors(tmp / "big.safetensors");
  write_damaged_pt(tmp / "big.safetensors", tmp / "bad.pt");
  for (const std::string extra : {" --to safetensors --shard-size 9MB", " --to orbax"}) {
    SCOPED_TRACE(extra);
    const std::string dst = extra.find("orbax") != std::string::npos ? "kept/orbax" : "kept/sharded";
    ASSERT_EQ(cli("convert " + tmp / "big.safetensors" + " " + url(dst) + extra + " -q").exit_code, 0);
    const auto before = objects_with_sha(*store_, dst + "/");
    ASSERT_GE(before.size(), 3u);
    auto r = cli("convert " + tmp / "bad.pt" + " " + url(dst) + extra + " --overwrite -q");
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find("CRC-32"), std::string::npos) << r.err;
    EXPECT_EQ(objects_with_sha(*store_, dst + "/"), before);
    expect_same_tensors(url(dst), tmp / "big.safetensors");
  }
}

// ... and one that fails while making its files visible (the server refuses every multipart
// completion after the first): at no point is there a mix of the two outputs, so afterwards the
// place holds the previous output as it was or nothing at all (its index deleted first), never
// the previous index over shards of which some were replaced or deleted.
TEST_F(RemoteFormats, OverwriteFailingAtItsCommitLeavesNoMixOfOldAndNew) {
  test::TempDir tmp;
  write_big_safetensors(tmp / "big.safetensors");  // three 8 MiB tensors: three shards in two parts each
  const std::string dst = "mixed/sharded", sharded = " --to safetensors --shard-size 9MB";
  // The previous output in f32 (its second shard twice the size of the new one's).
  ASSERT_EQ(cli("convert " + tmp / "big.safetensors" + " " + url(dst) + sharded + " --dtype f32 -q").exit_code, 0);
  const auto before = objects_with_sha(*store_, dst + "/");
  ASSERT_EQ(before.size(), 4u);  // three shards and the index
  test::FlakyProxy proxy(test::s3().port, 1.0, 1, "fail-later-completes");
  ::setenv("CKB_REMOTE_RETRIES", "2", 1);
  auto r = cli("convert " + tmp / "big.safetensors" + " " + url(dst) + sharded + " --overwrite -q", proxy.base());
  ::unsetenv("CKB_REMOTE_RETRIES");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("complete multipart upload"), std::string::npos) << r.err;
  const auto after = objects_with_sha(*store_, dst + "/");
  EXPECT_TRUE(after == before || after.empty()) << testing::PrintToString(after) << "\nbefore: " << testing::PrintToString(before) << "\n" << r.err;
}

// An Orbax CheckpointManager root in S3: --step N --overwrite replaces that step alone (the
// other step's objects byte for byte as they were), and a failed one leaves it as it was.
TEST_F(RemoteFormats, OverwriteOfOneStepOfARemoteOrbaxRootLeavesTheOtherSteps) {
  test::TempDir tmp;
  write_big_safetensors(tmp / "big.safetensors");
  write_incompressible_safetensors(tmp / "small.safetensors", 1u << 20);
  write_damaged_pt(tmp / "big.safetensors", tmp / "bad.pt");
  const std::string root = "steps/run";
  for (const char* step : {"1", "2"})
    ASSERT_EQ(cli("convert " + tmp / "big.safetensors" + " " + url(root) + " --to orbax --step " + step + " -q").exit_code, 0);
  const auto step2 = objects_with_sha(*store_, root + "/2/");
  const auto step1 = objects_with_sha(*store_, root + "/1/");
  ASSERT_GE(step1.size(), 3u);
  auto r = cli("convert " + tmp / "bad.pt" + " " + url(root) + " --to orbax --step 1 --overwrite -q");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(objects_with_sha(*store_, root + "/1/"), step1);
  r = cli("convert " + tmp / "small.safetensors" + " " + url(root) + " --to orbax --step 1 --overwrite -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(objects_with_sha(*store_, root + "/2/"), step2);
  EXPECT_NE(objects_with_sha(*store_, root + "/1/"), step1);
  expect_same_tensors(url(root + "/1"), tmp / "small.safetensors");
  expect_same_tensors(url(root + "/2"), tmp / "big.safetensors");
}

// --overwrite of a folder in object storage replaces it as a whole: afterwards it holds exactly
// what the same output written to an empty place holds (no object of the previous one left).
TEST_F(RemoteFormats, OverwriteReplacesARemoteFolderAsAWhole) {
  test::TempDir tmp;
  write_big_safetensors(tmp / "big.safetensors");                      // 24 MiB: three 9 MB shards
  write_incompressible_safetensors(tmp / "small.safetensors", 1u << 20);  // one shard
  for (const std::string extra : {" --to safetensors --shard-size 9MB", " --to orbax"}) {
    SCOPED_TRACE(extra);
    const bool orbax = extra.find("orbax") != std::string::npos;
    const std::string dst = orbax ? "replaced/orbax" : "replaced/sharded", fresh = dst + "-fresh";
    ASSERT_EQ(cli("convert " + tmp / "big.safetensors" + " " + url(dst) + extra + " -q").exit_code, 0);
    auto r = cli("convert " + tmp / "small.safetensors" + " " + url(dst) + extra + " --overwrite -q");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_EQ(cli("convert " + tmp / "small.safetensors" + " " + url(fresh) + extra + " -q").exit_code, 0);
    const auto got = objects_with_sha(*store_, dst + "/"), want = objects_with_sha(*store_, fresh + "/");
    ASSERT_EQ(got.size(), want.size()) << testing::PrintToString(got) << " vs " << testing::PrintToString(want);
    if (!orbax) {  // byte-identical, name for name
      std::map<std::string, std::string> want_here;
      for (const auto& [key, digest] : want) want_here[dst + key.substr(fresh.size())] = digest;
      EXPECT_EQ(got, want_here);
    }
    expect_same_tensors(url(dst), tmp / "small.safetensors");
  }
}

TEST_F(RemoteFormats, HttpsIsReadOnlyAndRefusesToWrite) {
  const auto& w = test::web();
  test::TempDir tmp;
  write_big_safetensors(tmp / "big.safetensors");
  auto r = run_cli("convert " + tmp / "big.safetensors" + " " + w.http_base + "/out.safetensors");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("read-only"), std::string::npos) << r.err;
}

}  // namespace remote_formats_test
}  // namespace ckb

namespace ckb {
namespace remote_formats_test {

// The Python package takes URLs where it takes paths (the environment says where the S3
// server is, as it would for boto3).
TEST_F(RemoteFormats, PythonPackageReadsAndWritesUrls) {
  test::TempDir tmp;
  write_big_safetensors(tmp / "big.safetensors");
  const std::string cli = CKB_CLI_PATH, lib = cli.substr(0, cli.rfind('/')) + "/libckptbridge.so";
  test::write_file(tmp / "job.py",
                   "import hashlib, sys, ckptbridge\n"
                   "src, url = sys.argv[1], sys.argv[2]\n"
                   "ckptbridge.convert(src, url, progress=False)\n"
                   "with ckptbridge.open(url) as f:\n"
                   "    for name in sorted(f.keys()):\n"
                   "        print(name, hashlib.sha256(f.get_tensor(name, raw=True).tobytes()).hexdigest())\n");
  // A sanitizer build's library needs the ASan runtime loaded first (Python itself is not
  // instrumented); Python's own allocations kept to exit are not ours to report.
  const std::string sanitizer = test::under_asan() ? "LD_PRELOAD=\"$(gcc -print-file-name=libasan.so)\" "
                                                     "ASAN_OPTIONS=detect_leaks=0 "
                                                   : "";
  const std::string env = sanitizer + "AWS_ENDPOINT_URL=" + test::s3().endpoint + " PYTHONPATH=" +
                          std::string(CKB_SOURCE_DIR) + "/python CKPTBRIDGE_LIBRARY=" + lib + " ";
  const std::string out = tmp / "out.txt";
  const int rc = std::system((env + "/usr/bin/python3 " + tmp / "job.py" + " " + tmp / "big.safetensors" + " " +
                              url("python/model.pt") + " > " + out + " 2>&1")
                                 .c_str());
  ASSERT_EQ(rc, 0) << test::read_file(out);
  const std::string printed = test::read_file(out);
  const Checkpoint local = engine::open(tmp / "big.safetensors");
  for (const auto& [name, t] : test::tensors_by_name(local))
    EXPECT_NE(printed.find(name + " " + sha(test::bytes_of(*t))), std::string::npos) << printed;
  EXPECT_TRUE(store_->stat("python/model.pt").has_value());
}

}  // namespace remote_formats_test
}  // namespace ckb

namespace ckb {
namespace remote_formats_test {

// Bare zarr (read-only in ckptbridge) from S3: every stored file uploaded as an object, read
// through the remote store exactly as from disk (listing by prefix, chunks by GET).
TEST_F(RemoteFormats, BareZarrReadsFromS3AsFromDisk) {
  for (const std::string c : {"v2/blosc", "v3/group"}) {
    SCOPED_TRACE(c);
    const std::string dir = test::data_path("zarr_cases/" + c), key = "zarr/" + c;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
      if (!e.is_regular_file()) continue;
      const std::string rel = std::filesystem::relative(e.path(), dir).generic_string();
      store_->put(key + "/" + rel, as_bytes_of(test::read_file(e.path().string())));
    }
    expect_same_tensors(dir, url(key));
  }
}

}  // namespace remote_formats_test
}  // namespace ckb
