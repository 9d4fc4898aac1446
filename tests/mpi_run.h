// Running the ckptbridge binary under `mpirun` for the MPI tests (tests/mpi_*_test.cpp).
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <map>
#include <string>

#include "test_util.h"

namespace ckb::test {

// `mpirun --oversubscribe -np N ckptbridge ARGS` with `env` exported to every rank (-x). As
// root, Open MPI needs the two OMPI_ALLOW_RUN_AS_ROOT variables; harmless otherwise. In the
// sanitizer build, leaks inside the MPI libraries (allocated by MPI_Init, kept to exit) are
// suppressed (tests/lsan_mpi.supp); ckptbridge's own are still reported.
inline CliResult run_mpi(int np, const std::string& args, const std::map<std::string, std::string>& env = {}) {
  TempDir d;
  std::string vars = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 LSAN_OPTIONS=suppressions=" +
                     std::string(CKB_SOURCE_DIR) + "/tests/lsan_mpi.supp" +
                     // full stacks through the MPI libraries (built without frame pointers), and
                     // their plugins kept loaded, so that the suppressions can match them
                     " ASAN_OPTIONS=\"$ASAN_OPTIONS:fast_unwind_on_malloc=0\" OMPI_MCA_mca_base_component_disable_dlclose=1";
  std::string exports;
  for (const auto& [k, v] : env) {
    vars += " " + k + "=" + v;
    exports += " -x " + k;
  }
  const std::string cmd = vars + " timeout 120 " + std::string(CKB_MPIRUN) + " --oversubscribe -np " + std::to_string(np) +
                          exports + " " + CKB_CLI_PATH + " " + args + " >" + d / "out" + " 2>" + d / "err" + " </dev/null";
  const int rc = std::system(cmd.c_str());
  const int code = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + (WIFSIGNALED(rc) ? WTERMSIG(rc) : 0);
  return {code, read_file(d / "out"), read_file(d / "err")};
}

// The fixture the MPI tests convert: 50 tensors, 711 KiB.
inline std::string mpi_test_source() { return fixture("openpi_pi0_tiny_full/release/params"); }

}  // namespace ckb::test
