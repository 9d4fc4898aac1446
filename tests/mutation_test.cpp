// Mutation test: thousands of corrupted copies of small fixtures of every format (bit flips,
// overwritten bytes, truncations, inserts, deletes, duplicated ranges, length/offset fields
// and header digits; tests/mutator.h) are read in-process, every tensor's bytes in full, and
// a few hundred go through the real CLI. Asserted for each:
//  - the outcome is success or a ckb::Error (any other exception is a bug in a parser);
//  - no hang (a watchdog aborts naming the case) and no crash (ASan/UBSan build too);
//  - where a checksum guards every changed byte (zip CRC-32 for .npz and torch zip .pt, crc32c
//    of OCDBT frames and zarr v3 shard indexes) a successful read yields exactly the original
//    tensors and non-tensor leaves (names, dtypes, shapes, sha256);
//  - CLI: exit 0 or 2, no signal, no output and no temporaries left when it fails.
// Cases are reproducible: case k of seed S uses the PRNG seeded from (CKB_MUTATION_SEED, S, k).
// Environment: CKB_MUTATION_SCALE=N runs N times the cases (soak runs), CKB_MUTATION_CASE=S/k
// runs that one case (in-process or cli/S/k), CKB_MUTATION_DUMP=DIR saves each failing input.
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "child_process.h"
#include "core/errors.h"
#include "core/hash.h"
#include "formats/format.h"
#include "mutator.h"
#include "test_util.h"

