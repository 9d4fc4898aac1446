// Torch test data shared by the torch writer tests and the interop tool
// (tests/torch_interop.cpp): fixture paths and a checkpoint holding every kind of leaf.
#pragma once

#include <string>

#include "core/tree.h"

namespace ckb::test {

// The .pt file of a torch fixture directory (torch_zip, torch_legacy, torch_with_extras).
std::string fixture_file(const std::string& dir);

// Every dtype, 0-d/rank-5/empty tensors, parameters, and every kind of non-tensor leaf.
Checkpoint all_kinds_checkpoint();

}  // namespace ckb::test
