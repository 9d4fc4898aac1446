// Writing torch.save-compatible zip checkpoints that torch.load(weights_only=True) accepts:
// <archive>/data.pkl (protocol 2, only opcodes torch's weights-only unpickler allows),
// .format_version, .storage_alignment, byteorder, one <archive>/data/<k> record per tensor
// (64-byte aligned, stored), and version. The archive name is the output file's stem.
// Records are laid out up front by ZipWriter, so tensor bytes stream in from any thread,
// and the file appears at its destination only on commit (AtomicFile).
#include <algorithm>
#include <charconv>
#include <optional>
#include <cstring>
#include <filesystem>
#include <unordered_map>

#include "core/errors.h"
#include "formats/torch/torch_format.h"
#include "io/file.h"
#include "io/output.h"
#include "io/zip.h"

namespace ckb::torch_format {
namespace {

// Emits the protocol-2 opcodes of the verified writer subset (plus NONE/NEWTRUE/BINFLOAT/
// EMPTY_DICT/EMPTY_LIST/APPENDS for non-tensor leaves, all on torch's allowlist).
class PickleWriter {
 public:
  std::string out;

  void proto() { out += "\x80\x02"; }
  void stop() { out += '.'; }
  void mark() { out += '('; }
  void global(std::string_view module, std::string_view name) {
    out += 'c';
    out += module;
    out += '\n';
    out += name;
    out += '\n';
  }
  void reduce() { out += 'R'; }
  void none() { out += 'N'; }
  void boolean(bool b) { out += b ? '\x88' : '\x89'; }
  void integer(std::int64_t v) {
    if (v >= 0 && v < 256) {
      out += 'K';
      out += static_cast<char>(v);
    } else if (v >= 0 && v < 65536) {
      out += 'M';
      le(static_cast<std::uint64_t>(v), 2);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      out += 'J';
      le(static_cast<std::uint64_t>(static_cast<std::uint32_t>(static_cast<std::int32_t>(v))), 4);
    } else {
      // LONG1: minimal little-endian two's complement.
      std::uint64_t u = static_cast<std::uint64_t>(v);
      std::size_t n = 8;
      while (n > 1) {
        std::uint8_t top = static_cast<std::uint8_t>(u >> (8 * (n - 1)));
        std::uint8_t next_sign = static_cast<std::uint8_t>(u >> (8 * (n - 2))) & 0x80;
        if ((top == 0 && !next_sign) || (top == 0xff && next_sign)) --n;
        else break;
      }
      out += '\x8a';
      out += static_cast<char>(n);
      le(u, n);
    }
  }
  void real(double d) {
    std::uint64_t u;
    std::memcpy(&u, &d, 8);
    out += 'G';
    for (int k = 7; k >= 0; --k) out += static_cast<char>((u >> (8 * k)) & 0xff);
  }
  void str(std::string_view s) {
    out += 'X';
    le(s.size(), 4);
    out += s;
  }
  void tuple_of(std::size_t n) {  // after pushing n items (a MARK first when n > 3)
    static const char ops[] = {')', '\x85', '\x86', '\x87'};
    out += n <= 3 ? ops[n] : 't';
  }
  void tuple_marked() { out += 't'; }  // closes the innermost MARK
  void empty_dict() { out += '}'; }
  void empty_list() { out += ']'; }
  void setitems() { out += 'u'; }
  void appends() { out += 'e'; }
  void binpersid() { out += 'Q'; }
  void empty_ordered_dict() {
    global("collections", "OrderedDict");
    tuple_of(0);
    reduce();
  }

 private:
  void le(std::uint64_t v, std::size_t n) {
    for (std::size_t k = 0; k < n; ++k) out += static_cast<char>((v >> (8 * k)) & 0xff);
  }
};

// The int a dict key spelled, if it is exactly a canonical decimal int64 ("7", "-3").
std::optional<std::int64_t> parse_int(const std::string& s) {
  std::int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || std::to_string(v) != s) return std::nullopt;
  return v;
}

std::vector<std::int64_t> contiguous_strides(const Shape& shape) {
  std::vector<std::int64_t> st(shape.size());
  std::int64_t acc = 1;
  for (std::size_t d = shape.size(); d-- > 0;) {
    st[d] = acc;
    acc *= std::max<std::int64_t>(shape[d], 1);
  }
  return st;
}

class TorchWriter final : public Writer {
 public:
  TorchWriter(std::string path, WriteOptions opts) : path_(std::move(path)), opts_(std::move(opts)) {
    archive_ = std::filesystem::path(path_).stem().string();
    if (archive_.empty() || archive_ == "." || archive_ == ".." || archive_.find('\\') != std::string::npos)
      archive_ = "archive";
  }

