// Implementation of cli/util.h.
#include "cli/util.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "engine/api.h"

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

std::uint64_t parse_size(const std::string& s) { return parse_byte_size(s); }

std::string seconds(double s) {
  char buf[32];
  if (s < 10) std::snprintf(buf, sizeof buf, "%.3g s", s);
  else std::snprintf(buf, sizeof buf, "%.1f s", s);
  return buf;
}

std::string plural(std::uint64_t n, const std::string& noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

std::string sci(double v) {
  char buf[32];
  const double a = v < 0 ? -v : v;
  if (v == 0 || (a >= 1e-3 && a < 1e5)) std::snprintf(buf, sizeof buf, "%.4g", v);
  else std::snprintf(buf, sizeof buf, "%.3e", v);
  return buf;
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
