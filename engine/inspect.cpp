// engine::inspect: a checkpoint's tensors and leaves, sha256 per tensor on all cores, and its
// Flax layout when the tree has one (engine/api.h).
#include <algorithm>
#include <atomic>
#include <exception>
#include <thread>

#include "core/hash.h"
#include "engine/api.h"
#include "io/file.h"
#include "profiles/flax.h"

namespace ckb::engine {
namespace {

// Its own joined threads, not the shared pool: OpenSSL keeps per-thread state that is freed
// when a thread exits, and the shared pool's threads live until the process ends.
std::vector<std::string> hash_all(const std::vector<std::pair<std::string, const Tensor*>>& tensors, unsigned threads) {
  std::vector<std::string> out(tensors.size());
  std::atomic<std::size_t> next{0};
  std::exception_ptr err;
  std::atomic<bool> failed{false};
  auto work = [&] {
    try {
      for (std::size_t i = next++; i < tensors.size() && !failed; i = next++) out[i] = tensor_sha256(*tensors[i].second);
    } catch (...) {
      if (!failed.exchange(true)) err = std::current_exception();
    }
  };
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (unsigned k = 1; k < threads && k < tensors.size(); ++k) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (err) std::rethrow_exception(err);
  return out;
}

}  // namespace

Inspection inspect(const std::string& path, const SourceOptions& src, const InspectOptions& opts) {
  RemoteSnapshotScope snapshot;
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
