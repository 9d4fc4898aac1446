// Python-compatible JSON and repr output for formats/orbax/py_json.h.
#include "formats/orbax/py_json.h"

#include <cstdio>

namespace ckb::orbax {
namespace {

using ojson = nlohmann::ordered_json;

// Decodes one UTF-8 sequence at s[i] (advancing i); invalid bytes come back as U+FFFD.
std::uint32_t next_code_point(const std::string& s, std::size_t& i) {
  const auto c = static_cast<unsigned char>(s[i++]);
  if (c < 0x80) return c;
  int extra = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : -1;
  if (extra < 0 || i + extra > s.size()) return 0xFFFD;
  std::uint32_t cp = c & (0x3F >> extra);
  for (int k = 0; k < extra; ++k) {
    const auto d = static_cast<unsigned char>(s[i]);
    if ((d & 0xC0) != 0x80) return 0xFFFD;
    cp = (cp << 6) | (d & 0x3F);
    ++i;
  }
  return cp;
}

void append_u4(std::string& out, std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(v & 0xFFFF));
  out += buf;
}

void dump_string(std::string& out, const std::string& s) {
  out.push_back('"');
  for (std::size_t i = 0; i < s.size();) {
    const std::uint32_t cp = next_code_point(s, i);
    switch (cp) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (cp < 0x20 || (cp >= 0x7F && cp <= 0xFFFF)) {
          if (cp < 0x7F) append_u4(out, cp);
          else if (cp == 0x7F) out.push_back(0x7F);
          else append_u4(out, cp);
        } else if (cp > 0xFFFF) {
          const std::uint32_t v = cp - 0x10000;
          append_u4(out, 0xD800 + (v >> 10));
          append_u4(out, 0xDC00 + (v & 0x3FF));
        } else {
          out.push_back(static_cast<char>(cp));
        }
    }
  }
  out.push_back('"');
}

void dump(std::string& out, const ojson& v) {
  switch (v.type()) {
    case ojson::value_t::object: {
      out.push_back('{');
      bool first = true;
      for (auto it = v.begin(); it != v.end(); ++it) {
        if (!first) out += ", ";
        first = false;
        dump_string(out, it.key());
        out += ": ";
        dump(out, it.value());
      }
      out.push_back('}');
      break;
    }
    case ojson::value_t::array: {
      out.push_back('[');
      for (std::size_t i = 0; i < v.size(); ++i) {
        if (i) out += ", ";
        dump(out, v[i]);
      }
      out.push_back(']');
      break;
    }
    case ojson::value_t::string: dump_string(out, v.get<std::string>()); break;
    case ojson::value_t::boolean: out += v.get<bool>() ? "true" : "false"; break;
    case ojson::value_t::null: out += "null"; break;
    default: out += v.dump(); break;  // numbers: shortest round-trip form, as Python's repr
  }
}

}  // namespace

std::string py_json_dumps(const ojson& value) {
  std::string out;
  dump(out, value);
  return out;
}

std::string py_str_repr(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char q = has_single && !has_double ? '"' : '\'';
  std::string out(1, q);
  for (unsigned char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == static_cast<unsigned char>(q)) out += std::string("\\") + q;
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out.push_back(static_cast<char>(c));  // printable ASCII and UTF-8 bytes as they are
    }
  }
  out.push_back(q);
  return out;
}

std::string py_tuple_repr(const std::vector<std::string>& keys) {
  std::string out = "(";
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (i) out += ", ";
    out += py_str_repr(keys[i]);
  }
  if (keys.size() == 1) out += ",";
  out += ")";
  return out;
}

}  // namespace ckb::orbax
