// .npy header parsing/writing and the sources that turn stored npy data into C-order
// little-endian bytes (see npy.h).
#include "formats/numpy/npy.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#include "core/errors.h"
#include "io/byte_reader.h"

namespace ckb {
namespace {

constexpr unsigned char kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
constexpr std::size_t kArrayAlign = 64;
constexpr std::size_t kGrowthAxisMaxDigits = 21;

// Strict parser for the header dict literal. Positions in messages are absolute offsets.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& path, std::uint64_t base)
      : s_(text), path_(path), base_(base) {}

  struct Result {
    std::string descr;
    bool fortran_order = false;
    Shape shape;
  };

  Result parse() {
    Result r;
    bool have_descr = false, have_fortran = false, have_shape = false;
    ws();
    expect('{');
    ws();
    while (peek() != '}') {
      std::string key = str("dict key");
      ws();
      expect(':');
      ws();
      if (key == "descr") {
        if (have_descr) fail("duplicate key 'descr'");
        have_descr = true;
        if (peek() == '[') fail("structured dtypes (a descr list) are not supported");
        if (peek() != '\'' && peek() != '"') fail("descr is not a string (only simple dtypes are supported)");
        r.descr = str("descr");
      } else if (key == "fortran_order") {
        if (have_fortran) fail("duplicate key 'fortran_order'");
        have_fortran = true;
        r.fortran_order = boolean();
      } else if (key == "shape") {
        if (have_shape) fail("duplicate key 'shape'");
        have_shape = true;
        r.shape = tuple();
      } else {
        fail("unexpected key '" + key + "'");
      }
      ws();
      if (peek() == ',') {
        ++i_;
        ws();
      } else if (peek() != '}') {
        fail("expected ',' or '}'");
      }
    }
    ++i_;  // '}'
    for (; i_ < s_.size(); ++i_)
      if (s_[i_] != ' ' && s_[i_] != '\t' && s_[i_] != '\n' && s_[i_] != '\r') fail("unexpected text after the header dict");
    if (!have_descr || !have_fortran || !have_shape)
      fail(std::string("missing key '") + (!have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape") + "'");
    return r;
  }

 private:
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t')) ++i_;
  }
  [[noreturn]] void fail(const std::string& msg) const {
    throw FormatError(path_, "bad .npy header: " + msg, base_ + i_);
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++i_;
  }
  std::string str(const char* what) {
    char q = peek();
    if (q != '\'' && q != '"') fail(std::string("expected a quoted ") + what);
    ++i_;
    std::string out;
    while (true) {
      if (i_ >= s_.size()) fail(std::string("unterminated ") + what);
      char c = s_[i_];
      if (c == q) break;
      if (c == '\\' || static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f)
        fail(std::string("unsupported character in ") + what);
      out += c;
      ++i_;
    }
    ++i_;
    return out;
  }
  bool boolean() {
    if (s_.substr(i_, 4) == "True") {
      i_ += 4;
      return true;
    }
    if (s_.substr(i_, 5) == "False") {
      i_ += 5;
      return false;
    }
    fail("fortran_order is not True or False");
  }
  std::int64_t integer() {
    if (peek() < '0' || peek() > '9') fail("expected a non-negative integer in shape");
    std::uint64_t v = 0;
    while (peek() >= '0' && peek() <= '9') {
      std::uint64_t d = static_cast<std::uint64_t>(peek() - '0');
      if (v > (static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) - d) / 10)
        fail("shape dimension does not fit in 64 bits");
      v = v * 10 + d;
      ++i_;
    }
    if (peek() == 'L') ++i_;  // Python 2 long literal, as very old numpy wrote
    return static_cast<std::int64_t>(v);
  }
  Shape tuple() {
    expect('(');
    ws();
    Shape shape;
    bool trailing_comma = false;
    while (peek() != ')') {
      if (shape.size() >= 64) fail("shape has more than 64 dimensions");
      shape.push_back(integer());
      ws();
      trailing_comma = false;
      if (peek() == ',') {
        ++i_;
        trailing_comma = true;
        ws();
      } else if (peek() != ')') {
        fail("expected ',' or ')' in shape");
      }
    }
    if (shape.size() == 1 && !trailing_comma) fail("shape '(n)' is not a tuple (needs '(n,)')");
    ++i_;
    return shape;
  }

