// Implementation of engine/output_target.h.
#include "engine/output_target.h"

#include <filesystem>
#include <set>

#include "io/file.h"
#include "io/output.h"

namespace ckb::engine {
namespace {

namespace fs = std::filesystem;

bool names_folder(const std::string& path) {
  return !path.empty() && (path.back() == '/' || is_directory(path));
}

// `inner` is `outer` or inside it.
bool within(const fs::path& inner, const fs::path& outer) {
  auto i = inner.begin(), o = outer.begin();
  for (; o != outer.end(); ++i, ++o) {
    if (o->empty()) continue;
    if (i == inner.end() || *i != *o) return false;
  }
  return true;
}

fs::path canonical_or_absolute(const std::string& p) {
  if (is_remote_path(p)) return fs::path(without_trailing_slashes(p));
  std::error_code ec;
  fs::path c = fs::weakly_canonical(fs::absolute(p), ec);
  return ec ? fs::absolute(p) : c;
}

}  // namespace

OutputTarget resolve_output(const OutputSpec& spec) {
  if (spec.path.empty()) throw UsageError("no output path given");
  OutputTarget t;
  const bool folder = names_folder(spec.path);
  std::string name = spec.format;
  if (name.empty()) name = folder ? "safetensors" : format_from_extension(spec.path);
  if (name.empty())
    throw UsageError("cannot tell the output format from '" + spec.path +
                     "'; pass --to FORMAT, or give a folder (existing, or ending in '/') to write safetensors into");
  t.format = &format_by_name(name);
  if (!t.format->make_writer) throw UsageError("writing " + t.format->name + " is not supported");
  validate_write_options(*t.format, spec.options);
  if (!t.format->caps.writes_output) {
    t.path = spec.path;
    return t;
  }
  const bool sharded = option_size(spec.options, "shard-size").value_or(0) > 0;
  if (folder && !t.format->caps.directory_output && !t.format->default_file_name.empty() && !sharded) {
    t.folder = without_trailing_slashes(spec.path);
    t.path = (fs::path(t.folder) / t.format->default_file_name).string();
  } else if (folder) {
    t.path = without_trailing_slashes(spec.path);
    t.folder = t.path;
  } else {
    const std::string ext = format_from_extension(spec.path);
    if (!ext.empty() && ext != t.format->name)
      throw UsageError("the output name '" + spec.path + "' says " + ext + " but the output format is " +
                       t.format->name + "; rename the output or leave out --to");
    t.path = spec.path;
    const fs::path parent = fs::path(spec.path).parent_path();
    t.folder = t.format->caps.directory_output || sharded ? t.path : (parent.empty() ? "." : parent.string());
  }
  return t;
}

void check_output(const OutputTarget& out, const OutputSpec& spec, const std::vector<std::string>& inputs,
                  const std::vector<std::string>& sidecars) {
  if (!out.format->caps.writes_output) return;
  const bool step_mode = out.format->caps.steps && spec.options.count("step");
  // A step written into a root replaces only that step: an input elsewhere in the root is safe.
  const fs::path dst = canonical_or_absolute(step_mode ? (fs::path(out.path) / spec.options.at("step")).string() : out.path);
  for (const auto& in : inputs) {
    if (in.empty()) continue;
    const fs::path src = canonical_or_absolute(in);
    if ((!step_mode && same_file(in, out.path)) || within(src, dst))
      throw UsageError("refusing to overwrite the input " + in + " (the output is " + out.path + ")");
    if (is_directory(in) && within(dst, src))
      throw UsageError("refusing to write " + out.path + " inside the input folder " + in + " (inputs are never modified)");
  }
  std::error_code ec;
  const bool empty_folder = is_directory(out.path) && fs::is_empty(out.path, ec) && !ec;
  if (!step_mode && path_exists(out.path) && !empty_folder) {
    if (!spec.overwrite) throw UsageError("output " + out.path + " exists; pass --overwrite to replace it");
    if (is_directory(out.path)) {
      bool ours = false;
      try {
        ours = out.format->replaceable ? out.format->replaceable(out.path, sidecars) : &detect_format(out.path) == out.format;
      } catch (const Error&) {
      }
      if (!ours)
        throw UsageError("refusing to replace " + out.path + ": it is a folder that does not hold a checkpoint in the " +
                         out.format->name + " format (--overwrite replaces only a checkpoint of the kind being written; remove it yourself "
                         "or choose another output)");
    }
  }
  // A folder a profile completes into a model folder (sidecars) is the output as a whole: it
  // may hold a previous output (replaced only with --overwrite, below), never anything else.
  if (!sidecars.empty() && !step_mode && is_directory(out.folder)) {
    std::set<std::string> ours(sidecars.begin(), sidecars.end());
    ours.insert(fs::path(out.path).filename().string());
    std::string foreign;
    std::size_t n = 0;
    for (const std::string& rel : list_files_recursive(out.folder)) {
      const bool shard = rel.find('/') == std::string::npos && out.path == out.folder && out.format->replaceable &&
                         (rel.ends_with(".safetensors") || rel.ends_with(".index.json"));
      if (ours.count(rel) || shard) continue;
      if (n++ < 3) foreign += (foreign.empty() ? "" : ", ") + rel;
    }
    if (n)
      throw UsageError("refusing to write into " + out.folder + ": it holds files this output does not write (" + foreign +
                       (n > 3 ? ", ..." : "") + "); the output folder gets the weights and " + std::to_string(sidecars.size()) +
                       " file(s) beside them (config.json, ...): choose a new or empty folder");
  }
  for (const auto& s : sidecars) {
    const std::string p = (fs::path(out.folder) / s).string();
    for (const auto& in : inputs)
      if (!in.empty() && (same_file(in, p) || canonical_or_absolute(in) == canonical_or_absolute(p)))
        throw UsageError("refusing to overwrite the input " + in + " with this output's " + s);
    if (path_exists(p) && !spec.overwrite)
      throw UsageError(p + " exists and would be replaced by this output's " + s + "; pass --overwrite to replace it");
  }
}

void prepare_output_folder(const OutputTarget& out) {
  if (!out.format->caps.writes_output) return;
  const fs::path parent = fs::path(out.path).parent_path();
  if (!parent.empty()) make_dirs(parent.string());
}

}  // namespace ckb::engine
