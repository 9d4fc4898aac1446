// Name patterns for recipes. A pattern is literal text with placeholders:
//   {name}      one name component: no '/' and no '.'   ("layers.{i}.w" matches "layers.3.w")
//   {name:int}  decimal digits
//   {name:*}    anything, including '/' and '.'         ("{rest:*}")
// The same syntax fills a template from captures, so a rule "map A -> B" inverts to
// "map B -> A" by swapping sides. Patterns match the whole '/'-joined leaf path.
#pragma once

#include <map>
#include <optional>
#include <regex>
#include <string>
#include <vector>

namespace ckb {

using Captures = std::map<std::string, std::string>;

class Pattern {
 public:
  Pattern() = default;
  // Throws MappingError on malformed placeholders.
  explicit Pattern(std::string text);
  // Builds from a raw ECMAScript regex with named groups written as (?<name>...) — not
  // invertible. Captures are numbered "1", "2", ... as well.
  static Pattern regex(const std::string& re);

  std::optional<Captures> match(const std::string& name) const;
  // Fills placeholders from captures; MappingError if one is missing.
  std::string format(const Captures& caps) const;
  const std::string& text() const { return text_; }
  const std::vector<std::string>& names() const { return names_; }
  bool is_regex() const { return is_regex_; }

 private:
  std::string text_;
  std::vector<std::string> names_;
  std::regex re_;
  bool is_regex_ = false;
};

}  // namespace ckb
