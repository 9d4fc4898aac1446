// Hand-written msgpack decoder (zero-copy, depth- and length-checked) and the Flax msgpack
// writer (layout planned in begin(), tensors pwritten at fixed offsets). See msgpack.h.
#include "formats/msgpack/msgpack.h"

#include <atomic>
#include <cstring>
#include <limits>
#include <mutex>
#include <unordered_set>
#include <vector>

#include "core/concat_source.h"
#include "core/errors.h"
#include "io/byte_reader.h"
#include "io/output.h"

namespace ckb {
namespace {

constexpr const char* kChunkedKey = "__msgpack_chunked_array__";
constexpr std::int8_t kExtNdarray = 1, kExtComplex = 2, kExtScalar = 3, kExtTuple = 4;

// ---------------------------------------------------------------------------------------
// Decoder

class Decoder {
 public:
  explicit Decoder(MappedFilePtr file) : file_(std::move(file)), path_(file_->path()) {}

  Node decode_root() {
    ByteReader r(file_->bytes(), path_, 0);
    if (r.at_end()) r.fail("empty file is not a msgpack map");
    const std::uint8_t first = std::to_integer<std::uint8_t>(file_->bytes()[0]);
    if (!((first >= 0x80 && first <= 0x8f) || first == 0xde || first == 0xdf))
      r.fail("top-level msgpack object is not a map");
    Node root = decode(r, 0);
    if (!r.at_end())
      r.fail(std::to_string(r.remaining()) + " unexpected bytes after the top-level msgpack map");
    return root;
  }

 private:
  std::string where() const { return keys_.empty() ? std::string("<root>") : join_path(keys_); }

  [[noreturn]] void fail_at(const ByteReader& r, std::uint64_t abs, const std::string& msg) const {
    (void)r;
    throw FormatError(path_, msg + " (at '" + where() + "')", abs);
  }

  // Container/string length from a marker, checked against the bytes left (each element
  // takes at least `min_bytes_each` bytes).
  std::uint64_t checked_count(ByteReader& r, std::uint64_t n, std::uint64_t min_bytes_each, const char* what) {
    if (n > r.remaining() / min_bytes_each)
      fail_at(r, r.abs_pos(), std::string("msgpack ") + what + " of " + std::to_string(n) +
                                   " entries cannot fit in the " + std::to_string(r.remaining()) + " bytes left");
    return n;
  }

  std::uint64_t length_field(ByteReader& r, int width, const char* what) {
    switch (width) {
      case 1: return r.u8(what);
      case 2: return r.be<std::uint16_t>(what);
      default: return r.be<std::uint32_t>(what);
    }
  }

