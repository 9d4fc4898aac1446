// Implementation of profiles/optax_chain.h.
#include "profiles/optax_chain.h"

#include <utility>

#include "core/errors.h"

namespace ckb {
namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

// The chains optax's aliases build, read from google-deepmind/optax (2edbcbe, 2026-08):
//   optax/_src/alias.py
//     sgd(lr, momentum=None)   = chain(trace(momentum) if momentum is not None else identity(),
//                                      scale_by_learning_rate(lr))
//     adam(lr, ...)            = chain(scale_by_adam(...), scale_by_learning_rate(lr))
//     adamw(lr, ..., mask=None)= chain(scale_by_adam(...), add_decayed_weights(weight_decay, mask),
//                                      scale_by_learning_rate(lr))
//   optax/_src/transform.py
//     scale_by_learning_rate(lr): scale_by_schedule(...) (ScaleByScheduleState(count)) when lr
//       is callable (a schedule), else scale(...), whose ScaleState is EmptyState
//     AddDecayedWeightsState = EmptyState (a constant weight_decay and mask=None; with a mask
//       it is wrapped in masked(): MaskedState(inner_state=...), not a plain None, and with a
//       weight-decay schedule it holds a count: spell such chains with --opt-chain or --like)
//   optax/_src/base.py: identity() keeps EmptyState
//   optax/transforms/_accumulation.py: trace keeps TraceState(trace)
// The last entry is the learning rate's: `-` for a constant, `schedule` with "+schedule".
const std::vector<std::pair<std::string, std::vector<std::string>>>& aliases() {
  static const std::vector<std::pair<std::string, std::vector<std::string>>> a = {
      {"sgd", {"-", "-"}},
      {"sgd(momentum)", {"trace", "-"}},
      {"adam", {"adam", "-"}},
      {"adamw", {"adam", "-", "-"}},
  };
  return a;
}

}  // namespace

std::set<std::size_t> OptChain::stateful_positions() const {
  std::set<std::size_t> s;
  for (std::size_t i = 0; i < entries.size(); ++i)
    if (stateful(i)) s.insert(i);
  return s;
}

std::string OptChain::spec() const {
  std::string s;
  for (const auto& e : entries) s += (s.empty() ? "" : ",") + e;
  return s;
}

std::string positions_text(const std::set<std::size_t>& positions) {
  std::string s;
  for (auto p : positions) s += (s.empty() ? "" : ", ") + std::to_string(p);
  return "{" + s + "}";
}

OptChain parse_opt_chain(const std::string& spec) {
  OptChain c;
  std::size_t start = 0;
  while (true) {
    const auto comma = spec.find(',', start);
    const std::string e = trim(spec.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (e.empty())
      throw UsageError("--opt-chain '" + spec + "': an empty entry; list the chain's entries separated by commas, a name "
                       "for each stateful transform and '-' for each stateless one (e.g. 'trace,-')");
    c.entries.push_back(e);
    if (c.entries.size() > 4096) throw UsageError("--opt-chain: more than 4096 entries");
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  c.origin = "--opt-chain " + c.spec();
  return c;
}

std::vector<std::string> known_optax_names() {
  std::vector<std::string> names;
  for (const auto& [n, e] : aliases()) names.push_back(n);
  for (const auto& [n, e] : aliases()) names.push_back(n + "+schedule");
  return names;
}

OptChain optax_chain(const std::string& name) {
  std::string n;
  for (char ch : name)
    if (ch != ' ' && ch != '\t') n += ch;
  const std::string suffix = "+schedule";
  const bool schedule = n.size() > suffix.size() && n.ends_with(suffix);
  const std::string base = schedule ? n.substr(0, n.size() - suffix.size()) : n;
  for (const auto& [alias, entries] : aliases()) {
    if (alias != base) continue;
    OptChain c;
    c.entries = entries;
    if (schedule) c.entries.back() = "schedule";
    c.origin = "--optax " + n + " (" + c.spec() + ")";
    return c;
  }
  std::string known;
  for (const auto& k : known_optax_names()) known += (known.empty() ? "" : ", ") + k;
  throw UsageError("--optax '" + name + "': unknown optimizer; known: " + known +
                   " (any other chain: --opt-chain, e.g. 'trace,-' with '-' for each stateless entry)");
}

}  // namespace ckb
