// Registration of the Orbax format (formats/format.h): reader and writer.
#include "formats/format.h"
#include "io/file.h"
#include "formats/orbax/orbax_paths.h"
#include "formats/orbax/orbax_reader.h"
#include "formats/orbax/orbax_writer.h"

namespace ckb {

Format make_orbax_format() {
  Format f;
  f.name = "orbax";
  f.caps.non_tensor_leaves = true;
  f.caps.directory_output = true;
  f.caps.steps = true;
  // An item (its _METADATA at the top), never a step or a CheckpointManager root.
  f.replaceable = [](const std::string& dir, const std::vector<std::string>&) { return path_exists(dir + "/_METADATA"); };
  f.write_options = {
      {"step", OptionSpec::Kind::Int, {}, "the output is a CheckpointManager root; write step N into it"},
      {"item", OptionSpec::Kind::Text, {},
       "item name inside the step (default: the source's item, else 'default'; openpi uses 'params', MaxText 'items')"},
      {"zarr-version", OptionSpec::Kind::Choice, {"2", "3"},
       "zarr 2 (Orbax's default) or 3 (sharding_indexed + crc32c, as MaxText writes); default: the source's when it is "
       "Orbax, else 2"},
      {"no-ocdbt", OptionSpec::Kind::Flag, {}, "one directory per array instead of an OCDBT database"},
      {"compression", OptionSpec::Kind::Choice, {"zstd", "none"}, "zstd (default, as Orbax) or none"},
      {"chunk-size", OptionSpec::Kind::Size, {}, "split arrays along axis 0 into chunks of at most this size"},
  };
  f.bytes_only_dtypes = {DType::F8_E4M3FNUZ, DType::F8_E5M2FNUZ};  // TensorStore's float8_e4m3fnuz, float8_e5m2fnuz
  f.description = "Orbax PyTree checkpoint directory (OCDBT or per-array zarr v2/v3; item, step or manager root)";
  f.detect = [](const std::string& path) {
    try {
      return orbax::resolve_path(path, ReadOptions{}).has_value();
    } catch (...) {
      return false;
    }
  };
  f.read = [](const std::string& path, const ReadOptions& opts) { return orbax::read_checkpoint(path, opts); };
  f.make_writer = [](const std::string& path, const WriteOptions& opts) { return orbax::make_writer(path, opts); };
  return f;
}

}  // namespace ckb
