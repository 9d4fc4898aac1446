// Descriptions of an optax chain's entries, for NNX -> Linen (profiles/flax.h).
//
// optax's `chain(t0, t1, ...)` keeps its state as a tuple with one entry per transform; a
// stateless transform's entry is `EmptyState()`, which Orbax stores as `None`. NNX keeps the
// same chain as a dict keyed by the *stateful* entries' positions only, so the Linen tuple's
// length and its stateless entries (interior holes are visible as gaps, trailing ones are not)
// cannot be read off an NNX checkpoint. An OptChain supplies them:
//   parse_opt_chain("trace,-")      an explicit list: a name for a stateful entry, `-` for a
//                                   stateless one (`--opt-chain`)
//   optax_chain("sgd(momentum)")    the chain optax's own aliases build (`--optax`)
#pragma once

#include <cstddef>
#include <set>
#include <string>
#include <vector>

namespace ckb {

struct OptChain {
  std::vector<std::string> entries;  // one per transform: a name (stateful) or "-" (stateless)
  std::string origin;                // where it came from, for messages: "--optax adamw (adam,-,-)"
  std::size_t size() const { return entries.size(); }
  bool stateful(std::size_t i) const { return entries[i] != "-"; }
  std::set<std::size_t> stateful_positions() const;
  std::string spec() const;  // "adam,-,-"
};

// `spec`: comma-separated entries, each a name or `-`; spaces around entries are ignored.
// UsageError for an empty spec or entry, or more than 4096 entries.
OptChain parse_opt_chain(const std::string& spec);

// The chain of an optax alias: sgd, sgd(momentum), adam, adamw, each optionally with
// `+schedule` (a callable learning rate). UsageError listing the known names otherwise.
OptChain optax_chain(const std::string& name);
std::vector<std::string> known_optax_names();

// "{0, 2}"
std::string positions_text(const std::set<std::size_t>& positions);

}  // namespace ckb