namespace ckb {
namespace {
namespace fs = std::filesystem;
using test::Mutation;
using test::Mutator;

// ---------------------------------------------------------------------------------------
// Knobs

unsigned env_scale() {
  const char* s = std::getenv("CKB_MUTATION_SCALE");
  return s ? std::max(1, std::atoi(s)) : 1;
}
std::uint64_t env_seed() {
  const char* s = std::getenv("CKB_MUTATION_SEED");
  return s ? std::strtoull(s, nullptr, 0) : 0x15;
}
std::string env_case() {
  const char* s = std::getenv("CKB_MUTATION_CASE");
  return s ? s : "";
}

std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}
std::uint64_t case_seed(const std::string& seed_name, std::uint64_t k) {
  std::uint64_t z = env_seed() ^ fnv1a(seed_name) ^ (k * 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;  // splitmix64 finaliser
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// A scratch directory in memory (/dev/shm when there is one): thousands of small rewrites.
class ScratchDir {
 public:
  ScratchDir() {
    const std::string base = fs::is_directory("/dev/shm") ? "/dev/shm" : fs::temp_directory_path().string();
    std::string tmpl = base + "/ckb-mutation-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

// ---------------------------------------------------------------------------------------
// Watchdog: a hang is reported with the case's name and ends the run (it cannot be unwound).

class Watchdog {
 public:
  Watchdog() : thread_([this] { loop(); }) {}
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> l(m_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void arm(const std::string& label, double seconds) {
    std::lock_guard<std::mutex> l(m_);
    label_ = label;
    deadline_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<long>(seconds * 1000));
    armed_ = true;
  }
  void disarm() {
    std::lock_guard<std::mutex> l(m_);
    armed_ = false;
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> l(m_);
    while (!stop_) {
      cv_.wait_for(l, std::chrono::milliseconds(100));
      if (armed_ && std::chrono::steady_clock::now() > deadline_) {
        std::fprintf(stderr, "\nMUTATION TEST HANG: %s did not finish within its deadline\n", label_.c_str());
        std::fflush(stderr);
        std::abort();
      }
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::string label_;
  std::chrono::steady_clock::time_point deadline_;
  bool armed_ = false, stop_ = false;
  std::thread thread_;
};

double case_deadline_s() { return test::under_asan() ? 20 : 5; }

// ---------------------------------------------------------------------------------------
// Reading everything

// Name -> "dtype shape sha256" for tensors, "type value" for other leaves.
using Snapshot = std::map<std::string, std::string>;

constexpr std::uint64_t kFullReadLimit = 16ull << 20;

std::string tensor_digest(const Tensor& t) {
  const std::uint64_t nb = t.info.nbytes();
  std::string d = std::string(dtype_name(t.info.dtype)) + " " + shape_str(t.info.shape) + " ";
  if (nb <= kFullReadLimit) return d + tensor_sha256(t);
  // A corrupted shape can declare far more than the file holds: read both ends, not terabytes.
  Sha256 h;
  Bytes buf(1 << 20);
  t.source->read(0, buf.span());
  h.update(buf.span());
  t.source->read(nb - buf.size(), buf.span());
  h.update(buf.span());
  return d + "partial:" + h.hex();
}

std::string leaf_digest(const Node& n) {
  struct V {
    std::string operator()(const Node::Container& c) const {
      return c.kind == ContainerKind::Dict ? "{}" : c.kind == ContainerKind::List ? "[]" : "()";
    }
    std::string operator()(const Tensor&) const { return ""; }
    std::string operator()(const NoneValue&) const { return "None"; }
    std::string operator()(bool b) const { return b ? "True" : "False"; }
    std::string operator()(std::int64_t i) const { return std::to_string(i); }
    std::string operator()(double d) const {
      char b[40];
      std::snprintf(b, sizeof b, "%.17g", d);
      return b;
    }
    std::string operator()(const std::string& s) const { return "'" + s + "'"; }
    std::string operator()(const RawBytes& b) const { return "bytes:" + sha256_hex(std::as_bytes(std::span(b.data))); }
  };
  return std::string(n.type_name()) + " " + std::visit(V{}, n.value());
}

Snapshot read_everything(const std::string& path, bool tensors_only = false) {
  Checkpoint ck = read_checkpoint(path);
  Snapshot s;
  for (const auto& [name, t] : tensor_list(ck.root)) s["T " + name] = tensor_digest(*t);
  if (!tensors_only)
    visit_leaves(ck.root, [&](const Path& p, const Node& n) {
      if (!n.is_tensor()) s["L " + join_path(p)] = leaf_digest(n);
    });
  return s;
}

std::string diff_snapshots(const Snapshot& want, const Snapshot& got) {
  std::string out;
  for (const auto& [k, v] : want) {
    auto it = got.find(k);
    if (it == got.end()) out += "\n  missing " + k;
    else if (it->second != v) out += "\n  " + k + ": " + v + " -> " + it->second;
  }
  for (const auto& [k, v] : got)
    if (!want.count(k)) out += "\n  unexpected " + k + " = " + v;
  return out.size() > 2000 ? out.substr(0, 2000) + "\n  ..." : out;
}

// ---------------------------------------------------------------------------------------
// Seeds

struct Seed {
  std::string name;      // case names: "<name>/<k>"
  std::string fixture;   // file or directory under tests/data/fixtures ("" = made here)
  unsigned cases;        // in-process cases at scale 1
  std::string manifest;  // fixture manifest.json the unmutated seed must match ("" = none)
};

const std::vector<Seed>& seeds() {
  static const std::vector<Seed> all = {
      {"safetensors", "peft_llama_lora/adapter/adapter_model.safetensors", 200, ""},
      {"safetensors_big", "safetensors_single/model.safetensors", 60, "safetensors_single/manifest.json"},
      {"safetensors_sharded", "", 160, ""},  // made from peft_llama_lora/base by our writer
      {"torch_zip_small", "torch_with_extras/checkpoint.pt", 240, "torch_with_extras/manifest.json"},
      {"torch_zip", "torch_zip/model.pt", 100, "torch_zip/manifest.json"},
      {"torch_legacy", "torch_legacy/model.pt", 200, "torch_legacy/manifest.json"},
      {"npy", "npz/fortran.npy", 150, ""},
      {"npz_stored", "peft_llama_lora/logits.npz", 200, ""},
      {"npz_stored_big", "npz/arrays.npz", 60, ""},
      {"npz_deflated", "npz/arrays_compressed.npz", 160, ""},
      {"msgpack", "flax_msgpack/params.msgpack", 200, ""},
      {"orbax_manager", "orbax_manager/run", 200, "orbax_manager/manifest.json"},
      {"orbax_ocdbt_zarr2", "orbax_ocdbt_zarr2/ckpt", 200, ""},
      {"orbax_ocdbt_zarr3", "orbax_ocdbt_zarr3/ckpt", 200, ""},
      {"orbax_sharded_zarr3", "orbax_sharded_zarr3/ckpt", 150, "orbax_sharded_zarr3/manifest.json"},
      {"orbax_plain_zarr2", "orbax_plain_zarr2/ckpt", 200, ""},
      {"orbax_plain_zarr3", "orbax_plain_zarr3/ckpt", 200, ""},
      {"maxtext_linen", "maxtext_linen_nnx/linen_params/0/items", 120, ""},
      {"openpi", "openpi_pi0_tiny_lora/release/params", 60, ""},
  };
  return all;
}

// A working copy of a seed: mutate one file, read, restore.
class SeedCopy {
 public:
  explicit SeedCopy(const Seed& s) {
    root_ = tmp_ / "seed";
    if (s.fixture.empty()) {
      make_sharded_safetensors(root_);
    } else {
      const std::string src = test::fixture(s.fixture);
      if (fs::is_directory(src)) {
        fs::copy(src, root_, fs::copy_options::recursive);
      } else {
        fs::create_directories(root_);
        root_ += "/" + fs::path(src).filename().string();
        fs::copy_file(src, root_);
      }
    }
    if (fs::is_directory(root_)) {
      for (const auto& e : fs::recursive_directory_iterator(root_))
        if (e.is_regular_file()) files_.push_back(e.path().string());
      std::sort(files_.begin(), files_.end());
    } else {
      files_.push_back(root_);
    }
    for (const auto& f : files_) {
      originals_.push_back(test::read_file(f));
      maps_.emplace_back(originals_.back());
    }
  }
  const std::string& root() const { return root_; }
  const std::string& read_path() const { return root_; }
  std::size_t file_count() const { return files_.size(); }
  const std::string& file(std::size_t i) const { return files_[i]; }
  std::string rel(std::size_t i) const { return fs::relative(files_[i], tmp_ / "seed").string(); }
  const std::string& original(std::size_t i) const { return originals_[i]; }
  const test::FileMap& map(std::size_t i) const { return maps_[i]; }
  // Replaces file i by `bytes` (a new inode: nothing mapped from an earlier case sees it).
  void put(std::size_t i, const std::string& bytes) const {
    const std::string t = tmp_ / "replacement";
    test::write_file(t, bytes);
    fs::rename(t, files_[i]);
  }
  void restore(std::size_t i) const { put(i, originals_[i]); }

 private:
  // A sharded set + index, written from peft_llama_lora/base by the safetensors writer.
  static void make_sharded_safetensors(const std::string& dir) {
    Checkpoint ck = read_checkpoint(test::fixture("peft_llama_lora/base/model.safetensors"));
    WriteOptions o;
    o.options["shard-size"] = std::to_string(24 << 10);
    write_checkpoint(ck, dir, format_by_name("safetensors"), o, 1);
  }
  ScratchDir tmp_;
  std::string root_;
  std::vector<std::string> files_;
  std::vector<std::string> originals_;
  std::vector<test::FileMap> maps_;
};

// The file a case mutates (every file of a directory seed is a candidate), then the mutation.
struct MutationCase {
  std::size_t file;
  Mutation m;
};
MutationCase make_case(const SeedCopy& c, const std::string& seed_name, std::uint64_t k) {
  const std::uint64_t s = case_seed(seed_name, k);
  const std::size_t f = s % c.file_count();
  Mutator mut(c.original(f), c.map(f), s);
  return {f, mut.next()};
}

void dump_failing_input(const std::string& label, const std::string& bytes) {
  const char* dir = std::getenv("CKB_MUTATION_DUMP");
  if (!dir) return;
  std::string name = label;
  std::replace(name.begin(), name.end(), '/', '_');
  fs::create_directories(dir);
  test::write_file(std::string(dir) + "/" + name, bytes);
}

// Runs every case of `seed` in-process; returns how many ran.
std::size_t run_seed_in_process(const Seed& seed, Watchdog& dog, std::map<std::string, unsigned>& outcomes) {
  SeedCopy copy(seed);
  Snapshot baseline;
  try {
    baseline = read_everything(copy.read_path());
  } catch (const std::exception& e) {
    ADD_FAILURE() << seed.name << ": the unmutated seed does not read: " << e.what();
    return 0;
  }
  if (!seed.manifest.empty())
    test::expect_matches_manifest(read_checkpoint(copy.read_path()), test::load_json(test::fixture(seed.manifest)));

  const std::string only = env_case();
  const std::uint64_t n = static_cast<std::uint64_t>(seed.cases) * env_scale();
  std::size_t ran = 0;
  for (std::uint64_t k = 0; k < n; ++k) {
    const std::string label = seed.name + "/" + std::to_string(k);
    if (!only.empty() && only != label) continue;
    MutationCase c = make_case(copy, seed.name, k);
    const std::string where = label + " (" + copy.rel(c.file) + ": " + c.m.what + ")";
    copy.put(c.file, c.m.bytes);
    if (c.m.guarded) ++outcomes["checksum-guarded"];
    dog.arm(where, case_deadline_s());
    std::string failure;
    try {
      Snapshot got = read_everything(copy.read_path());
      if (c.m.guarded && got != baseline)
        failure = "a checksum guards every changed byte, yet it read back different contents:" +
                  diff_snapshots(baseline, got);
      ++outcomes[got == baseline ? "read, same" : "read, different"];
    } catch (const Error&) {
      ++outcomes["ckb error"];
    } catch (const std::exception& e) {
      failure = std::string("non-ckb exception (") + typeid(e).name() + "): " + e.what();
    } catch (...) {
      failure = "non-ckb exception of unknown type";
    }
    dog.disarm();
    if (!failure.empty()) {
      ADD_FAILURE() << where << ": " << failure << "\n  rerun alone: CKB_MUTATION_CASE=" << label;
      dump_failing_input(label, c.m.bytes);
    }
    copy.restore(c.file);
    ++ran;
  }
  return ran;
}

TEST(Mutation, InProcessEveryFormat) {
  Watchdog dog;
  std::size_t total = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& seed : seeds()) {
    std::map<std::string, unsigned> outcomes;
    const auto s0 = std::chrono::steady_clock::now();
    const std::size_t ran = run_seed_in_process(seed, dog, outcomes);
    total += ran;
    if (ran) {
      std::printf("  %-20s %5zu cases %6.2f s:", seed.name.c_str(), ran,
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count());
      for (const auto& [k, v] : outcomes) std::printf("  %s %u", k.c_str(), v);
      std::printf("\n");
    }
  }
  std::printf("  %zu mutated inputs in %.1f s\n", total,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  RecordProperty("mutated_inputs", static_cast<int>(total));
  if (env_case().empty()) {
    EXPECT_GT(total, 0u);
  }
}

// ---------------------------------------------------------------------------------------
// Through the real binary

struct CliSeed {
  std::string seed;  // a name from seeds()
  unsigned cases;    // at scale 1 (halved under ASan, where each start costs more)
};

std::vector<std::string> dir_listing(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) out.push_back(fs::relative(e.path(), dir).string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(Mutation, CliConvertAndInspect) {
  const std::vector<CliSeed> cli_seeds = {
      {"safetensors", 30}, {"safetensors_sharded", 20}, {"torch_zip_small", 40}, {"torch_legacy", 20},
      {"npy", 20},         {"npz_stored", 30},          {"npz_deflated", 20},    {"msgpack", 20},
      {"orbax_manager", 20}, {"orbax_ocdbt_zarr3", 30}, {"orbax_plain_zarr2", 20}, {"orbax_sharded_zarr3", 20},
  };
  const std::string only = env_case();
  std::size_t total = 0;
  for (const auto& cs : cli_seeds) {
    const Seed* seed = nullptr;
    for (const auto& s : seeds())
      if (s.name == cs.seed) seed = &s;
    ASSERT_NE(seed, nullptr) << cs.seed;
    SeedCopy copy(*seed);
    const Snapshot baseline = read_everything(copy.read_path(), true);
    const auto input_listing = dir_listing(fs::path(copy.root()).parent_path().string());
    const unsigned n = (test::under_asan() ? cs.cases / 2 : cs.cases) * env_scale();
    for (unsigned k = 0; k < n; ++k) {
      const std::string label = "cli/" + seed->name + "/" + std::to_string(k);
      if (!only.empty() && only != label) continue;
      MutationCase c = make_case(copy, label, k);
      const std::string where = label + " (" + copy.rel(c.file) + ": " + c.m.what + ")";
      SCOPED_TRACE(where + "\n  rerun alone: CKB_MUTATION_CASE=" + label);
      copy.put(c.file, c.m.bytes);
      ScratchDir out;
      const std::string dst = out / "out.safetensors";
      const bool inspect = k % 4 == 3;
      std::vector<std::string> args = inspect ? std::vector<std::string>{"inspect", "--hash", copy.read_path()}
                                              : std::vector<std::string>{"convert", copy.read_path(), dst, "--to",
                                                                         "safetensors", "--drop-non-tensors", "-q"};
      test::ChildLimits lim;
      lim.timeout_s = test::under_asan() ? 60 : 20;
      lim.address_space = 4ull << 30;
      const auto r = test::run_cli_child(args, lim);
      bool ok = true;
      ok &= !r.timed_out && r.signal == 0 && (r.exit_code == 0 || r.exit_code == 2);
      EXPECT_FALSE(r.timed_out) << "hang";
      EXPECT_EQ(r.signal, 0) << r.err;
      EXPECT_TRUE(r.exit_code == 0 || r.exit_code == 2) << "exit " << r.exit_code << ": " << r.err;
      if (!inspect) {
        const auto left = dir_listing(out.path());
        if (r.exit_code == 0) {
          EXPECT_EQ(left, std::vector<std::string>{"out.safetensors"}) << "temporaries left";
          if (c.m.guarded && left == std::vector<std::string>{"out.safetensors"}) {
            const Snapshot got = read_everything(dst, true);
            EXPECT_TRUE(got == baseline) << "a checksum guards every changed byte, yet it converted different contents:"
                                     << diff_snapshots(baseline, got);
            ok &= got == baseline;
          }
        } else {
          EXPECT_TRUE(left.empty()) << "output or temporaries left after exit " << r.exit_code;
          ok &= left.empty();
        }
      }
      EXPECT_EQ(dir_listing(fs::path(copy.root()).parent_path().string()), input_listing) << "the input changed";
      if (!ok) dump_failing_input(label, c.m.bytes);
      copy.restore(c.file);
      ++total;
    }
  }
  std::printf("  %zu mutated inputs through the CLI\n", total);
  RecordProperty("cli_runs", static_cast<int>(total));
}

}  // namespace
}  // namespace ckb
