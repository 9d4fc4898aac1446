// Implementation of formats/torch/pickle.h: the data-only pickle stack machine and the
// allowlist of torch globals it understands. Nothing here ever calls into Python or runs
// code named by the pickle; "calling" an allowlisted global records its result as a Value.
#include "formats/torch/pickle.h"

#include <algorithm>
#include <cstring>

#include "core/errors.h"

namespace ckb::pickle {
namespace {

constexpr std::size_t kMaxLine = 512;

// Opcode names, for messages about opcodes we refuse.
const char* opcode_name(std::uint8_t op) {
  switch (op) {
    case '(': return "MARK";
    case '.': return "STOP";
    case '0': return "POP";
    case '1': return "POP_MARK";
    case '2': return "DUP";
    case 'F': return "FLOAT";
    case 'I': return "INT";
    case 'J': return "BININT";
    case 'K': return "BININT1";
    case 'L': return "LONG";
    case 'M': return "BININT2";
    case 'N': return "NONE";
    case 'P': return "PERSID";
    case 'Q': return "BINPERSID";
    case 'R': return "REDUCE";
    case 'S': return "STRING";
    case 'T': return "BINSTRING";
    case 'U': return "SHORT_BINSTRING";
    case 'V': return "UNICODE";
    case 'X': return "BINUNICODE";
    case 'a': return "APPEND";
    case 'b': return "BUILD";
    case 'c': return "GLOBAL";
    case 'd': return "DICT";
    case '}': return "EMPTY_DICT";
    case 'e': return "APPENDS";
    case 'g': return "GET";
    case 'h': return "BINGET";
    case 'i': return "INST";
    case 'j': return "LONG_BINGET";
    case 'l': return "LIST";
    case ']': return "EMPTY_LIST";
    case 'o': return "OBJ";
    case 'p': return "PUT";
    case 'q': return "BINPUT";
    case 'r': return "LONG_BINPUT";
    case 's': return "SETITEM";
    case 't': return "TUPLE";
    case ')': return "EMPTY_TUPLE";
    case 'u': return "SETITEMS";
    case 'G': return "BINFLOAT";
    case 0x80: return "PROTO";
    case 0x81: return "NEWOBJ";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 0x85: return "TUPLE1";
    case 0x86: return "TUPLE2";
    case 0x87: return "TUPLE3";
    case 0x88: return "NEWTRUE";
    case 0x89: return "NEWFALSE";
    case 0x8a: return "LONG1";
    case 0x8b: return "LONG4";
    case 'B': return "BINBYTES";
    case 'C': return "SHORT_BINBYTES";
    case 0x8c: return "SHORT_BINUNICODE";
    case 0x8d: return "BINUNICODE8";
    case 0x8e: return "BINBYTES8";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x92: return "NEWOBJ_EX";
    case 0x93: return "STACK_GLOBAL";
    case 0x94: return "MEMOIZE";
    case 0x95: return "FRAME";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    default: return "unknown";
  }
}

std::string refusal(const std::string& full) {
  return "refusing GLOBAL '" + full +
         "': not one of the data-only torch globals this reader allows (loading it could execute code)";
}

std::string hex2(std::uint8_t v) {
  const char* d = "0123456789abcdef";
  return std::string("0x") + d[v >> 4] + d[v & 15];
}

// Well-formed UTF-8 (surrogate code points allowed, as Python's 'surrogatepass' does).
bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t n;
    std::uint32_t cp;
    if (c < 0x80) { ++i; continue; }
    if ((c & 0xE0) == 0xC0) n = 1, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) n = 2, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) n = 3, cp = c & 0x07;
    else return false;
    if (i + n >= s.size()) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF))) return false;
    i += n + 1;
  }
  return true;
}

