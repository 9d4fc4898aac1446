// Running the ckptbridge binary as a child process under limits, for the hostile-input and
// crash-safety tests: a wall-clock deadline (SIGKILL), an optional address-space limit
// (skipped under ASan, which reserves terabytes of shadow memory), an optional file-size
// limit (with SIGXFSZ ignored so writes fail with EFBIG), or a signal (SIGKILL, SIGINT, ...)
// after a given delay, counted from the start or from a condition becoming true.
// The peak resident set size comes from wait4().
#pragma once

#include <signal.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fcntl.h>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"

#if defined(__SANITIZE_ADDRESS__)
#define CKB_TEST_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CKB_TEST_UNDER_ASAN 1
#endif
#endif

namespace ckb::test {

struct ChildLimits {
  double timeout_s = 60;                 // killed (and reported as timed out) after this
  std::uint64_t address_space = 0;       // RLIMIT_AS in bytes; 0 = none (always none under ASan)
  std::uint64_t file_size = 0;           // RLIMIT_FSIZE in bytes; 0 = none
  double kill_after_s = -1;              // >= 0: SIGKILL after this long (a simulated crash)
  int kill_signal = SIGKILL;             // what kill_after_s sends (SIGINT, SIGTERM: an interrupt)
  // Set: kill_after_s counts from the first poll (every 0.5 ms) at which it returns true.
  std::function<bool()> start_clock;
};

struct ChildResult {
  int exit_code = -1;      // when it exited
  int signal = 0;          // when a signal ended it
  bool timed_out = false;  // killed at the deadline
  bool killed_by_us = false;  // kill_signal was sent
  long max_rss_kb = 0;
  double seconds = 0;
  std::string out, err;
};

inline bool under_asan() {
#ifdef CKB_TEST_UNDER_ASAN
  return true;
#else
  return false;
#endif
}

// Runs CKB_CLI_PATH with `args` (no shell).
inline ChildResult run_cli_child(const std::vector<std::string>& args, const ChildLimits& lim = {}) {
  TempDir io;
  const std::string out_path = io / "out", err_path = io / "err";
  const auto t0 = std::chrono::steady_clock::now();
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    int o = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int n = ::open("/dev/null", O_RDONLY);
    if (o < 0 || e < 0 || n < 0) ::_exit(126);
    ::dup2(n, 0);
    ::dup2(o, 1);
    ::dup2(e, 2);
    if (lim.address_space && !under_asan()) {
      rlimit r{lim.address_space, lim.address_space};
      ::setrlimit(RLIMIT_AS, &r);
    }
    if (lim.file_size) {
      rlimit r{lim.file_size, lim.file_size};
      ::setrlimit(RLIMIT_FSIZE, &r);
      ::signal(SIGXFSZ, SIG_IGN);  // ignored dispositions survive exec
    }
    std::vector<char*> argv;
    std::string exe = CKB_CLI_PATH;
    argv.push_back(exe.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(exe.c_str(), argv.data());
    ::_exit(127);
  }
  ChildResult r;
  int status = 0;
  rusage ru{};
  double clock_started = lim.start_clock ? -1 : 0;
  while (true) {
    pid_t w = ::wait4(pid, &status, WNOHANG, &ru);
    if (w == pid) break;
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (clock_started < 0 && lim.start_clock()) clock_started = el;
    if (lim.kill_after_s >= 0 && clock_started >= 0 && el - clock_started >= lim.kill_after_s && !r.killed_by_us) {
      ::kill(pid, lim.kill_signal);
      r.killed_by_us = true;
    } else if (el >= lim.timeout_s && !r.timed_out) {
      ::kill(pid, SIGKILL);
      r.timed_out = true;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.max_rss_kb = ru.ru_maxrss;
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  r.out = read_file(out_path);
  r.err = read_file(err_path);
  return r;
}

}  // namespace ckb::test
