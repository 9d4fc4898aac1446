// Interrupted runs clean up, through the real CLI and in forked processes:
//  - SIGINT / SIGTERM at a random point of a conversion, for every writer, with a previous
//    output in place: exit 130 / 143 with "cancelled (signal N)" on stderr, no ".ckb-tmp-*"
//    anywhere, the previous output byte-identical (or, when the run had already finished,
//    the new output complete: it equals a reference conversion);
//  - the next run removes the temporaries of dead processes beside its destination and says
//    so; a live process's temporaries and other files are left alone;
//  - the executor (in-process): a token cancelled mid-run stops every worker within a chunk,
//    Cancelled (with the signal) comes out of execute(), nothing is committed or left;
//    on_progress reports the totals;
//  - the watchdog (engine/signals.h): a run that never unwinds still ends clean, after the
//    grace period or at once on a second signal, and a process writing nothing exits at once.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <thread>

#include "checkpoint_files.h"
#include "child_process.h"
#include "engine/execute.h"
#include "engine/signals.h"
#include "formats/format.h"
#include "io/output.h"
#include "test_util.h"

namespace ckb {
namespace {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

// The temporaries anywhere under `dir`.
std::vector<std::string> temporaries_under(const std::string& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().filename().string().rfind(".ckb-tmp-", 0) == 0) found.push_back(it->path().string());
  return found;
}

struct InterruptTarget {
  const char* name;
  const char* dst;
  std::vector<std::string> extra;
  bool one_tensor = false;  // the source has a single tensor (npy)
  bool step = false;        // an Orbax step written into a root that holds step 1
};

const std::vector<InterruptTarget>& targets() {
  static const std::vector<InterruptTarget> t = {
      {"safetensors", "out.safetensors", {}},
      {"sharded safetensors", "out_sharded", {"--to", "safetensors", "--shard-size", "16MB"}},
      {"torch", "out.pt", {}},
      {"npz", "out.npz", {}},
      // A cast makes the single tensor stream in chunks (a zero-copy one is one write).
      {"npy", "out.npy", {"--dtype", "float16"}, true},
      {"msgpack", "out.msgpack", {}},
      {"orbax ocdbt", "out_orbax", {"--to", "orbax"}},
      {"orbax no-ocdbt", "out_orbax", {"--to", "orbax", "--no-ocdbt"}},
      {"orbax step", "root", {"--to", "orbax", "--step", "2"}, false, true},
  };
  return t;
}

// The sources, written once per test binary run: CKB_INTERRUPT_TEST_MB MiB (default 256, 128
// under ASan) of incompressible data, as 4 MiB tensors and a quarter of it as one tensor, and small ones
// for the previous outputs.
struct Sources {
  test::TempDir dir;
  std::string big = dir / "big.safetensors", one = dir / "one.safetensors";
  std::string small = dir / "small.safetensors", one_small = dir / "one_small.safetensors";
  Sources() {
    std::size_t mb = test::under_asan() ? 128 : 256;
    if (const char* env = std::getenv("CKB_INTERRUPT_TEST_MB")) mb = std::max(8ul, std::strtoul(env, nullptr, 10));
    test::make_safetensors(big, static_cast<int>(mb / 4), 4 << 20, 1);
    test::make_safetensors(one, 1, (mb / 4) << 20, 2);
    test::make_safetensors(small, 3, 1 << 16, 3);
    test::make_safetensors(one_small, 1, 1 << 16, 4);
  }
};

class Interrupt : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { sources_ = std::make_unique<Sources>(); }
  static void TearDownTestSuite() { sources_.reset(); }
  static std::unique_ptr<Sources> sources_;

  std::vector<std::string> convert_args_interrupt(const std::string& src, const std::string& dst, const InterruptTarget& t) {
    std::vector<std::string> a{"convert", src, dst, "--overwrite", "--threads", "1", "--max-memory", "16MB", "-q"};
    a.insert(a.end(), t.extra.begin(), t.extra.end());
    return a;
  }
  test::TempDir tmp;
};
std::unique_ptr<Sources> Interrupt::sources_;

