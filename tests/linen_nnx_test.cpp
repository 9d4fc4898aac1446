// Flax Linen <-> NNX adaptation (profiles/flax.h, `ckptbridge adapt`) against the
// MaxText-style fixtures written by flax/optax/orbax (tests/data/fixtures/maxtext_linen_nnx):
// linen_full -> NNX equals the expected raw and pure NNX states leaf for leaf (values, dtypes,
// shapes, key types, PRNG key impls, and _METADATA / array_metadatas as JSON); NNX -> Linen
// gives linen_full back; params-only both ways; wrong targets fail naming the paths; and
// synthetic optax trees (nested chains, flat states, trailing empty states) round-trip.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "core/errors.h"
#include "formats/format.h"
#include "io/file.h"
#include "tests/test_util.h"
#include "profiles/flax.h"
#include "ops/prng.h"

namespace ckb {
namespace {

using test::bytes_of;
using test::sorted_array_metadatas;

using test::fixture;
using test::load_json;
using test::run_cli;
using test::TempDir;


// Two trees equal in every respect a restore can see: keys and their order-independent
// sets, container kinds (Orbax key types), leaf types and values, tensor dtype/shape/bytes,
// the PRNG key impl and Orbax value types.
void expect_same_tree(const Node& a, const Node& b, const std::string& path = "") {
  ASSERT_EQ(a.is_container(), b.is_container()) << path;
  for (const char* attr : {"random_key_impl", "orbax.value_type"}) {
    // a tensor built in memory has no value type yet; the Orbax writer makes it a jax.Array
    const std::string dflt = a.is_tensor() && std::string(attr) == "orbax.value_type" ? "jax.Array" : "";
    auto ia = a.attrs.find(attr), ib = b.attrs.find(attr);
    EXPECT_EQ(ia == a.attrs.end() ? dflt : ia->second, ib == b.attrs.end() ? dflt : ib->second) << path << " " << attr;
  }
  if (a.is_container()) {
    EXPECT_EQ(a.container().kind, b.container().kind) << path;
    ASSERT_EQ(a.size(), b.size()) << path;
    for (const auto& ch : a.container().children) {
      const Node* other = b.find(ch.key);
      ASSERT_NE(other, nullptr) << path << "/" << ch.key;
      expect_same_tree(*ch.node, *other, path + "/" + ch.key);
    }
  } else if (a.is_tensor()) {
    ASSERT_TRUE(b.is_tensor()) << path;
    EXPECT_EQ(a.tensor().info, b.tensor().info) << path;
    EXPECT_EQ(bytes_of(a.tensor()), bytes_of(b.tensor())) << path;
  } else {
    EXPECT_TRUE(leaf_values_equal(a, b)) << path;
  }
}

// Our item directory against the fixture's: the same tree, and the same Orbax metadata.
void expect_same_checkpoint(const std::string& ours, const std::string& want_item) {
  Checkpoint a = read_checkpoint(ours), b = read_checkpoint(want_item);
  expect_same_tree(a.root, b.root);
  EXPECT_EQ(load_json(ours + "/_METADATA"), load_json(want_item + "/_METADATA"));
  EXPECT_EQ(sorted_array_metadatas(ours), sorted_array_metadatas(want_item));
}

TEST(LinenNnx, DetectsEveryFixtureLayout) {
  auto layout = [](const std::string& d) { return detect_flax_layout(read_checkpoint(test::maxtext_fixture(d)).root); };
  FlaxLayout l = layout("linen_full");
  EXPECT_EQ(l.kind, FlaxKind::LinenFull);
  EXPECT_EQ(l.weights, "params/params");
  EXPECT_EQ(l.step_type, "int scalar");
  EXPECT_EQ(l.chain, "sequence");
  EXPECT_EQ(layout("linen_params").kind, FlaxKind::LinenParams);
  l = layout("nnx_fresh_raw");
  EXPECT_EQ(l.kind, FlaxKind::NnxFull);
  EXPECT_TRUE(l.value_wrappers);
  EXPECT_EQ(l.step, "optimizer/step/value");
  EXPECT_EQ(l.step_type, "U32");
  EXPECT_EQ(l.chain, "int-keyed dict");
  EXPECT_EQ(l.rng, (std::vector<std::string>{"model/decoder/dropout/rngs", "model/rngs"}));
  l = layout("nnx_expected_pure");
  EXPECT_EQ(l.kind, FlaxKind::NnxFull);
  EXPECT_FALSE(l.value_wrappers);
  EXPECT_EQ(l.step, "optimizer/step");
}

TEST(LinenNnx, ThreefryMatchesJax) {
  // key_data(split(key(0), 4)) with jax_threefry_partitionable (JAX 0.11.2), maxtext_nnx.md §9
  Tensor t = threefry_key_tensor({4}, 0, "t");
  EXPECT_EQ(t.info.shape, (Shape{4, 2}));
  const std::uint32_t want[8] = {1797259609u, 2579123966u, 928981903u, 3453687069u,
                                 4146024105u, 2718843009u, 2467461003u, 3840466878u};
  EXPECT_EQ(bytes_of(t), std::string(reinterpret_cast<const char*>(want), sizeof want));
  const std::uint32_t zero[2] = {0, 0};  // key(0) itself
  EXPECT_EQ(bytes_of(threefry_key_tensor({}, 0, "t")), std::string(reinterpret_cast<const char*>(zero), 8));
}

TEST(LinenNnx, LinenFullToNnxRawAndPureMatchTheExpectedStates) {
  TempDir tmp;
  auto r = run_cli("adapt " + test::maxtext_fixture("linen_full") + " " + tmp / "raw" + " --layout nnx --like " + test::maxtext_fixture("nnx_fresh_raw") +
                   " --rng-fill deterministic --report " + tmp / "report.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same_checkpoint(tmp / "raw", test::maxtext_fixture("nnx_expected_raw/3/items"));

  r = run_cli("adapt " + test::maxtext_fixture("linen_full") + " " + tmp / "pure" + " --layout nnx --like " + test::maxtext_fixture("nnx_fresh_raw") +
              " --rng-fill deterministic --pure -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same_checkpoint(tmp / "pure", test::maxtext_fixture("nnx_expected_pure/3/items"));

  // The report: the layout, the rule for the RNG state, the EmptyState drop, a clean ledger.
  auto rep = load_json(tmp / "report.json");
  EXPECT_EQ(rep["adapt"]["from"]["layout"], "linen (full training state)");
  bool rng_note = false;
  for (const auto& n : rep["adapt"]["notes"]) rng_note |= n.get<std::string>().find("deterministically") != std::string::npos;
  EXPECT_TRUE(rng_note);
  int dropped = 0, consumed = 0;
  for (const auto& [name, s] : rep["ledger"]["sources"].items()) {
    if (s["status"] == "dropped") {
      ++dropped;
      EXPECT_EQ(name, "opt_state/1");
      EXPECT_NE(s["reason"].get<std::string>().find("EmptyState"), std::string::npos);
    }
    consumed += s["status"] == "consumed";
  }
  EXPECT_EQ(dropped, 1);
  EXPECT_EQ(consumed, 39);
  int filled = 0;
  for (const auto& t : rep["ledger"]["targets"]) filled += t["status"] == "filled";
  EXPECT_EQ(filled, 6);  // the RNG key/count leaves Linen never had
}

TEST(LinenNnx, NnxToLinenGivesLinenFullBack) {
  TempDir tmp;
  for (const char* src : {"nnx_expected_raw", "nnx_expected_pure"}) {
    const std::string out = tmp / src;
    auto r = run_cli("adapt " + test::maxtext_fixture(src) + " " + out + " --layout linen --like " + test::maxtext_fixture("linen_full") + " -q");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    expect_same_checkpoint(out, test::maxtext_fixture("linen_full/3/items"));  // incl. the None chain entry and the step scalar
  }
  // Without --like the step is MaxText's int32 jax.Array; everything else is the same.
  auto r = run_cli("adapt " + test::maxtext_fixture("nnx_expected_raw") + " " + tmp / "plain" + " --layout linen -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Checkpoint ours = read_checkpoint(tmp / "plain"), want = read_checkpoint(test::maxtext_fixture("linen_full"));
  const Node* step = ours.root.find("step");
  ASSERT_TRUE(step && step->is_tensor());
  EXPECT_EQ(step->tensor().info, (TensorInfo{DType::I32, {}}));
  const std::int32_t three = 3;
  EXPECT_EQ(bytes_of(step->tensor()), std::string(reinterpret_cast<const char*>(&three), 4));
  for (Checkpoint* c : {&ours, &want}) {
    auto& kids = c->root.container().children;
    kids.erase(std::remove_if(kids.begin(), kids.end(), [](const Child& ch) { return ch.key == "step"; }), kids.end());
    c->root.container().index.clear();
  }
  expect_same_tree(ours.root, want.root);
}

// A second run written by flax/optax/orbax (make_fixtures.py --heldout: 3 scanned layers,
// optax.sgd(1e-2, momentum=0.9) = chain(trace, scale), 2 steps): both directions equal the
// generator's states; NNX -> Linen needs the chain's trailing stateless `scale` entry, which
// NNX cannot show: from --like, or from --optax 'sgd(momentum)'.
TEST(LinenNnx, SgdMomentumRunBothWays) {
  TempDir tmp;
  const auto sgd = [](const std::string& rel) { return test::fixture("maxtext_sgd_momentum/" + rel); };
  auto r = run_cli("adapt " + sgd("linen_full") + " " + tmp / "raw --layout nnx --like " + sgd("nnx_fresh_raw") +
                   " --rng-fill deterministic -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same_checkpoint(tmp / "raw", sgd("nnx_expected_raw/2/items"));
  for (const std::string& how : {"--like " + sgd("linen_full"), std::string("--optax 'sgd(momentum)'")}) {
    SCOPED_TRACE(how);
    const std::string out = tmp / ("linen" + std::to_string(how.size()));
    r = run_cli("adapt " + sgd("nnx_expected_raw") + " " + out + " --layout linen " + how + " -q");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    Checkpoint ours = read_checkpoint(out), want = read_checkpoint(sgd("linen_full"));
    if (how.rfind("--like", 0) == 0) {
      expect_same_checkpoint(out, sgd("linen_full/2/items"));  // the step scalar too
      continue;
    }
    for (Checkpoint* c : {&ours, &want}) {  // --optax alone: the step is MaxText's int32 jax.Array
      auto& kids = c->root.container().children;
      kids.erase(std::remove_if(kids.begin(), kids.end(), [](const Child& ch) { return ch.key == "step"; }), kids.end());
      c->root.container().index.clear();
    }
    expect_same_tree(ours.root, want.root);  // opt_state = (TraceState(trace), None)
  }
}

TEST(LinenNnx, ParamsOnlyBothWays) {
  TempDir tmp;
  auto r = run_cli("adapt " + test::maxtext_fixture("linen_params") + " " + tmp / "nnx" + " --layout nnx --like " + test::maxtext_fixture("nnx_fresh_raw"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("params-only"), std::string::npos) << r.err;
  Checkpoint nnx = read_checkpoint(tmp / "nnx"), lin = read_checkpoint(test::maxtext_fixture("linen_params")),
             fresh = read_checkpoint(test::maxtext_fixture("nnx_fresh_raw"));
  EXPECT_EQ(nnx.root.size(), 1u);  // model only
  // weights from the Linen checkpoint, RNG state kept from --like (the default --rng-fill like)
  std::size_t weights = 0, rng = 0;
  visit_leaves(nnx.root, [&](const Path& p, const Node& n) {
    const std::string name = join_path(p);
    if (name.find("/rngs/") != std::string::npos) {
      ++rng;
      EXPECT_EQ(bytes_of(n.tensor()), bytes_of(find_path(fresh.root, name)->tensor())) << name;
      return;
    }
    ++weights;
    ASSERT_TRUE(name.starts_with("model/") && name.ends_with("/value")) << name;
    const std::string linen = "params/params/" + name.substr(6, name.size() - 12);
    const Node* w = find_path(lin.root, linen);
    ASSERT_NE(w, nullptr) << linen;
    EXPECT_EQ(bytes_of(n.tensor()), bytes_of(w->tensor())) << name;
  });
  EXPECT_EQ(weights, 12u);
  EXPECT_EQ(rng, 6u);

  // and back: MaxText's params-only Linen layout, equal to the fixture
  r = run_cli("adapt " + tmp / "nnx" + " " + tmp / "linen" + " --layout linen -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same_tree(read_checkpoint(tmp / "linen").root, lin.root);
}

TEST(LinenNnx, WrongTargetFailsListingThePathsAndWritesNothing) {
  TempDir tmp;
  // a like whose embedding has another shape and which lacks the output head
  test::write_file(tmp / "wrong.json", R"({"recipe": "wrong-like", "rules": [
    {"map": "model/token_embedder/embedding/value", "to": "model/token_embedder/embedding/value",
     "ops": [{"slice": {"axis": 0, "start": 0, "stop": 32}}]},
    {"drop": "model/decoder/logits_dense/kernel/value", "reason": "test"},
    {"map": "{p:*}", "to": "{p}"}]})");
  ASSERT_EQ(run_cli("convert " + test::maxtext_fixture("nnx_fresh_raw") + " " + tmp / "like" + " --to orbax --recipe " + tmp / "wrong.json" + " -q").exit_code, 0);
  auto r = run_cli("adapt " + test::maxtext_fixture("linen_full") + " " + tmp / "out" + " --layout nnx --like " + tmp / "like");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("model/token_embedder/embedding/value' is F32 [64, 16] but the expected layout has F32 [32, 16]"),
            std::string::npos) << r.err;
  EXPECT_NE(r.err.find("unexpected target 'model/decoder/logits_dense/kernel/value'"), std::string::npos) << r.err;
  EXPECT_FALSE(path_exists(tmp / "out"));

  // a like that holds a weight the source does not have: reported missing, never zero-filled
  test::write_file(tmp / "extra.json", R"({"recipe": "extra", "rules": [
    {"map": "{p:*}", "to": "{p}"},
    {"fill": "model/decoder/extra_bias/value", "value": 0, "dtype": "F32", "shape": [16]}]})");
  ASSERT_EQ(run_cli("convert " + test::maxtext_fixture("nnx_fresh_raw") + " " + tmp / "like2" + " --to orbax --recipe " + tmp / "extra.json" + " -q").exit_code, 0);
  r = run_cli("adapt " + test::maxtext_fixture("linen_full") + " " + tmp / "out" + " --layout nnx --like " + tmp / "like2");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("missing target 'model/decoder/extra_bias/value'"), std::string::npos) << r.err;
  EXPECT_FALSE(path_exists(tmp / "out"));

  // the wrong direction and a like of the wrong kind are usage mistakes with a clear message
  r = run_cli("adapt " + test::maxtext_fixture("nnx_fresh_raw") + " " + tmp / "out" + " --layout nnx");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("already in the NNX layout"), std::string::npos) << r.err;
  r = run_cli("adapt " + test::maxtext_fixture("linen_full") + " " + tmp / "out" + " --layout nnx --like " + test::maxtext_fixture("linen_full"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--like must be a checkpoint in the target layout"), std::string::npos) << r.err;
}

TEST(LinenNnx, UnscanAndScanLayers) {
  TempDir tmp;
  auto r = run_cli("adapt " + test::maxtext_fixture("linen_full") + " " + tmp / "unscanned" + " --layout nnx --layers unscan -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Checkpoint un = read_checkpoint(tmp / "unscanned"), lin = read_checkpoint(test::maxtext_fixture("linen_full"));
  EXPECT_EQ(find_path(un.root, "model/decoder/layers"), nullptr);
  // layer 1 of the scanned wi_0 [16, L=2, 32] (scan axis 1), and of its adam moment
  for (const auto& [ours, theirs] : {std::pair<std::string, std::string>{"model/decoder/layers_1/mlp/wi_0/kernel/value",
                                                                          "params/params/decoder/layers/mlp/wi_0/kernel"},
                                     {"optimizer/opt_state/0/nu/decoder/layers_1/mlp/wi_0/kernel/value",
                                      "opt_state/0/nu/params/decoder/layers/mlp/wi_0/kernel"}}) {
    const Node* got = find_path(un.root, ours);
    ASSERT_TRUE(got && got->is_tensor()) << ours;
    EXPECT_EQ(got->tensor().info.shape, (Shape{16, 32}));
    const std::string all = bytes_of(find_path(lin.root, theirs)->tensor());
    std::string want;
    for (int row = 0; row < 16; ++row) want += all.substr(static_cast<std::size_t>((row * 2 + 1) * 32 * 4), 32 * 4);
    EXPECT_EQ(bytes_of(got->tensor()), want) << ours;
  }
  // back to Linen: --like (scanned) chooses stacking; the result is linen_full exactly
  r = run_cli("adapt " + tmp / "unscanned" + " " + tmp / "linen" + " --layout linen --like " + test::maxtext_fixture("linen_full") + " -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same_checkpoint(tmp / "linen", test::maxtext_fixture("linen_full/3/items"));
}

// ---- synthetic optax trees: the recursion, not just MaxText's adamw ----

Tensor f32_filled(Shape s, float base) {
  TensorInfo info{DType::F32, s};
  Bytes b(static_cast<std::size_t>(info.nbytes()));
  auto* p = reinterpret_cast<float*>(b.data());
  for (std::uint64_t i = 0; i < info.numel(); ++i) p[i] = base + static_cast<float>(i);
  return make_memory_tensor(info, std::move(b), "synthetic");
}
Tensor i32(std::int32_t v) {
  Bytes b(4);
  std::memcpy(b.data(), &v, 4);
  return make_memory_tensor({DType::I32, {}}, std::move(b), "synthetic");
}

Node filled_weights(float base) {
  Node w = Node::dict();
  Node dense = Node::dict();
  dense.add("kernel", Node::tensor(f32_filled({4, 3}, base)));
  dense.add("bias", Node::tensor(f32_filled({3}, base + 100)));
  w.add("dense", std::move(dense));
  // a module named `value` (MaxText's attention has one): not a wrapper
  Node v = Node::dict();
  v.add("kernel", Node::tensor(f32_filled({3, 3}, base + 200)));
  w.add("value", std::move(v));
  return w;
}
Node with_params(Node w) {
  Node d = Node::dict();
  d.add("params", std::move(w));
  return d;
}
Node adam(float base) {
  Node s = Node::dict();
  s.add("count", Node::tensor(i32(7)));
  s.add("mu", with_params(filled_weights(base)));
  s.add("nu", with_params(filled_weights(base + 1000)));
  return s;
}

Checkpoint linen_state(Node opt_state) {
  Checkpoint ck;
  ck.format = "orbax";
  ck.path = "synthetic";
  ck.root.add("step", Node::tensor(i32(5)));
  ck.root.add("params", with_params(filled_weights(0)));
  ck.root.add("opt_state", std::move(opt_state));
  return ck;
}

Checkpoint as_checkpoint(Plan& p) {
  EXPECT_TRUE(p.ok()) << (p.problems.empty() ? "" : p.problems[0]);
  Checkpoint c;
  c.format = "orbax";
  c.path = "adapted";
  c.root = std::move(p.target);
  return c;
}

// Linen -> NNX (raw) -> Linen is the identity (with `like` = the original for the chain
// length and step encoding); the NNX side has the shape NNX gives these states.
void round_trip(const Checkpoint& lin, const std::function<void(const Node&)>& check_nnx) {
  AdaptOptions to_nnx;
  Adaptation a = adapt_flax(lin, to_nnx);
  Checkpoint nnx = as_checkpoint(a.plan);
  check_nnx(nnx.root);
  AdaptOptions to_linen;
  to_linen.to = AdaptOptions::To::Linen;
  to_linen.like = &lin;
  Adaptation b = adapt_flax(nnx, to_linen);
  Checkpoint back = as_checkpoint(b.plan);
  expect_same_tree(back.root, lin.root);
}

TEST(LinenNnx, NestedChainWithHolesRoundTrips) {
  // chain(clip (EmptyState), chain(adam, add_decayed_weights (EmptyState), schedule), EmptyState)
  Node inner = Node::list();
  inner.append(adam(1));
  inner.append(Node::none());
  Node sched = Node::dict();
  sched.add("count", Node::tensor(i32(3)));
  inner.append(std::move(sched));
  Node chain = Node::list();
  chain.append(Node::none());
  chain.append(std::move(inner));
  chain.append(Node::none());
  round_trip(linen_state(std::move(chain)), [](const Node& nnx) {
    EXPECT_EQ(find_path(nnx, "optimizer/opt_state")->size(), 1u);  // only "1": the holes are gone
    EXPECT_EQ(find_path(nnx, "optimizer/opt_state/1")->container().kind, ContainerKind::Dict);
    EXPECT_NE(find_path(nnx, "optimizer/opt_state/1/0/mu/dense/kernel/value"), nullptr);  // no `params` level
    EXPECT_NE(find_path(nnx, "optimizer/opt_state/1/0/nu/value/kernel/value"), nullptr);  // the `value` module
    EXPECT_NE(find_path(nnx, "optimizer/opt_state/1/2/count/value"), nullptr);
    EXPECT_EQ(find_path(nnx, "optimizer/opt_state/1/1"), nullptr);
    EXPECT_EQ(find_path(nnx, "optimizer/step/value")->tensor().info.dtype, DType::U32);
  });
}

TEST(LinenNnx, FlatAndWrappedStatesStayFlat) {
  // optax.adam alone (MaxText's adam_pax): a flat ScaleByAdamState, not re-wrapped as element 0
  round_trip(linen_state(adam(2)), [](const Node& nnx) {
    EXPECT_NE(find_path(nnx, "optimizer/opt_state/count/value"), nullptr);
    EXPECT_NE(find_path(nnx, "optimizer/opt_state/mu/dense/bias/value"), nullptr);
  });
  // MultiSteps-like wrapper: the moment tree acc_grads and an inner chain are found by structure
  Node ms = Node::dict();
  ms.add("mini_step", Node::tensor(i32(1)));
  ms.add("acc_grads", with_params(filled_weights(3)));
  Node inner = Node::list();
  inner.append(adam(4));
  inner.append(Node::none());
  ms.add("inner_opt_state", std::move(inner));
  round_trip(linen_state(std::move(ms)), [](const Node& nnx) {
    EXPECT_NE(find_path(nnx, "optimizer/opt_state/acc_grads/dense/kernel/value"), nullptr);
    EXPECT_NE(find_path(nnx, "optimizer/opt_state/inner_opt_state/0/mu/dense/kernel/value"), nullptr);
  });
}

TEST(LinenNnx, LoadAsNnxIsALibraryCall) {
  Checkpoint lin = read_checkpoint(test::maxtext_fixture("linen_full"));
  AdaptOptions o;
  o.pure = true;
  Checkpoint nnx = load_adapted(lin, o);
  const Node* w = find_path(nnx.root, "model/decoder/layers/mlp/wo/kernel");
  ASSERT_TRUE(w && w->is_tensor());
  EXPECT_EQ(bytes_of(w->tensor()), bytes_of(find_path(lin.root, "params/params/decoder/layers/mlp/wo/kernel")->tensor()));
  EXPECT_EQ(find_path(nnx.root, "optimizer/opt_state/1"), nullptr);
  EXPECT_EQ(find_path(nnx.root, "model/rngs"), nullptr);  // no --like: no RNG state invented
}

}  // namespace
}  // namespace ckb