struct DTypeName {
  const char* name;
  DType dtype;
};
constexpr DTypeName kTorchDTypes[] = {
    {"float64", DType::F64}, {"double", DType::F64},        {"float32", DType::F32},
    {"float", DType::F32},   {"float16", DType::F16},       {"half", DType::F16},
    {"bfloat16", DType::BF16}, {"float8_e4m3fn", DType::F8_E4M3}, {"float8_e5m2", DType::F8_E5M2},
    {"int64", DType::I64},   {"long", DType::I64},          {"int32", DType::I32},
    {"int", DType::I32},     {"int16", DType::I16},         {"short", DType::I16},
    {"int8", DType::I8},     {"uint64", DType::U64},        {"uint32", DType::U32},
    {"uint16", DType::U16},  {"uint8", DType::U8},          {"bool", DType::BOOL},
    {"complex64", DType::C64}, {"cfloat", DType::C64},      {"complex128", DType::C128},
    {"cdouble", DType::C128},
};
// torch dtypes that exist but that ckptbridge cannot represent.
constexpr const char* kUnsupportedTorchDTypes[] = {
    "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu", "float4_e2m1fn_x2", "complex32", "chalf",
    "qint8", "quint8", "qint32", "quint4x2", "quint2x4", "bits1x8", "bits2x4", "bits4x2", "bits8", "bits16",
    "int1", "int2", "int3", "int4", "int5", "int6", "int7", "uint1", "uint2", "uint3", "uint4", "uint5", "uint6",
    "uint7"};

struct StorageName {
  const char* name;
  DType dtype;
};
constexpr StorageName kStorageClasses[] = {
    {"DoubleStorage", DType::F64}, {"FloatStorage", DType::F32},   {"HalfStorage", DType::F16},
    {"BFloat16Storage", DType::BF16}, {"LongStorage", DType::I64}, {"IntStorage", DType::I32},
    {"ShortStorage", DType::I16},  {"CharStorage", DType::I8},     {"ByteStorage", DType::U8},
    {"BoolStorage", DType::BOOL},  {"ComplexFloatStorage", DType::C64}, {"ComplexDoubleStorage", DType::C128},
};
// torch.layout values other than strided, and torch.qscheme values (torch/csrc/utils/tensor_layouts.cpp,
// tensor_qschemes.cpp): as GLOBALs they mean a sparse or quantized tensor.
constexpr const char* kSparseLayouts[] = {"sparse_coo", "sparse_csr", "sparse_csc", "sparse_bsr", "sparse_bsc"};
constexpr const char* kQSchemes[] = {"per_tensor_affine", "per_channel_affine", "per_tensor_symmetric",
                                     "per_channel_symmetric", "per_channel_affine_float_qparams"};
constexpr const char* kQuantizedStorages[] = {"QInt8Storage", "QInt32Storage", "QUInt8Storage", "QUInt4x2Storage",
                                              "QUInt2x4Storage"};

std::string describe(const Value* v) {
  switch (v->kind) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::Str: return "str";
    case Kind::Bytes: return "bytes";
    case Kind::Tuple: return "tuple";
    case Kind::List: return "list";
    case Kind::Dict: return v->ordered ? "OrderedDict" : "dict";
    case Kind::Global: return "global " + v->s;
    case Kind::Storage: return "storage";
    case Kind::Tensor: return "tensor";
    case Kind::Unsupported: return "unsupported object (" + v->s + ")";
  }
  return "?";
}

}  // namespace

std::optional<DType> torch_dtype_from_name(std::string_view name) {
  for (const auto& d : kTorchDTypes)
    if (name == d.name) return d.dtype;
  return std::nullopt;
}

std::optional<std::string_view> torch_storage_class(DType t) {
  switch (t) {
    case DType::U16: case DType::U32: case DType::U64: case DType::F8_E4M3: case DType::F8_E5M2:
      return std::nullopt;
    default:
      break;
  }
  for (const auto& s : kStorageClasses)
    if (s.dtype == t) return std::string_view(s.name);
  return std::nullopt;
}

std::string_view torch_dtype_name(DType t) {
  for (const auto& d : kTorchDTypes)
    if (d.dtype == t) return d.name;  // first spelling is the canonical one
  return "?";
}

Value* Arena::make(Kind k) {
  if (values_.size() >= kMaxValues) throw FormatError("pickle", "more than 16M objects");
  values_.push_back(std::make_unique<Value>());
  values_.back()->kind = k;
  return values_.back().get();
}

Value* Unpickler::make(Kind k) {
  if (arena_.size() >= kMaxValues)
    fail("pickle builds more than " + std::to_string(kMaxValues) + " objects", pos_);
  return arena_.make(k);
}

Unpickler::Unpickler(std::span<const std::byte> data, std::string path, std::uint64_t base, Arena& arena)
    : data_(data), path_(std::move(path)), base_(base), arena_(arena) {}

