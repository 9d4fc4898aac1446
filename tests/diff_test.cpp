// Tests of recipe/diff.h and `ckptbridge diff`: statuses, max abs/rel/ULP errors, the --ulp,
// --atol/--rtol and --ignore-dtype rules as README states them, numbers in scientific notation,
// and the exit status (0 match, 1 differ, 2 trouble: usage errors included).
#include <cmath>
#include <cstring>
#include <limits>

#include "core/errors.h"
#include "formats/format.h"
#include "recipe/diff.h"
#include "test_util.h"

namespace ckb {
namespace {

using test::run_cli;

template <typename T>
Tensor tensor_of_diff(DType t, std::vector<T> v) {
  Bytes b(v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(b.data(), v.data(), b.size());
  return make_memory_tensor({t, {static_cast<std::int64_t>(v.size())}}, std::move(b));
}
Tensor f32_vector(std::vector<float> v) { return tensor_of_diff(DType::F32, std::move(v)); }
Tensor f64(std::vector<double> v) { return tensor_of_diff(DType::F64, std::move(v)); }
// bf16 from its bit patterns.
Tensor bf16(std::vector<std::uint16_t> v) { return tensor_of_diff(DType::BF16, std::move(v)); }

Node tree1(Tensor t) {
  Node n = Node::dict();
  n.add("w", Node::tensor(std::move(t)));
  return n;
}

LeafDiff diff1(Tensor a, Tensor b, DiffOptions o = {}) {
  auto r = diff_trees(tree1(std::move(a)), tree1(std::move(b)), o);
  EXPECT_EQ(r.leaves.size(), 1u);
  return r.leaves.at(0);
}

const float kOneUp = std::nextafter(1.0f, 2.0f);  // 1 + 2^-23

TEST(Diff, EqualBytesAreEqual) {
  auto d = diff1(f32_vector({1, -2, 0.5f}), f32_vector({1, -2, 0.5f}));
  EXPECT_EQ(d.status, "equal");
  EXPECT_EQ(d.detail, "");
  EXPECT_EQ(d.mismatches, 0u);
}

TEST(Diff, OneUlpApartIsReportedExactly) {
  auto d = diff1(f32_vector({1, kOneUp, 3}), f32_vector({1, 1, 3}));
  EXPECT_EQ(d.status, "different");
  EXPECT_TRUE(d.ulp_compared);
  EXPECT_EQ(d.max_ulp, 1u);
  EXPECT_EQ(d.max_abs, std::ldexp(1.0, -23));
  EXPECT_EQ(d.max_rel, std::ldexp(1.0, -23));
  EXPECT_EQ(d.mismatches, 1u);
}

TEST(Diff, UlpToleranceAcceptsUpToNRepresentableValues) {
  const float two_up = std::nextafter(kOneUp, 2.0f);
  DiffOptions o;
  o.ulp = 1;
  auto d = diff1(f32_vector({kOneUp, two_up}), f32_vector({1, 1}), o);
  EXPECT_EQ(d.status, "different");  // the second element is 2 ULP away
  EXPECT_EQ(d.max_ulp, 2u);
  EXPECT_EQ(d.mismatches, 1u);
  o.ulp = 2;
  d = diff1(f32_vector({kOneUp, two_up}), f32_vector({1, 1}), o);
  EXPECT_EQ(d.status, "close");
  EXPECT_EQ(d.mismatches, 0u);
  // ULP distance crosses zero as numpy's assert_array_max_ulp counts it: -min..+min is 2.
  const float tiny = std::numeric_limits<float>::denorm_min();
  d = diff1(f32_vector({-tiny}), f32_vector({tiny}), o);
  EXPECT_EQ(d.max_ulp, 2u);
  EXPECT_EQ(d.status, "close");
  // bf16: 1.0 (0x3F80) vs 1.0078125 (0x3F81) is one bf16 ULP.
  o.ulp = 0;
  d = diff1(bf16({0x3F81}), bf16({0x3F80}), o);
  EXPECT_EQ(d.max_ulp, 1u);
  EXPECT_EQ(d.max_abs, 0.0078125);
  EXPECT_EQ(d.status, "different");
}

TEST(Diff, AbsRelToleranceIsAllclose) {
  DiffOptions o;
  o.rtol = std::ldexp(1.0, -23);  // |a - b| <= rtol * |b| exactly
  EXPECT_EQ(diff1(f32_vector({kOneUp}), f32_vector({1}), o).status, "close");
  o.rtol = std::ldexp(1.0, -24);
  EXPECT_EQ(diff1(f32_vector({kOneUp}), f32_vector({1}), o).status, "different");
  o.atol = std::ldexp(1.0, -24);  // atol + rtol * |b| = 2^-23
  EXPECT_EQ(diff1(f32_vector({kOneUp}), f32_vector({1}), o).status, "close");
}

TEST(Diff, DtypesDifferWithEqualValues) {
  auto d = diff1(f32_vector({1, -2, 0.5f}), f64({1, -2, 0.5}));
  EXPECT_EQ(d.status, "dtype_mismatch");
  EXPECT_EQ(d.detail, "values equal, dtypes differ: F32 vs F64");
  EXPECT_FALSE(d.ulp_compared);
  DiffResult r;
  r.leaves = {d};
  EXPECT_FALSE(r.within_tolerance());
  DiffOptions o;
  o.ignore_dtype = true;
  d = diff1(f32_vector({1, -2, 0.5f}), f64({1, -2, 0.5}), o);
  EXPECT_EQ(d.status, "equal");
  EXPECT_EQ(d.detail, "values equal, dtypes differ: F32 vs F64");
}

TEST(Diff, DtypesDifferValuesComparedInFloat64WithoutUlp) {
  // 1 + 2^-23 in f32 vs 1 in f64: compared as float64, no ULP between different dtypes.
  DiffOptions o;
  o.ulp = 1000000;
  auto d = diff1(f32_vector({kOneUp}), f64({1}), o);
  EXPECT_EQ(d.status, "different");
  EXPECT_EQ(d.detail, "dtype F32 vs F64");
  EXPECT_FALSE(d.ulp_compared);
  EXPECT_EQ(d.max_ulp, 0u);
  EXPECT_EQ(d.max_abs, std::ldexp(1.0, -23));
  o.rtol = 1e-6;
  d = diff1(f32_vector({kOneUp}), f64({1}), o);
  EXPECT_EQ(d.status, "dtype_mismatch");
  EXPECT_EQ(d.detail, "values within tolerance, dtypes differ: F32 vs F64");
  o.ignore_dtype = true;
  d = diff1(f32_vector({kOneUp}), f64({1}), o);
  EXPECT_EQ(d.status, "close");
  auto j = diff_trees(tree1(f32_vector({kOneUp})), tree1(f64({1})), o).to_json();
  EXPECT_FALSE(j["leaves"]["w"].contains("max_ulp"));  // not meaningful across dtypes
  EXPECT_TRUE(j["within_tolerance"].get<bool>());
  j = diff_trees(tree1(f32_vector({kOneUp})), tree1(f32_vector({1})), {}).to_json();
  EXPECT_EQ(j["leaves"]["w"]["max_ulp"], 1);
  EXPECT_EQ(j["leaves"]["w"]["mismatches"], 1);
  EXPECT_FALSE(j["within_tolerance"].get<bool>());
}

TEST(Diff, NanSignedZeroAndZeroReference) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(diff1(f32_vector({nan, 1}), f32_vector({nan, 1})).status, "equal");
  auto d = diff1(f32_vector({nan, 1}), f32_vector({1, 1}));
  EXPECT_EQ(d.status, "different");
  EXPECT_EQ(d.mismatches, 1u);
  d = diff1(f32_vector({-0.0f}), f32_vector({0.0f}));
  EXPECT_EQ(d.status, "close");
  EXPECT_EQ(d.detail, "values equal, bits differ (signed zeros or NaN payloads)");
  d = diff1(f32_vector({1e-30f}), f32_vector({0}));
  EXPECT_TRUE(std::isinf(d.max_rel));
  DiffOptions o;
  o.atol = 1e-29;
  EXPECT_EQ(diff1(f32_vector({1e-30f}), f32_vector({0}), o).status, "close");
}

TEST(Diff, ShapeAndTypeMismatchesAndMissingLeaves) {
  auto d = diff1(f32_vector({1, 2}), f64({1, 2, 3}));
  EXPECT_EQ(d.status, "shape_mismatch");
  EXPECT_EQ(d.detail, "[2] vs [3], dtype F32 vs F64");
  Node a = tree1(f32_vector({1}));
  a.add("only_a", Node(std::int64_t{1}));
  a.add("n", Node(std::int64_t{3}));
  Node b = tree1(f32_vector({1}));
  b.add("n", Node::tensor(f32_vector({3})));
  auto r = diff_trees(a, b, {});
  ASSERT_EQ(r.leaves.size(), 3u);
  EXPECT_EQ(r.leaves[1].status, "only_in_a");
  EXPECT_EQ(r.leaves[2].status, "type_mismatch");
  EXPECT_EQ(r.leaves[2].detail, "int vs tensor");
}

// ---- the command ----------------------------------------------------------------------

void save(const std::string& path, std::vector<std::pair<std::string, Tensor>> tensors) {
  Checkpoint ck;
  for (auto& [n, t] : tensors) ck.root.add(n, Node::tensor(std::move(t)));
  write_checkpoint(ck, path, format_by_name("safetensors"), {}, 1);
}

TEST(DiffCli, ExitStatusIsZeroEqualOneDifferTwoTrouble) {
  test::TempDir tmp;
  save(tmp / "a.safetensors", {{"w", f32_vector({1, 2})}});
  save(tmp / "b.safetensors", {{"w", f32_vector({1, kOneUp})}});
  auto same = run_cli("diff " + tmp / "a.safetensors " + tmp / "a.safetensors");
  EXPECT_EQ(same.exit_code, 0) << same.err;
  EXPECT_EQ(same.out, "1 leaf: 1 equal, 0 not equal; within tolerance\n");
  EXPECT_EQ(run_cli("diff " + tmp / "a.safetensors " + tmp / "b.safetensors").exit_code, 1);
  // Trouble, never 1: a missing file, bad values, unknown options, a missing operand.
  auto missing = run_cli("diff " + tmp / "a.safetensors " + tmp / "nope.safetensors");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find(tmp / "nope.safetensors" + ": no such file or directory"), std::string::npos) << missing.err;
  auto bad_atol = run_cli("diff " + tmp / "a.safetensors " + tmp / "b.safetensors --atol x");
  EXPECT_EQ(bad_atol.exit_code, 2);
  EXPECT_NE(bad_atol.err.find("--atol"), std::string::npos) << bad_atol.err;
  auto neg = run_cli("diff " + tmp / "a.safetensors " + tmp / "b.safetensors --rtol -1");
  EXPECT_EQ(neg.exit_code, 2);
  EXPECT_NE(neg.err.find("--rtol must be a non-negative number, got -1"), std::string::npos) << neg.err;
  auto neg_ulp = run_cli("diff " + tmp / "a.safetensors " + tmp / "b.safetensors --ulp -1");
  EXPECT_EQ(neg_ulp.exit_code, 2);
  EXPECT_NE(neg_ulp.err.find("--ulp must be a non-negative integer, got -1"), std::string::npos) << neg_ulp.err;
  auto unknown = run_cli("diff " + tmp / "a.safetensors " + tmp / "b.safetensors --bogus");
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.err.find("--bogus"), std::string::npos) << unknown.err;
  auto operand = run_cli("diff " + tmp / "a.safetensors");
  EXPECT_EQ(operand.exit_code, 2);
  EXPECT_NE(operand.err.find("b is required"), std::string::npos) << operand.err;
  // Other commands keep exit 1 for usage errors.
  EXPECT_EQ(run_cli("inspect --bogus " + tmp / "a.safetensors").exit_code, 1);
  // --help documents it.
  auto help = run_cli("diff --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("0 every leaf matches, 1 they differ, 2 trouble"), std::string::npos) << help.out;
}

TEST(DiffCli, SmallErrorsInScientificNotation) {
  test::TempDir tmp;
  save(tmp / "a.safetensors", {{"w", f64({1.0, 2.0})}});
  save(tmp / "b.safetensors", {{"w", f64({1.0 + 3.1e-8, 2.0})}});
  auto r = run_cli("diff " + tmp / "a.safetensors " + tmp / "b.safetensors");
  EXPECT_EQ(r.exit_code, 1);
  // leaf, status, max abs, max rel, max ulp (same dtype), mismatches.
  const double ulps = (1.0 + 3.1e-8 - 1.0) / std::ldexp(1.0, -52);
  EXPECT_NE(r.out.find("3.1e-08"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("0.0000000"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(std::to_string(static_cast<std::uint64_t>(ulps))), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("1 leaf: 0 equal, 1 not equal; DIFFERENT"), std::string::npos) << r.out;
  // Within tolerance it is "close" and exit 0.
  auto tol = run_cli("diff " + tmp / "a.safetensors " + tmp / "b.safetensors --atol 1e-7");
  EXPECT_EQ(tol.exit_code, 0) << tol.out;
  EXPECT_NE(tol.out.find("close"), std::string::npos) << tol.out;
}

TEST(DiffCli, UlpOptionAsReadmeStates) {
  test::TempDir tmp;
  save(tmp / "a.safetensors", {{"w", f32_vector({1, 1})}});
  save(tmp / "b.safetensors", {{"w", f32_vector({kOneUp, std::nextafter(kOneUp, 2.0f)})}});
  save(tmp / "c.safetensors", {{"w", f64({1, 1})}});
  auto exact = run_cli("diff " + tmp / "a.safetensors " + tmp / "b.safetensors --json");
  EXPECT_EQ(exact.exit_code, 1);
  auto j = nlohmann::json::parse(exact.out);
  EXPECT_EQ(j["leaves"]["w"]["max_ulp"], 2);
  EXPECT_EQ(run_cli("diff " + tmp / "a.safetensors " + tmp / "b.safetensors --ulp 1").exit_code, 1);
  EXPECT_EQ(run_cli("diff " + tmp / "a.safetensors " + tmp / "b.safetensors --ulp 2").exit_code, 0);
  // F32 vs F64 with equal values: the dtype alone is a difference unless --ignore-dtype.
  auto dt = run_cli("diff " + tmp / "a.safetensors " + tmp / "c.safetensors");
  EXPECT_EQ(dt.exit_code, 1);
  EXPECT_NE(dt.out.find("dtype_mismatch"), std::string::npos) << dt.out;
  EXPECT_NE(dt.out.find("values equal, dtypes differ: F32 vs F64"), std::string::npos) << dt.out;
  EXPECT_EQ(run_cli("diff " + tmp / "a.safetensors " + tmp / "c.safetensors --ignore-dtype").exit_code, 0);
  // --ulp does not apply across dtypes; the values are compared in float64.
  auto cross = run_cli("diff " + tmp / "b.safetensors " + tmp / "c.safetensors --ulp 100 --ignore-dtype");
  EXPECT_EQ(cross.exit_code, 1);
  EXPECT_NE(cross.out.find("dtype F32 vs F64"), std::string::npos) << cross.out;
}

}  // namespace
}  // namespace ckb
