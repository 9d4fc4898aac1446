// Implementation of core/units.h.
#include "core/units.h"

#include <cctype>
#include <charconv>
#include <limits>

#include "core/errors.h"

namespace ckb {

std::uint64_t parse_byte_size(std::string_view s, std::string_view what) {
  auto bad = [&](const std::string& why) {
    return UsageError(std::string(what) + ": bad size '" + std::string(s) + "' (" + why + "; e.g. 5GB, 500MiB, 1048576)");
  };
  std::size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  if (i == 0) throw bad("expected digits");
  std::uint64_t n = 0;
  auto r = std::from_chars(s.data(), s.data() + i, n);
  if (r.ec != std::errc()) throw bad("too large");
  std::string unit(s.substr(i));
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  std::uint64_t mul;
  if (unit.empty() || unit == "B") mul = 1;
  else if (unit == "KB") mul = 1000;
  else if (unit == "KIB" || unit == "K") mul = 1024;
  else if (unit == "MB") mul = 1000ull * 1000;
  else if (unit == "MIB" || unit == "M") mul = 1024ull * 1024;
  else if (unit == "GB") mul = 1000ull * 1000 * 1000;
  else if (unit == "GIB" || unit == "G") mul = 1024ull * 1024 * 1024;
  else if (unit == "TB") mul = 1000ull * 1000 * 1000 * 1000;
  else if (unit == "TIB" || unit == "T") mul = 1024ull * 1024 * 1024 * 1024;
  else throw bad("unknown unit '" + std::string(s.substr(i)) + "'");
  if (n > std::numeric_limits<std::uint64_t>::max() / mul) throw bad("too large");
  return n * mul;
}

std::int64_t parse_integer(std::string_view s, std::string_view what) {
  auto bad = [&](const char* why) {
    return UsageError(std::string(what) + ": " + why + ", got '" + std::string(s) + "'");
  };
  std::int64_t v = 0;
  const char* b = s.data();
  const char* e = s.data() + s.size();
  if (b != e && *b == '+') ++b;
  // from_chars takes a '-' itself; one sign only ("+-5" is not a number).
  if (b == e || !(std::isdigit(static_cast<unsigned char>(*b)) || (*b == '-' && b == s.data())))
    throw bad("expected an integer");
  auto r = std::from_chars(b, e, v);
  if (r.ec == std::errc::result_out_of_range) throw bad("integer out of range");
  if (r.ec != std::errc() || r.ptr != e) throw bad("expected an integer");
  return v;
}

}  // namespace ckb
