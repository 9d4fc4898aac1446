// ckptbridge command-line entry point: parses the subcommand and maps errors to exit
// codes (0 success, 1 usage, 2 bad data / I/O / mapping; diff: 1 differ, 2 usage and other
// trouble) with a one-line message on stderr.
#include <malloc.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>

#include "cli/commands.h"
#include "cli/completion.h"
#include "cli/options.h"
#include "cli/progress.h"
#include "engine/api.h"

int main(int argc, char** argv) {
  // Transform blocks and decoded chunks are tens of MiB each and are allocated and freed over
  // and over. glibc serves those with fresh mmap()s (above its 32 MiB dynamic threshold),
  // so every block paid for zeroed page faults: half the time of a LoRA merge. Keep them in
  // the heap and let freed memory be reused; the executor's window bounds how much is live.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  // One of several MPI processes (mpirun -np N): rank 0 speaks for all (engine/api.h process_group).
  if (ckb::engine::process_group().rank > 0) {
    if (!std::freopen("/dev/null", "w", stdout) || !std::freopen("/dev/null", "w", stderr)) return 2;
  }
  CLI::App app{"ckptbridge: move deep-learning checkpoints between frameworks and layouts, losslessly"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "ckptbridge 0.1.0");
  std::map<CLI::App*, ckb::cli::Runner> runners;
  {
    auto* sub = app.add_subcommand("inspect", "List a checkpoint's tensors and leaves");
    runners[sub] = ckb::cli::add_inspect(*sub);
  }
  {
    auto* sub = app.add_subcommand("convert", "Convert a checkpoint to another format");
    runners[sub] = ckb::cli::add_convert(*sub);
  }
  {
    auto* sub = app.add_subcommand("plan", "Resolve a recipe against a checkpoint and print the ledger (reads no tensor data)");
    runners[sub] = ckb::cli::add_plan(*sub);
  }
  CLI::App* diff = app.add_subcommand("diff", "Compare two checkpoints in any formats, exactly or within tolerances");
  runners[diff] = ckb::cli::add_diff(*diff);
  {
    auto* sub = app.add_subcommand("merge-lora", "Fold LoRA adapters into base weights exactly as the training runtime applied them");
    runners[sub] = ckb::cli::add_merge_lora(*sub);
  }
  {
    auto* sub = app.add_subcommand("adapt", "Adapt a Flax checkpoint between the Linen and NNX layouts (params or full training state)");
    runners[sub] = ckb::cli::add_adapt(*sub);
  }
  {
    auto* sub = app.add_subcommand("completion", "Print a bash or zsh completion script: eval \"$(ckptbridge completion bash)\"");
    runners[sub] = ckb::cli::add_completion(*sub, app);
  }
  for (auto& [sub, run] : runners)
    if (sub->get_name() != "completion") ckb::cli::add_remote_options(*sub);
  // diff exits as cmp(1)/diff(1) do: 1 means "differ", so its usage errors are 2 (trouble).
  auto usage_rc = [&] { return diff->parsed() ? 2 : 1; };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (app.get_subcommands().empty() && ckb::cli::report_unknown_command(app, argc, argv, std::cerr)) return 1;
    int rc = app.exit(e);
    return rc == 0 ? 0 : usage_rc();
  }
  ckb::cancel_on_signals(ckb::cli::cancel_token());
  try {
    ckb::cli::apply_remote_options();
    for (auto& [sub, run] : runners)
      if (sub->parsed()) return run();
    return 1;
  } catch (const ckb::Cancelled& e) {
    std::cout.flush();
    ckb::exit_cancelled(e.signal());
  } catch (const ckb::Error& e) {
    std::cerr << "ckptbridge: error: " << e.what() << "\n";
    return e.kind() == ckb::ErrorKind::Usage ? usage_rc() : e.exit_code();
  } catch (const std::filesystem::filesystem_error& e) {
    std::cerr << "ckptbridge: error: " << e.what() << "\n";
    return 2;
  } catch (const std::bad_alloc&) {
    std::cerr << "ckptbridge: error: out of memory\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "ckptbridge: internal error: " << e.what() << "\n";
    return 3;
  }
}
