// HTTP requests for the remote stores: libcurl easy handles from a pool (at most
// RemoteOptions::parallel_requests at once, connections kept alive per handle), timeouts
// (connect, and no byte moved for RemoteOptions::timeout_s), and retries of 429, 408, 5xx,
// connection failures, resets and timeouts with exponential backoff and jitter. A ranged GET
// cut short is retried for its remaining bytes only. Every request's signature is made anew
// for each attempt (HttpCall::build). Errors are IoError(object_url, "<what>: <detail>").
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "io/remote/object_store.h"

namespace ckb::remote {

struct ByteRange {
  std::uint64_t first = 0, last = 0;  // inclusive
};

// One attempt's request: where and with which headers ("Name: value").
struct HttpRequest {
  std::string url;
  std::vector<std::string> headers;
};

struct HttpCall {
  std::string method;      // GET, HEAD, PUT, POST, DELETE
  std::string object_url;  // for messages ("s3://bucket/key")
  std::string what;        // for messages ("GET bytes=0-7")
  // Builds an attempt's request; `range` is what this attempt asks for (it shrinks when a
  // ranged read is resumed). The builder adds the Range header itself.
  std::function<HttpRequest(const std::optional<ByteRange>& range)> build;
  std::span<const std::byte> body;   // PUT / POST payload
  std::optional<ByteRange> range;
  std::span<std::byte> dst;          // with `range`: the bytes land here (size = the range's)
  std::vector<long> accept;          // statuses returned rather than thrown besides 2xx (e.g. 404)
  bool follow_redirects = false;     // same-scheme or upgrade only; Authorization not sent to other hosts
  bool headers_only = false;         // stop at the first body byte (size probes)
};

struct HttpResponse {
  long status = 0;
  std::string reason;  // "Not Found"
  std::string body;    // unless HttpCall::dst took it
  std::vector<std::pair<std::string, std::string>> headers;  // lower-case names, final response
  int attempts = 1;    // how many attempts it took
  std::string header(std::string_view name) const;          // "" when absent
};

class HttpClient {
 public:
  explicit HttpClient(const RemoteOptions& options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Runs the call with retries: returns a 2xx response or one whose status is in
  // call.accept; throws IoError otherwise.
  HttpResponse perform(const HttpCall& call) const;
  const RemoteOptions& options() const { return options_; }
  // Sleeps as perform() does before retry number `retry` (1-based) after `last`: exponential
  // backoff with jitter, or the server's Retry-After. For callers that retry themselves.
  // Throws Cancelled once the calling thread's run is cancelled (core/cancel.h), as perform()
  // does during a request or its backoff.
  void wait_before_retry(int retry, const HttpResponse& last) const;

  struct Pool;  // the easy handles (opaque)

 private:
  RemoteOptions options_;
  std::unique_ptr<Pool> pool_;
};

// "HTTP 403 AccessDenied: Access Denied" from a status and an S3-style XML error body
// (entities decoded), or "HTTP 404 Not Found" from the reason phrase.
std::string http_error_detail(long status, std::string_view reason, std::string_view body);

}  // namespace ckb::remote
