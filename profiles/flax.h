// Flax Linen <-> NNX checkpoint adaptation (docs: ../shared/research/maxtext_nnx.md, README).
//
// One mechanism for both directions: the source tree is split into its parts (weights, the
// step, the optax state, NNX-only RNG state) by its structure alone, and a recipe is
// generated whose rules move each part to where the other layout keeps it:
//   weights    Linen `params/params/...`          <-> NNX `model/...` (`.../value` when raw)
//   step       Linen `step` (int32 or a scalar)   <-> NNX `optimizer/step` uint32
//   optax      a chain as a sequence with `None`  <-> an int-keyed dict without the holes;
//              moment trees (`mu`, `nu`, `trace`, any subtree mirroring the weights) with
//              <-> without the extra `params` level; nested chains and wrappers
//              (`inner_state`, `inner_opt_state`, ...) handled by the same recursion; flat
//              states stay flat
//   RNG        NNX `.../rngs/...` key/count leaves: to Linen dropped by an explicit rule
//              (or kept under `nnx_aux/model/...` as MaxText does since #4343); to NNX taken
//              from Linen's `nnx_aux/model/...`, else filled from `--like` (its values kept)
//              or deterministically (PR #3929: key(0) / split(key(0), n), counts 0)
//   layers     optionally scanned `layers` <-> `layers_0..N-1` (a second recipe stage)
// The ordinary planner (recipe/plan.h) resolves that recipe, so every leaf is in the
// ledger, and `like` (a checkpoint of the target layout, e.g. a freshly initialised one) is
// the expected layout: a missing weight, an extra leaf or a shape mismatch fails the plan
// with every offending path listed; nothing is zero-filled silently.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/tree.h"
#include "profiles/optax_chain.h"
#include "recipe/plan.h"
#include "recipe/recipe.h"

namespace ckb {

// FlaxOptim: the legacy `flax.optim` / T5X train state, `{optimizer: {target, state}}` or
// `{target, state}` (weights at `target`, `state/step` and per-parameter `state/param_states`,
// e.g. Adafactor's v_row/v_col). Its optimizer state has no optax equivalent, so `adapt`
// carries only its weights (--weights-only) and refuses otherwise, naming the state.
enum class FlaxKind { Unknown, LinenFull, LinenParams, NnxFull, NnxModel, FlaxOptim };

// What detect_flax_layout() read off a tree.
struct FlaxLayout {
  FlaxKind kind = FlaxKind::Unknown;
  std::string weights;          // path of the weights subtree: "params/params", "params", "model"
  bool value_wrappers = false;  // weights are nnx.Variable `{value: x}` wrappers (a raw nnx.State)
  std::string step;             // path of the step leaf, "" when there is none
  std::string step_type;        // "I32", "U32", "int scalar", ...
  std::string opt_state;        // path of the optax state, "" when there is none (or it is empty)
  std::string chain;            // "sequence", "int-keyed dict", "flat", ""
  std::vector<std::string> rng; // RNG state subtrees (NNX `.../rngs`, Linen `nnx_aux/model`)
  std::string train_state;      // FlaxOptim: the optimizer state subtree ("optimizer/state", "state")
  bool is_linen() const { return kind == FlaxKind::LinenFull || kind == FlaxKind::LinenParams; }
  bool is_nnx() const { return kind == FlaxKind::NnxFull || kind == FlaxKind::NnxModel; }
  std::string name() const;     // "linen (full state)", "nnx (model only, raw State)", ...
  nlohmann::ordered_json to_json() const;
};

// Decided by what is present, never by one key alone: `params` (Linen), `model` (NNX, with
// `optimizer` for the full state), `optimizer/target` or `target` + `state` (flax.optim /
// T5X). Every path in the result exists in `root`; anything else is FlaxKind::Unknown.
FlaxLayout detect_flax_layout(const Node& root);

struct AdaptOptions {
  enum class To { Nnx, Linen } to = To::Nnx;
  // A checkpoint in the target layout (e.g. freshly initialised): where NNX-only state goes,
  // raw or pure, the step's encoding; and the layout the result must match exactly.
  const Checkpoint* like = nullptr;
  std::optional<bool> pure;       // NNX: no `value` wrappers (default: as `like`, else raw)
  // NNX-only RNG state the source does not hold: from `like`, or deterministic.
  enum class Rng { Like, Deterministic } rng = Rng::Like;
  std::uint64_t rng_seed = 0;
  bool weights_only = false;      // drop (report) the training state; params-only sources imply it
  bool keep_rng = false;          // to Linen: keep NNX RNG state under `nnx_aux/model/...`
  // Scanned <-> unscanned layers: "unscan" slices every `.../layers/...` leaf along the scan
  // axis into `.../layers_<i>/...`, "scan" stacks them back; "" keeps the structure unless
  // `like` has the other one. Params and their moments use `scan_axis` (MaxText's
  // param_scan_axis, 1), RNG state axis 0.
  std::string layers;
  int scan_axis = 1;
  // To Linen: the top-level optax chain's entries (profiles/optax_chain.h), which NNX cannot
  // show in full. Its stateful positions must be exactly the NNX chain's int keys, and where
  // `like` shows the chain too the two must agree (MappingError naming both otherwise). The
  // Linen chain gets its length, `None` at its stateless entries. Without it and without a
  // `like` that shows the chain, the chain ends at the last NNX key and a note starting
  // with "warning:" says that trailing stateless entries are unknown.
  std::optional<OptChain> opt_chain;
};

struct Adaptation {
  FlaxLayout from;
  Recipe recipe;                  // the generated rules (shown by `plan`, kept in reports)
  Plan plan;                      // target tree + ledger; check plan.ok()
  std::vector<std::string> notes; // decisions worth telling the user (e.g. no RNG state created)
  // To Linen: the top-level optax chain as written (`entries`, `holes`, `from`: the option,
  // --like, or the NNX source alone with `trailing_unknown`); null when there is none.
  nlohmann::ordered_json opt_chain;
};

// MappingError when the source is neither layout or already in the requested one.
Adaptation adapt_flax(const Checkpoint& src, const AdaptOptions& opts);

// "Load this checkpoint as NNX (or Linen)": the adapted tree, read lazily; MappingError
// listing the problems when the plan does not account for everything.
Checkpoint load_adapted(const Checkpoint& src, const AdaptOptions& opts);

}  // namespace ckb