  Node decode(ByteReader& r, std::size_t depth) {
    if (depth > kMsgpackMaxDepth)
      fail_at(r, r.abs_pos(), "msgpack nesting deeper than " + std::to_string(kMsgpackMaxDepth) + " levels");
    const std::uint64_t start = r.abs_pos();
    const std::uint8_t b = r.u8("msgpack type byte");
    if (b <= 0x7f) return Node(std::int64_t{b});
    if (b >= 0xe0) return Node(std::int64_t{static_cast<std::int8_t>(b)});
    if (b <= 0x8f) return decode_map(r, b & 0x0f, depth);
    if (b <= 0x9f) return decode_array(r, b & 0x0f, depth);
    if (b <= 0xbf) return Node(std::string(r.take_str(b & 0x1f, "msgpack str")));
    switch (b) {
      case 0xc0: return Node::none();
      case 0xc2: return Node(false);
      case 0xc3: return Node(true);
      case 0xc4: case 0xc5: case 0xc6: {
        std::uint64_t n = length_field(r, b == 0xc4 ? 1 : b == 0xc5 ? 2 : 4, "msgpack bin length");
        return Node(RawBytes{std::string(r.take_str(static_cast<std::size_t>(n), "msgpack bin payload"))});
      }
      case 0xc7: case 0xc8: case 0xc9: {
        std::uint64_t n = length_field(r, b == 0xc7 ? 1 : b == 0xc8 ? 2 : 4, "msgpack ext length");
        return decode_ext(r, n, depth, start);
      }
      case 0xca: {
        std::uint32_t bits = r.be<std::uint32_t>("msgpack float32");
        float f;
        std::memcpy(&f, &bits, 4);
        Node n(static_cast<double>(f));
        n.attrs["msgpack.type"] = "float32";
        return n;
      }
      case 0xcb: {
        std::uint64_t bits = r.be<std::uint64_t>("msgpack float64");
        double d;
        std::memcpy(&d, &bits, 8);
        return Node(d);
      }
      case 0xcc: return Node(std::int64_t{r.u8("msgpack uint8")});
      case 0xcd: return Node(std::int64_t{r.be<std::uint16_t>("msgpack uint16")});
      case 0xce: return Node(std::int64_t{r.be<std::uint32_t>("msgpack uint32")});
      case 0xcf: {
        std::uint64_t v = r.be<std::uint64_t>("msgpack uint64");
        if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
          fail_at(r, start, "msgpack uint64 " + std::to_string(v) + " does not fit in a signed 64-bit integer");
        return Node(static_cast<std::int64_t>(v));
      }
      case 0xd0: return Node(std::int64_t{static_cast<std::int8_t>(r.u8("msgpack int8"))});
      case 0xd1: return Node(std::int64_t{static_cast<std::int16_t>(r.be<std::uint16_t>("msgpack int16"))});
      case 0xd2: return Node(std::int64_t{static_cast<std::int32_t>(r.be<std::uint32_t>("msgpack int32"))});
      case 0xd3: return Node(static_cast<std::int64_t>(r.be<std::uint64_t>("msgpack int64")));
      case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
        return decode_ext(r, std::uint64_t{1} << (b - 0xd4), depth, start);
      case 0xd9: case 0xda: case 0xdb: {
        std::uint64_t n = length_field(r, b == 0xd9 ? 1 : b == 0xda ? 2 : 4, "msgpack str length");
        return Node(std::string(r.take_str(static_cast<std::size_t>(n), "msgpack str")));
      }
      case 0xdc: case 0xdd:
        return decode_array(r, length_field(r, b == 0xdc ? 2 : 4, "msgpack array length"), depth);
      case 0xde: case 0xdf:
        return decode_map(r, length_field(r, b == 0xde ? 2 : 4, "msgpack map length"), depth);
      default:
        fail_at(r, start, "invalid msgpack type byte 0xc1");
    }
  }

  Node decode_array(ByteReader& r, std::uint64_t n, std::size_t depth) {
    checked_count(r, n, 1, "array");
    Node node = Node::list();
    node.attrs["msgpack.array"] = "1";
    auto& children = node.container().children;
    children.reserve(static_cast<std::size_t>(n));
    for (std::uint64_t i = 0; i < n; ++i) {
      // The child is decoded before the key is used: nested decoding grows keys_, which would
      // leave a reference to keys_.back() dangling.
      std::string key = std::to_string(i);
      keys_.push_back(key);
      auto child = std::make_unique<Node>(decode(r, depth + 1));
      keys_.pop_back();
      children.emplace_back(std::move(key), std::move(child));
    }
    return node;
  }

  std::string decode_key(ByteReader& r) {
    const std::uint64_t start = r.abs_pos();
    const std::uint8_t b = r.u8("msgpack map key");
    std::uint64_t n = 0;
    if (b >= 0xa0 && b <= 0xbf) n = b & 0x1f;
    else if (b >= 0xd9 && b <= 0xdb) n = length_field(r, b == 0xd9 ? 1 : b == 0xda ? 2 : 4, "msgpack str length");
    else if (b <= 0x7f || b >= 0xe0 || (b >= 0xcc && b <= 0xd3)) {
      r.seek(r.pos() - 1, "msgpack map key");
      Node k = decode(r, 0);
      return std::to_string(std::get<std::int64_t>(k.value()));
    } else {
      fail_at(r, start, "msgpack map key is neither a string nor an integer (type byte " + std::to_string(b) + ")");
    }
    return std::string(r.take_str(static_cast<std::size_t>(n), "msgpack map key"));
  }

  Node decode_map(ByteReader& r, std::uint64_t n, std::size_t depth) {
    checked_count(r, n, 2, "map");
    Node node = Node::dict();
    auto& children = node.container().children;
    children.reserve(static_cast<std::size_t>(n));
    std::unordered_set<std::string> seen;
    for (std::uint64_t i = 0; i < n; ++i) {
      const std::uint64_t key_off = r.abs_pos();
      std::string key = decode_key(r);
      if (!seen.insert(key).second) fail_at(r, key_off, "duplicate msgpack map key '" + key + "'");
      keys_.push_back(key);
      auto child = std::make_unique<Node>(decode(r, depth + 1));
      keys_.pop_back();
      children.emplace_back(std::move(key), std::move(child));
    }
    if (seen.count(kChunkedKey)) return unchunk(r, node);
    return node;
  }

