// ckptbridge command-line entry point: parses the subcommand and maps errors to exit
// codes (0 success, 1 usage, 2 bad data / I/O / mapping) with a one-line message on stderr.
#include <malloc.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <map>

#include "cli/commands.h"
#include "cli/pipeline.h"
#include "core/errors.h"
#include "engine/signals.h"

ckb::CancelToken& ckb::cli::cancel_token() {
  static auto* token = new ckb::CancelToken;  // never destroyed: the signal watchdog outlives main
  return *token;
}

int main(int argc, char** argv) {
  // Transform blocks and decoded chunks are tens of MiB each and are allocated and freed over
  // and over. glibc serves those with fresh mmap()s (above its 32 MiB dynamic threshold),
  // so every block paid for zeroed page faults: half the time of a LoRA merge. Keep them in
  // the heap and let freed memory be reused; the executor's window bounds how much is live.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
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
  {
    auto* sub = app.add_subcommand("diff", "Compare two checkpoints in any formats, exactly or within tolerances");
    runners[sub] = ckb::cli::add_diff(*sub);
  }
  {
    auto* sub = app.add_subcommand("merge-lora", "Fold LoRA adapters into base weights exactly as the training runtime applied them");
    runners[sub] = ckb::cli::add_merge_lora(*sub);
  }
  {
    auto* sub = app.add_subcommand("adapt", "Adapt a Flax checkpoint between the Linen and NNX layouts (params or full training state)");
    runners[sub] = ckb::cli::add_adapt(*sub);
  }
  for (auto* sub : app.get_subcommands({})) ckb::cli::add_source_options(*sub);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 1;
  }
  ckb::cancel_on_signals(ckb::cli::cancel_token());
  try {
    for (auto& [sub, run] : runners)
      if (sub->parsed()) return run();
    return 1;
  } catch (const ckb::Cancelled& e) {
    std::cout.flush();
    ckb::exit_cancelled(e.signal());
  } catch (const ckb::Error& e) {
    std::cerr << "ckptbridge: error: " << e.what() << "\n";
    return e.exit_code();
  } catch (const std::bad_alloc&) {
    std::cerr << "ckptbridge: error: out of memory\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "ckptbridge: internal error: " << e.what() << "\n";
    return 3;
  }
}
