// Profiles: model knowledge as plug-ins. A profile knows one family of checkpoints (openpi,
// PEFT adapters, Flax Linen/NNX) and turns a source into something the generic planner can
// run, then adds what the target runtime needs beside the weights. The engine (engine/api.h)
// knows no profile by name: it asks the registry.
//
//   resolve(inputs)           -> before anything is opened: what the job names may be redirected
//                                (a PEFT adapter folder given alone names its base) or refused
//   prepare(source, request)  -> the (possibly transformed) source, the recipe or a finished
//                                plan, the sizes the recipe needs, notes and a report section
//   after_write(prepared, out)-> sidecar files inside the output folder (config.json, assets/),
//                                checks of the written output (--verify); report section
//
// Adding a profile is one file with a class deriving from Profile plus one line in
// profiles/registry.cpp.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/tree.h"
#include "ops/cast.h"
#include "recipe/plan.h"
#include "recipe/recipe.h"

namespace ckb {

// A profile's option as users type it (CLI `--NAME`, Python keyword with underscores).
struct ProfileOptionSpec {
  ProfileOptionSpec(std::string n, std::string h, bool is_flag = false, bool is_required = false,
                    std::vector<std::string> allowed = {}, bool names_path = false, bool can_repeat = false)
      : name(std::move(n)), help(std::move(h)), flag(is_flag), required(is_required), choices(std::move(allowed)),
        is_path(names_path), repeated(can_repeat) {}
  std::string name;
  std::string help;
  bool flag = false;       // takes no value ("1" when set)
  bool required = false;
  std::vector<std::string> choices;  // empty: any text
  bool is_path = false;              // names a file or folder the run reads
  // may be given several times: the values, in order, joined by '\n' into one option value
  // (the C ABI takes a JSON list for it)
  bool repeated = false;
};

struct ProfileInfo {
  std::string name;         // "openpi", "openpi-merge", "peft", "flax"
  std::string description;  // one line
  std::vector<ProfileOptionSpec> options;
  // The built-in recipe this profile prepares for: `--recipe NAME` selects the profile too.
  std::string recipe = {};
  // A LoRA-merging profile: the runtime family whose LoRA semantics it reproduces ("openpi",
  // "peft"; `merge-lora --profile FAMILY`), and whether it is the family used by default.
  std::string merges_lora_of = {};
  bool default_lora_merge = false;
};

// What the engine hands a profile.
struct ProfileRequest {
  std::string source_path;
  std::map<std::string, std::string> options;  // validated against ProfileInfo::options
  bool reverse = false;                         // the recipe runs backwards
  // The value of option `name`; empty when the job does not give it.
  std::string option(const std::string& name) const;
  // Opens another checkpoint (e.g. `--like`) with the job's source options.
  std::function<Checkpoint(const std::string& path)> open;
  // The output is a folder the user named (OUT_DIR/model.safetensors, or shards in OUT_DIR),
  // not a file: a profile may complete it into a model folder (sidecars).
  bool output_folder = false;
};

// What a job names, before anything is opened (Profile::resolve may change it).
struct ProfileInputs {
  std::string source;
  std::map<std::string, std::string> options;
  // An output path without an extension names a folder (as if it ended in '/'), and these
  // write options apply to a folder output unless the job gives them.
  bool folder_output = false;
  std::map<std::string, std::string> folder_write_defaults;
};

struct Prepared {
  Checkpoint source;                             // what the plan reads (may differ from the input)
  std::optional<Recipe> recipe;                  // none: the engine loads the job's recipe
  std::optional<Plan> plan;                      // a profile that plans itself (flax)
  std::map<std::string, std::int64_t> sizes;     // for the recipe's rearranges and fills
  std::shared_ptr<const Checkpoint> expect;      // a layout the target must match
  std::vector<std::string> notes;                // decisions worth telling the user
  nlohmann::ordered_json report = nlohmann::ordered_json::object();  // the profile's section
  std::shared_ptr<void> state;                   // the profile's own data for after_write
  // Tensors of `source` the profile computed in float64 and rounded once (a LoRA merge before
  // the recipe), by source name: reported with the run's casts (errors measured as read).
  std::map<std::string, std::shared_ptr<CastStats>> rounded;
  // The dtype floating tensors are written in unless the job asks for one (--dtype).
  std::optional<DType> default_dtype;
};

// Where the weights were written, for after_write.
struct WrittenOutput {
  std::string path;          // the weights file or checkpoint folder (final, committed)
  std::string folder;        // the folder sidecars go into
  std::string format;        // the format's name
  bool overwrite = false;    // the user asked to replace existing files
  const Node* target = nullptr;  // the tree that was written (dtypes, shapes)
  std::optional<std::int64_t> step;  // a step written into a CheckpointManager root: read it back there
};

struct AfterWriteResult {
  std::vector<std::string> files;     // sidecars written
  std::vector<std::string> notes;
  std::vector<std::string> failures;  // checks that failed (the run exits non-zero)
};

class Profile {
 public:
  virtual ~Profile() = default;
  virtual const ProfileInfo& info() const = 0;
  virtual Prepared prepare(const Checkpoint& source, const ProfileRequest& request) const = 0;
  // Before the source is opened and the options validated: redirect or refuse the inputs
  // (UsageError naming the path).
  virtual void resolve(ProfileInputs&) const {}
  // Files and folders the options name that the run reads (guarded like the source: never an output).
  virtual std::vector<std::string> inputs(const std::map<std::string, std::string>& options) const {
    std::vector<std::string> out;
    for (const auto& o : info().options)
      if (o.is_path)
        if (auto it = options.find(o.name); it != options.end()) out.push_back(it->second);
    return out;
  }
  // Sidecar files the output needs, relative to WrittenOutput::folder: checked before the
  // run so that an existing file the user did not ask to replace fails before anything is
  // written.
  virtual std::vector<std::string> sidecars(const Prepared&) const { return {}; }
  virtual AfterWriteResult after_write(const Prepared&, const WrittenOutput&, nlohmann::ordered_json& report) const {
    (void)report;
    return {};
  }
};

// The registered profiles, in registration order.
const std::vector<std::unique_ptr<Profile>>& all_profiles();
// By name; UsageError listing the known names if unknown.
const Profile& profile_by_name(const std::string& name);
// The profile a built-in recipe name selects, or nullptr.
const Profile* profile_for_recipe(const std::string& recipe);
// UsageError for an option the profile does not take, a missing required one, a value for
// a flag or a value outside the choices.
void validate_profile_options(const Profile& p, const std::map<std::string, std::string>& options);

// Each profile's factory (profiles/<name>_profile.cpp).
std::unique_ptr<Profile> make_openpi_profile();
std::unique_ptr<Profile> make_openpi_merge_profile();
std::unique_ptr<Profile> make_peft_profile();
std::unique_ptr<Profile> make_flax_profile();

}  // namespace ckb
