// engine::run() as one rank of an MPI launch (engine/cluster.h, size > 1).
//
// Every rank plans the same job from metadata, shares out the tensor slots with
// partition_slots() (whole output files stay with one rank: formats/cooperative.h groups)
// and reads and writes only its share; the output is written in the format's multi-writer
// form (formats/cooperative.h) inside one temporary folder made by rank 0, which publishes
// it after every rank's part is complete. A format without one (a single file) is written by
// rank 0 alone, the others idle (noted in the report).
//
// Agreements: after planning, after rank 0 made the folder, after the others joined it,
// after every rank wrote its part, and after publishing, all ranks exchange whether they
// succeeded. Any rank failing makes every rank throw (the failing rank its own error, the
// others an error of the same kind naming the rank and its message), so no output becomes
// visible and every writer's destructor removes its temporaries; rank 0's removes the
// folder once the others have left it. A rank whose writing fails also leaves a marker file
// in the shared folder, which the others poll for (every 50 ms) while they write: they stop
// within about a chunk instead of finishing their share first.
//
// Threads: a job that leaves them open (Job::threads = 0) uses, per rank, the CPUs mpirun bound
// the rank to, or else the host's CPUs divided between the ranks on that host.
//
// Report: rank 0's holds the whole run: every tensor's stats and casts from the rank that
// wrote it, the summary over all ranks, the ledger gathered from the per-rank ledgers (each
// source and target accounted for by exactly one rank, checked), and `ranks`: per rank its
// host, tensors, bytes, seconds and bandwidth, and the slowest rank. Other ranks return
// their own share's report.
//
// Test hooks (environment, read by every rank): CKB_TEST_FAIL_RANK=k makes rank k fail
// (IoError) after its first written piece; CKB_TEST_KILL_RANK=k makes it SIGKILL itself there.
#pragma once

#include "engine/api.h"

namespace ckb::engine {

Report run_shared(const Job& job, const RunOptions& opts);

}  // namespace ckb::engine
