// The "flax" profile: a Flax checkpoint adapted between the Linen and NNX layouts (params or
// full training state; profiles/flax.h). It generates its own recipe and plan from the
// source's structure, so no recipe options apply.
#include "core/errors.h"
#include "core/units.h"
#include "profiles/flax.h"
#include "profiles/profile.h"

namespace ckb {
namespace {

class FlaxProfile final : public Profile {
 public:
  const ProfileInfo& info() const override {
    static const ProfileInfo i{
        "flax",
        "Flax Linen <-> NNX (params or full training state, MaxText's layouts)",
        {{"layout",
          "target layout: nnx, linen, or auto (the layout of --like; a source already in it is matched to --like as it "
          "is)",
          false, true, {"nnx", "linen", "auto"}},
         {"like",
          "a checkpoint in the target layout (e.g. freshly initialised): where NNX-only state goes, raw or pure, the "
          "step's encoding; the result must match its layout exactly",
          false, false, {}, true},
         {"pure", "nnx: write a pure dict (nnx.to_pure_dict, no `value` level)", true},
         {"raw", "nnx: write a raw nnx.State (`.../value` leaves; the default without --like)", true},
         {"rng-fill",
          "nnx: RNG key/count leaves the source lacks: 'like' keeps --like's values, 'deterministic' writes key(seed) / "
          "split(key(seed), n) and zero counts as MaxText PR #3929 does",
          false, false, {"like", "deterministic"}},
         {"rng-seed", "seed for --rng-fill deterministic (default 0)"},
         {"weights-only", "carry the weights only; the training state is dropped (reported)", true},
         {"layers", "scanned layers: 'unscan' slices .../layers/... into layers_<i>, 'scan' stacks them (default: as --like)",
          false, false, {"scan", "unscan"}},
         {"scan-axis", "the params' scan axis for --layers (MaxText's param_scan_axis, default 1)"},
         {"keep-rng", "linen: keep NNX RNG state under nnx_aux/model (MaxText after #4343) instead of dropping it", true},
         {"opt-chain",
          "linen: the optax chain's entries, which NNX cannot show in full (its trailing stateless ones): comma-separated, "
          "a name for each stateful transform and '-' for each stateless one, e.g. 'trace,-' for sgd with momentum; "
          "checked against the NNX chain and --like"},
         {"optax",
          "linen: the optax optimizer that built the chain (instead of --opt-chain): sgd, sgd(momentum), adam, adamw, "
          "each optionally +schedule (a learning-rate schedule), e.g. 'adamw+schedule'"}},
        ""};
    return i;
  }

