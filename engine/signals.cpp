// Implementation of engine/signals.h: sigaction handlers feeding a self-pipe, and the watchdog
// thread that reads it.
#include "engine/signals.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <thread>

#include "core/errors.h"
#include "io/output.h"

namespace ckb {
namespace {

static_assert(std::atomic<int>::is_always_lock_free && std::atomic<bool>::is_always_lock_free,
              "the signal handler needs lock-free atomics");

CancelToken* g_token = nullptr;
int g_pipe[2] = {-1, -1};
std::atomic<int> g_signals{0};
std::atomic<bool> g_exiting{false};

void on_signal(int signo) {
  const int saved = errno;
  if (g_signals.fetch_add(1) == 0) g_token->cancel(signo);
  const char b = static_cast<char>(signo);
  ssize_t ignored = ::write(g_pipe[1], &b, 1);  // non-blocking; a full pipe already wakes the watchdog
  (void)ignored;
  errno = saved;
}

// Waits for a byte on the pipe for up to `ms` (-1: forever). True when one arrived.
bool wait_signal(int ms) {
  pollfd p{g_pipe[0], POLLIN, 0};
  int r;
  do r = ::poll(&p, 1, ms);
  while (r < 0 && errno == EINTR);
  if (r <= 0) return false;
  char b;
  ssize_t ignored = ::read(g_pipe[0], &b, 1);
  (void)ignored;
  return true;
}

void watchdog(std::chrono::milliseconds grace) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // the handlers run on the other threads
  while (!wait_signal(-1)) {
  }
  const int signo = g_token->signal();
  const auto deadline = std::chrono::steady_clock::now() + grace;
  // Give the run its grace period to unwind (its destructors remove its temporaries), but
  // stop waiting once nothing is left to remove, on a second signal, or at the deadline.
  while (live_temporary_count() > 0 && std::chrono::steady_clock::now() < deadline)
    if (wait_signal(50)) break;
  abandon_temporaries();
  exit_cancelled(signo);
}

}  // namespace

void cancel_on_signals(CancelToken& token, std::chrono::milliseconds grace) {
  if (g_token) throw UsageError("cancel_on_signals() was already called");
  g_token = &token;
  if (::pipe2(g_pipe, O_CLOEXEC) != 0) throw_errno("", "cannot create the signal pipe");
  ::fcntl(g_pipe[1], F_SETFL, O_NONBLOCK);
  std::thread(watchdog, grace).detach();
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGINT);
  sigaddset(&sa.sa_mask, SIGTERM);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

void exit_cancelled(int signo) {
  if (g_exiting.exchange(true)) {
    while (true) ::pause();  // another thread is ending the process
  }
  // A Cancelled without a signal (a commit refused by abandon_temporaries()) ends the run
  // that the token's signal cancelled.
  if (signo == 0 && g_token) signo = g_token->signal();
  std::string msg = signo ? "ckptbridge: cancelled (signal " + std::to_string(signo) + "); no partial output left\n"
                          : std::string("ckptbridge: cancelled; no partial output left\n");
  ssize_t ignored = ::write(2, msg.data(), msg.size());
  (void)ignored;
  ::_exit(signo ? 128 + signo : 130);
}

}  // namespace ckb
