// Reading torch.save checkpoints: the zip format (<archive>/data.pkl + <archive>/data/<key>
// storage records, read by range from the mapping with their CRC-32 verified as they stream,
// io/zip.h) and the legacy format (magic, protocol and sys_info
// pickles, the object pickle, the storage-key list, then raw storages). Detection sniffs
// content only and never throws. Tensors are lazy strided views over their storage, so
// tied weights share one source and transposed/offset views read correctly.
#include <cstring>
#include <map>
#include <set>

#include "core/errors.h"
#include "formats/torch/torch_format.h"
#include "io/byte_reader.h"
#include "io/file.h"
#include "io/zip.h"

namespace ckb::torch_format {
namespace {

bool starts_with_bytes(std::span<const std::byte> data, const unsigned char* prefix, std::size_t n) {
  return data.size() >= n && std::memcmp(data.data(), prefix, n) == 0;
}

bool is_zip(std::span<const std::byte> data) {
  static const unsigned char pk[] = {'P', 'K', 3, 4};
  return starts_with_bytes(data, pk, 4);
}

// The archive directory: the first entry's name up to its first '/' (as torch does).
std::string archive_name(const ZipReader& zr, const std::string& path) {
  if (zr.entries().empty()) throw FormatError(path, "zip archive is empty; not a torch checkpoint");
  const std::string& first = zr.entries().front().name;
  auto slash = first.find('/');
  if (slash == std::string::npos || slash == 0)
    throw FormatError(path, "zip entry '" + first + "' is not inside an archive directory; not a torch checkpoint");
  return first.substr(0, slash);
}

std::uint64_t storage_nbytes(const pickle::StorageRef& s, const std::string& path) {
  std::uint64_t n = 0;
  if (__builtin_mul_overflow(static_cast<std::uint64_t>(s.numel), s.element_size(), &n))
    throw FormatError(path, "storage '" + s.key + "' declares an impossible size");
  return n;
}

// torch.save with torch.serialization.set_crc32_options(False) records CRC-32 0 for every
// record (torch.load never checks CRCs); any other CRC-32 is verified as data is read.
constexpr ZipReadOptions kTorchZip{.zero_crc_means_unset = true};

Checkpoint read_zip(const std::string& path, MappedFilePtr file) {
  ZipReader zr(file, kTorchZip);
  const std::string archive = archive_name(zr, path);
  const ZipEntry* pkl = zr.find(archive + "/data.pkl");
  if (!pkl) throw FormatError(path, "torch zip has no '" + archive + "/data.pkl' record");
  if (zr.find(archive + "/constants.pkl"))
    throw FormatError(path, "this is a TorchScript archive (has constants.pkl), not a torch.save checkpoint");
  if (const ZipEntry* bo = zr.find(archive + "/byteorder")) {
    Bytes b = zr.read(*bo);
    std::string order(reinterpret_cast<const char*>(b.data()), b.size());
    if (order == "big") throw FormatError(path, "big-endian torch checkpoints are not supported");
    if (order != "little") throw FormatError(path, "unknown byteorder record '" + order.substr(0, 16) + "'");
  }

  Bytes pkl_bytes = zr.read(*pkl);
  pickle::Arena arena;
  pickle::Unpickler up(pkl_bytes.span(), path + ":" + pkl->name, pkl->method == 0 ? pkl->data_offset : 0, arena);
  const pickle::Value* root = up.load();

  // One source per (record, declared size): tensors of one storage share it.
  std::map<std::pair<std::string, std::uint64_t>, SourcePtr> cache;
  StorageResolver resolve = [&](const pickle::StorageRef& s) -> std::pair<SourcePtr, std::uint64_t> {
    const std::uint64_t n = storage_nbytes(s, path);
    auto key = std::make_pair(s.key, n);
    if (auto it = cache.find(key); it != cache.end()) return {it->second, n};
    const std::string rec = archive + "/data/" + s.key;
    const ZipEntry* e = zr.find(rec);
    if (!e) throw FormatError(path, "storage record '" + rec + "' is missing");
    if (e->uncompressed_size < n)
      throw FormatError(path,
                        "storage record '" + rec + "' has " + std::to_string(e->uncompressed_size) +
                            " bytes but its " + s.type_name + " of " + std::to_string(s.numel) + " elements needs " +
                            std::to_string(n),
                        e->data_offset);
    SourcePtr src = zr.member_source(*e, 0, n);
    cache.emplace(key, src);
    return {src, n};
  };
  Checkpoint ck;
  ck.path = path;
  ck.format = "torch";
  ck.root = build_tree(root, path, resolve, 4 * arena.size() + 4096);
  ck.metadata["torch.archive"] = archive;
  ck.metadata["torch.container"] = "zip";
  return ck;
}

Checkpoint read_legacy(const std::string& path, MappedFilePtr file) {
  auto data = file->bytes();
  static const unsigned char magic_pickle[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                               0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e};
  if (!starts_with_bytes(data, magic_pickle, sizeof magic_pickle))
    throw FormatError(path, "not a torch checkpoint: neither a zip nor the legacy magic number", 0);
  pickle::Arena arena;
  pickle::Unpickler up(data, path, 0, arena);
  up.set_pos(sizeof magic_pickle);
  const pickle::Value* version = up.load();
  if (version->kind != pickle::Kind::Int || version->i != 1001)
    throw FormatError(path, "unsupported legacy torch protocol version (expected 1001)", sizeof magic_pickle);
  const std::size_t sys_at = up.pos();
  const pickle::Value* sys_info = up.load();
  if (sys_info->kind != pickle::Kind::Dict) throw FormatError(path, "legacy sys_info is not a dict", sys_at);
  for (const auto& [k, v] : sys_info->entries)
    if (k->kind == pickle::Kind::Str && k->s == "little_endian" && !(v->kind == pickle::Kind::Bool && v->b))
      throw FormatError(path, "big-endian legacy torch checkpoints are not supported", sys_at);
  const pickle::Value* root = up.load();
  const std::size_t keys_at = up.pos();
  const pickle::Value* keys = up.load();
  if (keys->kind != pickle::Kind::List) throw FormatError(path, "legacy storage key list is not a list", keys_at);

  // Element size of each root storage, from the references in the object pickle.
  std::map<std::string, std::size_t> elem_size;
  for (const auto& s : up.storages()) {
    if (!s->unsupported.empty()) continue;  // reported when the tensor is built
    auto [it, fresh] = elem_size.emplace(s->key, s->element_size());
    if (!fresh && it->second != s->element_size())
      throw FormatError(path, "storage '" + s->key + "' is referenced with two different element types");
  }
  // Raw storages follow, in key-list order: int64 element count, then the bytes.
  struct Region {
    std::uint64_t offset, nbytes;
  };
  std::map<std::string, Region> regions;
  ByteReader r(data, path);
  r.seek(up.pos(), "legacy storage data");
  for (const pickle::Value* k : keys->items) {
    if (k->kind != pickle::Kind::Str) throw FormatError(path, "legacy storage key is not a string", keys_at);
    auto es = elem_size.find(k->s);
    if (es == elem_size.end())
      throw FormatError(path, "legacy storage '" + k->s + "' is listed but no tensor refers to it", r.abs_pos());
    const std::uint64_t at = r.abs_pos();
    auto count = r.le<std::int64_t>("legacy storage element count");
    std::uint64_t nbytes = 0;
    if (count < 0 || __builtin_mul_overflow(static_cast<std::uint64_t>(count), es->second, &nbytes) ||
        nbytes > r.remaining())
      throw FormatError(path,
                        "legacy storage '" + k->s + "' declares " + std::to_string(count) + " elements but only " +
                            std::to_string(r.remaining()) + " bytes remain",
                        at);
    if (!regions.emplace(k->s, Region{r.abs_pos(), nbytes}).second)
      throw FormatError(path, "legacy storage '" + k->s + "' is listed twice", at);
    r.skip(static_cast<std::size_t>(nbytes), "legacy storage data");
  }

  std::map<std::string, std::pair<SourcePtr, std::uint64_t>> cache;  // by view key or root key
  StorageResolver resolve = [&](const pickle::StorageRef& s) -> std::pair<SourcePtr, std::uint64_t> {
    auto reg = regions.find(s.key);
    if (reg == regions.end()) throw FormatError(path, "legacy storage '" + s.key + "' has no data in the file");
    const std::string cache_key = s.view ? "view:" + s.view->key : "root:" + s.key;
    if (auto it = cache.find(cache_key); it != cache.end()) return it->second;
    std::uint64_t off = 0, len = reg->second.nbytes;
    if (s.view) {
      const std::uint64_t es = s.element_size();
      std::uint64_t end = 0;
      bool overflow = __builtin_mul_overflow(static_cast<std::uint64_t>(s.view->offset), es, &off) ||
                      __builtin_mul_overflow(static_cast<std::uint64_t>(s.view->size), es, &len) ||
                      __builtin_add_overflow(off, len, &end);
      if (overflow || end > reg->second.nbytes)
        throw FormatError(path, "legacy storage view '" + s.view->key + "' lies outside storage '" + s.key + "'");
    }
    SourcePtr src = std::make_shared<MappedRangeSource>(file, reg->second.offset + off, len,
                                                        "storage " + s.key + (s.view ? " view " + s.view->key : ""));
    return cache[cache_key] = {src, len};
  };
  Checkpoint ck;
  ck.path = path;
  ck.format = "torch";
  ck.root = build_tree(root, path, resolve, 4 * arena.size() + 4096);
  ck.metadata["torch.container"] = "legacy";
  return ck;
}

}  // namespace

bool detect(const std::string& path) {
  try {
    if (is_directory(path)) return false;
    auto file = MappedFile::open(path);
    auto data = file->range(0, std::min<std::uint64_t>(file->size(), 64), "file head");
    if (starts_with_bytes(data, kLegacyMagic, sizeof kLegacyMagic)) return true;
    if (!is_zip(data)) return false;
    ZipReader zr(file, kTorchZip);
    const std::string& first = zr.entries().empty() ? std::string() : zr.entries().front().name;
    auto slash = first.find('/');
    if (slash == std::string::npos || slash == 0) return false;
    return zr.find(first.substr(0, slash) + "/data.pkl") != nullptr;
  } catch (...) {
    return false;
  }
}

Checkpoint read(const std::string& path) {
  auto file = MappedFile::open(path);
  if (is_zip(file->range(0, std::min<std::uint64_t>(file->size(), 64), "file head"))) return read_zip(path, file);
  return read_legacy(path, file);
}

}  // namespace ckb::torch_format
