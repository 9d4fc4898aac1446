// The format layer's contract: how a checkpoint format is detected, read and written.
//
// Reading: `read` builds a Checkpoint whose tensor leaves are lazy (no tensor bytes are
// touched until a TensorSource is read). Detection sniffs content, never file names.
//
// Writing is split so that a conversion can stream and, later, be sharded across
// processes: the writer first sees the whole target layout (metadata only), computes where
// every tensor goes, then accepts tensor bytes in any order and from any thread at
// (slot, byte offset) and finally publishes the output atomically. Slots are the tensor
// leaves of the layout in visit_leaves() order.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/tree.h"

namespace ckb {

struct ReadOptions {
  std::optional<std::int64_t> step;  // Orbax CheckpointManager root: which step (default latest)
  // zarr (bare or inside Orbax): a missing chunk is a FormatError naming the array and the
  // chunk key, instead of reading as the fill value (counted: TensorSource::missing_chunks()).
  bool strict_chunks = false;
};

// A write option a format takes. `name` is what users type: the CLI flag `--NAME` and the
// Python keyword (dashes as underscores). Values arrive as text and are checked against the
// spec (validate_write_options) before a writer is made: an unknown or malformed option is
// a UsageError naming the option and the format, never an exception from deep inside.
struct OptionSpec {
  enum class Kind { Flag, Int, Size, Choice, Text };
  std::string name;                  // "shard-size", "step", "item", "zarr-version", "compression", ...
  Kind kind = Kind::Text;
  std::vector<std::string> choices;  // Kind::Choice
  std::string help;                  // one line, without the format's name
};
// Option values as typed: name -> text ("1" for a flag that is set).
using OptionValues = std::map<std::string, std::string>;

// What a format's output is, so that callers ask instead of comparing names.
struct Capabilities {
  bool writes_output = true;       // false: reads everything, writes nothing (discard)
  bool non_tensor_leaves = false;  // stores None / numbers / strings / empty containers
  bool directory_output = false;   // the output is a folder (orbax, zarr; safetensors when sharded)
  bool string_metadata = false;    // a string -> string metadata map (safetensors __metadata__)
  bool steps = false;              // writes steps into CheckpointManager roots (orbax `step`)
};

struct WriteOptions {
  OptionValues options;                          // validated against Format::write_options
  std::map<std::string, std::string> metadata;   // string_metadata formats
  bool overwrite = false;                        // steps: replace an existing step
};

// Typed access to validated options (UsageError naming the option on malformed text).
bool option_flag(const OptionValues& v, const std::string& name);
std::optional<std::int64_t> option_int(const OptionValues& v, const std::string& name);
std::optional<std::uint64_t> option_size(const OptionValues& v, const std::string& name);  // "5GB", "500MiB", "1048576"
std::optional<std::string> option_text(const OptionValues& v, const std::string& name);

class Writer {
 public:
  virtual ~Writer() = default;  // without commit(): removes everything written
  // The full target tree. Tensor leaves give dtype/shape; their sources are not read.
  // Throws MappingError when the format cannot hold the tree (names the offending leaves).
  virtual void begin(const Node& layout) = 0;
  // Thread-safe: bytes [offset, offset + data.size()) of tensor slot `slot`.
  virtual void write(std::size_t slot, std::uint64_t offset, std::span<const std::byte> data) = 0;
  // Every slot must have been fully written. Publishes the output (temp name -> final).
  virtual void commit() = 0;
  // Where byte `offset` of slot `slot` lands in its output file, for writers that store
  // tensor bytes verbatim at positions fixed in begin() (safetensors, .pt, .npy, .npz);
  // nullopt otherwise. Callers use it to lay out their buffers like the file (same offset
  // modulo the block size), so large writes go to the disk without a copy (io/direct_io.h).
  virtual std::optional<std::uint64_t> file_position(std::size_t slot, std::uint64_t offset) const {
    (void)slot;
    (void)offset;
    return std::nullopt;
  }
  // True when the writer consumes each tensor's bytes front to back (it streams them into a
  // compressor): a caller should then write a tensor from one thread, in order; ranges that
  // arrive ahead of their turn are accepted but held in memory until then.
  virtual bool streams_in_order() const { return false; }
  // True when bytes written ahead of the ones before them in the file cost memory until that
  // gap is filled (an output streamed to object storage in parts, io/remote_output.h): a
  // caller should then write the tensors in slot order, which is file order for such writers.
  virtual bool prefers_file_order() const { return false; }
};

struct Format {
  std::string name;         // "safetensors", "torch", "npy", "npz", "msgpack", "orbax", "zarr"
  std::vector<std::string> aliases;     // other names users type: "pt", "pytorch" for torch
  std::vector<std::string> extensions;  // output file extensions naming it: ".pt", ".pth", ...
  std::string default_file_name;        // inside an output folder: "model.safetensors"; "" = the folder itself
  std::string description;  // one line for --help
  Capabilities caps;
  std::vector<OptionSpec> write_options;
  // Cheap content sniffing; must not throw for inputs of other formats.
  std::function<bool(const std::string& path)> detect;
  std::function<Checkpoint(const std::string& path, const ReadOptions&)> read;
  // Null when the format is read-only. The registered formats (formats(), format_by_name)
  // validate the options (validate_write_options) before calling it.
  std::function<std::unique_ptr<Writer>(const std::string& path, const WriteOptions&)> make_writer;
  // For folder outputs: whether an existing folder holds only what this writer produces there,
  // so that --overwrite may replace it as a whole (a folder holding anything else is never
  // replaced; `sidecars`: file names a profile writes beside the weights, allowed too). Null:
  // the folder must be detected as this format.
  std::function<bool(const std::string& folder, const std::vector<std::string>& sidecars)> replaceable;
  // The bytes-only dtypes (core/dtype.h) the writer stores as what they are; a tensor of any
  // other bytes-only dtype is refused before anything is written (check_bytes_only_dtypes).
  std::vector<DType> bytes_only_dtypes;
};

// UsageError when `values` holds an option `fmt` does not take (naming the formats that do)
// or a value its spec rejects.
void validate_write_options(const Format& fmt, const OptionValues& values);

// All known formats, in detection order.
const std::vector<Format>& formats();
// By name or alias, case-insensitive; UsageError listing the known names if unknown.
const Format& format_by_name(const std::string& name);
// FormatError naming the path if nothing matches (see throw_unrecognised).
const Format& detect_format(const std::string& path);
// Why no format claims `path`: IoError "no such file or directory" / "cannot be opened";
// FormatError when it is, or a directory holds, Git LFS pointers; else FormatError "not a
// checkpoint format ckptbridge recognises".
[[noreturn]] void throw_unrecognised(const std::string& path);
// The format an output path's extension names (Format::extensions: "x.safetensors" ->
// "safetensors", ".pt"/".pth"/".bin"/".ckpt" -> "torch", ".npz", ".npy", ".msgpack"); "" when
// the extension says nothing.
std::string format_from_extension(const std::string& path);

// MappingError naming the first tensor of `layout` whose dtype is bytes-only and not in
// fmt.bytes_only_dtypes.
void check_bytes_only_dtypes(const Node& layout, const Format& fmt);

// detect + read.
Checkpoint read_checkpoint(const std::string& path, const ReadOptions& opts = {});

// Streams every tensor of `ck` into `fmt`'s writer at `dst` using `threads` workers
// (0 = hardware concurrency). Contiguous sources are written zero-copy; others through a
// bounded chunk buffer per worker. Implemented by the executor (engine/execute.h), which
// also offers a memory window, progress and statistics.
void write_checkpoint(const Checkpoint& ck, const std::string& dst, const Format& fmt,
                      const WriteOptions& opts = {}, unsigned threads = 0);

// Each format's factory (defined in formats/<name>/).
Format make_safetensors_format();
Format make_torch_format();
Format make_npy_format();
Format make_npz_format();
Format make_msgpack_format();
Format make_orbax_format();
Format make_zarr_format();
Format make_discard_format();

}  // namespace ckb
