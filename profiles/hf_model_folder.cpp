// Implementation of profiles/hf_model_folder.h.
#include "profiles/hf_model_folder.h"

#include <filesystem>
#include <fstream>
#include <iterator>

#include <set>

#include "core/errors.h"
#include "core/json_bounded.h"
#include "io/file.h"
#include "io/output.h"

namespace ckb {
namespace {

namespace fs = std::filesystem;

const char* const kModelFolderFiles[] = {
    "config.json",       "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "added_tokens.json", "tokenizer.model",        "spiece.model",   "vocab.json",            "vocab.txt",
    "merges.txt",        "chat_template.jinja",    "chat_template.json",
};

std::string read_bytes(const std::string& path) { return read_text_file(path); }

}  // namespace

std::vector<std::string> hf_model_folder_files(const std::string& base_dir) {
  std::vector<std::string> out;
  std::set<std::string> files;
  try {
    for (const auto& e : list_directory(base_dir))
      if (!e.is_directory) files.insert(e.name);
  } catch (const IoError&) {
    return out;
  }
  for (const char* n : kModelFolderFiles)
    if (files.count(n)) out.emplace_back(n);
  return out;
}

std::vector<std::string> copy_model_folder_files(const std::vector<std::string>& names, const std::string& from,
                                                 const std::string& to) {
  std::vector<std::string> written;
  for (const auto& n : names) {
    const std::string dst = (fs::path(to) / n).string();
    AtomicFile f(dst);
    f.pwrite(0, read_bytes((fs::path(from) / n).string()));
    f.commit();
    written.push_back(dst);
  }
  return written;
}

bool is_peft_adapter(const std::string& path) {
  auto is_file = [](const std::string& f) { return path_exists(f) && !is_directory(f); };
  if (is_directory(path)) return is_file(path + "/adapter_config.json");
  const fs::path p(path);
  return p.filename() == "adapter_model.safetensors" && is_file(p.parent_path().string() + "/adapter_config.json");
}

std::string peft_local_base(const std::string& adapter_dir) {
  const std::string cfg = (fs::path(adapter_dir) / "adapter_config.json").string();
  auto j = parse_json_bounded(read_text_file(cfg), cfg);
  const auto it = j.is_object() ? j.find("base_model_name_or_path") : j.end();
  const std::string named = it != j.end() && it->is_string() ? it->get<std::string>() : "";
  const std::string pass = "; pass the base model: merge-lora BASE_DIR --adapter " + adapter_dir;
  if (named.empty()) throw UsageError(cfg + " does not name its base model (base_model_name_or_path is not set)" + pass);
  fs::path base(named);
  if (base.is_relative() && !is_remote_path(named)) base = fs::path(adapter_dir) / base;
  if (is_remote_path(base.string())) {
    if (!is_directory(base.string()))
      throw UsageError(cfg + " names its base model '" + named + "', which is not a folder" + pass);
    return base.string();
  }
  std::error_code ec;
  if (!fs::is_directory(base, ec))
    throw UsageError(cfg + " names its base model '" + named + "', which is not a local folder (" + base.string() +
                     " does not exist; a Hub model id is not downloaded)" + pass);
  return base.lexically_normal().string();
}

}  // namespace ckb
