// Typed errors. Every error names the file (or tensor) it is about and, where it makes
// sense, the byte offset, so a user can find the problem without a debugger.
//   FormatError  - the bytes do not follow the format (bad data, exit 2)
//   IoError      - the operating system refused (open, read, write, rename; exit 2)
//   MappingError - a plan/recipe cannot map source to target (exit 2)
//   UsageError   - the command line or options are wrong (exit 1)
//   Cancelled    - the run was cancelled (a signal, Ctrl-C in Python; exit 128 + signal)
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace ckb {

enum class ErrorKind { Format, Io, Mapping, Usage, Cancelled };

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, std::string path, std::string what,
        std::optional<std::uint64_t> offset = std::nullopt);
  ErrorKind kind() const { return kind_; }
  const std::string& path() const { return path_; }
  std::optional<std::uint64_t> offset() const { return offset_; }
  // The message without the path prefix.
  const std::string& detail() const { return detail_; }
  // Process exit status for this error (1 usage, 128 + signal when cancelled by one, 2
  // everything else).
  virtual int exit_code() const { return kind_ == ErrorKind::Usage ? 1 : 2; }

 private:
  ErrorKind kind_;
  std::string path_;
  std::string detail_;
  std::optional<std::uint64_t> offset_;
};

class FormatError : public Error {
 public:
  FormatError(std::string path, std::string what, std::optional<std::uint64_t> offset = std::nullopt)
      : Error(ErrorKind::Format, std::move(path), std::move(what), offset) {}
};
class IoError : public Error {
 public:
  IoError(std::string path, std::string what) : Error(ErrorKind::Io, std::move(path), std::move(what)) {}
};
class MappingError : public Error {
 public:
  MappingError(std::string path, std::string what)
      : Error(ErrorKind::Mapping, std::move(path), std::move(what)) {}
  // A plan that cannot run: `problems` names every offending tensor, one line each.
  MappingError(std::string path, std::string what, std::vector<std::string> problems)
      : Error(ErrorKind::Mapping, std::move(path), std::move(what)), problems_(std::move(problems)) {}
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  std::vector<std::string> problems_;
};
class UsageError : public Error {
 public:
  explicit UsageError(std::string what) : Error(ErrorKind::Usage, "", std::move(what)) {}
};

class Cancelled : public Error {
 public:
  // `signo`: the signal that asked for it (SIGINT, SIGTERM), 0 when cancelled otherwise.
  explicit Cancelled(int signo = 0);
  int signal() const { return signo_; }
  int exit_code() const override { return signo_ ? 128 + signo_ : 130; }

 private:
  int signo_;
};

// IoError with strerror(errno) appended.
[[noreturn]] void throw_errno(const std::string& path, const std::string& what);

}  // namespace ckb
