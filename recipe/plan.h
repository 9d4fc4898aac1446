// Plans and the ledger. build_plan() resolves a recipe against a source checkpoint using
// metadata only (names, dtypes, shapes): it produces the target tree, whose tensors are lazy
// op chains over the sources, and a ledger saying what happened to every source leaf and
// every target. Nothing is read until the target tree is written.
//
// Ledger statuses: sources are "consumed" (rule, targets), "dropped" (rule, reason) or
// "unused"; targets are "produced" (rule, from), "filled" (rule, how), or, when an expected
// target layout is given, "missing". problems() lists everything that must fail a run:
// unused sources, missing/unexpected targets, shape or dtype mismatches with the expected
// layout, targets produced twice.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/tree.h"
#include "ops/cast.h"
#include "recipe/recipe.h"

namespace ckb {

struct SourceEntry {
  std::string name;
  std::string type;     // "tensor", "int", ...
  TensorInfo info;      // tensors only
  std::string status = "unused";
  int rule = -1;
  std::vector<std::string> targets;
  std::string reason;
};

struct TargetEntry {
  std::string name;
  std::string type;
  TensorInfo info;
  std::string status;   // produced / filled / missing
  int rule = -1;
  std::vector<std::string> from;
  std::string how;      // e.g. "stack axis 0", "rearrange 'a b -> b a'", "copy of x"
};

struct Plan {
  std::string recipe;
  Node target = Node::dict();
  std::vector<SourceEntry> sources;
  std::vector<TargetEntry> targets;
  std::vector<std::string> problems;
  // For a staged recipe: the plan of every stage in order (this plan then has the first
  // stage's sources, the last stage's targets and tree, and every stage's problems).
  std::vector<Plan> stages;
  // Targets computed in float64 (einsum_add) and rounded once to their dtype: the rounding's
  // errors against the float64 result, measured as the tensors are read (ops/cast.h).
  std::map<std::string, std::shared_ptr<CastStats>> rounded;
  bool ok() const { return problems.empty(); }
  nlohmann::ordered_json ledger_json() const;
  // Throws MappingError listing (up to 40 of) the problems.
  void check() const;
};

struct PlanOptions {
  const Checkpoint* expect = nullptr;               // target layout to check against
  std::map<std::string, std::int64_t> sizes;        // extra rearrange sizes (override recipe)
};

Plan build_plan(const Checkpoint& src, const Recipe& recipe, const PlanOptions& opts = {});

// Inserts `leaf` at the '/'-separated `name`, creating Dict containers on the way.
void insert_path(Node& root, const std::string& name, Node leaf);

// Gives every container of `target` that also exists in `like` (same path) the kind and
// attrs it has there: a list stays a list through an identity-like mapping. A list kind is
// only adopted when the target's keys are exactly 0..n-1 in order.
void adopt_container_kinds(Node& target, const Node& like);

}  // namespace ckb