  std::string_view s_;
  const std::string& path_;
  std::uint64_t base_;
  std::size_t i_ = 0;
};

// dtype for a descr such as '<f4'; sets big_endian. Throws FormatError naming the descr.
DType parse_descr(const std::string& descr, bool& big_endian, const NpyReadOptions& opts, const std::string& path,
                  std::uint64_t off) {
  auto bad = [&](const std::string& why) -> FormatError {
    return FormatError(path, "unsupported .npy dtype '" + descr + "': " + why, off);
  };
  if (descr.size() < 2) throw bad("too short");
  char order = descr[0];
  if (order != '<' && order != '>' && order != '|' && order != '=')
    throw bad("unknown byte order character");
  char kind = descr[1];
  if (kind == 'O') throw bad("Python objects (pickled data) are refused");
  std::string digits = descr.substr(2);
  if (digits.empty() || digits.size() > 2 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    throw bad("not a simple dtype");
  int size = std::stoi(digits);
  std::optional<DType> t;
  switch (kind) {
    case 'f': t = size == 2 ? DType::F16 : size == 4 ? DType::F32 : size == 8 ? DType::F64 : std::optional<DType>{}; break;
    case 'i': t = size == 1 ? DType::I8 : size == 2 ? DType::I16 : size == 4 ? DType::I32 : size == 8 ? DType::I64 : std::optional<DType>{}; break;
    case 'u': t = size == 1 ? DType::U8 : size == 2 ? DType::U16 : size == 4 ? DType::U32 : size == 8 ? DType::U64 : std::optional<DType>{}; break;
    case 'b': t = size == 1 ? DType::BOOL : std::optional<DType>{}; break;
    case 'c': t = size == 8 ? DType::C64 : size == 16 ? DType::C128 : std::optional<DType>{}; break;
    case 'V':
      if (size == 2 && opts.v2_as_bf16) t = DType::BF16;
      else throw bad("raw void bytes (bfloat16 saved by ml_dtypes looks like '<V2'); the element type is unknown");
      break;
    case 'U': case 'S': case 'a': throw bad("string arrays are not tensors");
    case 'M': case 'm': throw bad("datetime arrays are not supported");
    default: throw bad("unknown kind");
  }
  if (!t) throw bad("unsupported item size");
  if (order == '=') throw bad("native byte order '=' is ambiguous in a file");
  if (order == '|' && dtype_size(*t) != 1 && kind != 'V') throw bad("'|' byte order on a multi-byte type");
  big_endian = order == '>' && dtype_size(*t) > 1;
  return *t;
}

// Lazily byte-swaps `unit`-byte words of a base source.
class SwapSource final : public TensorSource {
 public:
  SwapSource(SourcePtr base, std::uint64_t len, std::size_t unit, std::string what)
      : base_(std::move(base)), len_(len), unit_(unit), what_(std::move(what)) {}
  void read(std::uint64_t offset, std::span<std::byte> out) const override {
    if (out.empty()) return;
    if (offset > len_ || out.size() > len_ - offset) throw FormatError(what_, "read past the end of a tensor", offset);
    std::uint64_t start = offset - offset % unit_;
    std::uint64_t end = offset + out.size();
    end = (end + unit_ - 1) / unit_ * unit_;
    std::vector<std::byte> tmp(static_cast<std::size_t>(end - start));
    base_->read(start, tmp);
    for (std::size_t w = 0; w < tmp.size(); w += unit_) std::reverse(tmp.begin() + static_cast<std::ptrdiff_t>(w), tmp.begin() + static_cast<std::ptrdiff_t>(w + unit_));
    std::memcpy(out.data(), tmp.data() + (offset - start), out.size());
  }
  std::string describe() const override { return what_ + " (byte-swapped)"; }
  void prefetch(std::uint64_t offset, std::uint64_t len) const override { base_->prefetch(offset, len); }
  void release_range(std::uint64_t offset, std::uint64_t len) const override { base_->release_range(offset, len); }

 private:
  SourcePtr base_;
  std::uint64_t len_;
  std::size_t unit_;
  std::string what_;
};

// Lets a source that only supports element-aligned reads (a strided view) serve any range.
class AlignedReadSource final : public TensorSource {
 public:
  AlignedReadSource(SourcePtr base, std::uint64_t len, std::size_t elem, std::string what)
      : base_(std::move(base)), len_(len), elem_(elem), what_(std::move(what)) {}
  void read(std::uint64_t offset, std::span<std::byte> out) const override {
    if (out.empty()) return;
    if (offset > len_ || out.size() > len_ - offset) throw FormatError(what_, "read past the end of a tensor", offset);
    if (offset % elem_ == 0 && out.size() % elem_ == 0) return base_->read(offset, out);
    const std::uint64_t start = offset - offset % elem_;
    const std::uint64_t end = (offset + out.size() + elem_ - 1) / elem_ * elem_;
    std::vector<std::byte> tmp(static_cast<std::size_t>(end - start));
    base_->read(start, tmp);
    std::memcpy(out.data(), tmp.data() + (offset - start), out.size());
  }
  const std::byte* contiguous() const override { return base_->contiguous(); }
  std::string describe() const override { return base_->describe(); }
  void prefetch(std::uint64_t offset, std::uint64_t len) const override { base_->prefetch(offset, len); }
  void release_range(std::uint64_t offset, std::uint64_t len) const override { base_->release_range(offset, len); }

 private:
  SourcePtr base_;
  std::uint64_t len_;
  std::size_t elem_;
  std::string what_;
};

std::string shape_repr(const Shape& s) {
  if (s.empty()) return "()";
  std::string r = "(";
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i) r += ", ";
    r += std::to_string(s[i]);
  }
  if (s.size() == 1) r += ",";
  return r + ")";
}