  // ext 1 / ext 3 payload: [shape, dtype name, data].
  Tensor decode_ndarray(ByteReader& r, std::uint64_t ext_off) {
    const std::uint64_t start = r.abs_pos();
    const std::uint8_t b = r.u8("ndarray header");
    std::uint64_t n = 0;
    if (b >= 0x90 && b <= 0x9f) n = b & 0x0f;
    else if (b == 0xdc || b == 0xdd) n = length_field(r, b == 0xdc ? 2 : 4, "ndarray header");
    else fail_at(r, start, "msgpack ndarray payload is not an array");
    if (n != 3) fail_at(r, start, "msgpack ndarray payload has " + std::to_string(n) + " items, expected 3");

    // shape
    const std::uint64_t shape_off = r.abs_pos();
    Node shape_node = decode(r, kMsgpackMaxDepth - 1);
    Shape shape;
    if (!shape_node.is_container()) fail_at(r, shape_off, "msgpack ndarray shape is not an array");
    if (shape_node.size() > 64) fail_at(r, shape_off, "msgpack ndarray has more than 64 dimensions");
    for (const auto& ch : shape_node.container().children) {
      const auto* v = std::get_if<std::int64_t>(&ch.node->value());
      if (!v || *v < 0) fail_at(r, shape_off, "msgpack ndarray shape holds a non-integer or negative dimension");
      shape.push_back(*v);
    }
    // dtype name (str, or bin as very old writers produced)
    const std::uint64_t dtype_off = r.abs_pos();
    Node dtype_node = decode(r, kMsgpackMaxDepth);
    std::string dtype_str;
    if (auto* s = std::get_if<std::string>(&dtype_node.value())) dtype_str = *s;
    else if (auto* raw = std::get_if<RawBytes>(&dtype_node.value())) dtype_str = raw->data;
    else fail_at(r, dtype_off, "msgpack ndarray dtype is not a string");
    auto dtype = dtype_from_numpy_name(dtype_str);
    if (!dtype) fail_at(r, dtype_off, "unsupported ndarray dtype '" + dtype_str + "'");
    // data: bin (or str, for writers without the bin type)
    const std::uint64_t data_marker = r.abs_pos();
    const std::uint8_t db = r.u8("ndarray data");
    std::uint64_t len = 0;
    if (db == 0xc4 || db == 0xc5 || db == 0xc6) len = length_field(r, db == 0xc4 ? 1 : db == 0xc5 ? 2 : 4, "ndarray data length");
    else if (db >= 0xa0 && db <= 0xbf) len = db & 0x1f;
    else if (db >= 0xd9 && db <= 0xdb) len = length_field(r, db == 0xd9 ? 1 : db == 0xda ? 2 : 4, "ndarray data length");
    else fail_at(r, data_marker, "msgpack ndarray data is not a bin");
    const std::uint64_t data_off = r.abs_pos();
    r.need(static_cast<std::size_t>(len), "ndarray data");
    std::uint64_t numel = checked_numel(shape, path_ + ":" + where());
    std::uint64_t nbytes = 0;
    if (__builtin_mul_overflow(numel, static_cast<std::uint64_t>(dtype_size(*dtype)), &nbytes) || nbytes != len)
      fail_at(r, data_marker, "msgpack ndarray of shape " + shape_str(shape) + " " + dtype_str + " needs " +
                                  (nbytes == len ? std::string("more than 2^64") : std::to_string(nbytes)) +
                                  " bytes but its data has " + std::to_string(len));
    r.skip(static_cast<std::size_t>(len), "ndarray data");
    if (!r.at_end()) fail_at(r, r.abs_pos(), "unexpected bytes after a msgpack ndarray (ext at offset " + std::to_string(ext_off) + ")");
    return Tensor{{*dtype, std::move(shape)}, std::make_shared<MappedRangeSource>(file_, data_off, len, where())};
  }

