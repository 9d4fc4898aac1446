// Registers the torch format (torch.save zip and legacy checkpoints) with the format layer.
#include "formats/torch/torch_format.h"

namespace ckb {

Format make_torch_format() {
  Format f;
  f.name = "torch";
  f.aliases = {"pt", "pytorch", "pth"};
  f.extensions = {".pt", ".pth", ".bin", ".ckpt"};
  f.default_file_name = "model.pt";
  f.caps.non_tensor_leaves = true;
  f.write_options = {{"zip64", OptionSpec::Kind::Flag, {}, "write zip64 records even where 32-bit fields suffice"}};
  f.description = "PyTorch torch.save checkpoint (.pt/.pth/.bin; zip or legacy; weights-only pickle subset)";
  f.detect = [](const std::string& path) { return torch_format::detect(path); };
  f.read = [](const std::string& path, const ReadOptions&) { return torch_format::read(path); };
  f.make_writer = [](const std::string& path, const WriteOptions& opts) { return torch_format::make_writer(path, opts); };
  return f;
}

}  // namespace ckb
