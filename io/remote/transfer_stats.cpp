// Process-wide transfer counters of the remote stores (see transfer_stats.h).
#include "io/remote/transfer_stats.h"

#include "io/remote/object_store.h"

namespace ckb::remote {

detail::StatCounters& detail::stat_counters() {
  static StatCounters counters;
  return counters;
}

TransferStats transfer_stats() {
  auto& c = detail::stat_counters();
  return TransferStats{c.requests.load(), c.bytes_read.load(), c.bytes_written.load(), c.retries.load(),
                       c.largest_response.load()};
}

void reset_transfer_stats() {
  auto& c = detail::stat_counters();
  c.requests = 0;
  c.bytes_read = 0;
  c.bytes_written = 0;
  c.retries = 0;
  c.largest_response = 0;
}

}  // namespace ckb::remote