  Node decode_ext(ByteReader& r, std::uint64_t len, std::size_t depth, std::uint64_t start) {
    const auto type = static_cast<std::int8_t>(r.u8("msgpack ext type"));
    const std::uint64_t payload_off = r.abs_pos();
    auto payload = r.take(static_cast<std::size_t>(len), "msgpack ext payload");
    ByteReader sub(payload, path_, payload_off);
    switch (type) {
      case kExtNdarray: return Node::tensor(decode_ndarray(sub, start));
      case kExtScalar: {
        Node n = Node::tensor(decode_ndarray(sub, start));
        if (!n.tensor().info.shape.empty()) fail_at(r, start, "msgpack numpy scalar (ext 3) has a non-empty shape");
        n.attrs["msgpack.ext"] = "3";
        return n;
      }
      case kExtComplex: {
        Node v = decode(sub, depth + 1);
        double parts[2];
        bool ok = v.is_container() && v.size() == 2 && sub.at_end();
        for (std::size_t i = 0; ok && i < 2; ++i) {
          const auto& val = v.container().children[i].node->value();
          if (auto* d = std::get_if<double>(&val)) parts[i] = *d;
          else if (auto* k = std::get_if<std::int64_t>(&val)) parts[i] = static_cast<double>(*k);
          else ok = false;
        }
        if (!ok) fail_at(r, start, "msgpack complex (ext 2) is not [real, imag]");
        Bytes bytes(16);
        std::memcpy(bytes.data(), parts, 16);
        Node n = Node::tensor(make_memory_tensor({DType::C128, {}}, std::move(bytes), path_ + ":" + where()));
        n.attrs["msgpack.ext"] = "2";
        return n;
      }
      case kExtTuple: {
        const std::uint8_t b = sub.at_end() ? 0 : std::to_integer<std::uint8_t>(payload[0]);
        if (!((b >= 0x90 && b <= 0x9f) || b == 0xdc || b == 0xdd)) fail_at(r, start, "msgpack tuple (ext 4) payload is not an array");
        Node v = decode(sub, depth + 1);
        if (!sub.at_end()) fail_at(r, sub.abs_pos(), "unexpected bytes after a msgpack tuple (ext 4)");
        v.container().kind = ContainerKind::Tuple;
        v.attrs.erase("msgpack.array");
        v.attrs["msgpack.ext"] = "4";
        return v;
      }
      default:
        fail_at(r, start, "unsupported msgpack ext type " + std::to_string(type));
    }
  }

  // {"__msgpack_chunked_array__": true, "shape": {"0": d0, ...}, "chunks": {"0": ndarray, ...}}
  Node unchunk(ByteReader& r, Node& node) {
    const std::uint64_t at = r.abs_pos();
    auto bad = [&](const std::string& why) { fail_at(r, at, "bad Flax chunked array: " + why); };
    const Node* flag = node.find(kChunkedKey);
    const Node* shape_node = node.find("shape");
    const Node* chunks = node.find("chunks");
    if (node.size() != 3 || !shape_node || !chunks) bad("expected exactly the keys __msgpack_chunked_array__, shape, chunks");
    const bool* flag_value = std::get_if<bool>(&flag->value());
    if (!flag_value || !*flag_value) bad("__msgpack_chunked_array__ is not true");
    auto indexed = [&](const Node& d, const char* what) {
      if (!d.is_container()) bad(std::string(what) + " is not a dict");
      const auto& ch = d.container().children;
      for (std::size_t i = 0; i < ch.size(); ++i)
        if (ch[i].key != std::to_string(i)) bad(std::string(what) + " keys are not 0, 1, ...");
      return &ch;
    };
    Shape shape;
    for (const auto& c : *indexed(*shape_node, "shape")) {
      const auto* v = std::get_if<std::int64_t>(&c.node->value());
      if (!v || *v < 0) bad("shape holds a non-integer or negative dimension");
      shape.push_back(*v);
    }
    const auto& parts_in = *indexed(*chunks, "chunks");
    if (parts_in.empty()) bad("no chunks");
    std::vector<ConcatSource::Part> parts;
    std::optional<DType> dtype;
    std::uint64_t total_elems = 0;
    for (const auto& c : parts_in) {
      if (!c.node->is_tensor()) bad("chunk " + c.key + " is not an ndarray");
      const Tensor& t = c.node->tensor();
      if (t.info.shape.size() != 1) bad("chunk " + c.key + " is not 1-D");
      if (dtype && *dtype != t.info.dtype) bad("chunks have different dtypes");
      dtype = t.info.dtype;
      total_elems += static_cast<std::uint64_t>(t.info.shape[0]);
      parts.push_back({t.source, t.info.nbytes()});
    }
    if (total_elems != checked_numel(shape, path_ + ":" + where()))
      bad("chunks hold " + std::to_string(total_elems) + " elements but shape " + shape_str(shape) + " needs " +
          std::to_string(checked_numel(shape, path_)));
    const std::string what = path_ + ":" + where() + " (" + std::to_string(parts.size()) + " chunks)";
    auto src = std::make_shared<ConcatSource>(std::move(parts), 1, what);
    return Node::tensor(Tensor{{*dtype, std::move(shape)}, std::move(src)});
  }

