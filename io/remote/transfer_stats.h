// The process-wide counters behind transfer_stats() (object_store.h), bumped by the HTTP client.
#pragma once

#include <atomic>
#include <cstdint>

namespace ckb::remote::detail {

struct StatCounters {
  std::atomic<std::uint64_t> requests{0}, bytes_read{0}, bytes_written{0}, retries{0}, largest_response{0};
};
StatCounters& stat_counters();

}  // namespace ckb::remote::detail
