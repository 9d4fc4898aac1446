// Objects where checkpoints live: `s3://bucket/key`, `gs://bucket/key`, `https://host/path`
// (and `http://`). This is the transport contract the rest of io/ builds on (io/file.h's
// MappedFile::open, listing and the atomic outputs dispatch here for URLs); nothing above io/
// talks to an ObjectStore directly.
//
// Contract:
//  - An ObjectStore is one root (a bucket, or an http(s) host); keys are '/'-separated, no
//    leading '/'. All methods are thread-safe and may run many requests in parallel (the
//    store keeps a connection pool, bounded by RemoteOptions::parallel_requests).
//  - Every request retries 429, 5xx, connection resets and timeouts with exponential backoff
//    (RemoteOptions::retries attempts in all); then it throws IoError whose path is the
//    object's URL and whose message names the request ("GET bytes=0-7"), the HTTP status and
//    the server's error code if any. Credentials never appear in messages.
//  - `https://` / `http://` stores are read-only and cannot list (UsageError).
//  - Writes: put() makes a whole object visible at once; a MultipartUpload makes its object
//    visible only at complete(), and aborts the upload if destroyed uncompleted.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ckb::remote {

// How ckptbridge reaches remote stores. Defaults come from the environment (see
// options_from_environment()); the CLI's flags override them.
struct RemoteOptions {
  std::string endpoint;          // S3-compatible endpoint ("http://127.0.0.1:4568"); empty: AWS / GCS
  std::string region;            // S3 region; empty: AWS_REGION / AWS_DEFAULT_REGION / profile / us-east-1
  std::string profile;           // ~/.aws/credentials profile; empty: AWS_PROFILE / "default"
  std::string bearer_token;      // https:// (and gs://) Authorization: Bearer
  int parallel_requests = 16;    // connections per store
  int retries = 6;               // attempts per request, in all
  double timeout_s = 120;        // per request, without progress
  bool path_style = false;       // s3: http://endpoint/bucket/key instead of bucket.endpoint
  std::string ca_file;           // PEM file of CAs to trust for https (empty: the system's)
  double retry_base_s = 0.2;     // first backoff delay; doubles per retry (with jitter), at most 20 s
  int list_page_size = 0;        // ListObjectsV2 max-keys (0: the server's default, 1000)
};

// Environment: AWS_ENDPOINT_URL (+ AWS_ENDPOINT_URL_S3), AWS_REGION, AWS_DEFAULT_REGION,
// AWS_PROFILE, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_SHARED_CREDENTIALS_FILE,
// AWS_CONFIG_FILE, HF_TOKEN / CKB_HTTP_TOKEN (https bearer), GOOGLE_OAUTH_ACCESS_TOKEN,
// CKB_GS_TOKEN_COMMAND, GS_ACCESS_KEY_ID / GS_SECRET_ACCESS_KEY (GCS HMAC), CKB_GS_ENDPOINT,
// CKB_REMOTE_PARALLEL, CKB_REMOTE_RETRIES, CKB_REMOTE_TIMEOUT (seconds), CKB_CA_BUNDLE
// (else CURL_CA_BUNDLE). Credentials themselves are read when a store is opened
// (io/remote/credentials.h says where from); HF_TOKEN goes only to huggingface.co / hf.co.
RemoteOptions options_from_environment();
// Process-wide options used by open_remote() (the CLI sets them from its flags once at start).
void set_default_options(const RemoteOptions& options);
RemoteOptions default_options();

struct ObjectInfo {
  std::string key;
  std::uint64_t size = 0;
};

class MultipartUpload {
 public:
  virtual ~MultipartUpload() = default;  // implementations abort unless completed
  // Uploads part `number` (1..10000, S3's limit). Every part but the last must be >= 5 MiB.
  // Thread-safe: parts may be uploaded in any order, in parallel.
  virtual void upload_part(int number, std::span<const std::byte> data) = 0;
  // Completes the upload with every part uploaded so far (in part-number order); the object
  // becomes visible now. A gap in the part numbers is an error.
  virtual void complete() = 0;
  // Aborts the upload (best effort: never throws).
  virtual void abort() noexcept = 0;
};

// Counters of what the stores of this process moved (for `--verbose`, tests and benchmarks).
struct TransferStats {
  std::uint64_t requests = 0, bytes_read = 0, bytes_written = 0, retries = 0;
  std::uint64_t largest_response = 0;  // the most body bytes one response carried
};
TransferStats transfer_stats();
void reset_transfer_stats();

class ObjectStore {
 public:
  virtual ~ObjectStore() = default;
  // The URL of `key` ("s3://bucket/key"), for messages.
  virtual std::string url(const std::string& key) const = 0;
  virtual bool writable() const = 0;
  virtual bool can_list() const = 0;
  // HEAD: the object's size, or nullopt when it does not exist (404).
  virtual std::optional<std::uint64_t> stat(const std::string& key) const = 0;
  // Ranged GET of exactly dst.size() bytes at `offset` into dst (a short answer is an IoError).
  virtual void read(const std::string& key, std::uint64_t offset, std::span<std::byte> dst) const = 0;
  // The whole object, or nullopt when it does not exist.
  virtual std::optional<std::string> get(const std::string& key) const = 0;
  // Every object whose key starts with `prefix`, in ascending bytewise key order.
  virtual std::vector<ObjectInfo> list(const std::string& prefix) const = 0;
  virtual void put(const std::string& key, std::span<const std::byte> data) const = 0;
  virtual std::unique_ptr<MultipartUpload> begin_upload(const std::string& key) const = 0;
  // Deletes the object (absent is fine).
  virtual void remove(const std::string& key) const = 0;
};

using ObjectStorePtr = std::shared_ptr<const ObjectStore>;

// "s3://b/k", "gs://b/k", "http(s)://host[:port]/path" (query strings kept as part of the key).
bool is_remote_url(std::string_view path);

struct RemoteLocation {
  ObjectStorePtr store;  // shared per root within the process (one connection pool)
  std::string key;       // no leading '/'; may be empty (the bucket root)
};
// Throws UsageError for an unknown scheme or a malformed URL.
RemoteLocation open_remote(const std::string& url);
// A new store (not shared) for the root of `url` ("s3://bucket", "https://host:port") with
// `options` instead of default_options(); for tests and tools that need their own settings.
ObjectStorePtr open_store(const std::string& url, const RemoteOptions& options);

}  // namespace ckb::remote
