// engine/api.h's object-storage settings: the engine-level face of io/remote's options.
#include "engine/api.h"
#include "io/remote/object_store.h"

namespace ckb::engine {

void configure_remote(const RemoteConfig& config) {
  remote::RemoteOptions o = remote::default_options();
  if (!config.endpoint.empty()) {
    o.endpoint = config.endpoint;
    o.path_style = true;  // S3-compatible servers (MinIO, s3rver, Ceph) address buckets by path
  }
  if (!config.region.empty()) o.region = config.region;
  if (!config.aws_profile.empty()) o.profile = config.aws_profile;
  if (!config.token.empty()) o.bearer_token = config.token;
  if (config.parallel_requests > 0) o.parallel_requests = config.parallel_requests;
  if (config.retries > 0) o.retries = config.retries;
  remote::set_default_options(o);
}

RemoteTransfer remote_transfer() {
  const remote::TransferStats s = remote::transfer_stats();
  return {s.requests, s.bytes_read, s.bytes_written, s.retries, s.largest_response};
}

}  // namespace ckb::engine