  MappedFilePtr file_;
  std::string path_;
  Path keys_;
};

// ---------------------------------------------------------------------------------------
// Encoder: the file as a sequence of pieces (literal msgpack bytes, and placeholders for
// tensor data written later at known offsets), built before any tensor byte is read.

struct LayoutPiece {
  enum Kind { Literal, Data, Complex } kind = Literal;
  std::string bytes;          // Literal
  std::size_t slot = 0;       // Data / Complex
  std::uint64_t tensor_off = 0, len = 0;
};

class MsgpackLayout {
 public:
  std::uint64_t size() const { return size_; }
  std::vector<LayoutPiece>& items() { return items_; }

  void raw(std::string_view s) {
    if (items_.empty() || items_.back().kind != LayoutPiece::Literal) items_.push_back(LayoutPiece{});
    items_.back().bytes += s;
    size_ += s.size();
  }
  void byte(std::uint8_t b) { raw(std::string_view(reinterpret_cast<const char*>(&b), 1)); }
  void be(std::uint64_t v, int width) {
    char buf[8];
    for (int i = 0; i < width; ++i) buf[i] = static_cast<char>((v >> (8 * (width - 1 - i))) & 0xFF);
    raw(std::string_view(buf, static_cast<std::size_t>(width)));
  }
  void data(std::size_t slot, std::uint64_t tensor_off, std::uint64_t len) {
    if (len == 0) return;
    items_.push_back(LayoutPiece{LayoutPiece::Data, {}, slot, tensor_off, len});
    size_ += len;
  }
  void complex(std::size_t slot) {
    items_.push_back(LayoutPiece{LayoutPiece::Complex, {}, slot, 0, 19});
    size_ += 19;
  }
  void append(MsgpackLayout&& other) {
    for (auto& it : other.items_) {
      if (it.kind == LayoutPiece::Literal) {
        raw(it.bytes);
      } else {
        size_ += it.len;
        items_.push_back(std::move(it));
      }
    }
  }

  // msgpack-python's choices of the smallest encodings.
  void nil() { byte(0xc0); }
  void boolean(bool v) { byte(v ? 0xc3 : 0xc2); }
  void integer(std::int64_t v) {
    if (v >= 0) {
      auto u = static_cast<std::uint64_t>(v);
      if (u < 0x80) byte(static_cast<std::uint8_t>(u));
      else if (u <= 0xff) { byte(0xcc); be(u, 1); }
      else if (u <= 0xffff) { byte(0xcd); be(u, 2); }
      else if (u <= 0xffffffffu) { byte(0xce); be(u, 4); }
      else { byte(0xcf); be(u, 8); }
    } else {
      auto u = static_cast<std::uint64_t>(v);
      if (v >= -32) byte(static_cast<std::uint8_t>(v));
      else if (v >= -128) { byte(0xd0); be(u, 1); }
      else if (v >= -32768) { byte(0xd1); be(u, 2); }
      else if (v >= -2147483648LL) { byte(0xd2); be(u, 4); }
      else { byte(0xd3); be(u, 8); }
    }
  }
  void float64(double d) {
    std::uint64_t bits;
    std::memcpy(&bits, &d, 8);
    byte(0xcb);
    be(bits, 8);
  }
  void float32(float f) {
    std::uint32_t bits;
    std::memcpy(&bits, &f, 4);
    byte(0xca);
    be(bits, 4);
  }
  void str(std::string_view s) {
    const std::uint64_t n = s.size();
    if (n < 32) byte(static_cast<std::uint8_t>(0xa0 | n));
    else if (n <= 0xff) { byte(0xd9); be(n, 1); }
    else if (n <= 0xffff) { byte(0xda); be(n, 2); }
    else { byte(0xdb); be(n, 4); }
    raw(s);
  }
  void bin_header(std::uint64_t n) {
    if (n <= 0xff) { byte(0xc4); be(n, 1); }
    else if (n <= 0xffff) { byte(0xc5); be(n, 2); }
    else { byte(0xc6); be(n, 4); }
  }
  void array_header(std::uint64_t n) {
    if (n <= 15) byte(static_cast<std::uint8_t>(0x90 | n));
    else if (n <= 0xffff) { byte(0xdc); be(n, 2); }
    else { byte(0xdd); be(n, 4); }
  }
  void map_header(std::uint64_t n) {
    if (n <= 15) byte(static_cast<std::uint8_t>(0x80 | n));
    else if (n <= 0xffff) { byte(0xde); be(n, 2); }
    else { byte(0xdf); be(n, 4); }
  }
  void ext_header(std::int8_t type, std::uint64_t n) {
    switch (n) {
      case 1: byte(0xd4); break;
      case 2: byte(0xd5); break;
      case 4: byte(0xd6); break;
      case 8: byte(0xd7); break;
      case 16: byte(0xd8); break;
      default:
        if (n <= 0xff) { byte(0xc7); be(n, 1); }
        else if (n <= 0xffff) { byte(0xc8); be(n, 2); }
        else { byte(0xc9); be(n, 4); }
    }
    byte(static_cast<std::uint8_t>(type));
  }

