// A data-only interpreter for the pickle subset that torch checkpoints use.
//
// Hand-written on purpose: Python's pickle is a small stack machine whose GLOBAL/REDUCE
// opcodes can call arbitrary functions. This interpreter never executes anything; it
// builds a small value model and only "applies" an allowlist of torch rebuild functions
// (tensor v2/v3, parameter, OrderedDict, storage classes, dtype objects, _codecs.encode
// for protocol-2 bytes) by recording what they would have produced. Any other GLOBAL is
// refused when it is read, with the module.name and byte offset in the message.
//
// Accepted opcodes: the set torch.load(weights_only=True) allows (research notes §6.3),
// the memo opcodes the legacy format needs, and protocol 3-5 opcodes that are harmless
// in a data-only model (FRAME, MEMOIZE, SHORT_BINUNICODE, BINUNICODE8, (SHORT_)BINBYTES,
// STACK_GLOBAL resolved through the same allowlist). Anything else is a FormatError naming
// the file, the opcode and its offset.
//
// Resource bounds: every length is checked against the remaining bytes, the mark stack and
// container nesting are capped (kMaxDepth), the memo is capped (kMaxMemo), and all values
// live in an Arena owned by the caller (so self-referencing containers built via the memo
// cannot leak). The interpreter runs in time linear in the input.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"

namespace ckb::pickle {

inline constexpr std::size_t kMaxDepth = 1000;
inline constexpr std::size_t kMaxMemo = 1u << 22;
inline constexpr std::size_t kMaxValues = 1u << 24;

enum class Kind : std::uint8_t {
  None, Bool, Int, Float, Str, Bytes,
  Tuple, List, Dict,
  Global,       // an allowlisted module.name (callable, storage class or dtype object)
  Storage,      // a storage reference produced by BINPERSID
  Tensor,       // a tensor produced by an allowlisted rebuild function
  Unsupported,  // a known torch object ckptbridge cannot represent (quantized, sparse, set...)
};

// What an allowlisted GLOBAL denotes.
enum class GlobalRole : std::uint8_t {
  OrderedDict, RebuildTensor, RebuildTensorV2, RebuildTensorV3, RebuildParameter,
  RebuildParameterWithState, CodecsEncode, TorchSize, StorageClass, DTypeObject,
  UnsupportedCallable,  // known torch function for an unsupported tensor kind
};

struct StorageRef {
  std::string type_name;                // "torch.FloatStorage", "torch.storage.UntypedStorage"
  std::optional<DType> dtype;           // element type; nullopt for UntypedStorage (bytes)
  std::string unsupported;              // non-empty for quantized storages etc.
  std::string key;                      // record key ("0") or legacy root key
  std::string location;                 // "cpu", "cuda:0"
  std::int64_t numel = 0;               // elements of dtype (bytes when untyped)
  // Legacy format: the storage is a slice of root storage `key`.
  struct View {
    std::string key;
    std::int64_t offset = 0;  // elements
    std::int64_t size = 0;    // elements
  };
  std::optional<View> view;
  std::size_t element_size() const { return dtype ? dtype_size(*dtype) : 1; }
};

struct TensorRef {
  std::shared_ptr<const StorageRef> storage;
  DType dtype = DType::F32;
  std::int64_t storage_offset = 0;  // elements
  Shape shape;
  std::vector<std::int64_t> stride;  // elements
  bool requires_grad = false;
  bool parameter = false;
};

struct Value {
  Kind kind = Kind::None;
  bool b = false;
  std::int64_t i = 0;
  double f = 0;
  std::string s;  // Str, Bytes, Global ("module.name"), Unsupported (reason)
  std::vector<Value*> items;                            // Tuple, List
  std::vector<std::pair<Value*, Value*>> entries;       // Dict, in insertion order
  std::unordered_map<std::string, std::size_t> index;   // Dict: str/int key -> entries slot
  bool ordered = false;                                 // Dict: collections.OrderedDict
  GlobalRole role = GlobalRole::UnsupportedCallable;    // Global
  std::optional<DType> dtype;                           // Global: storage class / dtype object
  std::string unsupported;                              // Global: why it cannot be represented
  std::shared_ptr<const StorageRef> storage;            // Storage
  std::shared_ptr<const TensorRef> tensor;              // Tensor
  std::size_t depth = 1;                                // nesting depth at creation
};

// Owns every Value built while unpickling (one arena may serve several pickles).
class Arena {
 public:
  Value* make(Kind k);
  std::size_t size() const { return values_.size(); }

 private:
  std::vector<std::unique_ptr<Value>> values_;
};

// Interprets one pickle (PROTO ... STOP) starting at `pos` of `data`.
class Unpickler {
 public:
  // `path` and `base` (absolute file offset of data[0]) are used in error messages.
  Unpickler(std::span<const std::byte> data, std::string path, std::uint64_t base, Arena& arena);
  // Runs until STOP and returns the top of the stack. Afterwards pos() is just past STOP.
  Value* load();
  std::size_t pos() const { return pos_; }
  void set_pos(std::size_t p) { pos_ = p; }
  // Every storage reference BINPERSID produced so far (all load() calls), in order.
  const std::vector<std::shared_ptr<const StorageRef>>& storages() const { return storages_; }

 private:
  [[noreturn]] void fail(const std::string& msg, std::size_t at) const;
  Value* make(Kind k);
  std::span<const std::byte> take(std::size_t n, const char* what);
  std::uint8_t u8(const char* what);
  std::string line(const char* what);
  Value* pop(std::size_t op_at);
  Value* top(std::size_t op_at);
  void push(Value* v, std::size_t op_at);
  std::vector<Value*> pop_mark(std::size_t op_at);
  Value* make_tuple(std::vector<Value*> items);
  Value* make_str(std::string_view bytes, std::size_t at);
  Value* resolve_global(const std::string& module, const std::string& name, std::size_t at);
  Value* reduce(Value* callable, Value* args, std::size_t at);
  Value* persistent_load(Value* pid, std::size_t at);
  void set_item(Value* dict, Value* key, Value* value, std::size_t at);

  std::span<const std::byte> data_;
  std::string path_;
  std::uint64_t base_;
  Arena& arena_;
  std::size_t pos_ = 0;
  std::vector<Value*> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint32_t, Value*> memo_;
  std::vector<std::shared_ptr<const StorageRef>> storages_;
};

// Maps a "torch.<name>" dtype object name ("float32", "bfloat16", "float8_e4m3fn") to a
// DType; nullopt for torch dtypes ckptbridge cannot hold.
std::optional<DType> torch_dtype_from_name(std::string_view name);
// The "torch.<X>Storage" class name for a dtype, or nullopt for dtypes that torch stores
// as UntypedStorage + _rebuild_tensor_v3 (uint16/32/64, float8).
std::optional<std::string_view> torch_storage_class(DType t);
// The torch dtype object name for a DType ("float32").
std::string_view torch_dtype_name(DType t);

}  // namespace ckb::pickle
