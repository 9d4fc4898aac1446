// The part shared by convert, plan and diff: read the source, pick the recipe (identity by
// default, --reverse to invert it), resolve the plan against the source's metadata and an
// optional expected target layout (--expect).
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tree.h"
#include "transform/lora.h"
#include "transform/plan.h"
#include "transform/recipe.h"

namespace ckb::cli {

struct PipelineOptions {
  std::string recipe;
  bool reverse = false;
  std::string expect;
  std::vector<std::string> sizes;  // name=value
  std::int64_t step = -1;
  // --recipe openpi: LoRA configuration (openpi checkpoints do not store alpha)
  std::string variant, openpi_config;
};

struct Pipeline {
  Checkpoint source;
  // --recipe openpi (forward): the LoRA modules merged before the layout recipe.
  bool openpi = false;
  std::vector<LoraGroup> openpi_merged;
  std::unique_ptr<Checkpoint> expect;
  Recipe recipe;
  Plan plan;
};

void add_pipeline_options(CLI::App& app, PipelineOptions& o);
Checkpoint open_checkpoint(const std::string& path, std::int64_t step);
Pipeline build_pipeline(const std::string& src, const PipelineOptions& o);

}  // namespace ckb::cli