void Unpickler::fail(const std::string& msg, std::size_t at) const {
  throw FormatError(path_, "pickle: " + msg + " (pickle offset " + std::to_string(at) + ")", base_ + at);
}

std::span<const std::byte> Unpickler::take(std::size_t n, const char* what) {
  if (n > data_.size() - pos_)
    fail(std::string("truncated ") + what + ": needs " + std::to_string(n) + " bytes, only " +
             std::to_string(data_.size() - pos_) + " left",
         pos_);
  auto s = data_.subspan(pos_, n);
  pos_ += n;
  return s;
}

std::uint8_t Unpickler::u8(const char* what) { return std::to_integer<std::uint8_t>(take(1, what)[0]); }

std::string Unpickler::line(const char* what) {
  std::size_t start = pos_;
  std::size_t limit = std::min(data_.size(), pos_ + kMaxLine);
  for (std::size_t i = pos_; i < limit; ++i) {
    if (data_[i] == std::byte{'\n'}) {
      std::string s(reinterpret_cast<const char*>(data_.data() + start), i - start);
      pos_ = i + 1;
      return s;
    }
  }
  fail(std::string("unterminated or overlong ") + what + " line", start);
}

void Unpickler::push(Value* v, std::size_t at) {
  if (v->depth > kMaxDepth) fail("objects nested deeper than " + std::to_string(kMaxDepth) + " levels", at);
  stack_.push_back(v);
}

Value* Unpickler::pop(std::size_t at) {
  std::size_t floor = marks_.empty() ? 0 : marks_.back();
  if (stack_.size() <= floor) fail("stack underflow", at);
  Value* v = stack_.back();
  stack_.pop_back();
  return v;
}

Value* Unpickler::top(std::size_t at) {
  std::size_t floor = marks_.empty() ? 0 : marks_.back();
  if (stack_.size() <= floor) fail("stack underflow", at);
  return stack_.back();
}

std::vector<Value*> Unpickler::pop_mark(std::size_t at) {
  if (marks_.empty()) fail("no MARK on the stack", at);
  std::size_t m = marks_.back();
  marks_.pop_back();
  std::vector<Value*> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
  stack_.resize(m);
  return items;
}

Value* Unpickler::make_tuple(std::vector<Value*> items) {
  Value* t = make(Kind::Tuple);
  std::size_t d = 0;
  for (auto* v : items) d = std::max(d, v->depth);
  t->depth = d + 1;
  t->items = std::move(items);
  return t;
}

Value* Unpickler::make_str(std::string_view bytes, std::size_t at) {
  if (!valid_utf8(bytes)) fail("string is not valid UTF-8", at);
  Value* v = make(Kind::Str);
  v->s = std::string(bytes);
  return v;
}