 private:
  std::vector<LayoutPiece> items_;
  std::uint64_t size_ = 0;
};

class MsgpackWriter final : public Writer {
 public:
  MsgpackWriter(std::string path, std::uint64_t max_chunk_bytes)
      : path_(std::move(path)), max_chunk_(max_chunk_bytes == 0 ? 1 : max_chunk_bytes) {}

  void begin(const Node& layout) override {
    MsgpackLayout encoded;
    Path keys;
    encode(encoded, layout, keys, /*in_map=*/true);
    // Assign file offsets; group each slot's pieces.
    slots_ = std::move(pending_);
    written_ = std::make_unique<std::atomic<std::uint64_t>[]>(slot_count_);
    std::uint64_t pos = 0;
    file_ = std::make_unique<AtomicFile>(path_);
    file_->truncate(encoded.size());
    for (auto& it : encoded.items()) {
      switch (it.kind) {
        case LayoutPiece::Literal: file_->pwrite(pos, it.bytes); break;
        case LayoutPiece::Data: slots_[it.slot].pieces.push_back({it.tensor_off, pos, it.len}); break;
        case LayoutPiece::Complex: slots_[it.slot].complex_off = pos; break;
      }
      pos += it.kind == LayoutPiece::Literal ? it.bytes.size() : it.len;
    }
  }

  void write(std::size_t slot, std::uint64_t offset, std::span<const std::byte> data) override {
    if (!file_) throw MappingError(path_, "msgpack writer: write() before begin()");
    if (slot >= slots_.size()) throw MappingError(path_, "msgpack writer: no tensor slot " + std::to_string(slot));
    Slot& s = slots_[slot];
    if (offset > s.nbytes || data.size() > s.nbytes - offset)
      throw MappingError(path_, "msgpack writer: write past the end of tensor '" + s.name + "'");
    if (s.complex_off) {
      std::lock_guard lock(mu_);
      std::memcpy(s.complex_buf + offset, data.data(), data.size());
    } else {
      const std::uint64_t end = offset + data.size();
      for (const auto& p : s.pieces) {
        const std::uint64_t lo = std::max(offset, p.tensor_off), hi = std::min(end, p.tensor_off + p.len);
        if (lo < hi)
          file_->pwrite(p.file_off + (lo - p.tensor_off),
                        data.subspan(static_cast<std::size_t>(lo - offset), static_cast<std::size_t>(hi - lo)));
      }
    }
    written_[slot] += data.size();
  }

  void commit() override {
    if (!file_) throw MappingError(path_, "msgpack writer: commit() before begin()");
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      if (written_[i] < slots_[i].nbytes)
        throw MappingError(path_, "tensor '" + slots_[i].name + "' was not fully written (" +
                                      std::to_string(written_[i].load()) + " of " + std::to_string(slots_[i].nbytes) +
                                      " bytes)");
      if (slots_[i].complex_off) {
        MsgpackLayout p;
        double parts[2];
        std::memcpy(parts, slots_[i].complex_buf, 16);
        p.array_header(2);
        p.float64(parts[0]);
        p.float64(parts[1]);
        file_->pwrite(*slots_[i].complex_off, p.items().front().bytes);
      }
    }
    file_->commit();
  }

 private:
  struct Piece {
    std::uint64_t tensor_off, file_off, len;
  };
  struct Slot {
    std::string name;
    std::uint64_t nbytes = 0;
    std::vector<Piece> pieces;
    std::optional<std::uint64_t> complex_off;
    std::byte complex_buf[16] = {};
  };

  static std::string attr(const Node& n, const char* key) {
    auto it = n.attrs.find(key);
    return it == n.attrs.end() ? std::string() : it->second;
  }

