// Implementation of io/lfs_pointer.h (format: https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md).
#include "io/lfs_pointer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <string_view>

namespace ckb {
namespace {

constexpr std::size_t kMaxPointerBytes = 1024;

bool all_of(std::string_view s, bool (*ok)(char)) { return !s.empty() && std::all_of(s.begin(), s.end(), ok); }
bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

std::string LfsPointer::describe() const {
  return "a Git LFS pointer (oid " + oid + ", size " + size + "), not the file itself: run `git lfs pull`";
}

std::optional<LfsPointer> parse_lfs_pointer(std::span<const std::byte> bytes) {
  if (bytes.size() > kMaxPointerBytes) return std::nullopt;
  std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  if (!text.starts_with("version https://git-lfs.github.com/spec/v1\n") &&
      !text.starts_with("version https://hawser.github.com/spec/v1\n"))
    return std::nullopt;
  LfsPointer p;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    if (nl == std::string_view::npos) return std::nullopt;  // every line ends with \n
    const std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl + 1);
    if (line.starts_with("oid sha256:") && all_of(line.substr(11), is_hex) && line.size() == 11 + 64)
      p.oid = std::string(line.substr(4));
    else if (line.starts_with("size ") && all_of(line.substr(5), is_digit))
      p.size = std::string(line.substr(5));
  }
  if (p.oid.empty() || p.size.empty()) return std::nullopt;
  return p;
}

std::optional<LfsPointer> read_lfs_pointer(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return std::nullopt;
  struct stat st {};
  std::optional<LfsPointer> out;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
      static_cast<std::size_t>(st.st_size) <= kMaxPointerBytes) {
    std::byte buf[kMaxPointerBytes];
    std::size_t got = 0;
    while (got < static_cast<std::size_t>(st.st_size)) {
      const ssize_t r = ::read(fd, buf + got, static_cast<std::size_t>(st.st_size) - got);
      if (r <= 0) break;
      got += static_cast<std::size_t>(r);
    }
    out = parse_lfs_pointer({buf, got});
  }
  ::close(fd);
  return out;
}

}  // namespace ckb
