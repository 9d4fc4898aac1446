// Implementation of core/json_bounded.h: a parser callback that tracks the open containers
// (the key set of each open object and where it is) and throws on depth or a repeated key.
#include "core/json_bounded.h"

#include <unordered_set>
#include <vector>

#include "core/errors.h"

namespace ckb {
namespace {

template <class Json>
class Guard {
 public:
  Guard(const std::string& path, const JsonLimits& l) : path_(path), limits_(l) {}

  bool operator()(int depth, nlohmann::detail::parse_event_t event, Json& parsed) {
    using E = nlohmann::detail::parse_event_t;
    if (depth > limits_.max_depth)
      throw FormatError(path_, "JSON nested deeper than " + std::to_string(limits_.max_depth) + " levels",
                        limits_.offset);
    if (!limits_.reject_duplicate_keys) return true;
    switch (event) {
      case E::object_start:
      case E::array_start:
        open_.push_back({event == E::object_start, {}, where_next()});
        break;
      case E::object_end:
      case E::array_end:
        if (!open_.empty()) open_.pop_back();
        break;
      case E::key:
        if (!open_.empty() && parsed.is_string()) {
          auto& f = open_.back();
          f.last_key = parsed.template get_ref<const std::string&>();
          if (!f.keys.insert(f.last_key).second)
            throw FormatError(path_,
                              "JSON object " + (f.where.empty() ? std::string("at the top level") : "'" + f.where + "'") +
                                  " has the key '" + f.last_key + "' twice",
                              limits_.offset);
        }
        break;
      case E::value:
        break;
    }
    return true;
  }

 private:
  struct Frame {
    bool object;
    std::unordered_set<std::string> keys;
    std::string where;  // "a/b/[]": object keys on the way, [] for array elements
    std::string last_key = {};
  };
  std::string where_next() const {
    if (open_.empty()) return "";
    const Frame& p = open_.back();
    const std::string step = p.object ? p.last_key : "[]";
    return p.where.empty() ? step : p.where + "/" + step;
  }

  const std::string& path_;
  const JsonLimits& limits_;
  std::vector<Frame> open_;
};

template <class Json>
Json parse_bounded(std::string_view text, const std::string& path, const JsonLimits& limits) {
  Guard<Json> guard(path, limits);
  return Json::parse(text.begin(), text.end(),
                     [&guard](int depth, nlohmann::detail::parse_event_t e, Json& j) { return guard(depth, e, j); },
                     limits.allow_exceptions);
}

}  // namespace

nlohmann::json parse_json_bounded(std::string_view text, const std::string& path, const JsonLimits& limits) {
  return parse_bounded<nlohmann::json>(text, path, limits);
}

nlohmann::ordered_json parse_ordered_json_bounded(std::string_view text, const std::string& path,
                                                  const JsonLimits& limits) {
  return parse_bounded<nlohmann::ordered_json>(text, path, limits);
}

}  // namespace ckb
