// Remote options from the environment, the process-wide defaults, and open_remote()'s cache
// of one store per root (see object_store.h).
#include "io/remote/object_store.h"

#include <cstdlib>
#include <map>
#include <mutex>

#include "core/errors.h"
#include "io/remote/http_store.h"
#include "io/remote/s3_store.h"
#include "io/remote/text.h"
#include "io/remote/url.h"

namespace ckb::remote {

namespace {

int env_int(const char* name, int fallback, int min) {
  const std::string v = env_string(name);
  if (v.empty()) return fallback;
  char* end = nullptr;
  const long n = std::strtol(v.c_str(), &end, 10);
  if (!end || *end != '\0' || n < min || n > 1000000)
    throw UsageError(std::string(name) + "='" + v + "' is not a whole number >= " + std::to_string(min));
  return static_cast<int>(n);
}

struct Defaults {
  std::mutex mu;
  std::optional<RemoteOptions> options;
  std::map<std::string, ObjectStorePtr> stores;  // by root ("s3://bucket")
};

Defaults& defaults() {
  static Defaults d;
  return d;
}

}  // namespace

RemoteOptions options_from_environment() {
  RemoteOptions o;
  o.endpoint = env_string("AWS_ENDPOINT_URL_S3");
  if (o.endpoint.empty()) o.endpoint = env_string("AWS_ENDPOINT_URL");
  o.region = env_string("AWS_REGION");
  if (o.region.empty()) o.region = env_string("AWS_DEFAULT_REGION");
  o.profile = env_string("AWS_PROFILE");
  o.parallel_requests = env_int("CKB_REMOTE_PARALLEL", o.parallel_requests, 1);
  o.retries = env_int("CKB_REMOTE_RETRIES", o.retries, 1);
  o.timeout_s = env_int("CKB_REMOTE_TIMEOUT", static_cast<int>(o.timeout_s), 1);
  o.ca_file = env_string("CKB_CA_BUNDLE");
  if (o.ca_file.empty()) o.ca_file = env_string("CURL_CA_BUNDLE");
  return o;
}

void set_default_options(const RemoteOptions& options) {
  auto& d = defaults();
  std::lock_guard lock(d.mu);
  d.options = options;
  d.stores.clear();  // later opens use the new options
}

RemoteOptions default_options() {
  auto& d = defaults();
  std::lock_guard lock(d.mu);
  if (!d.options) d.options = options_from_environment();
  return *d.options;
}

bool is_remote_url(std::string_view path) {
  for (std::string_view scheme : {"s3://", "gs://", "http://", "https://"})
    if (path.substr(0, scheme.size()) == scheme) return true;
  return false;
}

ObjectStorePtr open_store(const std::string& url, const RemoteOptions& options) {
  const ParsedUrl p = parse_url(url);
  if (p.scheme == Scheme::S3 || p.scheme == Scheme::GS) return make_s3_store(p.scheme, p.root, options);
  return make_http_store(p.scheme, p.root, options);
}

RemoteLocation open_remote(const std::string& url) {
  const ParsedUrl p = parse_url(url);
  const RemoteOptions options = default_options();
  const std::string root = std::string(scheme_name(p.scheme)) + "://" + p.root;
  auto& d = defaults();
  std::lock_guard lock(d.mu);
  auto& store = d.stores[root];
  if (!store) store = open_store(root, options);
  return RemoteLocation{store, p.key};
}

}  // namespace ckb::remote
