// The ckptbridge subcommands. Each registers its options on a CLI11 app and returns the
// function that runs it (returning the process exit status).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

#include "core/cancel.h"

namespace ckb::cli {

using Runner = std::function<int()>;

// The process's cancellation token, set by SIGINT/SIGTERM (engine/signals.h).
CancelToken& cancel_token();

Runner add_inspect(CLI::App& app);
Runner add_convert(CLI::App& app);
Runner add_plan(CLI::App& app);
Runner add_diff(CLI::App& app);
Runner add_merge_lora(CLI::App& app);
Runner add_adapt(CLI::App& app);

}  // namespace ckb::cli
