// Implementation of engine/stream_chains.h.
#include "engine/stream_chains.h"

#include <algorithm>
#include <map>

namespace ckb {

std::vector<std::vector<std::size_t>> stream_chains(const std::vector<const Tensor*>& tensors,
                                                    const std::vector<std::size_t>& order) {
  std::vector<TensorSource::StreamOrigin> origin(tensors.size());
  std::map<const TensorSource*, std::size_t> members;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = *tensors[i];
    if (t.info.nbytes() == 0 || t.source->contiguous()) continue;
    origin[i] = t.source->stream_origin(0);
    // A tensor that is its own origin (a whole stored array) has nothing to share.
    if (origin[i].source == t.source.get()) origin[i] = {};
    if (origin[i].source) ++members[origin[i].source];
  }
  std::vector<std::vector<std::size_t>> chains;
  std::map<const TensorSource*, std::size_t> chain_of;
  for (std::size_t i : order) {
    const TensorSource* o = origin[i].source;
    if (!o || members[o] < 2) {
      chains.push_back({i});
      continue;
    }
    auto [it, fresh] = chain_of.emplace(o, chains.size());
    if (fresh) chains.emplace_back();
    chains[it->second].push_back(i);
  }
  for (auto& c : chains)
    std::stable_sort(c.begin(), c.end(), [&](std::size_t a, std::size_t b) { return origin[a].offset < origin[b].offset; });
  return chains;
}

}  // namespace ckb
