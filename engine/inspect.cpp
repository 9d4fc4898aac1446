// engine::inspect: a checkpoint's tensors and leaves, sha256 per tensor on all cores, and its
// Flax layout when the tree has one (engine/api.h).
#include <algorithm>
#include <thread>

#include "core/hash.h"
#include "core/thread_pool.h"
#include "engine/api.h"
#include "profiles/flax.h"

namespace ckb::engine {
namespace {

std::vector<std::string> hash_all(const std::vector<std::pair<std::string, const Tensor*>>& tensors, unsigned threads) {
  std::vector<std::string> out(tensors.size());
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  parallel_for(tensors.size(), threads, [&](std::size_t i) { out[i] = tensor_sha256(*tensors[i].second); });
  return out;
}

}  // namespace

Inspection inspect(const std::string& path, const SourceOptions& src, const InspectOptions& opts) {
  Inspection in;
  auto ck = std::make_shared<Checkpoint>(open(path, src));
  in.checkpoint = ck;
  in.tensors = tensor_list(ck->root);
  visit_leaves(ck->root, [&](const Path& p, const Node& n) {
    if (!n.is_tensor()) in.leaves.emplace_back(join_path(p), &n);
  });
  if (opts.hash) {
    in.sha256 = hash_all(in.tensors, opts.threads);
    in.missing_chunks = missing_chunks(*ck);
  }
  if (ck->root.is_container()) {
    const FlaxLayout fl = detect_flax_layout(ck->root);
    if (fl.kind != FlaxKind::Unknown) {
      in.flax_layout = fl.name() + "; weights at " + fl.weights;
      if (!fl.step.empty()) in.flax_layout += "; step " + fl.step + " (" + fl.step_type + ")";
      if (!fl.chain.empty()) in.flax_layout += "; optimizer state at " + fl.opt_state + " (" + fl.chain + ")";
      if (!fl.rng.empty()) in.flax_layout += "; " + std::to_string(fl.rng.size()) + " RNG state subtree(s)";
      in.flax_layout_json = fl.to_json();
    }
  }
  return in;
}

}  // namespace ckb::engine
