// `ckptbridge adapt --layout auto` (profiles/flax_profile.cpp): the layout of --like decides.
// A Linen source with an NNX --like gives what --layout nnx gives; an NNX source with an NNX
// --like of the other flavour (raw nnx.State vs pure dict) is wrapped/unwrapped to equal the
// expected state; a source already in the layout of --like passes unchanged; NNX -> Linen
// gives linen_full back; without --like it is a usage error. Against the MaxText fixtures
// (tests/data/fixtures/maxtext_linen_nnx).
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "formats/format.h"
#include "io/file.h"
#include "tests/test_util.h"

namespace ckb {
namespace {

using test::bytes_of;
using test::sorted_array_metadatas;

using test::load_json;
using test::read_file;
using test::run_cli;
using test::TempDir;


// Every leaf of `a` equals the leaf of `b` at the same path (tensors: dtype, shape, bytes;
// other leaves: type and value), and both have the same leaf paths.
void expect_same_leaves(const std::string& a_path, const std::string& b_path) {
  const Checkpoint a = read_checkpoint(a_path), b = read_checkpoint(b_path);
  std::set<std::string> in_a, in_b;
  visit_leaves(b.root, [&](const Path& p, const Node&) { in_b.insert(join_path(p)); });
  std::size_t tensors = 0;
  visit_leaves(a.root, [&](const Path& p, const Node& n) {
    const std::string name = join_path(p);
    in_a.insert(name);
    const Node* m = find_path(b.root, name);
    ASSERT_NE(m, nullptr) << name << " missing in " << b_path;
    ASSERT_EQ(n.is_tensor(), m->is_tensor()) << name;
    if (n.is_tensor()) {
      ++tensors;
      EXPECT_EQ(n.tensor().info, m->tensor().info) << name;
      EXPECT_EQ(bytes_of(n.tensor()), bytes_of(m->tensor())) << name;
    } else {
      EXPECT_EQ(n.type_name(), m->type_name()) << name;
      EXPECT_TRUE(leaf_values_equal(n, *m)) << name;
    }
  });
  EXPECT_EQ(in_a, in_b);
  EXPECT_GT(tensors, 30u);  // 38 in linen_full, 45 in the NNX states
}

// Two Orbax items with the same tree metadata, sharding and array metadata, and the same leaves.
void expect_same_item(const std::string& ours, const std::string& want) {
  EXPECT_EQ(load_json(ours + "/_METADATA"), load_json(want + "/_METADATA"));
  EXPECT_EQ(read_file(ours + "/_sharding"), read_file(want + "/_sharding"));
  EXPECT_EQ(sorted_array_metadatas(ours), sorted_array_metadatas(want));
  expect_same_leaves(ours, want);
}

TEST(LinenNnxAuto, LinenSourceWithAnNnxLikeEqualsLayoutNnx) {
  TempDir tmp;
  auto r = run_cli("adapt " + test::maxtext_fixture("linen_full") + " " + tmp / "auto" + " --layout auto --like " + test::maxtext_fixture("nnx_fresh_raw") +
                   " --report " + tmp / "auto.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_cli("adapt " + test::maxtext_fixture("linen_full") + " " + tmp / "nnx" + " --layout nnx --like " + test::maxtext_fixture("nnx_fresh_raw") + " -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Byte for byte the same metadata files; the tensors the same (the ocdbt data files carry
  // random names, _CHECKPOINT_METADATA a timestamp, so they are compared as read).
  EXPECT_EQ(read_file(tmp / "auto/_METADATA"), read_file(tmp / "nnx/_METADATA"));
  EXPECT_EQ(read_file(tmp / "auto/_sharding"), read_file(tmp / "nnx/_sharding"));
  EXPECT_EQ(read_file(tmp / "auto/array_metadatas/process_0"), read_file(tmp / "nnx/array_metadatas/process_0"));
  expect_same_leaves(tmp / "auto", tmp / "nnx");
  const auto rep = load_json(tmp / "auto.json");
  EXPECT_EQ(rep["adapt"]["to"], "nnx");
  EXPECT_EQ(rep["adapt"]["from"]["layout"], "linen (full training state)");
  // and the RNG state of --like is where NNX keeps it
  const Checkpoint out = read_checkpoint(tmp / "auto"), like = read_checkpoint(test::maxtext_fixture("nnx_fresh_raw"));
  const std::string key = "model/rngs/params/key/value";
  const Node* a = find_path(out.root, key);
  const Node* b = find_path(like.root, key);
  ASSERT_TRUE(a && b && a->is_tensor() && b->is_tensor()) << key;
  EXPECT_EQ(bytes_of(a->tensor()), bytes_of(b->tensor()));
}

TEST(LinenNnxAuto, NnxRawAndPureBecomeTheFlavourOfLike) {
  TempDir tmp;
  // raw nnx.State source, pure --like: the `value` wrappers go
  auto r = run_cli("adapt " + test::maxtext_fixture("nnx_expected_raw") + " " + tmp / "pure" + " --layout auto --like " +
                   test::maxtext_fixture("nnx_expected_pure"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("NNX leaves unwrapped from `value` to match --like"), std::string::npos) << r.err;
  auto d = run_cli("diff " + tmp / "pure" + " " + test::maxtext_fixture("nnx_expected_pure"));
  EXPECT_EQ(d.exit_code, 0) << d.out << d.err;
  EXPECT_NE(d.out.find("45 leaves: 45 equal, 0 not equal"), std::string::npos) << d.out;
  expect_same_item(tmp / "pure", test::maxtext_fixture("nnx_expected_pure/3/items"));

  // and back: pure source, raw --like
  r = run_cli("adapt " + test::maxtext_fixture("nnx_expected_pure") + " " + tmp / "raw" + " --layout auto --like " + test::maxtext_fixture("nnx_expected_raw"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("NNX leaves wrapped in `value` to match --like"), std::string::npos) << r.err;
  EXPECT_EQ(run_cli("diff " + tmp / "raw" + " " + test::maxtext_fixture("nnx_expected_raw")).exit_code, 0);
  expect_same_item(tmp / "raw", test::maxtext_fixture("nnx_expected_raw/3/items"));
}

TEST(LinenNnxAuto, SourceAlreadyInTheLayoutPassesUnchanged) {
  TempDir tmp;
  auto r = run_cli("adapt " + test::maxtext_fixture("linen_full") + " " + tmp / "same" + " --layout auto --like " + test::maxtext_fixture("linen_full") +
                   " --report " + tmp / "rep.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("is already the layout of --like: leaves matched as they are"), std::string::npos) << r.err;
  expect_same_item(tmp / "same", test::maxtext_fixture("linen_full/3/items"));
  EXPECT_EQ(load_json(tmp / "rep.json")["adapt"]["to"], "auto (unchanged)");
}

TEST(LinenNnxAuto, NnxSourceWithALinenLikeGivesLinenFull) {
  TempDir tmp;
  auto r = run_cli("adapt " + test::maxtext_fixture("nnx_expected_raw") + " " + tmp / "linen" + " --layout auto --like " + test::maxtext_fixture("linen_full") +
                   " --report " + tmp / "rep.json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same_item(tmp / "linen", test::maxtext_fixture("linen_full/3/items"));
  EXPECT_EQ(load_json(tmp / "rep.json")["adapt"]["to"], "linen");
}

TEST(LinenNnxAuto, WithoutLikeIsAUsageError) {
  TempDir tmp;
  auto r = run_cli("adapt " + test::maxtext_fixture("linen_full") + " " + tmp / "out" + " --layout auto");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--layout auto takes the layout of --like; pass --like"), std::string::npos) << r.err;
  EXPECT_FALSE(path_exists(tmp / "out"));
}

// With nothing to adapt, an option that shapes an adaptation (--raw with a pure --like) is a
// contradiction, not something to ignore.
TEST(LinenNnxAuto, AdaptationOptionsWithoutAnAdaptationAreUsageErrors) {
  TempDir tmp;
  for (const char* opt : {"--raw", "--weights-only", "--layers unscan"}) {
    auto r = run_cli("adapt " + test::maxtext_fixture("nnx_expected_raw") + " " + tmp / "out" + " --layout auto --like " +
                     test::maxtext_fixture("nnx_expected_pure") + " " + opt);
    EXPECT_EQ(r.exit_code, 1) << opt;
    EXPECT_NE(r.err.find("shapes a Linen <-> NNX adaptation; the source is already in --like's layout"), std::string::npos)
        << opt << ": " << r.err;
    EXPECT_FALSE(path_exists(tmp / "out"));
  }
}

}  // namespace
}  // namespace ckb