Value* Unpickler::resolve_global(const std::string& module, const std::string& name, std::size_t at) {
  const std::string full = module + "." + name;
  Value* g = make(Kind::Global);
  g->s = full;
  auto unsupported = [&](const std::string& why) {
    g->role = GlobalRole::UnsupportedCallable;
    g->unsupported = why;
    return g;
  };
  if (module == "collections" && name == "OrderedDict") {
    g->role = GlobalRole::OrderedDict;
    return g;
  }
  if (module == "torch._utils") {
    if (name == "_rebuild_tensor") g->role = GlobalRole::RebuildTensor;
    else if (name == "_rebuild_tensor_v2") g->role = GlobalRole::RebuildTensorV2;
    else if (name == "_rebuild_tensor_v3") g->role = GlobalRole::RebuildTensorV3;
    else if (name == "_rebuild_parameter") g->role = GlobalRole::RebuildParameter;
    else if (name == "_rebuild_parameter_with_state") g->role = GlobalRole::RebuildParameterWithState;
    else if (name == "_rebuild_qtensor") return unsupported("quantized tensors are not supported");
    else if (name == "_rebuild_sparse_tensor" || name == "_rebuild_sparse_csr_tensor")  // the latter: torch 1.10-1.13
      return unsupported("sparse tensors are not supported");
    else if (name == "_rebuild_meta_tensor_no_storage") return unsupported("meta tensors (no data) are not supported");
    else if (name == "_rebuild_nested_tensor") return unsupported("nested tensors are not supported");
    else if (name == "_rebuild_wrapper_subclass" || name == "_rebuild_device_tensor_from_numpy" ||
             name == "_rebuild_device_tensor_from_cpu_tensor")
      return unsupported("tensor kind " + full + " is not supported");
    else fail(refusal(full), at);
    return g;
  }
  // torch.layout pickles as _get_layout('torch.sparse_coo'); only sparse tensors carry one.
  if (module == "torch.serialization" && name == "_get_layout")
    return unsupported("sparse tensors are not supported (torch layout object)");
  if (module == "torch._tensor" && name == "_rebuild_from_type_v2")
    return unsupported("tensor subclasses (_rebuild_from_type_v2) are not supported");
  if (module == "_codecs" && name == "encode") {
    g->role = GlobalRole::CodecsEncode;
    return g;
  }
  if (module == "torch" && name == "Size") {
    g->role = GlobalRole::TorchSize;
    return g;
  }
  if ((module == "torch.storage" || module == "torch") && name == "UntypedStorage") {
    g->role = GlobalRole::StorageClass;
    return g;  // dtype stays nullopt: bytes
  }
  if (module == "torch") {
    for (const auto& s : kStorageClasses)
      if (name == s.name) {
        g->role = GlobalRole::StorageClass;
        g->dtype = s.dtype;
        return g;
      }
    for (const char* q : kQuantizedStorages)
      if (name == q) {
        g->role = GlobalRole::StorageClass;
        g->unsupported = "quantized tensors are not supported (storage " + full + ")";
        return g;
      }
    if (auto d = torch_dtype_from_name(name)) {
      g->role = GlobalRole::DTypeObject;
      g->dtype = d;
      return g;
    }
    for (const char* u : kUnsupportedTorchDTypes)
      if (name == u) {
        g->role = GlobalRole::DTypeObject;
        g->unsupported = name[0] == 'q' ? "quantized tensors are not supported (dtype " + full + ")"
                                        : "dtype " + full + " is not supported";
        return g;
      }
    // Layout and qscheme objects appear only inside sparse and quantized tensors' arguments.
    for (const char* l : kSparseLayouts)
      if (name == l) return unsupported("sparse tensors are not supported (layout " + full + ")");
    for (const char* q : kQSchemes)
      if (name == q) return unsupported("quantized tensors are not supported (qscheme " + full + ")");
    if (name == "device" || name == "Tensor" || name == "Counter")
      return unsupported(full + " objects are not supported in checkpoints read by ckptbridge");
  }
  if (module == "torch.nn.parameter" && name == "Parameter")
    return unsupported("torch.nn.parameter.Parameter via NEWOBJ is not supported");
  fail(refusal(full), at);
}

Value* Unpickler::persistent_load(Value* pid, std::size_t at) {
  if (pid->kind != Kind::Tuple || pid->items.size() < 5 || pid->items.size() > 6)
    fail("BINPERSID expects a ('storage', type, key, location, numel[, view]) tuple, got " + describe(pid), at);
  const auto& it = pid->items;
  if (it[0]->kind != Kind::Str || it[0]->s != "storage")
    fail("persistent id kind must be 'storage', got " + describe(it[0]), at);
  if (it[1]->kind != Kind::Global || it[1]->role != GlobalRole::StorageClass)
    fail("persistent id storage type must be a torch storage class, got " + describe(it[1]), at);
  auto st = std::make_shared<StorageRef>();
  st->type_name = it[1]->s;
  st->dtype = it[1]->dtype;
  st->unsupported = it[1]->unsupported;
  if (it[2]->kind == Kind::Str) st->key = it[2]->s;
  else if (it[2]->kind == Kind::Int) st->key = std::to_string(it[2]->i);
  else fail("storage key must be a string, got " + describe(it[2]), at);
  if (it[3]->kind != Kind::Str) fail("storage location must be a string, got " + describe(it[3]), at);
  st->location = it[3]->s;
  if (it[4]->kind != Kind::Int || it[4]->i < 0) fail("storage numel must be a non-negative int", at);
  st->numel = it[4]->i;
  if (it.size() == 6 && it[5]->kind != Kind::None) {
    const Value* vm = it[5];
    if (vm->kind != Kind::Tuple || vm->items.size() != 3 || vm->items[0]->kind != Kind::Str ||
        vm->items[1]->kind != Kind::Int || vm->items[2]->kind != Kind::Int || vm->items[1]->i < 0 ||
        vm->items[2]->i < 0)
      fail("storage view metadata must be (key, offset, size)", at);
    st->view = StorageRef::View{vm->items[0]->s, vm->items[1]->i, vm->items[2]->i};
  }
  Value* v = make(Kind::Storage);
  storages_.push_back(st);
  v->storage = std::move(st);
  return v;
}

