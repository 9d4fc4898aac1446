// engine/partition.h: how a job's tensor slots are shared out between MPI ranks.
#include <gtest/gtest.h>

#include "engine/partition.h"

namespace {

using ckb::engine::partition_slots;

std::vector<std::size_t> each_alone(std::size_t n) {
  std::vector<std::size_t> g(n);
  for (std::size_t i = 0; i < n; ++i) g[i] = i;
  return g;
}

TEST(Partition, LargestFirstToTheLeastLoadedRank) {
  // Sizes 5 7 3 7 2 over 2 ranks: 7 (slot 1) -> r0, 7 (slot 3) -> r1, 5 -> r0 (tie: lowest
  // rank), 3 -> r1, 2 -> r1 (r0 has 12, r1 10): loads 12 and 12.
  EXPECT_EQ(partition_slots({5, 7, 3, 7, 2}, each_alone(5), 2), (std::vector<int>{0, 0, 1, 1, 1}));
}

TEST(Partition, GroupsStayTogether) {
  // Slots 0,1 form group A (4+4=8), slots 2,3 group B (1+1=2), slot 4 group C (6); 2 ranks:
  // A -> r0, C -> r1, B -> r1 (6 < 8).
  EXPECT_EQ(partition_slots({4, 4, 1, 1, 6}, {0, 0, 1, 1, 2}, 2), (std::vector<int>{0, 0, 1, 1, 1}));
}

TEST(Partition, MoreRanksThanSlotsAndOneRank) {
  EXPECT_EQ(partition_slots({3, 9}, each_alone(2), 4), (std::vector<int>{1, 0}));
  EXPECT_EQ(partition_slots({3, 9, 1}, each_alone(3), 1), (std::vector<int>{0, 0, 0}));
  EXPECT_TRUE(partition_slots({}, {}, 3).empty());
}

TEST(Partition, EqualSizesGoRoundRobinInSlotOrder) {
  EXPECT_EQ(partition_slots({8, 8, 8, 8, 8, 8}, each_alone(6), 4), (std::vector<int>{0, 1, 2, 3, 0, 1}));
}

TEST(Partition, RejectsMismatchedInputs) {
  EXPECT_THROW(partition_slots({1, 2}, {0}, 2), std::invalid_argument);
  EXPECT_THROW(partition_slots({1}, {0}, 0), std::invalid_argument);
}

}  // namespace