  std::size_t new_slot(const Path& keys, const TensorInfo& info) {
    pending_.push_back({join_path(keys), info.nbytes(), {}, std::nullopt, {}});
    ++slot_count_;
    return slot_count_ - 1;
  }

  void ndarray(MsgpackLayout& out, std::int8_t ext, const Shape& shape, DType dtype, std::size_t slot, std::uint64_t tensor_off,
               std::uint64_t nbytes, const Path& keys) {
    if (nbytes > 0xffffffffu)
      throw MappingError(join_path(keys), "tensor of " + std::to_string(nbytes) +
                                              " bytes is too large for one msgpack bin and cannot be chunked here "
                                              "(Flax chunks only arrays that are dict values)");
    MsgpackLayout payload;
    payload.array_header(3);
    payload.array_header(shape.size());
    for (auto d : shape) payload.integer(d);
    payload.str(dtype_numpy_name(dtype));
    payload.bin_header(nbytes);
    payload.data(slot, tensor_off, nbytes);
    if (payload.size() > 0xffffffffu) throw MappingError(join_path(keys), "msgpack ext payload exceeds 4 GiB");
    out.ext_header(ext, payload.size());
    out.append(std::move(payload));
  }

  void encode_tensor(MsgpackLayout& out, const Node& n, const Path& keys, bool in_map) {
    const Tensor& t = n.tensor();
    const std::size_t slot = new_slot(keys, t.info);
    const std::uint64_t nbytes = t.info.nbytes();
    const std::string ext = attr(n, "msgpack.ext");
    if (ext == "2" && t.info.dtype == DType::C128 && t.info.shape.empty()) {
      out.ext_header(kExtComplex, 19);
      out.complex(slot);
      pending_.back().complex_off = 0;  // marks the slot as buffered; real offset set in begin()
      return;
    }
    if (in_map && nbytes > max_chunk_) {
      // flax.serialization._chunk: 1-D slices of max(1, MAX_CHUNK_SIZE / itemsize) elements.
      const std::uint64_t item = dtype_size(t.info.dtype);
      const std::uint64_t chunk_elems = std::max<std::uint64_t>(1, max_chunk_ / item);
      const std::uint64_t numel = t.info.numel();
      const std::uint64_t nchunks = (numel + chunk_elems - 1) / chunk_elems;
      out.map_header(3);
      out.str(kChunkedKey);
      out.boolean(true);
      out.str("shape");
      out.map_header(t.info.shape.size());
      for (std::size_t i = 0; i < t.info.shape.size(); ++i) {
        out.str(std::to_string(i));
        out.integer(t.info.shape[i]);
      }
      out.str("chunks");
      out.map_header(nchunks);
      for (std::uint64_t c = 0; c < nchunks; ++c) {
        const std::uint64_t e0 = c * chunk_elems, e1 = std::min(numel, e0 + chunk_elems);
        out.str(std::to_string(c));
        ndarray(out, kExtNdarray, {static_cast<std::int64_t>(e1 - e0)}, t.info.dtype, slot, e0 * item, (e1 - e0) * item, keys);
      }
      return;
    }
    const bool scalar = ext == "3" && t.info.shape.empty();
    ndarray(out, scalar ? kExtScalar : kExtNdarray, t.info.shape, t.info.dtype, slot, 0, nbytes, keys);
  }

  void encode(MsgpackLayout& out, const Node& n, Path& keys, bool in_map) {
    if (keys.size() > kMsgpackMaxDepth)
      throw MappingError(join_path(keys), "tree nesting deeper than " + std::to_string(kMsgpackMaxDepth) + " levels");
    struct V {
      MsgpackWriter& w;
      MsgpackLayout& out;
      const Node& n;
      Path& keys;
      bool in_map;
      void operator()(const Node::Container& c) const {
        const std::string ext = attr(n, "msgpack.ext");
        const bool as_array = attr(n, "msgpack.array") == "1" && c.kind == ContainerKind::List;
        const bool as_tuple = ext == "4" && c.kind == ContainerKind::Tuple;
        if (as_tuple) {
          MsgpackLayout inner;
          inner.array_header(c.children.size());
          for (const auto& ch : c.children) w.child(inner, ch, keys, false);
          out.ext_header(kExtTuple, inner.size());
          out.append(std::move(inner));
          return;
        }
        if (as_array) {
          out.array_header(c.children.size());
          for (const auto& ch : c.children) w.child(out, ch, keys, false);
          return;
        }
        out.map_header(c.children.size());
        for (const auto& ch : c.children) {
          out.str(ch.key);
          w.child(out, ch, keys, true);
        }
      }
      void operator()(const Tensor&) const { w.encode_tensor(out, n, keys, in_map); }
      void operator()(const NoneValue&) const { out.nil(); }
      void operator()(bool b) const { out.boolean(b); }
      void operator()(std::int64_t v) const { out.integer(v); }
      void operator()(double d) const {
        if (attr(n, "msgpack.type") == "float32" && static_cast<double>(static_cast<float>(d)) == d)
          out.float32(static_cast<float>(d));
        else
          out.float64(d);
      }
      void operator()(const std::string& s) const { out.str(s); }
      void operator()(const RawBytes& b) const {
        out.bin_header(b.data.size());
        out.raw(b.data);
      }
    };
    std::visit(V{*this, out, n, keys, in_map}, n.value());
  }