// A string or object descr ('<U5', '>U5', '|S3', '|a3', '|O'): fills kind/itemsize/
// big_endian and returns true; false for anything else (left to parse_descr).
bool parse_non_numeric_descr(const std::string& descr, NpyHeader& h, const std::string& path, std::uint64_t off) {
  if (descr.size() < 2) return false;
  const char order = descr[0], kind = descr[1];
  if (order != '<' && order != '>' && order != '|' && order != '=') return false;
  if (kind == 'O' && (descr.size() == 2 || descr.substr(2) == "8")) {
    h.kind = NpyKind::Object;
    return true;
  }
  if (kind != 'U' && kind != 'S' && kind != 'a') return false;
  const std::string digits = descr.substr(2);
  if (digits.empty() || digits.size() > 12 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  const std::uint64_t n = std::stoull(digits);
  if (kind == 'U') {
    if (order == '|' || order == '=')
      throw FormatError(path, "unsupported .npy dtype '" + descr + "': a Unicode array needs '<' or '>' byte order", off);
    h.kind = NpyKind::Unicode;
    h.itemsize = 4 * n;
    h.big_endian = order == '>';
  } else {
    h.kind = NpyKind::Bytes;
    h.itemsize = n;
  }
  return true;
}

// Appends the UTF-8 encoding of code point `c`; false when c is not a Unicode scalar value.
bool append_utf8(std::string& out, std::uint32_t c) {
  if (c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return false;
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
  return true;
}

}  // namespace

bool is_npy_magic(std::span<const std::byte> bytes) {
  return bytes.size() >= sizeof(kMagic) && std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) == 0;
}

