// Element text extraction for S3's XML answers (see xml_text.h).
#include "io/remote/xml_text.h"

#include <cstdint>

namespace ckb::remote {

namespace {

// The span of the contents of the first <tag ...>...</tag> at or after `from`:
// {content_begin, content_end, element_end}; npos when absent.
struct Found {
  std::size_t begin = std::string_view::npos, end = 0, after = 0;
};

Found find_element(std::string_view xml, std::string_view tag, std::size_t from) {
  const std::string open = "<" + std::string(tag);
  const std::string close = "</" + std::string(tag) + ">";
  std::size_t pos = from;
  while ((pos = xml.find(open, pos)) != std::string_view::npos) {
    const std::size_t name_end = pos + open.size();
    if (name_end >= xml.size()) break;
    const char c = xml[name_end];
    if (c != '>' && c != ' ' && c != '/' && c != '\t' && c != '\n' && c != '\r') {
      pos = name_end;  // a longer name (<Key> vs <KeyCount>)
      continue;
    }
    const std::size_t gt = xml.find('>', name_end);
    if (gt == std::string_view::npos) break;
    if (xml[gt - 1] == '/') return Found{gt + 1, gt + 1, gt + 1};  // <tag/>
    const std::size_t end = xml.find(close, gt + 1);
    if (end == std::string_view::npos) break;
    return Found{gt + 1, end, end + close.size()};
  }
  return Found{};
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

}  // namespace

std::string xml_unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') {
      out += s[i];
      continue;
    }
    const std::size_t semi = s.find(';', i);
    if (semi == std::string_view::npos || semi - i > 12) {
      out += s[i];
      continue;
    }
    const std::string_view name = s.substr(i + 1, semi - i - 1);
    if (name == "amp") out += '&';
    else if (name == "lt") out += '<';
    else if (name == "gt") out += '>';
    else if (name == "quot") out += '"';
    else if (name == "apos") out += '\'';
    else if (name.size() >= 2 && name[0] == '#') {
      const bool hex = name[1] == 'x' || name[1] == 'X';
      std::uint32_t cp = 0;
      bool ok = name.size() > (hex ? 2u : 1u);
      for (std::size_t k = hex ? 2 : 1; k < name.size() && ok; ++k) {
        const char c = name[k];
        int d = -1;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (hex && c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (hex && c >= 'A' && c <= 'F') d = c - 'A' + 10;
        if (d < 0) ok = false;
        else cp = cp * (hex ? 16 : 10) + static_cast<std::uint32_t>(d);
        if (cp > 0x10FFFF) ok = false;
      }
      if (!ok) {
        out += s[i];
        continue;
      }
      append_utf8(out, cp);
    } else {
      out += s[i];
      continue;
    }
    i = semi;
  }
  return out;
}

std::optional<std::string> xml_text(std::string_view xml, std::string_view tag, std::size_t from) {
  const Found f = find_element(xml, tag, from);
  if (f.begin == std::string_view::npos) return std::nullopt;
  return xml_unescape(xml.substr(f.begin, f.end - f.begin));
}

std::vector<std::string_view> xml_elements(std::string_view xml, std::string_view tag) {
  std::vector<std::string_view> out;
  std::size_t pos = 0;
  for (;;) {
    const Found f = find_element(xml, tag, pos);
    if (f.begin == std::string_view::npos) break;
    out.push_back(xml.substr(f.begin, f.end - f.begin));
    pos = f.after;
  }
  return out;
}

}  // namespace ckb::remote
