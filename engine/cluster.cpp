// Implementation of engine/cluster.h: the single-process cluster and, in builds with MPI,
// the MPI one (nonblocking collectives polled so that cancellation is noticed).
#include "engine/cluster.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <thread>

#include "core/errors.h"

#ifdef CKB_WITH_MPI
// The C API only (Open MPI's mpi.h otherwise pulls in its deprecated C++ bindings).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace ckb::engine {
namespace {

Cluster* g_cluster = nullptr;  // for the exit handler

int env_int(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : -1;
}

// The launch size the environment announces, -1 when not launched (Open MPI, PMIx, PMI/srun).
int launched_size() {
  for (const char* n : {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE", "SLURM_NTASKS"})
    if (int s = env_int(n); s > 0 && (std::string(n) != "SLURM_NTASKS" || std::getenv("PMI_RANK") || std::getenv("PMIX_RANK")))
      return s;
  if (std::getenv("PMIX_RANK") || std::getenv("PMI_RANK")) return 0;  // launched; size from MPI
  return -1;
}

class SingleProcess final : public Cluster {
 public:
  explicit SingleProcess(std::string kind = "single") : kind_(std::move(kind)) {}
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string kind() const override { return kind_; }
  std::vector<std::string> allgather(const std::string& mine, const CancelToken*) override { return {mine}; }
  std::string broadcast(const std::string& value, const CancelToken*) override { return value; }

 private:
  std::string kind_;
};

// A launch of several processes in a build without MPI: it knows its rank and size (for the
// message) but cannot talk to the others.
class Unconnected final : public Cluster {
 public:
  Unconnected(int rank, int size) : rank_(rank), size_(size) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string kind() const override { return "mpirun (no MPI in this build)"; }
  std::vector<std::string> allgather(const std::string&, const CancelToken*) override { refuse(); }
  std::string broadcast(const std::string&, const CancelToken*) override { refuse(); }

 private:
  [[noreturn]] static void refuse() {
    throw UsageError("launched as one of several MPI processes, but this ckptbridge was built without MPI; "
                     "rebuild with Open MPI installed (libopenmpi-dev) or run it without mpirun");
  }
  int rank_, size_;
};

#ifdef CKB_WITH_MPI
class Mpi final : public Cluster {
 public:
  Mpi() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {  // else the host program (mpi4py) owns MPI: it finalises, its error handler stays
      int provided = 0;
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
      // Errors come back as codes (turned into IoError) instead of aborting inside MPI.
      MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
      std::atexit(&Mpi::at_exit);
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string kind() const override { return "mpi"; }

  std::vector<std::string> allgather(const std::string& mine, const CancelToken* cancel) override {
    const int n = static_cast<int>(mine.size());
    std::vector<int> lengths(static_cast<std::size_t>(size_));
    MPI_Request req;
    check(MPI_Iallgather(&n, 1, MPI_INT, lengths.data(), 1, MPI_INT, MPI_COMM_WORLD, &req), "allgather");
    wait(req, cancel);
    std::vector<int> displs(lengths.size());
    long total = 0;
    for (std::size_t i = 0; i < lengths.size(); ++i) {
      displs[i] = static_cast<int>(total);
      total += lengths[i];
    }
    if (total > (1l << 30)) throw IoError("mpi", "allgather of " + std::to_string(total) + " bytes is too large");
    std::string all(static_cast<std::size_t>(total), '\0');
    check(MPI_Iallgatherv(mine.data(), n, MPI_CHAR, all.data(), lengths.data(), displs.data(), MPI_CHAR,
                          MPI_COMM_WORLD, &req),
          "allgatherv");
    wait(req, cancel);
    std::vector<std::string> out;
    for (std::size_t i = 0; i < lengths.size(); ++i)
      out.push_back(all.substr(static_cast<std::size_t>(displs[i]), static_cast<std::size_t>(lengths[i])));
    return out;
  }

  std::string broadcast(const std::string& value, const CancelToken* cancel) override {
    int n = static_cast<int>(value.size());
    MPI_Request req;
    check(MPI_Ibcast(&n, 1, MPI_INT, 0, MPI_COMM_WORLD, &req), "broadcast");
    wait(req, cancel);
    std::string out = rank_ == 0 ? value : std::string(static_cast<std::size_t>(n), '\0');
    check(MPI_Ibcast(out.data(), n, MPI_CHAR, 0, MPI_COMM_WORLD, &req), "broadcast");
    wait(req, cancel);
    return out;
  }

 private:
  static void check(int rc, const char* what) {
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    throw IoError("mpi", std::string(what) + " failed: " + std::string(msg, static_cast<std::size_t>(len)));
  }
  // Polls `req` to completion; a cancellation leaves the request behind (the process is
  // about to end, and MPI_Abort/the launcher ends the rest).
  void wait(MPI_Request& req, const CancelToken* cancel) {
    for (;;) {
      int done = 0;
      check(MPI_Test(&req, &done, MPI_STATUS_IGNORE), "wait");
      if (done) return;
      if (cancel && cancel->cancelled()) {
        stranded_ = true;
        cancel->throw_if_cancelled();
      }
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
  }
  static void at_exit();
  int rank_ = 0, size_ = 1;
};
#endif

Cluster* detect() {
  if (const char* v = std::getenv("CKB_MPI"); v && (std::string(v) == "off" || std::string(v) == "0"))
    return new SingleProcess("single (CKB_MPI=off)");
  const int size = launched_size();
  if (size < 0 || size == 1) return new SingleProcess();
#ifdef CKB_WITH_MPI
  return new Mpi();
#else
  int rank = env_int("OMPI_COMM_WORLD_RANK");
  if (rank < 0) rank = env_int("PMIX_RANK");
  if (rank < 0) rank = env_int("PMI_RANK");
  return new Unconnected(rank < 0 ? 0 : rank, size);
#endif
}

#ifdef CKB_WITH_MPI
void Mpi::at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (g_cluster && g_cluster->stranded()) MPI_Abort(MPI_COMM_WORLD, 2);
  else MPI_Finalize();
}
#endif

}  // namespace

Cluster& cluster() {
  static Cluster* c = g_cluster = detect();
  return *c;
}

Cluster::Section::Section(Cluster& c) : c_(c), uncaught_(std::uncaught_exceptions()) {}

Cluster::Section::~Section() {
  if (open_ && std::uncaught_exceptions() > uncaught_) c_.stranded_ = true;
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "?";
  return buf;
}

}  // namespace ckb::engine