  void child(MsgpackLayout& out, const Child& ch, Path& keys, bool in_map) {
    keys.push_back(ch.key);
    encode(out, *ch.node, keys, in_map);
    keys.pop_back();
  }

  std::string path_;
  std::uint64_t max_chunk_;
  std::size_t slot_count_ = 0;
  std::vector<Slot> pending_;  // filled while encoding, moved into slots_
  std::vector<Slot> slots_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> written_;
  std::unique_ptr<AtomicFile> file_;
  std::mutex mu_;
};

}  // namespace

Node decode_msgpack_tree(const MappedFilePtr& file) { return Decoder(file).decode_root(); }

Checkpoint read_msgpack_file(const std::string& path) {
  auto file = MappedFile::open(path);
  // All members given explicitly: GCC 12 with -fsanitize warns (falsely) about the default
  // member initialiser's Node::dict() here.
  return Checkpoint{"msgpack", path, decode_msgpack_tree(file), {}};
}

bool looks_like_msgpack_map(std::span<const std::byte> bytes) { return looks_like_msgpack_map(bytes, bytes.size()); }

bool looks_like_msgpack_file(const MappedFile& file) {
  return looks_like_msgpack_map(file.range(0, std::min<std::uint64_t>(file.size(), 4096), "msgpack head"), file.size());
}

bool looks_like_msgpack_map(std::span<const std::byte> bytes, std::uint64_t total_size) {
  auto at = [&](std::size_t i) { return std::to_integer<std::uint8_t>(bytes[i]); };
  const std::size_t size = bytes.size();
  if (size == 0) return false;
  std::uint64_t count = 0;
  std::size_t pos = 0;
  const std::uint8_t b0 = at(0);
  if (b0 >= 0x80 && b0 <= 0x8f) {
    count = b0 & 0x0f;
    pos = 1;
  } else if (b0 == 0xde && size >= 3) {
    count = (std::uint64_t{at(1)} << 8) | at(2);
    pos = 3;
  } else if (b0 == 0xdf && size >= 5) {
    count = (std::uint64_t{at(1)} << 24) | (std::uint64_t{at(2)} << 16) | (std::uint64_t{at(3)} << 8) | at(4);
    pos = 5;
  } else {
    return false;
  }
  if (count == 0) return size == pos;
  // safetensors: u64le header length N, then '{' at byte 8.
  if (size >= 9 && at(8) == '{') {
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | at(static_cast<std::size_t>(i));
    if (n <= total_size - 8) return false;
  }
  if (pos >= size) return false;
  const std::uint8_t k = at(pos++);
  std::uint64_t klen = 0;
  if (k >= 0xa0 && k <= 0xbf) {
    klen = k & 0x1f;
  } else if (k >= 0xd9 && k <= 0xdb) {
    const int w = k == 0xd9 ? 1 : k == 0xda ? 2 : 4;
    if (size - pos < static_cast<std::size_t>(w)) return false;
    for (int i = 0; i < w; ++i) klen = (klen << 8) | at(pos++);
  } else {
    return false;
  }
  if (klen > size - pos) return false;
  for (std::uint64_t i = 0; i < klen; ++i)
    if (at(pos + i) < 0x20 || at(pos + i) == 0x7f) return false;
  pos += klen;
  return pos < size && at(pos) != 0xc1;  // a value follows
}

std::unique_ptr<Writer> make_msgpack_writer(const std::string& path, std::uint64_t max_chunk_bytes) {
  return std::make_unique<MsgpackWriter>(path, max_chunk_bytes);
}

}  // namespace ckb
