// The processes of one job launched together by MPI (`mpirun -np N`, `srun`): which one this
// is and the few collective operations a shared run needs (engine/shared_run.h). Only the
// engine uses it.
//
// Detection (once, on first use): a process is part of a launch when the launcher's
// environment says so (OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_SIZE); then, in a build with
// MPI (CKB_WITH_MPI), MPI is initialised (MPI_Init_thread, FUNNELED: only the thread that
// detected calls MPI) and finalised at exit. Otherwise, or when the launch has one process,
// this is a single process (rank 0 of 1) whose collectives return at once. A launch of
// several processes in a build without MPI is refused (UsageError) when a job runs.
// CKB_MPI=off (or 0) in the environment makes every process a single one even when launched
// (a script under mpirun that runs a job on some ranks only). When the host program has
// initialised MPI already (mpi4py), it is used as it is and left for the host to finalise.
//
// Collectives: every rank must call the same ones in the same order. They wait by polling
// (every ~0.5 ms), checking `cancel`, so a process asked to stop (SIGTERM from mpirun after
// another rank died, Ctrl-C) unwinds with Cancelled and removes its temporaries instead of
// hanging in MPI. A rank that dies is noticed by the launcher, which ends the whole job.
//
// Exit: a process that leaves while its peers may still wait for it (an exception escaped
// between two collectives: Section below) calls MPI_Abort at exit, so the launcher ends every
// rank instead of leaving them waiting; a normal exit finalises.
#pragma once

#include <string>
#include <vector>

#include "core/cancel.h"

namespace ckb::engine {

class Cluster {
 public:
  virtual ~Cluster() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "mpi", "single", or the launcher seen in a build without MPI ("mpirun (no MPI in this build)").
  virtual std::string kind() const = 0;
  // Every rank's `mine`, in rank order, on every rank.
  virtual std::vector<std::string> allgather(const std::string& mine, const CancelToken* cancel = nullptr) = 0;
  // Rank 0's `value` on every rank (others pass anything).
  virtual std::string broadcast(const std::string& value, const CancelToken* cancel = nullptr) = 0;
  void barrier(const CancelToken* cancel = nullptr) { allgather("", cancel); }

  // A stretch after which every rank must reach the same collective: when an exception
  // leaves it before done() (the peers would wait for this rank forever), the process aborts
  // the launch at exit (MPI_Abort) instead of finalising.
  class Section {
   public:
    explicit Section(Cluster& c);
    ~Section();
    void done() { open_ = false; }
    Section(const Section&) = delete;
    Section& operator=(const Section&) = delete;

   private:
    Cluster& c_;
    bool open_ = true;
    int uncaught_;
  };
  // Whether an exception left a Section (the exit path then aborts the launch).
  bool stranded() const { return stranded_; }

 protected:
  bool stranded_ = false;
};

// This process's cluster (detected once; never destroyed).
Cluster& cluster();

// Where this process runs, for reports: the host name.
std::string host_name();

}  // namespace ckb::engine
