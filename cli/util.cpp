// Implementation of cli/util.h.
#include "cli/util.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "core/errors.h"

namespace ckb::cli {

std::string human_bytes(std::uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  char buf[32];
  if (u == 0) std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  else std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

std::string with_commas(std::uint64_t n) {
  std::string s = std::to_string(n), out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return out;
}

std::string hex_bytes(const std::string& s, std::size_t max) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < s.size() && i < max; ++i) {
    out += d[static_cast<unsigned char>(s[i]) >> 4];
    out += d[static_cast<unsigned char>(s[i]) & 15];
  }
  if (s.size() > max) out += "...";
  return out;
}

std::uint64_t parse_size(const std::string& s) {
  std::size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  if (i == 0) throw UsageError("bad size '" + s + "' (expected e.g. 5GB, 500MiB, 1048576)");
  std::uint64_t n = std::stoull(s.substr(0, i));
  std::string unit = s.substr(i);
  std::transform(unit.begin(), unit.end(), unit.begin(), [](unsigned char c) { return std::toupper(c); });
  std::uint64_t mul;
  if (unit.empty() || unit == "B") mul = 1;
  else if (unit == "KB") mul = 1000;
  else if (unit == "KIB" || unit == "K") mul = 1024;
  else if (unit == "MB") mul = 1000 * 1000;
  else if (unit == "MIB" || unit == "M") mul = 1024 * 1024;
  else if (unit == "GB") mul = 1000ull * 1000 * 1000;
  else if (unit == "GIB" || unit == "G") mul = 1024ull * 1024 * 1024;
  else throw UsageError("bad size unit in '" + s + "'");
  return n * mul;
}

void Table::print(std::ostream& out) const {
  std::vector<std::size_t> w(header_.size(), 0);
  for (std::size_t c = 0; c < header_.size(); ++c) w[c] = header_[c].size();
  for (const auto& r : rows_)
    for (std::size_t c = 0; c < r.size() && c < w.size(); ++c) w[c] = std::max(w[c], r[c].size());
  auto line = [&](const std::vector<std::string>& r) {
    std::string s;
    for (std::size_t c = 0; c < w.size(); ++c) {
      std::string cell = c < r.size() ? r[c] : "";
      s += cell;
      if (c + 1 < w.size()) s += std::string(w[c] - cell.size() + 2, ' ');
    }
    out << s << "\n";
  };
  line(header_);
  for (const auto& r : rows_) line(r);
}

}  // namespace ckb::cli
