// The "npz" format: a zip of .npy members (np.savez stored, np.savez_compressed deflated).
// Reading is lazy: stored members are ranges of the mmap'd archive, CRC-32 verified as they
// are read (io/zip.h); for deflated members only the .npy header is inflated up front, the
// data (and its CRC-32 check) on first read. String members ('<U5', '|S3') become string /
// bytes leaves (npy_string_node: a 0-d array one leaf, an N-d one nested Lists); object
// members ('|O', pickles) are refused by name. Every error about a member names it. Writing stores
// one 64-byte aligned member per tensor, named "<'/'-joined path>.npy".
#include <memory>
#include <unordered_set>

#include "codec/inflate.h"
#include "core/errors.h"
#include "formats/format.h"
#include "formats/numpy/npy.h"
#include "io/file.h"
#include "io/output.h"
#include "io/zip.h"

namespace ckb {
namespace {

constexpr std::string_view kNpySuffix = ".npy";

bool ends_with_npy(const std::string& s) {
  return s.size() >= kNpySuffix.size() && s.compare(s.size() - kNpySuffix.size(), kNpySuffix.size(), kNpySuffix) == 0;
}

bool starts_like_zip(std::span<const std::byte> b) {
  if (b.size() < 4) return false;
  auto at = [&](std::size_t i) { return std::to_integer<unsigned char>(b[i]); };
  // local file header, or an end record first (an empty archive)
  return at(0) == 'P' && at(1) == 'K' && ((at(2) == 3 && at(3) == 4) || (at(2) == 5 && at(3) == 6));
}

// Inflates at most `max_out` bytes from the start of a deflated member (enough for the .npy
// header) without inflating the rest.
std::string inflate_prefix(const ZipReader& zip, const ZipEntry& e, std::uint64_t max_out) {
  const auto& file = *zip.file();
  auto comp = file.range(e.data_offset, e.compressed_size, "npz member data");
  std::string out(static_cast<std::size_t>(std::min(max_out, e.uncompressed_size)), '\0');
  if (out.empty()) return out;
  InflateStream stream(DeflateWrap::Raw, comp, e.uncompressed_size, file.path(), e.data_offset,
                       "cannot inflate npz member '" + e.name + "'");
  stream.read(std::as_writable_bytes(std::span(out)));
  return out;
}

// String members are read whole (CRC-checked) into leaves; bounded so a tree of leaves
// cannot exhaust memory.
constexpr std::uint64_t kMaxStringMemberBytes = 256ull << 20;
constexpr std::uint64_t kMaxStringElements = 1ull << 22;

// One member: a lazy tensor, string leaves, or a FormatError (object arrays are refused: their
// data is a pickle, which ckptbridge never loads). Messages may name the member or not; the
// caller adds it. Offsets are absolute for stored members, inside the inflated member for
// deflated ones.
Child read_member(const ZipReader& zip, const ZipEntry& e, const NpyReadOptions& opts,
                  std::unordered_set<std::string>& seen) {
  const std::string& path = zip.file()->path();
  if (!ends_with_npy(e.name))
    throw FormatError(path, "npz member '" + e.name + "' is not a .npy array", e.local_header_offset);
  const std::string name = e.name.substr(0, e.name.size() - kNpySuffix.size());
  const std::string where = path + ":" + e.name;
  NpyHeader h;
  if (e.method == 0) {
    h = parse_npy_header(zip.stored_bytes(e), path, e.data_offset, opts);
  } else {
    const std::string prefix = inflate_prefix(zip, e, kNpyMaxPrefixLen + kNpyMaxHeaderLen);
    h = parse_npy_header(std::as_bytes(std::span(prefix.data(), prefix.size())), path, 0, opts);
  }
  if (h.kind == NpyKind::Object)
    throw FormatError(path, "member '" + e.name + "' holds Python objects (dtype object); ckptbridge does not unpickle",
                      e.data_offset);
  if (h.data_offset > e.uncompressed_size || h.nbytes > e.uncompressed_size - h.data_offset)
    throw FormatError(path, "npz member '" + e.name + "' is truncated: shape " + shape_str(h.info.shape) + " of " +
                                h.descr + " needs " + std::to_string(h.nbytes) + " data bytes after its " +
                                std::to_string(h.data_offset) + "-byte header, the member has " +
                                std::to_string(e.uncompressed_size),
                      e.data_offset);
  if (!seen.insert(name).second) throw FormatError(path, "two npz members named '" + name + "'", e.local_header_offset);
  if (h.kind != NpyKind::Numeric) {
    const std::uint64_t numel = h.info.numel();
    if (h.nbytes > kMaxStringMemberBytes || numel > kMaxStringElements)
      throw FormatError(path,
                        "npz member '" + e.name + "' is a string array of " + std::to_string(numel) + " elements (" +
                            std::to_string(h.nbytes) + " bytes); string arrays over " +
                            std::to_string(kMaxStringElements) + " elements or " +
                            std::to_string(kMaxStringMemberBytes >> 20) + " MiB are not read as tree leaves",
                        e.data_offset);
    const Bytes whole = zip.read(e);  // CRC-32 checked
    auto data = whole.span().subspan(static_cast<std::size_t>(h.data_offset), static_cast<std::size_t>(h.nbytes));
    return Child(name, std::make_unique<Node>(npy_string_node(h, data, path)));
  }
  // A member whose array has no data bytes is verified now (no read will ever reach it).
  if (h.nbytes == 0) zip.read(e);
  SourcePtr raw = zip.member_source(e, h.data_offset, h.nbytes);
  return Child(name, std::make_unique<Node>(Node::tensor(Tensor{h.info, npy_tensor_source(h, std::move(raw), where)})));
}

class NpzWriter final : public Writer {
 public:
  explicit NpzWriter(std::string path) : path_(std::move(path)) {}