void Unpickler::set_item(Value* dict, Value* key, Value* value, std::size_t at) {
  if (dict->kind != Kind::Dict) fail("SETITEM(S) on a " + describe(dict) + ", not a dict", at);
  std::string canon;
  if (key->kind == Kind::Str) canon = "s" + key->s;
  else if (key->kind == Kind::Int) canon = "i" + std::to_string(key->i);
  else if (key->kind == Kind::Bool) canon = std::string("i") + (key->b ? "1" : "0");
  if (!canon.empty()) {
    auto [pos, fresh] = dict->index.emplace(canon, dict->entries.size());
    if (!fresh) {
      dict->entries[pos->second].second = value;  // Python: a repeated key replaces the value
      dict->depth = std::max(dict->depth, value->depth + 1);
      return;
    }
  }
  dict->entries.emplace_back(key, value);
  dict->depth = std::max({dict->depth, key->depth + 1, value->depth + 1});
  if (dict->depth > kMaxDepth) fail("objects nested deeper than " + std::to_string(kMaxDepth) + " levels", at);
}

Value* Unpickler::reduce(Value* callable, Value* args, std::size_t at) {
  if (callable->kind != Kind::Global) fail("REDUCE on a " + describe(callable) + ", which is not callable", at);
  if (args->kind != Kind::Tuple) fail("REDUCE arguments must be a tuple, got " + describe(args), at);
  const auto& a = args->items;
  const std::string& fn = callable->s;
  auto unsupported = [&](const std::string& why) {
    Value* u = make(Kind::Unsupported);
    u->s = why;
    return u;
  };
  auto int_tuple = [&](const Value* v, const char* what) {
    std::vector<std::int64_t> out;
    if (v->kind != Kind::Tuple && v->kind != Kind::List) fail(fn + ": " + what + " must be a tuple of ints", at);
    for (const Value* e : v->items) {
      if (e->kind != Kind::Int) fail(fn + ": " + what + " must be a tuple of ints, found " + describe(e), at);
      if (e->i < 0) fail(fn + ": negative value " + std::to_string(e->i) + " in " + what, at);
      out.push_back(e->i);
    }
    return out;
  };
  switch (callable->role) {
    case GlobalRole::OrderedDict: {
      Value* d = make(Kind::Dict);
      d->ordered = true;
      if (a.empty()) return d;
      if (a.size() == 1 && (a[0]->kind == Kind::List || a[0]->kind == Kind::Tuple)) {
        for (Value* pair : a[0]->items) {
          if (pair->kind != Kind::Tuple || pair->items.size() != 2)
            fail("OrderedDict(...) items must be (key, value) pairs", at);
          set_item(d, pair->items[0], pair->items[1], at);
        }
        return d;
      }
      fail("unsupported OrderedDict(...) arguments", at);
    }
    case GlobalRole::RebuildTensor:
    case GlobalRole::RebuildTensorV2:
    case GlobalRole::RebuildTensorV3: {
      const bool v3 = callable->role == GlobalRole::RebuildTensorV3;
      const bool v1 = callable->role == GlobalRole::RebuildTensor;
      const std::size_t lo = v1 ? 4 : v3 ? 7 : 6;
      const std::size_t hi = v1 ? 4 : lo + 1;
      if (a.size() < lo || a.size() > hi)
        fail(fn + " takes " + std::to_string(lo) + (lo == hi ? "" : "-" + std::to_string(hi)) + " arguments, got " +
                 std::to_string(a.size()),
             at);
      if (a[0]->kind == Kind::Unsupported) return a[0];
      if (a[0]->kind != Kind::Storage) fail(fn + ": first argument must be a storage, got " + describe(a[0]), at);
      const auto& st = a[0]->storage;
      if (!st->unsupported.empty()) return unsupported(st->unsupported);
      auto t = std::make_shared<TensorRef>();
      t->storage = st;
      if (a[1]->kind != Kind::Int || a[1]->i < 0) fail(fn + ": storage offset must be a non-negative int", at);
      t->storage_offset = a[1]->i;
      t->shape = int_tuple(a[2], "size");
      t->stride = int_tuple(a[3], "stride");
      if (t->shape.size() != t->stride.size())
        fail(fn + ": size has " + std::to_string(t->shape.size()) + " dims but stride has " +
                 std::to_string(t->stride.size()),
             at);
      if (!v1) {
        if (a[4]->kind != Kind::Bool) fail(fn + ": requires_grad must be a bool, got " + describe(a[4]), at);
        t->requires_grad = a[4]->b;
      }
      if (v3) {
        const Value* d = a[6];
        if (d->kind != Kind::Global || d->role != GlobalRole::DTypeObject)
          fail(fn + ": dtype argument must be a torch dtype, got " + describe(d), at);
        if (!d->unsupported.empty()) return unsupported(d->unsupported);
        t->dtype = *d->dtype;
        if (st->dtype && *st->dtype != t->dtype)
          fail(fn + ": dtype " + d->s + " does not match storage " + st->type_name, at);
      } else {
        if (!st->dtype) fail(fn + ": an UntypedStorage needs _rebuild_tensor_v3 with a dtype", at);
        t->dtype = *st->dtype;
      }
      Value* v = make(Kind::Tensor);
      v->tensor = std::move(t);
      return v;
    }
    case GlobalRole::RebuildParameter:
    case GlobalRole::RebuildParameterWithState: {
      const std::size_t n = callable->role == GlobalRole::RebuildParameter ? 3 : 4;
      if (a.size() != n) fail(fn + " takes " + std::to_string(n) + " arguments, got " + std::to_string(a.size()), at);
      if (a[0]->kind == Kind::Unsupported) return a[0];
      if (a[0]->kind != Kind::Tensor) fail(fn + ": first argument must be a tensor, got " + describe(a[0]), at);
      if (a[1]->kind != Kind::Bool) fail(fn + ": requires_grad must be a bool", at);
      auto t = std::make_shared<TensorRef>(*a[0]->tensor);
      t->requires_grad = a[1]->b;
      t->parameter = true;
      Value* v = make(Kind::Tensor);
      v->tensor = std::move(t);
      return v;
    }
    case GlobalRole::CodecsEncode: {
      // Protocol 2 pickles bytes as _codecs.encode(<latin-1 text as str>, 'latin1').
      if (a.size() != 2 || a[0]->kind != Kind::Str || a[1]->kind != Kind::Str ||
          (a[1]->s != "latin1" && a[1]->s != "latin-1"))
        fail("_codecs.encode is only accepted as encode(str, 'latin1')", at);
      Value* b = make(Kind::Bytes);
      const std::string& s = a[0]->s;
      for (std::size_t i = 0; i < s.size();) {
        auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
          b->s.push_back(static_cast<char>(c));
          ++i;
        } else if ((c & 0xE0) == 0xC0 && i + 1 < s.size() && c <= 0xC3) {
          b->s.push_back(static_cast<char>(((c & 0x1F) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3F)));
          i += 2;
        } else {
          fail("_codecs.encode: text has characters outside latin-1", at);
        }
      }
      return b;
    }
    case GlobalRole::TorchSize: {
      if (a.size() != 1) fail("torch.Size takes one tuple", at);
      int_tuple(a[0], "torch.Size");
      return make_tuple(a[0]->items);
    }
    case GlobalRole::StorageClass:
    case GlobalRole::DTypeObject:
      fail("calling " + fn + " is not supported", at);
    case GlobalRole::UnsupportedCallable:
      return unsupported(callable->unsupported);
  }
  fail("internal: unknown global role", at);
}

