// Flax layout detection (profiles/flax.h detect_flax_layout) on trees that are not
// MaxText's: the legacy flax.optim / T5X train state (`optimizer/target` + `optimizer/state`,
// or `target` + `state` at the root), and every combination of the keys the detection looks
// at, present as nothing, a leaf, an empty dict or a dict of weights. The detection must name
// the layout by what is present, and `adapt` in either direction must end in a result or a
// ckb error, never a crash (the msgpack `{"optimizer": {}}` used to die with SIGSEGV).
#include <gtest/gtest.h>

#include <array>

#include "core/errors.h"
#include "core/hash.h"
#include "formats/format.h"
#include "tests/test_util.h"
#include "profiles/flax.h"
#include "ops/ops.h"

namespace ckb {
namespace {

using test::run_cli;
using test::TempDir;

Node weights(std::int64_t rows) {
  Node w = Node::dict();
  Node dense = Node::dict();
  dense.add("kernel", Node::tensor(ops::fill({DType::F32, {rows, 3}}, 0.5, "test kernel")));
  dense.add("bias", Node::tensor(ops::fill({DType::F32, {3}}, -1.0, "test bias")));
  w.add("dense", std::move(dense));
  return w;
}

// T5X's FlaxOptimTrainState.state_dict() under `optimizer`: the weights at `target`, the
// step and Adafactor's factored second moments at `state`.
Node flax_optim_state() {
  Node st = Node::dict();
  st.add("step", Node::tensor(ops::fill({DType::I32, {}}, 7, "step")));
  Node ps = Node::dict();
  Node dense = Node::dict();
  Node k = Node::dict();
  k.add("v_row", Node::tensor(ops::fill({DType::F32, {4}}, 1, "v_row")));
  k.add("v_col", Node::tensor(ops::fill({DType::F32, {3}}, 1, "v_col")));
  dense.add("kernel", std::move(k));
  ps.add("dense", std::move(dense));
  st.add("param_states", std::move(ps));
  Node opt = Node::dict();
  opt.add("target", weights(4));
  opt.add("state", std::move(st));
  return opt;
}

Checkpoint t5x_checkpoint() {
  Checkpoint ck;
  ck.path = "t5x.msgpack";
  ck.root.add("optimizer", flax_optim_state());
  return ck;
}

TEST(FlaxLayout, T5xOptimizerTargetIsFlaxOptimNotNnx) {
  const FlaxLayout l = detect_flax_layout(t5x_checkpoint().root);
  EXPECT_EQ(l.kind, FlaxKind::FlaxOptim);
  EXPECT_EQ(l.weights, "optimizer/target");
  EXPECT_EQ(l.train_state, "optimizer/state");
  EXPECT_EQ(l.step, "optimizer/state/step");
  EXPECT_EQ(l.opt_state, "optimizer/state/param_states");
  EXPECT_FALSE(l.is_nnx());
  EXPECT_FALSE(l.is_linen());
  EXPECT_EQ(l.name(), "flax.optim / T5X (weights at optimizer/target, optimizer state at optimizer/state)");
}

TEST(FlaxLayout, RootTargetAndStateIsFlaxOptim) {  // t5x/testdata/tiny_t5: `target.*`, `state.*`
  Node root = flax_optim_state();
  const FlaxLayout l = detect_flax_layout(root);
  EXPECT_EQ(l.kind, FlaxKind::FlaxOptim);
  EXPECT_EQ(l.weights, "target");
  EXPECT_EQ(l.train_state, "state");
  EXPECT_EQ(l.step, "state/step");
}

TEST(FlaxLayout, OptimizerAloneIsNotNnx) {
  Node root = Node::dict();
  root.add("optimizer", Node::dict());
  EXPECT_EQ(detect_flax_layout(root).kind, FlaxKind::Unknown);
  Checkpoint ck;
  ck.path = "crash.msgpack";
  ck.root = root;
  for (auto to : {AdaptOptions::To::Linen, AdaptOptions::To::Nnx}) {
    AdaptOptions o;
    o.to = to;
    EXPECT_THROW(adapt_flax(ck, o), MappingError);
  }
}

TEST(FlaxLayout, FlaxOptimAdaptNeedsWeightsOnlyAndThenMapsTheWeights) {
  const Checkpoint ck = t5x_checkpoint();
  AdaptOptions o;
  o.to = AdaptOptions::To::Linen;
  try {
    adapt_flax(ck, o);
    FAIL() << "adapt of a flax.optim state without --weights-only must fail";
  } catch (const MappingError& e) {
    EXPECT_NE(std::string(e.what()).find("--weights-only"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("t5x.msgpack"), std::string::npos) << e.what();
  }
  o.weights_only = true;
  Adaptation a = adapt_flax(ck, o);
  ASSERT_TRUE(a.plan.ok());
  const Node* k = find_path(a.plan.target, "params/params/dense/kernel");
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->tensor().info.shape, (Shape{4, 3}));
  EXPECT_EQ(find_path(a.plan.target, "optimizer"), nullptr);

  o.to = AdaptOptions::To::Nnx;
  a = adapt_flax(ck, o);
  ASSERT_TRUE(a.plan.ok());
  EXPECT_NE(find_path(a.plan.target, "model/dense/kernel/value"), nullptr);
  EXPECT_EQ(find_path(a.plan.target, "optimizer/state"), nullptr);
}

// Every combination of the keys the detection reads, each absent, a leaf, an empty dict or a
// dict of weights (with an `optimizer` that may itself hold target/state/step/opt_state):
// the layout it names has every path it claims, and adapt either way ends in a plan or a
// ckb error.
TEST(FlaxLayout, EveryKeyCombinationDetectsAndAdaptsWithoutCrashing) {
  const std::array<const char*, 6> keys = {"params", "model", "optimizer", "target", "state", "opt_state"};
  auto make = [](int kind, bool optimizer) -> std::optional<Node> {
    switch (kind) {
      case 0: return std::nullopt;
      case 1: return Node(std::int64_t{3});
      case 2: return Node::dict();
      default: return optimizer ? flax_optim_state() : weights(2);
    }
  };
  int combos = 0, detected = 0, adapted = 0;
  for (int code = 0; code < 4 * 4 * 4 * 4 * 4 * 4; ++code) {
    Checkpoint ck;
    ck.path = "combo.msgpack";
    int c = code;
    for (const char* key : keys) {
      if (auto n = make(c % 4, std::string(key) == "optimizer")) ck.root.add(key, std::move(*n));
      c /= 4;
    }
    ++combos;
    const FlaxLayout l = detect_flax_layout(ck.root);
    if (l.kind != FlaxKind::Unknown) {
      ++detected;
      for (const std::string& p : {l.weights, l.step, l.opt_state, l.train_state}) {
        if (p.empty()) continue;
        EXPECT_NE(find_path(ck.root, p), nullptr) << code << ": " << l.name() << " claims " << p;
      }
    }
    for (auto to : {AdaptOptions::To::Linen, AdaptOptions::To::Nnx})
      for (bool wo : {false, true}) {
        AdaptOptions o;
        o.to = to;
        o.weights_only = wo;
        try {
          Adaptation a = adapt_flax(ck, o);
          adapted += a.plan.ok();
        } catch (const Error&) {
        }
      }
  }
  EXPECT_EQ(combos, 4096);
  // Sanity of the sweep itself: trees are recognised, and the clean ones (no stray top-level
  // key, which fails the plan as an unused source) are adapted.
  EXPECT_GT(detected, 1000);
  EXPECT_GT(adapted, 0);
}

// Through the CLI, with msgpack files: the smallest crash input, and a T5X-shaped state.
TEST(FlaxLayout, CliInspectNamesT5xAndAdaptExitsCleanly) {
  TempDir dir;
  {
    Checkpoint crash;
    crash.root.add("optimizer", Node::dict());
    write_checkpoint(crash, dir / "crash.msgpack", format_by_name("msgpack"));
    write_checkpoint(t5x_checkpoint(), dir / "t5x.msgpack", format_by_name("msgpack"));
  }
  for (const char* to : {"linen", "nnx"}) {
    auto r = run_cli("adapt " + dir / "crash.msgpack" + " " + dir / (std::string("out-") + to) + " --layout " + to);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find("crash.msgpack"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("neither a Flax Linen"), std::string::npos) << r.err;
  }
  auto r = run_cli("inspect " + dir / "t5x.msgpack");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("flax.optim / T5X (weights at optimizer/target"), std::string::npos) << r.out;