  void begin(const Node& layout) override {
    std::vector<std::string> not_tensors;
    std::vector<ZipWriter::Member> members;
    std::unordered_set<std::string> names;
    visit_leaves(layout, [&](const Path& p, const Node& n) {
      const std::string name = join_path(p);
      if (!n.is_tensor()) {
        not_tensors.push_back((name.empty() ? std::string("<root>") : name) + " (" + std::string(n.type_name()) + ")");
        return;
      }
      check_name(name);
      std::string header = npy_header_bytes(n.tensor().info, name);
      std::string member = name + std::string(kNpySuffix);
      if (!names.insert(member).second)
        throw MappingError(path_, "two tensors map to the same npz member '" + member + "'");
      members.push_back({member, header.size() + n.tensor().info.nbytes()});
      nbytes_.push_back(n.tensor().info.nbytes());
      headers_.push_back(std::move(header));
    });
    if (!not_tensors.empty()) {
      std::string list;
      for (std::size_t i = 0; i < not_tensors.size() && i < 20; ++i) list += (i ? ", " : "") + not_tensors[i];
      if (not_tensors.size() > 20) list += ", ... (" + std::to_string(not_tensors.size()) + " in all)";
      throw MappingError(path_, "npz holds only arrays; these leaves are not tensors: " + list);
    }
    file_ = std::make_unique<AtomicFile>(path_);
    zip_ = std::make_unique<ZipWriter>(*file_, std::move(members), 64);
    for (std::size_t i = 0; i < headers_.size(); ++i)
      zip_->write(i, 0, std::as_bytes(std::span(headers_[i].data(), headers_[i].size())));
  }

  void write(std::size_t slot, std::uint64_t offset, std::span<const std::byte> data) override {
    if (!zip_) throw MappingError(path_, "npz writer: write() before begin()");
    if (slot >= headers_.size() || offset > nbytes_[slot] || data.size() > nbytes_[slot] - offset)
      throw MappingError(path_, "npz writer: write to slot " + std::to_string(slot) + " at " + std::to_string(offset) +
                                    " is outside the tensor");
    zip_->write(slot, headers_[slot].size() + offset, data);
  }