  void begin(const Node& layout) override {
    if (zip_) throw UsageError("torch writer: begin() called twice");
    auto tensors = tensor_list(layout);
    for (std::size_t i = 0; i < tensors.size(); ++i) slot_of_[tensors[i].second] = i;

    PickleWriter pw;
    pw.proto();
    const bool bare = layout.attrs.count("torch.root") && layout.attrs.at("torch.root") == "bare" &&
                      layout.is_container() && layout.size() == 1;
    Path path;
    if (bare) {
      const Child& c = layout.container().children.front();
      path.push_back(c.key);
      emit(pw, *c.node, path, false);
    } else {
      emit(pw, layout, path, true);
    }
    pw.stop();
    pickle_ = std::move(pw.out);

    std::vector<ZipWriter::Member> members;
    auto small = [&](const std::string& name, std::string content) {
      members.push_back({archive_ + "/" + name, content.size()});
      small_.emplace_back(members.size() - 1, std::move(content));
    };
    small("data.pkl", pickle_);
    small(".format_version", "1");
    small(".storage_alignment", "64");
    small("byteorder", "little");
    first_storage_ = members.size();
    for (std::size_t i = 0; i < tensors.size(); ++i)
      members.push_back({archive_ + "/data/" + std::to_string(i), tensors[i].second->info.nbytes()});
    small("version", "3\n");

    out_ = std::make_unique<AtomicFile>(path_);
    const bool force64 = option_flag(opts_.options, "zip64");
    zip_ = std::make_unique<ZipWriter>(*out_, std::move(members), 64, force64);
    for (const auto& [idx, content] : small_)
      zip_->write(idx, 0, std::as_bytes(std::span(content.data(), content.size())));
  }

  void write(std::size_t slot, std::uint64_t offset, std::span<const std::byte> data) override {
    if (!zip_) throw UsageError("torch writer: write() before begin()");
    if (slot >= slot_of_.size()) throw UsageError("torch writer: tensor slot " + std::to_string(slot) + " out of range");
    zip_->write(first_storage_ + slot, offset, data);
  }

  bool prefers_file_order() const override { return is_remote_path(path_); }
  std::optional<std::uint64_t> file_position(std::size_t slot, std::uint64_t offset) const override {
    if (!zip_ || slot >= slot_of_.size()) return std::nullopt;
    return zip_->data_offset(first_storage_ + slot) + offset;
  }

  void commit() override {
    if (!zip_) throw UsageError("torch writer: commit() before begin()");
    zip_->finish();
    out_->commit();
  }

 private:
  [[noreturn]] void unmappable(const Path& path, const std::string& why) const {
    throw MappingError(path_, "'" + join_path(path) + "': " + why);
  }