Value* Unpickler::load() {
  stack_.clear();
  marks_.clear();
  memo_.clear();
  while (true) {
    const std::size_t at = pos_;
    if (pos_ >= data_.size()) fail("truncated pickle: no STOP opcode", at);
    const std::uint8_t op = u8("opcode");
    switch (op) {
      case 0x80: {  // PROTO
        std::uint8_t proto = u8("protocol");
        if (proto > 5) fail("unsupported pickle protocol " + std::to_string(proto), at);
        break;
      }
      case 0x95: {  // FRAME: a length hint only; the bytes follow inline
        std::uint64_t n = 0;
        std::memcpy(&n, take(8, "FRAME length").data(), 8);
        if (n > data_.size() - pos_) fail("FRAME length " + std::to_string(n) + " exceeds the remaining bytes", at);
        break;
      }
      case '.': {  // STOP
        Value* v = pop(at);
        if (!marks_.empty()) fail("STOP with an open MARK", at);
        if (!stack_.empty()) fail("STOP with " + std::to_string(stack_.size()) + " extra objects on the stack", at);
        return v;
      }
      case '(':  // MARK
        if (marks_.size() >= kMaxDepth) fail("MARKs nested deeper than " + std::to_string(kMaxDepth), at);
        marks_.push_back(stack_.size());
        break;
      case 'N': push(make(Kind::None), at); break;
      case 0x88:
      case 0x89: {
        Value* v = make(Kind::Bool);
        v->b = op == 0x88;
        push(v, at);
        break;
      }
      case 'J': {
        std::int32_t x;
        std::memcpy(&x, take(4, "BININT").data(), 4);
        Value* v = make(Kind::Int);
        v->i = x;
        push(v, at);
        break;
      }
      case 'K': {
        Value* v = make(Kind::Int);
        v->i = u8("BININT1");
        push(v, at);
        break;
      }
      case 'M': {
        std::uint16_t x;
        std::memcpy(&x, take(2, "BININT2").data(), 2);
        Value* v = make(Kind::Int);
        v->i = x;
        push(v, at);
        break;
      }
      case 0x8a: {  // LONG1: n bytes little-endian two's complement
        std::uint8_t n = u8("LONG1 length");
        auto b = take(n, "LONG1 bytes");
        if (n > 8) fail("LONG1 integer of " + std::to_string(n) + " bytes does not fit in 64 bits", at);
        std::uint64_t u = 0;
        for (std::size_t k = 0; k < n; ++k) u |= static_cast<std::uint64_t>(std::to_integer<std::uint8_t>(b[k])) << (8 * k);
        if (n > 0 && n < 8 && (std::to_integer<std::uint8_t>(b[n - 1]) & 0x80)) u |= ~std::uint64_t{0} << (8 * n);
        Value* v = make(Kind::Int);
        v->i = static_cast<std::int64_t>(u);
        push(v, at);
        break;
      }
      case 'G': {  // BINFLOAT, big-endian
        auto b = take(8, "BINFLOAT");
        std::uint64_t u = 0;
        for (std::size_t k = 0; k < 8; ++k) u = (u << 8) | std::to_integer<std::uint8_t>(b[k]);
        Value* v = make(Kind::Float);
        std::memcpy(&v->f, &u, 8);
        push(v, at);
        break;
      }
      case 'X':
      case 0x8c:
      case 0x8d:
      case 'U':
      case 'B':
      case 'C':
      case 0x8e: {
        std::uint64_t n = 0;
        if (op == 'X' || op == 'B') {
          std::uint32_t x;
          std::memcpy(&x, take(4, "string length").data(), 4);
          n = x;
        } else if (op == 0x8d || op == 0x8e) {
          std::memcpy(&n, take(8, "string length").data(), 8);
        } else {
          n = u8("string length");
        }
        if (n > data_.size() - pos_)
          fail(std::string(opcode_name(op)) + " length " + std::to_string(n) + " exceeds the " +
                   std::to_string(data_.size() - pos_) + " remaining bytes (truncated or corrupt)",
               at);
        auto b = take(static_cast<std::size_t>(n), "string");
        std::string_view sv(reinterpret_cast<const char*>(b.data()), b.size());
        if (op == 'B' || op == 'C' || op == 0x8e) {
          Value* v = make(Kind::Bytes);
          v->s = std::string(sv);
          push(v, at);
        } else {
          push(make_str(sv, at), at);
        }
        break;
      }
      case ')': push(make_tuple({}), at); break;
      case 't': push(make_tuple(pop_mark(at)), at); break;
      case 0x85:
      case 0x86:
      case 0x87: {
        std::size_t n = static_cast<std::size_t>(op - 0x84);
        std::vector<Value*> items(n);
        for (std::size_t k = n; k-- > 0;) items[k] = pop(at);
        push(make_tuple(std::move(items)), at);
        break;
      }
      case ']': push(make(Kind::List), at); break;
      case '}': push(make(Kind::Dict), at); break;
      case 0x8f: {  // EMPTY_SET
        Value* v = make(Kind::Unsupported);
        v->s = "Python sets are not supported";
        push(v, at);
        break;
      }
      case 'a':
      case 'e': {
        std::vector<Value*> items;
        if (op == 'a') items.push_back(pop(at));
        else items = pop_mark(at);
        Value* list = top(at);
        if (list->kind != Kind::List) fail(std::string(opcode_name(op)) + " on a " + describe(list) + ", not a list", at);
        for (Value* v : items) {
          list->items.push_back(v);
          list->depth = std::max(list->depth, v->depth + 1);
        }
        if (list->depth > kMaxDepth) fail("objects nested deeper than " + std::to_string(kMaxDepth) + " levels", at);
        break;
      }
      case 's': {
        Value* value = pop(at);
        Value* key = pop(at);
        set_item(top(at), key, value, at);
        break;
      }
      case 'u': {
        auto items = pop_mark(at);
        if (items.size() % 2) fail("SETITEMS with an odd number of items", at);
        Value* dict = top(at);
        for (std::size_t k = 0; k < items.size(); k += 2) set_item(dict, items[k], items[k + 1], at);
        break;
      }
      case 'c': {
        std::string module = line("GLOBAL module");
        std::string name = line("GLOBAL name");
        push(resolve_global(module, name, at), at);
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        Value* name = pop(at);
        Value* module = pop(at);
        if (name->kind != Kind::Str || module->kind != Kind::Str) fail("STACK_GLOBAL needs two strings", at);
        push(resolve_global(module->s, name->s, at), at);
        break;
      }
      case 'R': {
        Value* args = pop(at);
        Value* callable = pop(at);
        push(reduce(callable, args, at), at);
        break;
      }
      case 0x81: {  // NEWOBJ: cls.__new__(cls, *args)
        Value* args = pop(at);
        Value* cls = pop(at);
        if (cls->kind != Kind::Global || args->kind != Kind::Tuple)
          fail("NEWOBJ needs a class and an argument tuple", at);
        if (cls->role == GlobalRole::OrderedDict) {
          Value* d = make(Kind::Dict);
          d->ordered = true;
          push(d, at);
        } else if (cls->role == GlobalRole::UnsupportedCallable) {
          Value* u = make(Kind::Unsupported);
          u->s = cls->unsupported;
          push(u, at);
        } else {
          fail("NEWOBJ of " + cls->s + " is not supported", at);
        }
        break;
      }
      case 'b': {  // BUILD: object state (e.g. OrderedDict _metadata) carries no tensor data
        Value* state = pop(at);
        (void)state;
        Value* obj = top(at);
        if (obj->kind != Kind::Dict && obj->kind != Kind::Tensor && obj->kind != Kind::Unsupported)
          fail("BUILD on a " + describe(obj) + " is not supported", at);
        break;
      }
      case 'Q': push(persistent_load(pop(at), at), at); break;
      case 'q':
      case 'r':
      case 0x94: {
        std::uint32_t idx;
        if (op == 'q') idx = u8("BINPUT index");
        else if (op == 'r') std::memcpy(&idx, take(4, "LONG_BINPUT index").data(), 4);
        else idx = static_cast<std::uint32_t>(memo_.size());
        if (memo_.size() >= kMaxMemo && !memo_.count(idx)) fail("memo grows beyond " + std::to_string(kMaxMemo), at);
        memo_[idx] = top(at);
        break;
      }
      case 'h':
      case 'j': {
        std::uint32_t idx;
        if (op == 'h') idx = u8("BINGET index");
        else std::memcpy(&idx, take(4, "LONG_BINGET index").data(), 4);
        auto it = memo_.find(idx);
        if (it == memo_.end()) fail("memo index " + std::to_string(idx) + " was never stored", at);
        push(it->second, at);
        break;
      }
      default:
        fail("opcode " + hex2(op) + " (" + opcode_name(op) + ") is not allowed in a data-only torch pickle", at);
    }
  }
}

}  // namespace ckb::pickle
