// Implementation of engine/partition.h.
#include "engine/partition.h"

#include <algorithm>
#include <map>
#include <stdexcept>

namespace ckb::engine {

std::vector<int> partition_slots(const std::vector<std::uint64_t>& bytes, const std::vector<std::size_t>& group, int ranks) {
  if (bytes.size() != group.size() || ranks < 1) throw std::invalid_argument("partition_slots: mismatched inputs");
  struct Group {
    std::size_t first;
    std::uint64_t bytes = 0;
    int rank = 0;
  };
  std::map<std::size_t, Group> groups;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    auto [it, fresh] = groups.try_emplace(group[i], Group{i});
    it->second.bytes += bytes[i];
  }
  std::vector<Group*> order;
  for (auto& [id, g] : groups) order.push_back(&g);
  std::sort(order.begin(), order.end(), [](const Group* a, const Group* b) {
    return a->bytes != b->bytes ? a->bytes > b->bytes : a->first < b->first;
  });
  std::vector<std::uint64_t> load(static_cast<std::size_t>(ranks), 0);
  for (Group* g : order) {
    const auto least = std::min_element(load.begin(), load.end());  // first of the least loaded
    g->rank = static_cast<int>(least - load.begin());
    *least += g->bytes;
  }
  std::vector<int> owner(bytes.size());
  for (std::size_t i = 0; i < bytes.size(); ++i) owner[i] = groups.at(group[i]).rank;
  return owner;
}

}  // namespace ckb::engine