  void emit(PickleWriter& pw, const Node& n, Path& path, bool is_root) {
    if (path.size() > pickle::kMaxDepth) unmappable(path, "nested too deeply for a torch pickle");
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, Node::Container>) {
            emit_container(pw, n, v, path, is_root);
          } else if constexpr (std::is_same_v<T, Tensor>) {
            emit_tensor(pw, n, v, path);
          } else if constexpr (std::is_same_v<T, NoneValue>) {
            pw.none();
          } else if constexpr (std::is_same_v<T, bool>) {
            pw.boolean(v);
          } else if constexpr (std::is_same_v<T, std::int64_t>) {
            pw.integer(v);
          } else if constexpr (std::is_same_v<T, double>) {
            pw.real(v);
          } else if constexpr (std::is_same_v<T, std::string>) {
            pw.str(v);
          } else if constexpr (std::is_same_v<T, RawBytes>) {
            // Protocol 2 spells bytes as _codecs.encode(<latin-1 text>, 'latin1').
            std::string text;
            for (char c : v.data) {
              auto u = static_cast<unsigned char>(c);
              if (u < 0x80) {
                text += c;
              } else {
                text += static_cast<char>(0xC0 | (u >> 6));
                text += static_cast<char>(0x80 | (u & 0x3F));
              }
            }
            pw.global("_codecs", "encode");
            pw.str(text);
            pw.str("latin1");
            pw.tuple_of(2);
            pw.reduce();
          }
        },
        n.value());
  }

  void emit_container(PickleWriter& pw, const Node& n, const Node::Container& c, Path& path, bool is_root) {
    auto child = [&](const Child& ch) {
      path.push_back(ch.key);
      emit(pw, *ch.node, path, false);
      path.pop_back();
    };
    switch (c.kind) {
      case ContainerKind::Dict: {
        auto it = n.attrs.find("torch.type");
        const bool ordered = it != n.attrs.end() ? it->second == "OrderedDict" : is_root;
        if (ordered) pw.empty_ordered_dict();
        else pw.empty_dict();
        if (c.children.empty()) return;
        auto keys = n.attrs.find("torch.keys");
        const bool int_keys = keys != n.attrs.end() && keys->second == "int" &&
                              std::all_of(c.children.begin(), c.children.end(),
                                          [](const Child& ch) { return parse_int(ch.key).has_value(); });
        pw.mark();
        for (const auto& ch : c.children) {
          if (int_keys) pw.integer(*parse_int(ch.key));
          else pw.str(ch.key);
          child(ch);
        }
        pw.setitems();
        return;
      }
      case ContainerKind::List:
        pw.empty_list();
        if (c.children.empty()) return;
        pw.mark();
        for (const auto& ch : c.children) child(ch);
        pw.appends();
        return;
      case ContainerKind::Tuple:
        if (c.children.size() > 3) pw.mark();
        for (const auto& ch : c.children) child(ch);
        pw.tuple_of(c.children.size());
        return;
    }
  }

  void emit_tensor(PickleWriter& pw, const Node& n, const Tensor& t, const Path& path) {
    auto slot = slot_of_.find(&t);
    if (slot == slot_of_.end()) unmappable(path, "internal: tensor has no slot");
    checked_numel(t.info.shape, path_ + ": '" + join_path(path) + "'");
    const std::string key = std::to_string(slot->second);
    const bool parameter = n.attrs.count("torch.parameter") && n.attrs.at("torch.parameter") == "1";
    const bool requires_grad = n.attrs.count("torch.requires_grad") && n.attrs.at("torch.requires_grad") == "1";
    const auto storage_class = pickle::torch_storage_class(t.info.dtype);
    if (parameter) pw.global("torch._utils", "_rebuild_parameter");
    pw.global("torch._utils", storage_class ? "_rebuild_tensor_v2" : "_rebuild_tensor_v3");
    pw.mark();
    // Persistent id ('storage', class, key, 'cpu', numel); UntypedStorage counts bytes.
    pw.mark();
    pw.str("storage");
    if (storage_class) pw.global("torch", *storage_class);
    else pw.global("torch.storage", "UntypedStorage");
    pw.str(key);
    pw.str("cpu");
    pw.integer(static_cast<std::int64_t>(storage_class ? t.info.numel() : t.info.nbytes()));
    pw.tuple_marked();
    pw.binpersid();
    pw.integer(0);
    if (t.info.shape.size() > 3) pw.mark();
    for (auto d : t.info.shape) pw.integer(d);
    pw.tuple_of(t.info.shape.size());
    const auto strides = contiguous_strides(t.info.shape);
    if (strides.size() > 3) pw.mark();
    for (auto s : strides) pw.integer(s);
    pw.tuple_of(strides.size());
    pw.boolean(parameter ? false : requires_grad);
    pw.empty_ordered_dict();
    if (!storage_class) pw.global("torch", pickle::torch_dtype_name(t.info.dtype));
    pw.tuple_marked();
    pw.reduce();
    if (parameter) {
      pw.boolean(requires_grad);
      pw.empty_ordered_dict();
      pw.tuple_of(3);
      pw.reduce();
    }
  }

  std::string path_;
  WriteOptions opts_;
  std::string archive_;
  std::string pickle_;
  std::unordered_map<const Tensor*, std::size_t> slot_of_;
  std::vector<std::pair<std::size_t, std::string>> small_;
  std::size_t first_storage_ = 0;
  std::unique_ptr<AtomicFile> out_;
  std::unique_ptr<ZipWriter> zip_;
};

}  // namespace

std::unique_ptr<Writer> make_writer(const std::string& path, const WriteOptions& opts) {
  return std::make_unique<TorchWriter>(path, opts);
}

}  // namespace ckb::torch_format
