// The list of formats and the generic read/write drivers of formats/format.h.
#include "core/cancel.h"
#include "core/errors.h"
#include "core/units.h"
#include "formats/format.h"

#include <cctype>

namespace ckb {

namespace {
// A registered format's make_writer checks the options against the format's specs first, so
// every caller (CLI, engine, a library user) gets the same UsageError for an unknown or
// malformed option and no writer ever sees one.
Format registered(Format f) {
  if (f.make_writer) {
    Format spec;
    spec.name = f.name;
    spec.write_options = f.write_options;
    f.make_writer = [make = std::move(f.make_writer), spec = std::move(spec)](const std::string& path,
                                                                             const WriteOptions& opts) {
      validate_write_options(spec, opts.options);
      return make(path, opts);
    };
  }
  return f;
}
}  // namespace

const std::vector<Format>& formats() {
  // Order matters only where signatures overlap: npz and torch zips are both zip files; an
  // Orbax item holds zarr arrays, so orbax is tried before zarr.
  static const std::vector<Format> all = [] {
    std::vector<Format> v;
    for (auto make : {make_orbax_format, make_zarr_format, make_safetensors_format, make_torch_format,
                      make_npz_format, make_npy_format, make_msgpack_format, make_discard_format})
      v.push_back(registered(make()));
    return v;
  }();
  return all;
}

namespace {
std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
}  // namespace

const Format& format_by_name(const std::string& name) {
  const std::string want = lower(name);
  std::string known;
  for (const auto& f : formats()) {
    if (f.name == want) return f;
    for (const auto& a : f.aliases)
      if (a == want) return f;
    known += (known.empty() ? "" : ", ") + f.name;
    for (const auto& a : f.aliases) known += "/" + a;
  }
  throw UsageError("unknown format '" + name + "' (known: " + known + ")");
}

const Format& detect_format(const std::string& path) {
  for (const auto& f : formats()) {
    if (f.detect && f.detect(path)) return f;
    // A detector answers "not mine" to any error it meets, a cancelled remote request included.
    throw_if_current_cancelled();
  }
  throw_unrecognised(path);
}

std::string format_from_extension(const std::string& path) {
  auto dot = path.rfind('.');
  auto slash = path.rfind('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  const std::string ext = lower(path.substr(dot));
  for (const auto& f : formats())
    for (const auto& e : f.extensions)
      if (e == ext) return f.name;
  return "";
}

void validate_write_options(const Format& fmt, const OptionValues& values) {
  for (const auto& [name, text] : values) {
    const OptionSpec* spec = nullptr;
    for (const auto& s : fmt.write_options)
      if (s.name == name) spec = &s;
    if (!spec) {
      std::string takers;
      for (const auto& f : formats())
        for (const auto& s : f.write_options)
          if (s.name == name) takers += (takers.empty() ? "" : ", ") + f.name;
      throw UsageError("--" + name + (takers.empty() ? " is not a write option of any format"
                                                       : " applies to " + takers + " output, not " + fmt.name));
    }
    switch (spec->kind) {
      case OptionSpec::Kind::Flag:
        if (text != "1" && text != "0" && text != "true" && text != "false")
          throw UsageError("--" + name + " is a flag; got the value '" + text + "'");
        break;
      case OptionSpec::Kind::Int: {
        const std::int64_t v = parse_integer(text, "--" + name);
        if (v < 0) throw UsageError("--" + name + " must not be negative, got '" + text + "'");
        break;
      }
      case OptionSpec::Kind::Size: parse_byte_size(text, "--" + name); break;
      case OptionSpec::Kind::Choice: {
        bool ok = false;
        std::string list;
        for (const auto& c : spec->choices) ok |= c == text, list += (list.empty() ? "" : ", ") + c;
        if (!ok) throw UsageError("--" + name + " must be one of " + list + ", got '" + text + "'");
        break;
      }
      case OptionSpec::Kind::Text:
        if (text.empty()) throw UsageError("--" + name + " needs a value");
        break;
    }
  }
}

bool option_flag(const OptionValues& v, const std::string& name) {
  auto it = v.find(name);
  return it != v.end() && (it->second == "1" || it->second == "true");
}

std::optional<std::int64_t> option_int(const OptionValues& v, const std::string& name) {
  auto it = v.find(name);
  if (it == v.end()) return std::nullopt;
  return parse_integer(it->second, "--" + name);
}

std::optional<std::uint64_t> option_size(const OptionValues& v, const std::string& name) {
  auto it = v.find(name);
  if (it == v.end()) return std::nullopt;
  return parse_byte_size(it->second, "--" + name);
}

std::optional<std::string> option_text(const OptionValues& v, const std::string& name) {
  auto it = v.find(name);
  if (it == v.end()) return std::nullopt;
  return it->second;
}

Checkpoint read_checkpoint(const std::string& path, const ReadOptions& opts) {
  const Format& f = detect_format(path);
  if (!f.read) throw FormatError(path, "reading " + f.name + " is not implemented yet");
  Checkpoint ck = f.read(path, opts);
  ck.format = f.name;
  if (ck.path.empty()) ck.path = path;
  return ck;
}

// write_checkpoint() is implemented by the streaming executor (engine/execute.cpp).

}  // namespace ckb