  r = run_cli("adapt " + dir / "t5x.msgpack" + " " + dir / "linen" + " --layout linen");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--weights-only"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "linen"));

  r = run_cli("adapt " + dir / "t5x.msgpack" + " " + dir / "linen" + " --layout linen --weights-only");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Checkpoint out = read_checkpoint(dir / "linen");
  const Node* k = find_path(out.root, "params/params/dense/kernel");
  ASSERT_NE(k, nullptr);
  // 12 float32 0.5 values (0x3f000000, little-endian), hashed independently of the reader.
  std::string want;
  for (int i = 0; i < 12; ++i) want += std::string("\x00\x00\x00\x3f", 4);
  EXPECT_EQ(tensor_sha256(k->tensor()), sha256_hex(std::as_bytes(std::span(want.data(), want.size()))));
}


// T5X's own test checkpoints (tests/data/wild/t5x, vendored from google-research/t5x):
// `inspect` names the flax.optim layout, `adapt` refuses without --weights-only (exit 2,
// naming the option) and with it carries every weight of `target` byte for byte.
TEST(FlaxLayout, T5xTestCheckpointsInspectAndAdapt) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"wild/t5x/test_t5_tiny.checkpoint_0", "optimizer"},
      {"wild/t5x/tiny_t5/checkpoint_1", "optimizer"},
      {"wild/t5x/tiny_orbax_completed/1", "_optimizer"},
  };
  for (const auto& [rel, base] : cases) {
    SCOPED_TRACE(rel);
    const std::string src = test::data_path(rel);
    auto r = run_cli("inspect " + src);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("flax layout: flax.optim / T5X (weights at " + base + "/target, optimizer state at " + base +
                         "/state)"),
              std::string::npos)
        << r.out;
    TempDir dir;
    for (const char* to : {"linen", "nnx"}) {
      r = run_cli("adapt " + src + " " + dir / to + " --layout " + to);
      EXPECT_EQ(r.exit_code, 2) << r.err;
      EXPECT_NE(r.err.find("--weights-only"), std::string::npos) << r.err;
      r = run_cli("adapt " + src + " " + dir / to + " --layout " + to + " --weights-only");
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
    const Checkpoint in = read_checkpoint(src);
    const Checkpoint linen = read_checkpoint(dir / "linen"), nnx = read_checkpoint(dir / "nnx");
    std::size_t weights = 0;
    visit_leaves(in.root, [&](const Path& p, const Node& n) {
      const std::string name = join_path(p), prefix = base + "/target/";
      if (!n.is_tensor() || !name.starts_with(prefix)) return;
      ++weights;
      const std::string rel_name = name.substr(prefix.size());
      const Node* l = find_path(linen.root, "params/params/" + rel_name);
      const Node* m = find_path(nnx.root, "model/" + rel_name + "/value");  // a raw nnx.State
      ASSERT_NE(l, nullptr) << rel_name;
      ASSERT_NE(m, nullptr) << rel_name;
      EXPECT_EQ(tensor_sha256(l->tensor()), tensor_sha256(n.tensor())) << rel_name;
      EXPECT_EQ(tensor_sha256(m->tensor()), tensor_sha256(n.tensor())) << rel_name;
    });
    // test_t5_tiny holds a whole tiny T5's weights; T5X's two other test states hold none.
    EXPECT_EQ(weights, rel.find("test_t5_tiny") != std::string::npos ? 52u : 0u);
  }
}

}  // namespace
}  // namespace ckb
