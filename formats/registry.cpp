// The list of formats and the generic read/write drivers of formats/format.h.
#include "core/errors.h"
#include "formats/format.h"

namespace ckb {

const std::vector<Format>& formats() {
  // Order matters only where signatures overlap: npz and torch zips are both zip files; an
  // Orbax item holds zarr arrays, so orbax is tried before zarr.
  static const std::vector<Format> all = {
      make_orbax_format(),  make_zarr_format(),        make_safetensors_format(), make_torch_format(),
      make_npz_format(),    make_npy_format(),         make_msgpack_format(),
      make_discard_format(),
  };
  return all;
}

const Format& format_by_name(const std::string& name) {
  std::string known;
  for (const auto& f : formats()) {
    if (f.name == name) return f;
    known += (known.empty() ? "" : ", ") + f.name;
  }
  throw UsageError("unknown format '" + name + "' (known: " + known + ")");
}

const Format& detect_format(const std::string& path) {
  for (const auto& f : formats())
    if (f.detect && f.detect(path)) return f;
  throw_unrecognised(path);
}

std::string format_from_extension(const std::string& path) {
  auto dot = path.rfind('.');
  auto slash = path.rfind('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string ext = path.substr(dot);
  if (ext == ".safetensors") return "safetensors";
  if (ext == ".pt" || ext == ".pth" || ext == ".bin") return "torch";
  if (ext == ".npz") return "npz";
  if (ext == ".npy") return "npy";
  if (ext == ".msgpack") return "msgpack";
  return "";
}

Checkpoint read_checkpoint(const std::string& path, const ReadOptions& opts) {
  const Format& f = detect_format(path);
  if (!f.read) throw FormatError(path, "reading " + f.name + " is not implemented yet");
  Checkpoint ck = f.read(path, opts);
  ck.format = f.name;
  if (ck.path.empty()) ck.path = path;
  return ck;
}

// write_checkpoint() is implemented by the streaming executor (engine/execute.cpp).

}  // namespace ckb
