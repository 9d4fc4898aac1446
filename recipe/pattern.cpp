// Implementation of recipe/pattern.h.
#include "recipe/pattern.h"

#include "core/errors.h"

namespace ckb {
namespace {
std::string escape(char c) {
  static const std::string special = R"(\^$.|?*+()[]{}-)";
  return special.find(c) != std::string::npos ? std::string("\\") + c : std::string(1, c);
}
}  // namespace

Pattern::Pattern(std::string text) : text_(std::move(text)) {
  std::string re;
  for (std::size_t i = 0; i < text_.size(); ++i) {
    char c = text_[i];
    if (c == '{') {
      auto close = text_.find('}', i);
      if (close == std::string::npos) throw MappingError(text_, "unclosed '{' in pattern");
      std::string body = text_.substr(i + 1, close - i - 1), kind;
      auto colon = body.find(':');
      if (colon != std::string::npos) {
        kind = body.substr(colon + 1);
        body = body.substr(0, colon);
      }
      if (body.empty()) throw MappingError(text_, "empty placeholder name in pattern");
      for (const auto& n : names_)
        if (n == body) throw MappingError(text_, "placeholder {" + body + "} appears twice");
      names_.push_back(body);
      if (kind.empty()) re += "([^/.]+)";
      else if (kind == "int") re += "([0-9]+)";
      else if (kind == "*") re += "(.+)";
      else throw MappingError(text_, "unknown placeholder kind ':" + kind + "' (use int or *)");
      i = close;
    } else if (c == '}') {
      throw MappingError(text_, "unmatched '}' in pattern");
    } else {
      re += escape(c);
    }
  }
  re_ = std::regex(re, std::regex::ECMAScript);
}

Pattern Pattern::regex(const std::string& re) {
  Pattern p;
  p.text_ = re;
  p.is_regex_ = true;
  try {
    p.re_ = std::regex(re, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throw MappingError(re, std::string("bad regex: ") + e.what());
  }
  return p;
}

std::optional<Captures> Pattern::match(const std::string& name) const {
  std::smatch m;
  if (!std::regex_match(name, m, re_)) return std::nullopt;
  Captures caps;
  for (std::size_t i = 1; i < m.size(); ++i) {
    caps[std::to_string(i)] = m[i].str();
    if (!is_regex_ && i - 1 < names_.size()) caps[names_[i - 1]] = m[i].str();
  }
  return caps;
}

std::string Pattern::format(const Captures& caps) const {
  if (is_regex_) throw MappingError(text_, "a regex cannot be used as a target template");
  std::string out;
  for (std::size_t i = 0; i < text_.size(); ++i) {
    if (text_[i] != '{') {
      out += text_[i];
      continue;
    }
    auto close = text_.find('}', i);
    std::string body = text_.substr(i + 1, close - i - 1);
    body = body.substr(0, body.find(':'));
    auto it = caps.find(body);
    if (it == caps.end()) throw MappingError(text_, "template needs {" + body + "} but the match did not capture it");
    out += it->second;
    i = close;
  }
  return out;
}

}  // namespace ckb
