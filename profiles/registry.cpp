// The list of profiles and option validation (profiles/profile.h).
#include <algorithm>

#include "core/errors.h"
#include "profiles/profile.h"

namespace ckb {

const std::vector<std::unique_ptr<Profile>>& all_profiles() {
  static const std::vector<std::unique_ptr<Profile>> all = [] {
    std::vector<std::unique_ptr<Profile>> v;
    v.push_back(make_openpi_profile());
    v.push_back(make_openpi_merge_profile());
    v.push_back(make_peft_profile());
    v.push_back(make_flax_profile());
    return v;
  }();
  return all;
}

const Profile& profile_by_name(const std::string& name) {
  std::string known;
  for (const auto& p : all_profiles()) {
    if (p->info().name == name) return *p;
    known += (known.empty() ? "" : ", ") + p->info().name;
  }
  throw UsageError("unknown profile '" + name + "' (known: " + known + ")");
}

const Profile* profile_for_recipe(const std::string& recipe) {
  for (const auto& p : all_profiles())
    if (!p->info().recipe.empty() && p->info().recipe == recipe) return p.get();
  return nullptr;
}

void validate_profile_options(const Profile& p, const std::map<std::string, std::string>& options) {
  const ProfileInfo& info = p.info();
  for (const auto& [name, value] : options) {
    auto it = std::find_if(info.options.begin(), info.options.end(), [&](const auto& o) { return o.name == name; });
    if (it == info.options.end()) {
      std::string takers;
      for (const auto& q : all_profiles())
        for (const auto& o : q->info().options)
          if (o.name == name) takers += (takers.empty() ? "" : ", ") + q->info().name;
      throw UsageError("--" + name + (takers.empty() ? " is not an option of any profile"
                                                       : " applies to the " + takers + " profile, not " + info.name));
    }
    if (it->flag && value != "1" && value != "0")
      throw UsageError("--" + name + " is a flag; got the value '" + value + "'");
    if (!it->flag && value.empty()) throw UsageError("--" + name + " needs a value");
    if (!it->choices.empty() && std::find(it->choices.begin(), it->choices.end(), value) == it->choices.end()) {
      std::string list;
      for (const auto& c : it->choices) list += (list.empty() ? "" : ", ") + c;
      throw UsageError("--" + name + " must be one of " + list + ", got '" + value + "'");
    }
  }
  for (const auto& o : info.options)
    if (o.required && !options.count(o.name))
      throw UsageError("the " + info.name + " profile needs --" + o.name + " (" + o.help + ")");
}

std::string ProfileRequest::option(const std::string& name) const {
  auto it = options.find(name);
  return it == options.end() ? "" : it->second;
}

}  // namespace ckb
