// Small presentation helpers for the CLI: aligned tables, human-readable sizes.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace ckb::cli {

std::string human_bytes(std::uint64_t n);      // "1.5 MiB"
std::string with_commas(std::uint64_t n);      // "1,234,567"
std::string hex_bytes(const std::string& s, std::size_t max);
// Parses "4GB", "500MiB", "1048576" (bytes); UsageError on junk.
std::uint64_t parse_size(const std::string& s);
std::string seconds(double s);                              // "0.056 s", "2.31 s", "41.2 s"
std::string plural(std::uint64_t n, const std::string& noun);  // "1 tensor", "3 tensors"
std::string sci(double v);                                  // "3.1e-08", "0.25", "1.5e+06"

class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void add_column(std::string name) { header_.push_back(std::move(name)); }
  void add_row(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void print(std::ostream& out) const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace ckb::cli
