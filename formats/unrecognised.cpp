// throw_unrecognised() of formats/format.h: when no format claims a path, say why in the
// terms a user can act on: the path does not exist, cannot be read, is (or holds) Git LFS
// pointers instead of the real files, or really is something ckptbridge does not read.
#include <cerrno>
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>

#include "core/errors.h"
#include "formats/format.h"
#include "io/file.h"
#include "io/lfs_pointer.h"
#include "io/zip.h"

namespace ckb {
namespace {

namespace fs = std::filesystem;

// The first LFS pointer under `dir` (two levels deep, at most 4096 entries looked at) and
// how many pointers were seen.
std::pair<std::string, std::optional<LfsPointer>> find_lfs_pointer(const std::string& dir, std::size_t& count) {
  std::pair<std::string, std::optional<LfsPointer>> first;
  std::error_code ec;
  std::size_t seen = 0;
  fs::recursive_directory_iterator it(dir, fs::directory_options::none, ec), end;
  for (; !ec && it != end && seen < 4096; it.increment(ec), ++seen) {
    if (it.depth() >= 1) it.disable_recursion_pending();
    std::error_code fe;
    if (!it->is_regular_file(fe) || it->file_size(fe) > 1024) continue;
    if (auto p = read_lfs_pointer(it->path().string())) {
      if (!count++) first = {it->path().string(), std::move(p)};
    }
  }
  return first;
}

}  // namespace

void throw_unrecognised(const std::string& path) {
  if (is_remote_path(path)) {
    if (!path_exists(path)) throw IoError(path, "no such object or folder");
    throw FormatError(path, "not a checkpoint format ckptbridge recognises");
  }
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (!fs::exists(st)) {
    if (ec && ec != std::errc::no_such_file_or_directory && ec != std::errc::not_a_directory)
      throw IoError(path, "cannot be examined: " + ec.message());
    throw IoError(path, "no such file or directory");
  }
  if (fs::is_regular_file(st)) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) throw_errno(path, "cannot be opened");
    ::close(fd);
    if (auto p = read_lfs_pointer(path)) throw FormatError(path, p->describe());
    // A zip archive (.npz, PyTorch) that no format took: its own defect, if it has one.
    auto file = MappedFile::open(path);
    const auto b = file->bytes();
    if (b.size() >= 4 && b[0] == std::byte{'P'} && b[1] == std::byte{'K'} &&
        ((b[2] == std::byte{3} && b[3] == std::byte{4}) || (b[2] == std::byte{5} && b[3] == std::byte{6}))) {
      ZipReader zip(file);  // throws a FormatError naming what is wrong with the archive
      throw FormatError(path, "a zip archive that is neither an .npz (.npy members) nor a PyTorch checkpoint "
                              "(<name>/data.pkl)");
    }
  } else if (fs::is_directory(st)) {
    std::size_t count = 0;
    auto [file, p] = find_lfs_pointer(path, count);
    if (p)
      throw FormatError(path, "holds Git LFS pointers instead of the files (" + file + " is " + p->describe() +
                                  (count > 1 ? "; " + std::to_string(count - 1) + " more" : "") + ")");
  }
  throw FormatError(path, "not a checkpoint format ckptbridge recognises");
}

}  // namespace ckb