  Prepared prepare(const Checkpoint& source, const ProfileRequest& req) const override {
    if (req.reverse) throw UsageError("the flax profile has no --reverse: pass the other --layout");
    const auto& o = req.options;
    auto has = [&](const char* k) { return o.count(k) > 0; };
    auto flag = [&](const char* k) { return has(k) && o.at(k) == "1"; };
    if (flag("pure") && flag("raw")) throw UsageError("pass at most one of --pure and --raw");
    AdaptOptions ao;
    std::string layout = o.at("layout");
    Prepared p;
    if (layout == "auto") {
      if (!has("like")) throw UsageError("--layout auto takes the layout of --like; pass --like");
      auto like = std::make_shared<const Checkpoint>(req.open(o.at("like")));
      const FlaxLayout want = detect_flax_layout(like->root);
      const FlaxLayout have = detect_flax_layout(source.root);
      const bool flax_pair = (want.is_linen() || want.is_nnx()) && (have.is_linen() || have.is_nnx());
      if (!flax_pair || want.is_linen() == have.is_linen()) {
        // Already in the wanted layout (or not a Linen/NNX pair): the identity recipe,
        // checked leaf by leaf against --like. Options that shape an adaptation have nothing
        // to act on (RNG fills need no options: nothing is missing that --like does not show).
        for (const char* k : {"pure", "raw", "layers", "weights-only", "keep-rng", "opt-chain", "optax"})
          if (has(k))
            throw UsageError("--" + std::string(k) + " shapes a Linen <-> NNX adaptation; the source is already in --like's layout (" +
                             have.name() + "), so its leaves are matched as they are");
        p.source = source;
        if (flax_pair && want.is_nnx() && want.value_wrappers != have.value_wrappers) {
          // raw nnx.State (`.../value`) <-> pure dict: the same leaves, one level more or less
          unwrap_value_leaves(p.source.root);
          if (want.value_wrappers) wrap_value_leaves(p.source.root);
          p.notes.push_back(std::string("NNX leaves ") + (want.value_wrappers ? "wrapped in" : "unwrapped from") +
                            " `value` to match --like");
        }
        p.expect = like;
        p.recipe = load_recipe("identity");
        p.notes.push_back(flax_pair ? "source layout " + have.name() + " is already the layout of --like: leaves matched as they are"
                                    : "not a Flax Linen/NNX pair (" + have.name() + ", --like " + want.name() +
                                          "): leaves matched as they are");
        p.report["adapt"] = {{"from", have.to_json()}, {"to", "auto (unchanged)"}};
        return p;
      }
      layout = want.is_nnx() ? "nnx" : "linen";
    }
    ao.to = layout == "nnx" ? AdaptOptions::To::Nnx : AdaptOptions::To::Linen;
    // With --layout auto, the options of the direction not taken do not apply (and are not errors).
    const bool asked = o.at("layout") != "auto";
    if (asked && ao.to == AdaptOptions::To::Linen && (flag("pure") || flag("raw") || has("rng-fill") || has("rng-seed")))
      throw UsageError("--pure, --raw, --rng-fill and --rng-seed apply to --layout nnx");
    if (asked && ao.to == AdaptOptions::To::Nnx && (flag("keep-rng") || has("opt-chain") || has("optax")))
      throw UsageError("--keep-rng, --opt-chain and --optax apply to --layout linen");
    if (has("opt-chain") && has("optax")) throw UsageError("pass at most one of --opt-chain and --optax");
    if (ao.to == AdaptOptions::To::Linen) {
      if (has("opt-chain")) ao.opt_chain = parse_opt_chain(o.at("opt-chain"));
      if (has("optax")) ao.opt_chain = optax_chain(o.at("optax"));
    }
    if (has("like")) {
      auto like = std::make_shared<const Checkpoint>(req.open(o.at("like")));
      ao.like = like.get();
      p.expect = like;
    }
    if (flag("pure")) ao.pure = true;
    if (flag("raw")) ao.pure = false;
    ao.rng = has("rng-fill") && o.at("rng-fill") == "deterministic" ? AdaptOptions::Rng::Deterministic : AdaptOptions::Rng::Like;
    if (has("rng-seed")) {
      const std::int64_t seed = parse_integer(o.at("rng-seed"), "--rng-seed");
      if (seed < 0) throw UsageError("--rng-seed must not be negative");
      ao.rng_seed = static_cast<std::uint64_t>(seed);
    }
    ao.weights_only = flag("weights-only");
    ao.keep_rng = flag("keep-rng");
    if (has("layers")) ao.layers = o.at("layers");
    if (has("scan-axis")) ao.scan_axis = static_cast<int>(parse_integer(o.at("scan-axis"), "--scan-axis"));
    Adaptation a = adapt_flax(source, ao);
    p.source = source;
    p.notes.push_back("source layout: " + a.from.name());
    for (const auto& n : a.notes) p.notes.push_back(n);
    p.report["adapt"] = {{"from", a.from.to_json()}, {"to", layout}, {"notes", a.notes}};
    if (!a.opt_chain.is_null()) p.report["adapt"]["opt_chain"] = a.opt_chain;
    p.report["adapt"]["recipe"] = recipe_to_json(a.recipe);
    p.recipe = std::move(a.recipe);
    p.plan = std::move(a.plan);
    return p;
  }
};

}  // namespace

std::unique_ptr<Profile> make_flax_profile() { return std::make_unique<FlaxProfile>(); }

}  // namespace ckb
