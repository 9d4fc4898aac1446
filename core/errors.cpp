// Message formatting for core/errors.h.
#include "core/errors.h"

#include <cerrno>
#include <cstring>

namespace ckb {
namespace {
std::string compose(const std::string& path, const std::string& what, std::optional<std::uint64_t> offset) {
  std::string m;
  if (!path.empty()) {
    m += path;
    if (offset) m += " (offset " + std::to_string(*offset) + ")";
    m += ": ";
  }
  m += what;
  return m;
}
}  // namespace

Error::Error(ErrorKind kind, std::string path, std::string what, std::optional<std::uint64_t> offset)
    : std::runtime_error(compose(path, what, offset)),
      kind_(kind),
      path_(std::move(path)),
      detail_(std::move(what)),
      offset_(offset) {}

void throw_errno(const std::string& path, const std::string& what) {
  int e = errno;
  throw IoError(path, what + ": " + std::strerror(e));
}

Cancelled::Cancelled(int signo)
    : Error(ErrorKind::Cancelled, "", signo ? "cancelled by signal " + std::to_string(signo) : "cancelled"),
      signo_(signo) {}

}  // namespace ckb
