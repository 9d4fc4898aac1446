// The "msgpack" format: Flax msgpack checkpoints (flax.serialization.to_bytes) and the legacy
// Orbax aggregate `checkpoint` file. Detection: a msgpack map whose first key is a string.
#include <memory>

#include "formats/format.h"
#include "formats/msgpack/msgpack.h"
#include "io/file.h"

namespace ckb {

Format make_msgpack_format() {
  Format f;
  f.name = "msgpack";
  f.aliases = {"flax"};
  f.extensions = {".msgpack"};
  f.default_file_name = "checkpoint.msgpack";
  f.caps.non_tensor_leaves = true;
  f.description = "Flax msgpack (flax.serialization.to_bytes, legacy Orbax 'checkpoint'); read and write";
  f.detect = [](const std::string& path) {
    try {
      return looks_like_msgpack_file(*MappedFile::open(path));
    } catch (...) {
      return false;
    }
  };
  f.read = [](const std::string& path, const ReadOptions&) { return read_msgpack_file(path); };
  f.make_writer = [](const std::string& path, const WriteOptions&) { return make_msgpack_writer(path); };
  return f;
}

}  // namespace ckb
