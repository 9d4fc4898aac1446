// Registers the torch format (torch.save zip and legacy checkpoints) with the format layer.
#include "formats/torch/torch_format.h"

namespace ckb {

Format make_torch_format() {
  Format f;
  f.name = "torch";
  f.description = "PyTorch torch.save checkpoint (.pt/.pth/.bin; zip or legacy; weights-only pickle subset)";
  f.detect = [](const std::string& path) { return torch_format::detect(path); };
  f.read = [](const std::string& path, const ReadOptions&) { return torch_format::read(path); };
  f.make_writer = [](const std::string& path, const WriteOptions& opts) { return torch_format::make_writer(path, opts); };
  return f;
}

}  // namespace ckb
