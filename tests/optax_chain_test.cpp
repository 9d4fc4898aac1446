// NNX -> Linen optax chains whose length NNX cannot show (issue #18 item 5; profiles/optax_chain.h):
// NNX sources for optax.sgd (no momentum), sgd(momentum), adamw (constant learning rate) and
// adamw + schedule are made from the MaxText-style fixture written by flax/optax/orbax
// (tests/data/fixtures/maxtext_linen_nnx, adamw + linear schedule), then `adapt --layout linen`
// with --optax / --opt-chain / --like must write the Linen TrainState's opt_state tuple as
// optax builds it: one entry per transform, `None` (Orbax's EmptyState) at each stateless
// one, every state leaf's bytes moved exactly; mismatching descriptions fail naming both;
// with neither, a warning says what is unknown.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "core/errors.h"
#include "formats/format.h"
#include "io/file.h"
#include "profiles/flax.h"
#include "profiles/optax_chain.h"
#include "tests/test_util.h"

namespace ckb {
namespace {

using test::bytes_of;

using test::fixture;
using test::load_json;
using test::run_cli;
using test::TempDir;


// Every leaf of a tree as something comparable: a tensor's dtype, shape and bytes; `None`;
// other values by type and value. `step` is left out (its encoding is tested elsewhere).
std::map<std::string, std::string> leaf_map(const Node& root) {
  std::map<std::string, std::string> m;
  visit_leaves(root, [&](const Path& p, const Node& n) {
    const std::string name = join_path(p);
    if (name == "step") return;
    if (n.is_tensor()) {
      const auto& i = n.tensor().info;
      std::string shape;
      for (auto d : i.shape) shape += std::to_string(d) + ",";
      m[name] = std::string(dtype_name(i.dtype)) + "[" + shape + "]" + bytes_of(n.tensor());
    } else if (std::holds_alternative<NoneValue>(n.value())) {
      m[name] = "None";
    } else {
      m[name] = std::string(n.type_name()) + (n.is_container() ? " (empty)" : "");
    }
  });
  return m;
}

// The NNX fixture (raw nnx.State of adamw + schedule: opt_state {0: adam, 2: schedule count})
// with its optimizer state replaced, written as an Orbax checkpoint at `dir`.
void write_nnx(const std::string& dir, const std::function<Node(const Node& adam)>& opt_state) {
  Checkpoint ck = read_checkpoint(test::maxtext_fixture("nnx_expected_raw"));
  Node* o = find_path(ck.root, "optimizer/opt_state");
  ASSERT_NE(o, nullptr);
  const Node adam = *o->find("0");
  *o = opt_state(adam);
  write_checkpoint(ck, dir, format_by_name("orbax"), {}, 1);
}

// The same with no `optimizer/opt_state` node at all (how an empty nnx.State may be saved).
void write_nnx_without_opt_state(const std::string& dir) {
  Checkpoint ck = read_checkpoint(test::maxtext_fixture("nnx_expected_raw"));
  auto& kids = ck.root.find("optimizer")->container();
  kids.children.erase(std::remove_if(kids.children.begin(), kids.children.end(),
                                     [](const Child& c) { return c.key == "opt_state"; }),
                      kids.children.end());
  kids.index.clear();
  write_checkpoint(ck, dir, format_by_name("orbax"), {}, 1);
}

Node chain_dict(std::vector<std::pair<std::string, Node>> entries) {
  Node d = Node::dict();
  for (auto& [k, v] : entries) d.add(k, std::move(v));
  return d;
}

// The NNX sources of the chains optax's aliases build (optax/_src/alias.py).
struct OptaxSources {
  TempDir tmp;
  std::string sgd = tmp / "sgd", momentum = tmp / "sgd_momentum", adamw = tmp / "adamw_const",
              adamw_schedule = test::maxtext_fixture("nnx_expected_raw"), flat = tmp / "flat";
  OptaxSources() {
    // sgd: chain(identity(), scale(-lr)): both EmptyState, so NNX keeps an empty State
    write_nnx(sgd, [](const Node&) { return Node::dict(); });
    // sgd(momentum): chain(trace, scale): {0: {trace: <weights>}}; the fixture's adam mu as the trace
    write_nnx(momentum, [](const Node& adam) { return chain_dict({{"0", chain_dict({{"trace", *adam.find("mu")}})}}); });
    // adamw with a constant learning rate: chain(adam, add_decayed_weights, scale): {0: adam}
    write_nnx(adamw, [](const Node& adam) { return chain_dict({{"0", adam}}); });
    // optax.adam's bare ScaleByAdamState, no chain (MaxText's adam_pax)
    write_nnx(flat, [](const Node& adam) { return adam; });
  }
};

// linen_full (adamw + schedule, written by flax/optax/orbax) with its opt_state replaced.
std::map<std::string, std::string> linen_with(const std::function<Node(const Node& adam)>& opt_state) {
  Checkpoint ck = read_checkpoint(test::maxtext_fixture("linen_full"));
  Node* o = ck.root.find("opt_state");
  const Node adam = *o->find("0");
  *o = opt_state(adam);
  return leaf_map(ck.root);
}
Node tuple_of(std::vector<Node> entries) {
  Node l = Node::list();
  for (auto& e : entries) l.append(std::move(e));
  return l;
}

// The written opt_state: a sequence (Orbax key_type 1) of `n` entries, `None` at `holes`.
void expect_chain(const std::string& out, std::size_t n, const std::vector<int>& holes) {
  Checkpoint ck = read_checkpoint(out);
  const Node* o = ck.root.find("opt_state");
  ASSERT_TRUE(o && o->is_container());
  EXPECT_EQ(o->container().kind, ContainerKind::List);
  ASSERT_EQ(o->size(), n);
  const auto meta = load_json(out + "/_METADATA")["tree_metadata"];
  for (std::size_t i = 0; i < n; ++i) {
    const bool hole = std::find(holes.begin(), holes.end(), static_cast<int>(i)) != holes.end();
    const Node* e = o->find(std::to_string(i));
    ASSERT_NE(e, nullptr) << i;
    EXPECT_EQ(!e->is_container() && std::holds_alternative<NoneValue>(e->value()), hole) << i;
    if (hole) {
      const auto& m = meta["('opt_state', '" + std::to_string(i) + "')"];
      EXPECT_EQ(m["value_metadata"]["value_type"], "None") << i;
      EXPECT_EQ(m["value_metadata"]["skip_deserialize"], true) << i;
      EXPECT_EQ(m["key_metadata"][1]["key_type"], 1) << i;  // SEQUENCE: a tuple index, as optax's chain
    }
  }
}

std::string adapt(const std::string& src, const std::string& out, const std::string& extra, int want_rc = 0) {
  auto r = run_cli("adapt " + src + " " + out + " --layout linen " + extra);
  EXPECT_EQ(r.exit_code, want_rc) << r.err;
  return r.err;
}

TEST(OptaxChain, OptaxAliasesAreTheChainsOptaxBuilds) {
  // optax/_src/alias.py: sgd = chain(trace | identity, scale_by_learning_rate), adam = chain(scale_by_adam,
  // scale_by_learning_rate), adamw = chain(scale_by_adam, add_decayed_weights, scale_by_learning_rate)
  EXPECT_EQ(optax_chain("sgd").spec(), "-,-");
  EXPECT_EQ(optax_chain("sgd(momentum)").spec(), "trace,-");
  EXPECT_EQ(optax_chain("sgd(momentum)+schedule").spec(), "trace,schedule");
  EXPECT_EQ(optax_chain("adam").spec(), "adam,-");
  EXPECT_EQ(optax_chain("adam+schedule").spec(), "adam,schedule");
  EXPECT_EQ(optax_chain("adamw").spec(), "adam,-,-");
  EXPECT_EQ(optax_chain(" adamw + schedule").spec(), "adam,-,schedule");
  EXPECT_EQ(optax_chain("adamw+schedule").stateful_positions(), (std::set<std::size_t>{0, 2}));
  EXPECT_EQ(optax_chain("adamw").origin, "--optax adamw (adam,-,-)");
  const std::string e = test::error_of([] { optax_chain("lamb"); });
  EXPECT_NE(e.find("--optax 'lamb': unknown optimizer; known: sgd, sgd(momentum), adam, adamw, sgd+schedule, "
                   "sgd(momentum)+schedule, adam+schedule, adamw+schedule"), std::string::npos) << e;

  const OptChain c = parse_opt_chain(" trace , - ");
  EXPECT_EQ(c.entries, (std::vector<std::string>{"trace", "-"}));
  EXPECT_EQ(c.origin, "--opt-chain trace,-");
  EXPECT_NE(test::error_of([] { parse_opt_chain("adam,,-"); }).find("an empty entry"), std::string::npos);
  EXPECT_NE(test::error_of([] { parse_opt_chain(""); }).find("an empty entry"), std::string::npos);
}

TEST(OptaxChain, SgdMomentumGetsItsTrailingScale) {
  OptaxSources s;
  TempDir tmp;
  const auto want = linen_with([](const Node& adam) {
    return tuple_of({chain_dict({{"trace", *adam.find("mu")}}), Node::none()});
  });
  for (const std::string& opt : {std::string("--optax 'sgd(momentum)'"), std::string("--opt-chain trace,-")}) {
    const std::string out = tmp / ("out" + std::to_string(opt.size()));
    const std::string err = adapt(s.momentum, out, opt + " --report " + out + ".json");
    EXPECT_EQ(err.find("warning"), std::string::npos) << err;
    expect_chain(out, 2, {1});
    // the trace moved exactly, with Linen's extra `params` level: 12 weights
    const auto got = leaf_map(read_checkpoint(out).root);
    EXPECT_EQ(want.size(), 12u + 12u + 1u);  // weights, trace, the None
    EXPECT_EQ(want.at("opt_state/1"), "None");
    EXPECT_EQ(got, want);
    EXPECT_EQ(std::count_if(got.begin(), got.end(), [](const auto& kv) { return kv.first.starts_with("opt_state/0/trace/params/"); }), 12);
    const auto chain = load_json(out + ".json")["adapt"]["opt_chain"];
    EXPECT_EQ(chain["entries"], 2);
    EXPECT_EQ(chain["holes"], nlohmann::json::array({1}));
    EXPECT_EQ(chain["trailing_unknown"], false);
    EXPECT_EQ(chain["from"], opt.starts_with("--optax") ? "--optax sgd(momentum) (trace,-)" : "--opt-chain trace,-");
  }
}

TEST(OptaxChain, AdamwConstantAndScheduledLearningRate) {
  OptaxSources s;
  TempDir tmp;
  // constant: chain(adam, add_decayed_weights, scale) -> (adam, None, None)
  adapt(s.adamw, tmp / "const", "--optax adamw -q");
  expect_chain(tmp / "const", 3, {1, 2});
  const auto want_const = linen_with([](const Node& adam) { return tuple_of({adam, Node::none(), Node::none()}); });
  const auto got = leaf_map(read_checkpoint(tmp / "const").root);
  EXPECT_EQ(want_const.size(), 12u + 25u + 2u);
  EXPECT_EQ(want_const.at("opt_state/2"), "None");
  EXPECT_EQ(got, want_const);
  // count + mu + nu over 12 weights
  EXPECT_EQ(std::count_if(got.begin(), got.end(), [](const auto& kv) { return kv.first.starts_with("opt_state/0/"); }), 25);
  adapt(s.adamw, tmp / "const2", "--opt-chain 'adam, -, -' -q");
  EXPECT_EQ(leaf_map(read_checkpoint(tmp / "const2").root), want_const);

  // scheduled: the fixture itself; with --like the result is linen_full exactly, step included
  adapt(s.adamw_schedule, tmp / "sched", "--optax adamw+schedule -q");
  expect_chain(tmp / "sched", 3, {1});
  EXPECT_EQ(leaf_map(read_checkpoint(tmp / "sched").root), leaf_map(read_checkpoint(test::maxtext_fixture("linen_full")).root));
  adapt(s.adamw_schedule, tmp / "sched_like", "--optax adamw+schedule --like " + test::maxtext_fixture("linen_full") + " -q");
  Checkpoint a = read_checkpoint(tmp / "sched_like"), b = read_checkpoint(test::maxtext_fixture("linen_full"));
  EXPECT_EQ(leaf_map(a.root), leaf_map(b.root));
  EXPECT_TRUE(leaf_values_equal(*a.root.find("step"), *b.root.find("step")));
  EXPECT_EQ(load_json(tmp / "sched_like/_METADATA"), load_json(test::maxtext_fixture("linen_full/3/items/_METADATA")));
}

TEST(OptaxChain, SgdWithoutMomentumIsAllHoles) {
  OptaxSources s;
  TempDir tmp;
  const std::string err = adapt(s.sgd, tmp / "out", "--optax sgd --report " + tmp / "r.json");
  EXPECT_EQ(err.find("warning"), std::string::npos) << err;
  expect_chain(tmp / "out", 2, {0, 1});
  const auto want = linen_with([](const Node&) { return tuple_of({Node::none(), Node::none()}); });
  EXPECT_EQ(want.size(), 12u + 2u);
  EXPECT_EQ(leaf_map(read_checkpoint(tmp / "out").root), want);
  // the empty NNX state is accounted for by a named drop
  const auto rep = load_json(tmp / "r.json");
  EXPECT_EQ(rep["ledger"]["sources"]["optimizer/opt_state"]["status"], "dropped");
  // a stateful entry where NNX holds nothing
  const std::string e = adapt(s.sgd, tmp / "bad", "--optax 'sgd(momentum)'", 2);
  EXPECT_NE(e.find("optimizer/opt_state: --optax sgd(momentum) (trace,-) has stateful entries at {0} but the NNX chain at "
                   "optimizer/opt_state holds state at {}"), std::string::npos) << e;
  EXPECT_FALSE(path_exists(tmp / "bad"));

  // no opt_state node at all: the same chain from --optax; without it, a warning
  write_nnx_without_opt_state(tmp / "absent");
  ASSERT_EQ(find_path(read_checkpoint(tmp / "absent").root, "optimizer/opt_state"), nullptr);
  adapt(tmp / "absent", tmp / "out2", "--optax sgd -q");
  expect_chain(tmp / "out2", 2, {0, 1});
  EXPECT_EQ(leaf_map(read_checkpoint(tmp / "out2").root), want);
  const std::string w = adapt(tmp / "absent", tmp / "out3", "-q");
  EXPECT_EQ(w.find("warning: the NNX optimizer state at optimizer/opt_state is absent, no opt_state written; if it is a "
                   "chain of stateless transforms"), 0u) << w;
  EXPECT_EQ(read_checkpoint(tmp / "out3").root.find("opt_state"), nullptr);
}

TEST(OptaxChain, LikeShowsTheChainAndMustAgreeWithTheOptions) {
  OptaxSources s;
  TempDir tmp;
  // a Linen checkpoint of the adamw-constant run: linen_full with (adam, None, None)
  {
    Checkpoint like = read_checkpoint(test::maxtext_fixture("linen_full"));
    Node* o = like.root.find("opt_state");
    *o = tuple_of({*o->find("0"), Node::none(), Node::none()});
    write_checkpoint(like, tmp / "like", format_by_name("orbax"), {}, 1);
  }
  std::string err = adapt(s.adamw, tmp / "a", "--like " + tmp / "like");
  EXPECT_EQ(err.find("warning"), std::string::npos) << err;
  expect_chain(tmp / "a", 3, {1, 2});
  adapt(s.adamw, tmp / "b", "--like " + tmp / "like" + " --optax adamw -q");
  EXPECT_EQ(leaf_map(read_checkpoint(tmp / "b").root), leaf_map(read_checkpoint(tmp / "a").root));
  // disagreeing: --like has 3 entries, the option 2 (both with state at 0 only, as NNX)
  err = adapt(s.adamw, tmp / "c", "--like " + tmp / "like" + " --optax adam", 2);
  EXPECT_NE(err.find(tmp / "like" + ": --like's optax chain at opt_state (3 entries, state at {0}) disagrees with "
                     "--optax adam (adam,-) (2 entries, state at {0})"), std::string::npos) << err;
  EXPECT_FALSE(path_exists(tmp / "c"));
}

TEST(OptaxChain, ADescriptionThatDoesNotFitTheNnxChainFails) {
  OptaxSources s;
  TempDir tmp;
  std::string e = adapt(s.adamw_schedule, tmp / "o", "--opt-chain trace,-", 2);
  EXPECT_NE(e.find("optimizer/opt_state: --opt-chain trace,- has stateful entries at {0} but the NNX chain at "
                   "optimizer/opt_state holds state at {0, 2}"), std::string::npos) << e;
  e = adapt(s.momentum, tmp / "o", "--optax adamw+schedule", 2);
  EXPECT_NE(e.find("--optax adamw+schedule (adam,-,schedule) has stateful entries at {0, 2} but the NNX chain at "
                   "optimizer/opt_state holds state at {0}"), std::string::npos) << e;
  e = adapt(s.flat, tmp / "o", "--optax adam", 2);
  EXPECT_NE(e.find("optimizer/opt_state: --optax adam (adam,-) describes an optax chain, but the NNX optimizer state at "
                   "optimizer/opt_state is not one (a flat state with keys count, mu, nu)"), std::string::npos) << e;
  EXPECT_FALSE(path_exists(tmp / "o"));
  // usage mistakes
  e = adapt(s.adamw, tmp / "o", "--optax lamb", 1);
  EXPECT_NE(e.find("unknown optimizer; known: sgd, sgd(momentum), adam, adamw,"), std::string::npos) << e;
  e = adapt(s.adamw, tmp / "o", "--optax adamw --opt-chain adam,-,-", 1);
  EXPECT_NE(e.find("pass at most one of --opt-chain and --optax"), std::string::npos) << e;
  e = adapt(s.adamw, tmp / "o", "--opt-chain adam,,-", 1);
  EXPECT_NE(e.find("--opt-chain 'adam,,-': an empty entry"), std::string::npos) << e;
  e = adapt(s.adamw, tmp / "o", "--optax adamw --weights-only", 1);
  EXPECT_NE(e.find("--optax adamw (adam,-,-) describes the optimizer state, which --weights-only does not carry"),
            std::string::npos) << e;
  auto r = run_cli("adapt " + test::maxtext_fixture("linen_full") + " " + tmp / "o" + " --layout nnx --optax adamw");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--keep-rng, --opt-chain and --optax apply to --layout linen"), std::string::npos) << r.err;
  EXPECT_FALSE(path_exists(tmp / "o"));
}

TEST(OptaxChain, WithoutADescriptionItWarnsAndSaysHowToSupplyIt) {
  OptaxSources s;
  TempDir tmp;
  // adamw with a constant learning rate: NNX shows {0}; the 1-entry chain is written, loudly (even with -q)
  const std::string err = adapt(s.adamw, tmp / "o", "-q --report " + tmp / "r.json");
  const std::string warning =
      "warning: the optax chain at optimizer/opt_state holds state at {0}, written as a 1-entry chain at opt_state; "
      "trailing stateless entries (EmptyState, e.g. a constant learning rate's scale) leave no trace in NNX, so they "
      "are unknown: if the optimizer's chain is longer, Orbax refuses to restore this output into the Linen TrainState "
      "(tree structures do not match: opt_state); supply the chain with --optax NAME (sgd, sgd(momentum), adam, adamw, "
      "sgd+schedule, sgd(momentum)+schedule, adam+schedule, adamw+schedule), --opt-chain SPEC";
  EXPECT_EQ(err.find(warning), 0u) << err;
  EXPECT_NE(err.find("or --like LINEN_CHECKPOINT"), std::string::npos) << err;
  expect_chain(tmp / "o", 1, {});
  const auto rep = load_json(tmp / "r.json");
  bool in_report = false;
  for (const auto& n : rep["adapt"]["notes"]) in_report |= n.get<std::string>().starts_with(warning);
  EXPECT_TRUE(in_report);
  EXPECT_EQ(rep["adapt"]["opt_chain"]["entries"], 1);
  EXPECT_EQ(rep["adapt"]["opt_chain"]["trailing_unknown"], true);
  EXPECT_EQ(rep["adapt"]["opt_chain"]["from"], "the NNX source alone");
  // the empty state of sgd without momentum: written as it is, with its own warning
  const std::string e2 = adapt(s.sgd, tmp / "o2", "-q");
  EXPECT_EQ(e2.find("warning: the NNX optimizer state at optimizer/opt_state is empty, written as an empty opt_state"), 0u)
      << e2;
  EXPECT_EQ(read_checkpoint(tmp / "o2").root.find("opt_state")->is_empty_container(), true);
  // a flat state is complete: no warning
  const std::string e3 = adapt(s.flat, tmp / "o3", "-q");
  EXPECT_EQ(e3, "");
}

TEST(OptaxChain, AnInMemoryTargetWithAPositionKeyedChainGivesTheLength) {
  // ckptbridge.jax.restore passes the program's TrainState as `like`: its chain is a dict keyed
  // "0".."n-1" (tuple positions), EmptyState entries None.
  OptaxSources s;
  Checkpoint src = read_checkpoint(s.adamw);
  Checkpoint like = read_checkpoint(test::maxtext_fixture("linen_full"));
  {
    Node* o = like.root.find("opt_state");
    *o = chain_dict({{"0", *o->find("0")}, {"1", Node::none()}, {"2", Node::none()}});
  }
  AdaptOptions ao;
  ao.to = AdaptOptions::To::Linen;
  ao.like = &like;
  Adaptation a = adapt_flax(src, ao);
  ASSERT_TRUE(a.plan.ok()) << a.plan.problems.at(0);
  const Node* o = a.plan.target.find("opt_state");
  ASSERT_TRUE(o && o->is_container());
  EXPECT_EQ(o->container().kind, ContainerKind::List);
  EXPECT_EQ(o->size(), 3u);
  EXPECT_TRUE(std::holds_alternative<NoneValue>(o->find("2")->value()));
  EXPECT_EQ(a.opt_chain["from"], "--like " + like.path);
  for (const auto& n : a.notes) EXPECT_FALSE(n.starts_with("warning:")) << n;
  // and the same description through the library options
  ao.opt_chain = optax_chain("adamw");
  EXPECT_TRUE(adapt_flax(src, ao).plan.ok());
  ao.opt_chain = optax_chain("adam");
  EXPECT_NE(test::error_of([&] { adapt_flax(src, ao); }).find("disagrees with --optax adam (adam,-)"), std::string::npos);
}

}  // namespace
}  // namespace ckb
