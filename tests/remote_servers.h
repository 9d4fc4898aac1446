// Real local servers for the remote-storage tests (tests/remote_*_test.cpp), started on first
// use by the test process itself and stopped when it exits (or dies: PR_SET_PDEATHSIG):
//  - s3(): tools/test-servers/s3-server.js under node: s3rver behind a front that verifies
//    every request's SigV4 signature with the `aws4` npm package; bucket "ckb-test".
//  - web(): nginx serving a temp directory over http and https (a self-signed certificate made
//    with the openssl command), with /private/ answering 401 unless
//    "Authorization: Bearer ckb-test-token", /nohead/ refusing HEAD with 405, /redirect/x
//    answering 302 to /x, /elsewhere/x to http://localhost:<port>/x (another host name) and
//    /downgrade/x to http://127.0.0.1:<port>/x (from https, a downgrade).
//  - FlakyProxy: tests/remote_flaky_proxy.py (Debian's /usr/bin/python3) in front of a server,
//    failing a share of the requests (500, 503, 429, dropped connections, bodies cut short).
// Nothing is mocked. A missing program fails the test with what to install.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "io/remote/object_store.h"

namespace ckb::test {

struct S3Server {
  int port = 0;
  std::string endpoint;  // "http://127.0.0.1:<port>"
  std::string bucket = "ckb-test";
  std::string data_dir;  // where s3rver keeps the objects
};
// Starts the S3 server once per process (GoogleTest assertion failure + exception if it
// cannot).
const S3Server& s3();

struct WebServer {
  int port = 0, tls_port = 0;
  std::string root;       // files served: http://127.0.0.1:<port>/<rel> = root/<rel>
  std::string http_base;  // "http://127.0.0.1:<port>"
  std::string https_base; // "https://127.0.0.1:<tls_port>"
  std::string ca_file;    // the self-signed certificate, for RemoteOptions::ca_file
  std::string access_log; // one line per request: "<method> <uri> <status> <body bytes sent> <Range>"
};
const WebServer& web();

// Lines of web()'s access log that contain `uri_part`, once there are `expect` of them (waits
// 5 s at most, then returns what there is): nginx logs a request once it has finished it,
// which may be just after the client has its answer.
std::vector<std::string> access_log_lines(const std::string& uri_part, std::size_t expect);

// A proxy in front of 127.0.0.1:<upstream_port>. `failure_rate` in [0, 1]: the share of
// requests that fail. `seed` makes the choices repeatable (for
// requests made one at a time). `kinds`: the failures to choose from
// ("500,503,429,drop,cut,stall,delay"; empty: all failures but stall, bodies cut twice as
// often as the others; "delay" forwards 50 ms late, which is no failure).
class FlakyProxy {
 public:
  FlakyProxy(int upstream_port, double failure_rate, int seed = 1, const std::string& kinds = "");
  ~FlakyProxy();
  FlakyProxy(const FlakyProxy&) = delete;
  FlakyProxy& operator=(const FlakyProxy&) = delete;
  int port() const { return port_; }
  // The most requests the proxy has had in flight at once so far.
  int max_in_flight() const;
  std::string base() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  int pid_ = 0;
  int port_ = 0;
  std::string log_;
};

// S3 options for the local server: endpoint, path style, quick retries. Credentials come from
// the environment, which s3_credentials_env() sets (the server's key pair).
remote::RemoteOptions s3_options(const std::string& endpoint);
void s3_credentials_env(const std::string& access_key = "CKBTESTKEY", const std::string& secret = "ckb-test-secret/+=");

// Test data: `n` pseudo-random bytes, the same for the same seed.
std::string pattern(std::size_t n, unsigned seed);
std::span<const std::byte> bytes_of_string(const std::string& s);
std::string sha256_of(const std::string& s);
// store.read() of `n` bytes at `offset`, as a string.
std::string read_range(const remote::ObjectStore& store, const std::string& key, std::uint64_t offset, std::size_t n);

}  // namespace ckb::test