TEST_F(Interrupt, SignalMidRunLeavesThePreviousOutputAndNoTemporaries) {
  const Sources& s = *sources_;
  const std::string big_hash = test::tree_hash(s.big), one_hash = test::tree_hash(s.one);
  const unsigned seed = 20261203;
  std::mt19937 rng(seed);
  int runs = 0, mid_run = 0;
  for (const auto& t : targets()) {
    SCOPED_TRACE(std::string(t.name) + ", seed " + std::to_string(seed));
    const std::string out = tmp / t.name;
    fs::create_directories(out);
    const std::string dst = out + "/" + t.dst;
    const std::string& big = t.one_tensor ? s.one : s.big;
    const std::string& small = t.one_tensor ? s.one_small : s.small;
    if (t.step) {  // a root holding another step, which must survive every run
      auto a = convert_args_interrupt(small, dst, t);
      a.back() = "1";
      auto r = test::run_cli_child(a);
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
    const std::string step1 = t.step ? test::tree_hash(dst + "/1") : "";
    auto r = test::run_cli_child(convert_args_interrupt(small, dst, t));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::string prev_hash = test::tree_hash(dst);
    for (int k = 0; k < 3; ++k) {
      const int signo = k % 2 ? SIGTERM : SIGINT;
      test::ChildLimits lim;
      lim.kill_signal = signo;
      lim.kill_after_s = std::uniform_real_distribution<double>(0.0, 0.15)(rng);
      lim.start_clock = [&] { return !temporaries_under(out).empty(); };  // the run is writing
      SCOPED_TRACE("signal " + std::to_string(signo) + " " + std::to_string(lim.kill_after_s) + " s after the first temporary");
      auto run = test::run_cli_child(convert_args_interrupt(big, dst, t), lim);
      ++runs;
      ASSERT_FALSE(run.timed_out) << run.err;
      EXPECT_EQ(run.signal, 0) << "ended by signal " << run.signal;
      EXPECT_EQ(temporaries_under(tmp.path()), std::vector<std::string>{});
      if (t.step) {
        EXPECT_EQ(test::tree_hash(dst + "/1"), step1);
      }
      const std::string now = test::tree_hash(dst);
      if (run.exit_code == 128 + signo && now == prev_hash) {
        ++mid_run;
        EXPECT_NE(run.err.find("ckptbridge: cancelled (signal " + std::to_string(signo) + ")"), std::string::npos)
            << run.err;
        continue;
      }
      // The run had finished (or was committing) when the signal came: the new output must
      // be complete, i.e. equal to an uninterrupted conversion's.
      EXPECT_TRUE(run.exit_code == 0 || run.exit_code == 128 + signo) << run.exit_code << ": " << run.err;
      const std::string ref = tmp / "ref/" + t.dst;
      fs::create_directories(tmp / "ref");
      auto full = test::run_cli_child(convert_args_interrupt(big, ref, t));
      ASSERT_EQ(full.exit_code, 0) << full.err;
      auto same = test::run_cli_child({"diff", ref, dst});
      EXPECT_EQ(same.exit_code, 0) << "the output of a run that finished differs: " << same.out << same.err;
      fs::remove_all(tmp / "ref");
      // A previous output again for the next round (OCDBT names its data files at random).
      r = test::run_cli_child(convert_args_interrupt(small, dst, t));
      ASSERT_EQ(r.exit_code, 0) << r.err;
      prev_hash = test::tree_hash(dst);
    }
  }
  EXPECT_EQ(test::tree_hash(s.big), big_hash);
  EXPECT_EQ(test::tree_hash(s.one), one_hash);
  // Most signals must hit a run in progress, or the test proves little.
  EXPECT_GE(mid_run, runs / 2);
  RecordProperty("signals_mid_run", mid_run);
}

// A streaming source of zeros that counts its chunk reads and cancels `token` at read number
// `cancel_at`.
class CountingSource final : public TensorSource {
 public:
  CountingSource(std::uint64_t n, CancelToken& token, int cancel_at) : n_(n), token_(token), cancel_at_(cancel_at) {}
  void read(std::uint64_t, std::span<std::byte> out) const override {
    std::fill(out.begin(), out.end(), std::byte{0});
    if (++reads == cancel_at_) {
      token_.cancel(SIGTERM);
      reads_at_cancel = reads.load();
    }
  }
  std::string describe() const override { return "counting"; }
  mutable std::atomic<int> reads{0};
  mutable std::atomic<int> reads_at_cancel{0};

 private:
  std::uint64_t n_;
  CancelToken& token_;
  int cancel_at_;
};

Node counting_tree(int tensors, std::uint64_t each, CancelToken& token, int cancel_at,
                   std::vector<std::shared_ptr<CountingSource>>& sources) {
  Node root = Node::dict();
  for (int i = 0; i < tensors; ++i) {
    auto src = std::make_shared<CountingSource>(each, token, cancel_at);
    sources.push_back(src);
    root.add("t" + std::to_string(i), Node::tensor(Tensor{{DType::U8, {static_cast<std::int64_t>(each)}}, src}));
  }
  return root;
}

TEST(InterruptExecutor, CancelledRunStopsWithinAChunkAndCommitsNothing) {
  for (const char* fmt : {"safetensors", "npz", "orbax"}) {
    SCOPED_TRACE(fmt);
    test::TempDir d;
    const std::string dst = d / "out";
    test::write_file(dst, "previous");  // a file output replaced only at commit
    if (std::string(fmt) == "orbax") fs::remove(dst);
    CancelToken token;
    std::vector<std::shared_ptr<CountingSource>> sources;
    // One 16 MiB tensor read in 64 KiB chunks (256 reads); cancelled at the 10th.
    Node tree = counting_tree(1, 16 << 20, token, 10, sources);
    ExecOptions eo;
    eo.threads = 2;
    eo.chunk_bytes = 64 << 10;
    eo.cancel = &token;
    int signal = 0;
    try {
      execute(tree, format_by_name(fmt), dst, {}, eo);
    } catch (const Cancelled& e) {
      signal = e.signal();
      EXPECT_EQ(e.exit_code(), 143);
    }
    EXPECT_EQ(signal, SIGTERM) << "execute() did not throw Cancelled";
    // Each worker stops at its next check: at most one more chunk after the cancelling one.
    EXPECT_LE(sources[0]->reads.load(), sources[0]->reads_at_cancel.load() + static_cast<int>(eo.threads));
    if (std::string(fmt) == "orbax")
      EXPECT_FALSE(fs::exists(dst));
    else
      EXPECT_EQ(test::read_file(dst), "previous");
    EXPECT_EQ(temporaries_under(d.path()), std::vector<std::string>{});
  }
}

TEST(InterruptExecutor, ManyTensorsStopAtTheNextTensor) {
  test::TempDir d;
  CancelToken token;
  // 64 tensors of one chunk each; reading the 5th cancels.
  std::vector<std::shared_ptr<CountingSource>> sources;
  Node root = Node::dict();
  for (int i = 0; i < 64; ++i) {
    auto src = std::make_shared<CountingSource>(64 << 10, token, i == 4 ? 1 : -1);
    sources.push_back(src);
    root.add("t" + std::to_string(i), Node::tensor(Tensor{{DType::U8, {64 << 10}}, src}));
  }
  ExecOptions eo;
  eo.threads = 1;
  eo.chunk_bytes = 64 << 10;
  eo.cancel = &token;
  EXPECT_THROW(execute(root, format_by_name("safetensors"), d / "out.safetensors", {}, eo), Cancelled);
  int read = 0;
  for (const auto& s : sources) read += s->reads.load();
  EXPECT_EQ(read, 5);  // one worker, equal sizes (written in order): the cancelling tensor was the last
  EXPECT_FALSE(fs::exists(d / "out.safetensors"));
  EXPECT_EQ(temporaries_under(d.path()), std::vector<std::string>{});
}

TEST(InterruptExecutor, ProgressReportsTheTotals) {
  test::TempDir d;
  CancelToken never;
  std::vector<std::shared_ptr<CountingSource>> sources;
  Node tree = counting_tree(5, 3 << 20, never, -1, sources);
  ExecOptions eo;
  eo.threads = 2;
  std::mutex mu;
  std::vector<std::array<std::uint64_t, 4>> calls;
  eo.on_progress = [&](std::uint64_t b, std::uint64_t bt, std::size_t t, std::size_t tt) {
    std::lock_guard lock(mu);
    calls.push_back({b, bt, t, tt});
  };
  execute(tree, format_by_name("safetensors"), d / "out.safetensors", {}, eo);
  ASSERT_FALSE(calls.empty());
  const std::array<std::uint64_t, 4> last{15u << 20, 15u << 20, 5, 5};
  EXPECT_EQ(calls.back(), last);  // the final call, before the commit
  for (std::size_t i = 0; i + 1 < calls.size(); ++i) {
    EXPECT_LE(calls[i][0], calls[i + 1][0]);
    EXPECT_LE(calls[i][2], calls[i + 1][2]);
    EXPECT_EQ(calls[i][1], 15u << 20);
    EXPECT_EQ(calls[i][3], 5u);
  }
}

// A pid that is certainly gone: a child that has exited and been reaped.
pid_t dead_pid() {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return pid;
}

TEST(StaleTemporaries, NextRunRemovesDeadProcessesTemporariesOnly) {
  test::TempDir tmp, src;
  const std::string small = src / "small.safetensors";
  test::make_safetensors(small, 3, 1 << 16, 3);
  const pid_t dead = dead_pid();
  const std::string d = std::to_string(dead), live = std::to_string(::getpid());
  const std::string stale_file = tmp / (".ckb-tmp-" + d + "-1a2b-out.safetensors");
  const std::string stale_dir = tmp / (".ckb-tmp-" + d + "-3c4d-out_sharded");
  const std::string live_file = tmp / (".ckb-tmp-" + live + "-5e6f-out.safetensors");
  const std::string not_a_pid = tmp / ".ckb-tmp-x1-out.safetensors";
  const std::string other = tmp / "notes.txt";
  test::write_file(stale_file, "partial");
  fs::create_directories(stale_dir + "/sub");
  test::write_file(stale_dir + "/sub/model-00001.safetensors", "partial");
  test::write_file(live_file, "in progress");
  test::write_file(not_a_pid, "x");
  test::write_file(other, "x");

  auto r = test::run_cli_child({"convert", small, tmp / "out.safetensors"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(fs::exists(stale_file));
  EXPECT_FALSE(fs::exists(stale_dir));
  EXPECT_NE(r.err.find("removed stale temporary " + stale_file + " (process " + d + " is gone)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("removed stale temporary " + stale_dir + " (process " + d + " is gone)"), std::string::npos) << r.err;
  EXPECT_EQ(test::read_file(live_file), "in progress");
  EXPECT_EQ(test::read_file(not_a_pid), "x");
  EXPECT_EQ(test::read_file(other), "x");
  EXPECT_EQ(r.err.find(live_file), std::string::npos) << r.err;
  EXPECT_EQ(test::tree_hash(tmp / "out.safetensors"), test::tree_hash(small));

  // An Orbax step's temporaries live inside the root.
  const std::string root = tmp / "root";
  r = test::run_cli_child({"convert", small, root, "--to", "orbax", "--step", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string stale_step = root + "/.ckb-tmp-" + d + "-7a8b-2";
  fs::create_directories(stale_step + "/default");
  r = test::run_cli_child({"convert", small, root, "--to", "orbax", "--step", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(fs::exists(stale_step));
  EXPECT_NE(r.err.find("removed stale temporary " + stale_step + " (process " + d + " is gone)"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::is_directory(root + "/1"));
  EXPECT_TRUE(fs::is_directory(root + "/2"));
}

TEST(TemporaryNames, OwnerPidIsParsedFromTheName) {
  EXPECT_EQ(temporary_owner("/a/.ckb-tmp-123-4ab-out.safetensors"), 123);
  EXPECT_EQ(temporary_owner(".ckb-tmp-7-0-x"), 7);
  EXPECT_EQ(temporary_owner("/a/.ckb-tmp-x1-out"), 0);
  EXPECT_EQ(temporary_owner("/a/.ckb-tmp-123"), 0);
  EXPECT_EQ(temporary_owner("/a/.ckb-tmp--5-x"), 0);
  EXPECT_EQ(temporary_owner("/a/out.safetensors"), 0);
  EXPECT_EQ(temporary_owner("/.ckb-tmp-1-x/out"), 0);  // the name, not a folder above it
}

TEST(TemporaryNames, CarryThePidAndTheDestinationName) {
  test::TempDir d;
  AtomicFile f(d / "out.bin");
  const std::string name = fs::path(f.temp_path()).filename().string();
  EXPECT_EQ(name.rfind(".ckb-tmp-" + std::to_string(::getpid()) + "-", 0), 0u) << name;
  EXPECT_EQ(name.substr(name.size() - 8), "-out.bin") << name;
  EXPECT_EQ(temporary_owner(f.temp_path()), ::getpid());
  EXPECT_EQ(fs::path(f.temp_path()).parent_path(), fs::path(d.path()));
}

// Runs `body` in a forked child with stderr to `err_path`; returns its wait status (-1 when
// it had not ended after 30 s: it is then killed).
int run_forked(const std::string& err_path, const std::function<void()>& body) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int e = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(e, 2);
    body();
    ::_exit(99);
  }
  const auto t0 = std::chrono::steady_clock::now();
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() - t0 > 30s) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(1ms);
  }
  return status;
}

// A run that holds a file and a directory temporary and never unwinds after `signals`.
void stuck_run(const test::TempDir& d, std::chrono::milliseconds grace, std::vector<int> signals) {
  AtomicFile f(d / "out.bin");
  f.pwrite(0, std::string_view("partial"));
  AtomicDir dir(d / "out_dir");
  write_small_file(dir.path() + "/part", "partial");
  static CancelToken token;
  cancel_on_signals(token, grace);
  for (int s : signals) ::kill(::getpid(), s);
  while (true) ::pause();  // ignores the token: only the watchdog can end this
}

TEST(InterruptWatchdog, RemovesTemporariesOfARunThatDoesNotStop) {
  test::TempDir d;
  const std::string err = d / "err";
  const int status = run_forked(err, [&] { stuck_run(d, 200ms, {SIGTERM}); });
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 143);
  EXPECT_EQ(test::read_file(err), "ckptbridge: cancelled (signal 15); no partial output left\n");
  for (const auto& e : fs::directory_iterator(d.path())) EXPECT_EQ(e.path().filename(), "err") << "left behind: " << e.path();
}

TEST(InterruptWatchdog, SecondSignalEndsTheRunAtOnce) {
  test::TempDir d;
  const std::string err = d / "err";
  // A grace period of an hour: only the second signal can end it within the 30 s limit.
  const int status = run_forked(err, [&] { stuck_run(d, std::chrono::hours(1), {SIGINT, SIGTERM}); });
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status << " (-1: still running after 30 s)";
  EXPECT_EQ(WEXITSTATUS(status), 130);  // the first signal's
  EXPECT_EQ(test::read_file(err), "ckptbridge: cancelled (signal 2); no partial output left\n");
  for (const auto& e : fs::directory_iterator(d.path())) EXPECT_EQ(e.path().filename(), "err") << "left behind: " << e.path();
}

TEST(InterruptWatchdog, NothingBeingWrittenExitsAtOnce) {
  test::TempDir d;
  const std::string err = d / "err";
  const int status = run_forked(err, [&] {
    static CancelToken token;
    cancel_on_signals(token, std::chrono::hours(1));
    ::kill(::getpid(), SIGINT);
    while (true) ::pause();
  });
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status << " (-1: still running after 30 s)";
  EXPECT_EQ(WEXITSTATUS(status), 130);
  EXPECT_EQ(test::read_file(err), "ckptbridge: cancelled (signal 2); no partial output left\n");
}

}  // namespace
}  // namespace ckb
