// Ctrl-C and `timeout` for a command-line process: SIGINT and SIGTERM cancel the run through
// a CancelToken, so it stops within about a chunk and its temporaries are removed by the
// normal unwinding (io/output.h). A watchdog thread makes sure the process still ends clean
// when it does not: after a second signal, or when the run has not ended `grace` after the
// first, it removes every live temporary (abandon_temporaries()) and exits 128 + signal.
// When nothing is being written (no live temporary) it exits at once. The signal handler
// itself only stores into atomics and write()s to a pipe (async-signal-safe).
#pragma once

#include <chrono>

#include "core/cancel.h"

namespace ckb {

// Installs the handlers (once per process; `token` must outlive it) and starts the watchdog.
void cancel_on_signals(CancelToken& token, std::chrono::milliseconds grace = std::chrono::seconds(10));

// Ends the process after a cancellation by `signo` (0: the signal the token received, if
// any): one line on stderr ("ckptbridge: cancelled (signal N); no partial output left") and
// _exit(128 + signo, 130 without a signal). Safe to call from
// several threads at once: the first caller prints and exits, the others wait for that.
[[noreturn]] void exit_cancelled(int signo);

}  // namespace ckb
