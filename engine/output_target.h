// Where a job writes and whether it may: the output guards of engine/api.h, in one place.
//
// resolve_output() picks the format (the job's, else the path's extension; a folder gets
// safetensors) and the final path (a folder — existing, or ending in '/' — receives the
// format's natural file name inside it; folder formats write the folder itself), and
// refuses, before anything is read or written:
//  - an extension that names another format than the one asked for (`--to torch x.safetensors`);
//  - an output that is, or contains, one of the inputs;
//  - an existing output without `overwrite`; with it, a folder that is not a checkpoint of
//    the format being written (it is never emptied) — steps outputs (orbax `step`) write
//    into an existing root and leave the step check to the writer;
//  - an existing sidecar (e.g. config.json) the user did not ask to replace;
//  - a folder that a profile completes into a model folder (sidecars) holding any file that
//    this output does not write (with or without --overwrite).
#pragma once

#include <string>
#include <vector>

#include "engine/api.h"

namespace ckb::engine {

struct OutputTarget {
  const Format* format = nullptr;
  std::string path;    // what the writer gets
  std::string folder;  // where sidecars go: the folder holding `path` (or `path` for folder outputs)
};

OutputTarget resolve_output(const OutputSpec& spec);

// The guards that need the inputs and the plan (sizes, sidecars). `inputs`: every path read.
void check_output(const OutputTarget& out, const OutputSpec& spec, const std::vector<std::string>& inputs,
                  const std::vector<std::string>& sidecars);

// Creates the folder the output goes into (every format, the same way).
void prepare_output_folder(const OutputTarget& out);

}  // namespace ckb::engine