NpyHeader parse_npy_header(std::span<const std::byte> bytes, const std::string& path, std::uint64_t base,
                           const NpyReadOptions& opts) {
  ByteReader r(bytes, path, base);
  auto magic = r.take(6, ".npy magic");
  if (std::memcmp(magic.data(), kMagic, sizeof(kMagic)) != 0) throw FormatError(path, "not a .npy file (bad magic)", base);
  NpyHeader h;
  h.major = r.u8(".npy version");
  h.minor = r.u8(".npy version");
  std::uint64_t hlen = 0;
  if (h.major == 1 && h.minor == 0) hlen = r.le<std::uint16_t>(".npy header length");
  else if ((h.major == 2 || h.major == 3) && h.minor == 0) hlen = r.le<std::uint32_t>(".npy header length");
  else
    throw FormatError(path, "unsupported .npy version " + std::to_string(h.major) + "." + std::to_string(h.minor), base + 6);
  if (hlen > kNpyMaxHeaderLen)
    throw FormatError(path, ".npy header length " + std::to_string(hlen) + " exceeds the limit of " +
                                std::to_string(kNpyMaxHeaderLen) + " bytes", base + 8);
  const std::uint64_t text_off = r.abs_pos();
  auto text = r.take_str(static_cast<std::size_t>(hlen), ".npy header");
  auto parsed = HeaderParser(text, path, text_off).parse();
  h.descr = parsed.descr;
  if (opts.non_numeric && parse_non_numeric_descr(parsed.descr, h, path, text_off)) {
    h.info.dtype = DType::U8;
  } else {
    h.info.dtype = parse_descr(parsed.descr, h.big_endian, opts, path, text_off);
    h.itemsize = dtype_size(h.info.dtype);
  }
  h.info.shape = std::move(parsed.shape);
  h.fortran_order = parsed.fortran_order;
  h.data_offset = r.pos();
  std::uint64_t numel = checked_numel(h.info.shape, path);
  if (__builtin_mul_overflow(numel, h.itemsize, &h.nbytes))
    throw FormatError(path, ".npy shape " + shape_str(h.info.shape) + " of " + parsed.descr + " overflows a 64-bit byte count",
                      text_off);
  return h;
}

Node npy_string_node(const NpyHeader& h, std::span<const std::byte> data, const std::string& path) {
  if (h.kind != NpyKind::Unicode && h.kind != NpyKind::Bytes)
    throw FormatError(path, "npy_string_node: dtype '" + h.descr + "' is not a string dtype");
  if (data.size() != h.nbytes) throw FormatError(path, "string array data is truncated");
  const Shape& shape = h.info.shape;
  const std::size_t rank = shape.size();
  // Element strides of the stored order, so leaves come out in C order either way.
  std::vector<std::uint64_t> stride(rank, 1);
  if (h.fortran_order) {
    for (std::size_t d = 1; d < rank; ++d) stride[d] = stride[d - 1] * static_cast<std::uint64_t>(shape[d - 1]);
  } else {
    for (std::size_t d = rank; d-- > 1;) stride[d - 1] = stride[d] * static_cast<std::uint64_t>(shape[d]);
  }
  auto leaf = [&](std::uint64_t k) -> Node {
    auto elem = data.subspan(static_cast<std::size_t>(k * h.itemsize), static_cast<std::size_t>(h.itemsize));
    if (h.kind == NpyKind::Bytes) {
      std::size_t n = elem.size();
      while (n > 0 && elem[n - 1] == std::byte{0}) --n;
      return Node(RawBytes{std::string(reinterpret_cast<const char*>(elem.data()), n)});
    }
    std::vector<std::uint32_t> cps(elem.size() / 4);
    for (std::size_t i = 0; i < cps.size(); ++i) {
      std::uint32_t c = 0;
      for (int b = 0; b < 4; ++b) {
        const auto byte = std::to_integer<std::uint32_t>(elem[4 * i + static_cast<std::size_t>(h.big_endian ? 3 - b : b)]);
        c |= byte << (8 * b);
      }
      cps[i] = c;
    }
    while (!cps.empty() && cps.back() == 0) cps.pop_back();
    std::string out;
    for (std::uint32_t c : cps)
      if (!append_utf8(out, c)) {
        char hex[16];
        std::snprintf(hex, sizeof hex, "U+%X", c);
        throw FormatError(path, "string array element " + std::to_string(k) + " holds " + hex +
                                    ", which is not a Unicode character");
      }
    return Node(std::move(out));
  };
  std::function<Node(std::size_t, std::uint64_t)> build = [&](std::size_t d, std::uint64_t at) -> Node {
    if (d == rank) return leaf(at);
    Node list = Node::list();
    for (std::int64_t i = 0; i < shape[d]; ++i) list.append(build(d + 1, at + static_cast<std::uint64_t>(i) * stride[d]));
    return list;
  };
  return build(0, 0);
}

