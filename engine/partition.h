// How a job's tensors are shared out between the ranks of an MPI launch: deterministically
// (every rank computes the same answer from the same plan) and balanced by bytes.
#pragma once

#include <cstdint>
#include <vector>

namespace ckb::engine {

// Per slot, the rank that writes it. `group[i]`: slots with the same group go to the same
// rank (one output file); groups are dealt out largest first (by their bytes; ties: the
// group whose first slot comes first) to the rank with the fewest bytes so far (ties: the
// lowest rank) — greedy longest-processing-time, within 4/3 of the best balance.
std::vector<int> partition_slots(const std::vector<std::uint64_t>& bytes, const std::vector<std::size_t>& group, int ranks);

}  // namespace ckb::engine
