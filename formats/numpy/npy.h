// The NumPy .npy array file format (numpy/lib/format.py), shared by the npy and npz formats.
//
// Layout: magic "\x93NUMPY", major/minor version, header length (u16le for v1, u32le for
// v2/v3), a Python dict literal header padded with spaces and '\n' so the data starts at a
// multiple of 64, then prod(shape) * itemsize data bytes.
//
// Reading: the header is parsed by a small strict parser that accepts exactly the dict
// numpy writes ({'descr': <str>, 'fortran_order': <bool>, 'shape': <tuple of ints>}, keys in
// any order, optional trailing comma) and nothing else: it is not a Python evaluator.
// Supported descr: '<f8 <f4 <f2 |b1 |i1 |u1 <i2 <i4 <i8 <u2 <u4 <u8 <c8 <c16' and their
// big-endian '>' forms (byte-swapped lazily on read). '<V2' (what ml_dtypes' bfloat16 turns
// into) is rejected unless the caller asks to read it as BF16. Structured and other dtypes
// are rejected with a FormatError naming the descr. Object ('|O') and string ('<U5', '|S3')
// dtypes too, unless NpyReadOptions::non_numeric: then the header reports their kind (the
// npz reader turns string arrays into tree leaves and refuses object arrays by name; Python
// objects are pickles and are never unpickled).
//
// Sources built by npy_tensor_source() always yield C-order little-endian bytes: Fortran
// order is undone with a strided view, big-endian data is swapped.
//
// Writing: v1 header (v2 when the header would not fit in 65535 bytes), byte for byte what
// numpy 2.x np.save writes (sorted keys, growth-axis spare spaces, 64-byte alignment), C
// order, little-endian. BF16 and float8 have no numpy descr: MappingError naming the tensor
// (writing them as '<V2' would lose the dtype silently).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "core/tensor.h"
#include "core/tree.h"

namespace ckb {

// Longest header text accepted on read (numpy itself refuses > 10000 without allow_pickle).
inline constexpr std::uint64_t kNpyMaxHeaderLen = 100000;
// Bytes before the header text: magic(6) + version(2) + length field (2 or 4).
inline constexpr std::uint64_t kNpyMaxPrefixLen = 12;

struct NpyReadOptions {
  bool v2_as_bf16 = false;   // read descr '<V2' / '|V2' as BF16 instead of failing
  bool non_numeric = false;  // report string/object descrs in NpyHeader::kind instead of failing
};

// What the array holds. Only Numeric arrays are tensors.
enum class NpyKind : std::uint8_t {
  Numeric,
  Unicode,  // '<Un' / '>Un': n UCS-4 code points per element
  Bytes,    // '|Sn' (or the old '|an'): n bytes per element
  Object,   // '|O': pickled Python objects (shape known, data not interpretable)
};

struct NpyHeader {
  int major = 1, minor = 0;
  NpyKind kind = NpyKind::Numeric;
  std::string descr;                // as written in the header
  TensorInfo info;                  // for non-numeric kinds only the shape is meaningful
  std::uint64_t itemsize = 0;       // bytes per element (0 for Object)
  bool fortran_order = false;
  bool big_endian = false;          // data needs byte swapping to become little-endian
  std::uint64_t data_offset = 0;    // from the start of the .npy bytes
  std::uint64_t nbytes = 0;         // numel * itemsize, overflow checked
};

// True when `bytes` begins with the .npy magic.
bool is_npy_magic(std::span<const std::byte> bytes);

// Parses the header at the start of `bytes` (which may be only a prefix of the .npy data;
// it must contain the whole header). `path` and `base` (absolute offset of bytes[0]) are
// for error messages. Throws FormatError.
NpyHeader parse_npy_header(std::span<const std::byte> bytes, const std::string& path, std::uint64_t base = 0,
                           const NpyReadOptions& opts = {});

// The leaves of a Unicode or Bytes array whose stored data (exactly h.nbytes bytes, in the
// header's order and byte order) is `data`, as NumPy returns its elements: each element with
// its trailing NULs removed, Unicode as a UTF-8 string leaf, Bytes as a bytes leaf. A 0-d
// array is one leaf; an N-d array nested Lists (shape (2, 3): a List of 2 Lists of 3
// leaves), in C order whatever the stored order. FormatError (naming `path`) for a code
// point that is not a Unicode scalar value.
Node npy_string_node(const NpyHeader& h, std::span<const std::byte> data, const std::string& path);

// A source yielding C-order little-endian bytes of the array whose raw data (as stored:
// possibly Fortran order, possibly big-endian; exactly h.nbytes bytes) is `raw`.
SourcePtr npy_tensor_source(const NpyHeader& h, SourcePtr raw, const std::string& what);

// numpy descr for a dtype ('<f4', '|b1', ...); nullopt for BF16 and float8.
std::optional<std::string> npy_descr(DType t);

// The complete header (magic through '\n') numpy would write for a C-order little-endian
// array of `info`. `tensor_name` is used in the MappingError for dtypes numpy cannot name.
std::string npy_header_bytes(const TensorInfo& info, const std::string& tensor_name);

// Reads a whole .npy file as a checkpoint: a root Dict with one tensor keyed by the file
// stem ("big" for big.npy). The tensor is zero-copy over the mmap'd file unless it needs
// reordering (Fortran order) or byte swapping, which happen lazily on read.
Checkpoint read_npy_file(const std::string& path, const NpyReadOptions& opts = {});

// Reads an .npz archive: a root Dict keyed by member name minus ".npy", in archive order.
// Stored members are zero-copy; deflated ones inflate lazily on first read.
Checkpoint read_npz_file(const std::string& path, const NpyReadOptions& opts = {});

}  // namespace ckb