  bool prefers_file_order() const override { return is_remote_path(path_); }
  std::optional<std::uint64_t> file_position(std::size_t slot, std::uint64_t offset) const override {
    if (!zip_ || slot >= headers_.size()) return std::nullopt;
    return zip_->data_offset(slot) + headers_[slot].size() + offset;
  }

  void commit() override {
    if (!zip_) throw MappingError(path_, "npz writer: commit() before begin()");
    zip_->finish();
    file_->commit();
  }

 private:
  // Names a zip reader (ours included) would refuse to extract.
  void check_name(const std::string& name) const {
    auto bad = [&](const char* why) { throw MappingError(path_, "tensor name '" + name + "' cannot be an npz member: " + why); };
    if (name.empty()) bad("it is empty");
    if (name.front() == '/' || name.front() == '\\') bad("it is an absolute path");
    if (name.find('\0') != std::string::npos) bad("it contains NUL");
    std::size_t start = 0;
    while (start <= name.size()) {
      std::size_t end = name.find_first_of("/\\", start);
      if (end == std::string::npos) end = name.size();
      if (name.compare(start, end - start, "..") == 0 && end - start == 2) bad("it contains a '..' component");
      start = end + 1;
    }
  }

  std::string path_;
  std::vector<std::string> headers_;
  std::vector<std::uint64_t> nbytes_;
  std::unique_ptr<AtomicFile> file_;
  std::unique_ptr<ZipWriter> zip_;
};

}  // namespace

Checkpoint read_npz_file(const std::string& path, const NpyReadOptions& opts) {
  auto file = MappedFile::open(path);
  ZipReader zip(file);
  Node root;  // a Dict (built without Node::dict(), which GCC 12 + sanitizers falsely flag)
  auto& children = root.container().children;
  std::unordered_set<std::string> seen;
  NpyReadOptions member_opts = opts;
  member_opts.non_numeric = true;
  for (const ZipEntry& e : zip.entries()) {
    const bool deflated = e.method != 0;
    try {
      children.emplace_back(read_member(zip, e, member_opts, seen));
    } catch (const FormatError& err) {
      // Every error about a member names it (and the archive, and an absolute offset).
      if (err.detail().find("member '" + e.name + "'") != std::string::npos) throw;
      if (!deflated) throw FormatError(path, "npz member '" + e.name + "': " + err.detail(), err.offset());
      throw FormatError(path,
                        "npz member '" + e.name + "' (deflated" +
                            (err.offset() ? "; offset " + std::to_string(*err.offset()) + " in the inflated member" : "") +
                            "): " + err.detail(),
                        e.data_offset);
    }
  }
  return Checkpoint{"npz", path, std::move(root), {}};
}

Format make_npz_format() {
  Format f;
  f.name = "npz";
  f.extensions = {".npz"};
  f.default_file_name = "model.npz";
  f.description = "NumPy .npz: zip of .npy arrays (np.savez, np.savez_compressed); read and write";
  f.detect = [](const std::string& path) {
    try {
      auto file = MappedFile::open(path);
      if (!starts_like_zip(file->range(0, std::min<std::uint64_t>(file->size(), 4), "zip magic"))) return false;
      ZipReader zip(file);
      for (const auto& e : zip.entries())
        if (!ends_with_npy(e.name)) return false;
      return true;
    } catch (...) {
      return false;
    }
  };
  f.read = [](const std::string& path, const ReadOptions&) { return read_npz_file(path); };
  f.make_writer = [](const std::string& path, const WriteOptions&) -> std::unique_ptr<Writer> {
    return std::make_unique<NpzWriter>(path);
  };
  return f;
}

}  // namespace ckb