SourcePtr npy_tensor_source(const NpyHeader& h, SourcePtr raw, const std::string& what) {
  SourcePtr src = std::move(raw);
  const std::size_t size = dtype_size(h.info.dtype);
  if (h.big_endian) {
    std::size_t unit = dtype_is_complex(h.info.dtype) ? size / 2 : size;
    src = std::make_shared<SwapSource>(std::move(src), h.nbytes, unit, what);
  }
  const auto& shape = h.info.shape;
  if (h.fortran_order && shape.size() > 1 && h.nbytes > 0) {
    std::vector<std::int64_t> strides(shape.size());
    std::int64_t s = 1;
    for (std::size_t d = 0; d < shape.size(); ++d) {
      strides[d] = s;
      s *= shape[d];
    }
    src = std::make_shared<StridedSource>(std::move(src), h.nbytes, h.info.dtype, shape, std::move(strides), 0, what);
    src = std::make_shared<AlignedReadSource>(std::move(src), h.nbytes, size, what);
  }
  return src;
}

std::optional<std::string> npy_descr(DType t) {
  switch (t) {
    case DType::F64: return "<f8";
    case DType::F32: return "<f4";
    case DType::F16: return "<f2";
    case DType::I64: return "<i8";
    case DType::I32: return "<i4";
    case DType::I16: return "<i2";
    case DType::I8: return "|i1";
    case DType::U64: return "<u8";
    case DType::U32: return "<u4";
    case DType::U16: return "<u2";
    case DType::U8: return "|u1";
    case DType::BOOL: return "|b1";
    case DType::C64: return "<c8";
    case DType::C128: return "<c16";
    case DType::BF16: case DType::F8_E4M3: case DType::F8_E5M2: return std::nullopt;
    case DType::F8_E8M0: case DType::F8_E4M3FNUZ: case DType::F8_E5M2FNUZ:
    case DType::F6_E2M3: case DType::F6_E3M2: case DType::F4: return std::nullopt;
  }
  return std::nullopt;
}

std::string npy_header_bytes(const TensorInfo& info, const std::string& tensor_name) {
  auto descr = npy_descr(info.dtype);
  if (!descr && dtype_is_bytes_only(info.dtype))
    refuse_bytes_only(tensor_name, info.dtype, "NumPy .npy has no " + std::string(dtype_name(info.dtype)) + " type");
  if (!descr)
    throw MappingError(tensor_name, "dtype " + std::string(dtype_name(info.dtype)) +
                                        " has no NumPy .npy descr (numpy would store it as raw '<V" +
                                        std::to_string(dtype_size(info.dtype)) +
                                        "' bytes and lose the type); cast it first or choose another format");
  std::string d = "{'descr': '" + *descr + "', 'fortran_order': False, 'shape': " + shape_repr(info.shape) + ", }";
  if (!info.shape.empty()) {
    std::size_t digits = std::to_string(info.shape[0]).size();
    if (digits < kGrowthAxisMaxDigits) d.append(kGrowthAxisMaxDigits - digits, ' ');
  }
  const std::size_t hlen = d.size() + 1;
  std::size_t prefix = 10;
  std::size_t pad = kArrayAlign - (prefix + hlen) % kArrayAlign;
  bool v2 = hlen + pad > 0xFFFF;
  if (v2) {
    prefix = 12;
    pad = kArrayAlign - (prefix + hlen) % kArrayAlign;
  }
  std::string out(reinterpret_cast<const char*>(kMagic), sizeof(kMagic));
  out += static_cast<char>(v2 ? 2 : 1);
  out += '\0';
  std::uint64_t total = hlen + pad;
  for (std::size_t i = 0; i < (v2 ? 4u : 2u); ++i) out += static_cast<char>((total >> (8 * i)) & 0xFF);
  out += d;
  out.append(pad, ' ');
  out += '\n';
  return out;
}

}  // namespace ckb
