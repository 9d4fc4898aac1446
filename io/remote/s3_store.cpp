// S3 / GCS XML API object store (see s3_store.h).
#include "io/remote/s3_store.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>

#include "core/errors.h"
#include "io/remote/credentials.h"
#include "io/remote/http_client.h"
#include "io/remote/sigv4.h"
#include "io/remote/text.h"
#include "io/remote/xml_text.h"

namespace ckb::remote {

namespace {

using Query = std::vector<std::pair<std::string, std::string>>;

constexpr const char* kEmptySha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

std::span<const std::byte> string_bytes(const std::string& s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

std::optional<unsigned> parse_hex_byte(std::string_view two) {
  unsigned v = 0;
  for (char c : two) {
    v <<= 4;
    if (c >= '0' && c <= '9') v |= static_cast<unsigned>(c - '0');
    else if (c >= 'a' && c <= 'f') v |= static_cast<unsigned>(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= static_cast<unsigned>(c - 'A' + 10);
    else return std::nullopt;
  }
  return v;
}

std::string md5_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &len, EVP_md5(), nullptr) != 1) return "";
  return to_hex(std::string_view(reinterpret_cast<const char*>(digest), len));
}

std::string xml_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::uint64_t size_or_throw(const std::string& text, const std::string& url, const std::string& what) {
  if (auto v = parse_decimal(text)) return *v;
  throw IoError(url, what + ": the server sent no valid size ('" + text + "')");
}

// Everything a request of this store needs; shared by the store and its uploads.
struct S3Core {
  std::string scheme;       // "s3" / "gs"
  std::string bucket;
  std::string base;         // "https://host[:port]" (no path)
  std::string host;         // Host header ("host[:port]", default ports left out)
  std::string path_prefix;  // "/bucket" (path-style) or "" (virtual-hosted)
  std::string region;
  std::optional<SigV4Credentials> credentials;
  std::string bearer;
  int list_page_size = 0;
  HttpClient client;

  explicit S3Core(const RemoteOptions& options) : client(options) {}

  std::string url_of(const std::string& key) const { return scheme + "://" + bucket + "/" + key; }

  std::string canonical_uri(const std::string& key) const {
    if (key.empty()) return path_prefix.empty() ? "/" : path_prefix;
    return path_prefix + "/" + uri_encode(key, true);
  }

  HttpRequest build(const std::string& method, const std::string& key, const Query& query,
                    const std::string& payload_hash, const std::optional<ByteRange>& range,
                    const std::vector<std::string>& unsigned_headers = {}) const {
    HttpRequest r;
    const std::string uri = canonical_uri(key);
    const std::string q = canonical_query(query);
    r.url = base + uri + (q.empty() ? "" : "?" + q);
    r.headers.push_back("Host: " + host);
    if (credentials) {
      const std::string date = amz_date_now();
      SigV4Request s;
      s.method = method;
      s.canonical_uri = uri;
      s.query = query;
      s.headers = {{"host", host}, {"x-amz-date", date}, {"x-amz-content-sha256", payload_hash}};
      if (!credentials->session_token.empty()) s.headers.emplace_back("x-amz-security-token", credentials->session_token);
      s.payload_hash = payload_hash;
      for (const auto& [name, value] : s.headers)
        if (name != "host") r.headers.push_back(name + ": " + value);
      r.headers.push_back("Authorization: " + authorization(s, *credentials, date, region, "s3"));
    } else if (!bearer.empty()) {
      r.headers.push_back("Authorization: Bearer " + bearer);
    }
    if (range) r.headers.push_back("Range: bytes=" + std::to_string(range->first) + "-" + std::to_string(range->last));
    for (const auto& h : unsigned_headers) r.headers.push_back(h);
    return r;
  }

  // A call for `key` with its request builder filled in.
  HttpCall call(const std::string& method, const std::string& key, Query query, std::string what,
                std::span<const std::byte> body = {}, std::vector<std::string> unsigned_headers = {}) const {
    HttpCall c;
    c.method = method;
    c.object_url = url_of(key);
    c.what = std::move(what);
    c.body = body;
    // The payload's hash is signed over plain http; over https, TLS already guards the body and
    // hashing every uploaded byte would cost a core's time, so the signature says UNSIGNED-PAYLOAD
    // (as the AWS SDKs do).
    std::string payload_hash;
    if (credentials) {
      if (body.empty())
        payload_hash = kEmptySha256;
      else if (base.rfind("https://", 0) == 0)
        payload_hash = "UNSIGNED-PAYLOAD";
      else
        payload_hash = sha256_hex(std::string_view(reinterpret_cast<const char*>(body.data()), body.size()));
    }
    c.build = [this, method, key, query = std::move(query), payload_hash = std::move(payload_hash),
               unsigned_headers = std::move(unsigned_headers)](const std::optional<ByteRange>& range) {
      return build(method, key, query, payload_hash, range, unsigned_headers);
    };
    return c;
  }
};

class S3Upload final : public MultipartUpload {
 public:
  S3Upload(std::shared_ptr<const S3Core> core, std::string key, std::string upload_id)
      : core_(std::move(core)), key_(std::move(key)), upload_id_(std::move(upload_id)) {}
  ~S3Upload() override {
    if (!done_) abort();
  }

  void upload_part(int number, std::span<const std::byte> data) override {
    if (number < 1 || number > 10000)
      throw UsageError("multipart upload of " + core_->url_of(key_) + ": part number " + std::to_string(number) +
                       " is not in 1..10000");
    HttpCall c = core_->call("PUT", key_, {{"partNumber", std::to_string(number)}, {"uploadId", upload_id_}},
                             "PUT part " + std::to_string(number) + " (" + std::to_string(data.size()) + " bytes)", data,
                             {"Content-Type: application/octet-stream"});
    const HttpResponse r = core_->client.perform(c);
    const std::string etag = r.header("etag");
    if (etag.empty()) throw IoError(c.object_url, c.what + ": the server sent no ETag");
    std::lock_guard lock(mu_);
    parts_[number] = etag;
    sizes_[number] = data.size();
  }

  void complete() override {
    std::string xml = "<CompleteMultipartUpload>";
    int expected = 1;
    {
      std::lock_guard lock(mu_);
      if (done_) throw UsageError("multipart upload of " + core_->url_of(key_) + " was already completed or aborted");
      if (parts_.empty()) throw UsageError("multipart upload of " + core_->url_of(key_) + ": no parts were uploaded");
      for (const auto& [number, etag] : parts_) {
        if (number != expected)
          throw UsageError("multipart upload of " + core_->url_of(key_) + ": part " + std::to_string(expected) +
                           " is missing");
        ++expected;
        xml += "<Part><PartNumber>" + std::to_string(number) + "</PartNumber><ETag>" + xml_escape(etag) + "</ETag></Part>";
      }
    }
    xml += "</CompleteMultipartUpload>";
    HttpCall c = core_->call("POST", key_, {{"uploadId", upload_id_}},
                             "POST complete multipart upload (" + std::to_string(expected - 1) + " parts)", string_bytes(xml),
                             {"Content-Type: application/xml"});
    // An error after an earlier attempt (NoSuchUpload from S3, 500 from some S3-compatible
    // servers) may mean that attempt completed the upload and lost its answer. Then the object
    // is there, with the parts' total size and the multipart ETag of exactly these parts;
    // otherwise a 5xx is tried again after the usual backoff (here, so that such an answer is
    // checked first) and a 404 means the upload is gone.
    c.accept = {404, 500, 502, 503};
    const int rounds = std::max(1, core_->client.options().retries);
    for (int round = 1;; ++round) {
      const HttpResponse r = core_->client.perform(c);
      if (r.status == 404 || r.status >= 500) {
        if ((r.attempts >= 2 || round >= 2) && completed_by_us()) break;
        if (r.status == 404 || round >= rounds)
          throw IoError(c.object_url, c.what + ": " + http_error_detail(r.status, r.reason, r.body) +
                                          (r.status == 404 ? "" : " (gave up after " + std::to_string(round) + " rounds)"));
        core_->client.wait_before_retry(round, r);
        continue;
      }
      if (r.body.find("<Error>") != std::string::npos)  // S3 may answer 200 and still report a failure
        throw IoError(c.object_url, c.what + ": " + http_error_detail(r.status, r.reason, r.body));
      break;
    }
    std::lock_guard lock(mu_);
    done_ = true;
  }

  void abort() noexcept override {
    {
      std::lock_guard lock(mu_);
      if (done_) return;
      done_ = true;
    }
    try {
      HttpCall c = core_->call("DELETE", key_, {{"uploadId", upload_id_}}, "DELETE abort multipart upload");
      c.accept = {404, 405, 501};
      core_->client.perform(c);
    } catch (...) {
      // best effort: the bucket's lifecycle rules clean up what is left
    }
  }

 private:
  std::shared_ptr<const S3Core> core_;
  std::string key_, upload_id_;
  std::mutex mu_;
  std::map<int, std::string> parts_;
  std::map<int, std::uint64_t> sizes_;
  bool done_ = false;

  // Whether the object now at key_ is this upload's result: its size is the parts' total and
  // its ETag is S3's multipart ETag of these parts, hex(md5(md5(part 1) || ...)) + "-<count>".
  // Some S3-compatible servers give a completed upload the plain MD5 of its bytes instead: for
  // those (an ETag without "-"), every part's range is read back and its MD5 compared with the
  // part's ETag (this runs only after a lost answer, so the extra reads are rare).
  bool completed_by_us() {
    std::map<int, std::string> parts;
    std::map<int, std::uint64_t> sizes;
    {
      std::lock_guard lock(mu_);
      parts = parts_;
      sizes = sizes_;
    }
    const auto unquoted = [](std::string etag) {
      etag.erase(std::remove(etag.begin(), etag.end(), '"'), etag.end());
      return etag;
    };
    std::uint64_t total = 0;
    for (const auto& [number, size] : sizes) total += size;
    std::string md5s;
    for (const auto& [number, etag] : parts) {
      const std::string hex = unquoted(etag);
      if (hex.size() != 32) return false;
      for (std::size_t i = 0; i < 32; i += 2) {
        const auto byte = parse_hex_byte(hex.substr(i, 2));
        if (!byte) return false;
        md5s += static_cast<char>(*byte);
      }
    }
    HttpCall head = core_->call("HEAD", key_, {}, "HEAD");
    head.accept = {404};
    const HttpResponse h = core_->client.perform(head);
    const std::string etag = unquoted(h.header("etag"));
    if (h.status != 200 || h.header("content-length") != std::to_string(total)) return false;
    if (etag == md5_hex(md5s) + "-" + std::to_string(parts.size())) return true;
    if (etag.find('-') != std::string::npos) return false;
    std::uint64_t at = 0;
    std::string bytes;
    for (const auto& [number, size] : sizes) {
      bytes.assign(static_cast<std::size_t>(size), '\0');
      if (size) {
        HttpCall get = core_->call("GET", key_, {}, "GET part " + std::to_string(number) + " back");
        get.range = ByteRange{at, at + size - 1};
        get.dst = std::as_writable_bytes(std::span<char>(bytes.data(), bytes.size()));
        core_->client.perform(get);
      }
      if (md5_hex(bytes) != unquoted(parts[number])) return false;
      at += size;
    }
    return true;
  }
};

class S3Store final : public ObjectStore {
 public:
  explicit S3Store(std::shared_ptr<const S3Core> core) : core_(std::move(core)) {}

  std::string url(const std::string& key) const override { return core_->url_of(key); }
  bool writable() const override { return true; }
  bool can_list() const override { return true; }

  std::optional<std::uint64_t> stat(const std::string& key) const override {
    HttpCall c = core_->call("HEAD", key, {}, "HEAD");
    c.accept = {404};
    const HttpResponse r = core_->client.perform(c);
    if (r.status == 404) return std::nullopt;
    return size_or_throw(r.header("content-length"), c.object_url, c.what);
  }

  void read(const std::string& key, std::uint64_t offset, std::span<std::byte> dst) const override {
    if (dst.empty()) return;
    const ByteRange range{offset, offset + dst.size() - 1};
    HttpCall c = core_->call("GET", key, {}, "GET bytes=" + std::to_string(range.first) + "-" + std::to_string(range.last));
    c.range = range;
    c.dst = dst;
    core_->client.perform(c);
  }

  std::optional<std::string> get(const std::string& key) const override {
    HttpCall c = core_->call("GET", key, {}, "GET");
    c.accept = {404};
    HttpResponse r = core_->client.perform(c);
    if (r.status == 404) return std::nullopt;
    return std::move(r.body);
  }

  std::vector<ObjectInfo> list(const std::string& prefix) const override {
    std::vector<ObjectInfo> out;
    std::string token;
    for (;;) {
      Query q{{"list-type", "2"}, {"prefix", prefix}};
      if (core_->list_page_size > 0) q.emplace_back("max-keys", std::to_string(core_->list_page_size));
      if (!token.empty()) q.emplace_back("continuation-token", token);
      HttpCall c = core_->call("GET", "", std::move(q), "LIST prefix '" + prefix + "'");
      c.object_url = url(prefix);
      const HttpResponse r = core_->client.perform(c);
      for (std::string_view item : xml_elements(r.body, "Contents")) {
        ObjectInfo info;
        info.key = xml_text(item, "Key").value_or("");
        info.size = size_or_throw(xml_text(item, "Size").value_or(""), c.object_url, c.what);
        out.push_back(std::move(info));
      }
      const bool truncated = xml_text(r.body, "IsTruncated").value_or("false") == "true";
      if (!truncated) break;
      std::string next = xml_text(r.body, "NextContinuationToken").value_or("");
      if (next.empty() || next == token)
        throw IoError(c.object_url, c.what + ": the listing is truncated but has no new continuation token");
      token = std::move(next);
    }
    std::sort(out.begin(), out.end(), [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
    return out;
  }

  void put(const std::string& key, std::span<const std::byte> data) const override {
    HttpCall c = core_->call("PUT", key, {}, "PUT (" + std::to_string(data.size()) + " bytes)", data,
                             {"Content-Type: application/octet-stream"});
    core_->client.perform(c);
  }

  std::unique_ptr<MultipartUpload> begin_upload(const std::string& key) const override {
    HttpCall c = core_->call("POST", key, {{"uploads", ""}}, "POST create multipart upload");
    const HttpResponse r = core_->client.perform(c);
    const std::string id = xml_text(r.body, "UploadId").value_or("");
    if (id.empty()) throw IoError(c.object_url, c.what + ": the answer has no UploadId");
    return std::make_unique<S3Upload>(core_, key, id);
  }

  void remove(const std::string& key) const override {
    HttpCall c = core_->call("DELETE", key, {}, "DELETE");
    c.accept = {404};
    core_->client.perform(c);
  }

 private:
  std::shared_ptr<const S3Core> core_;
};

// "https://host:port/base" -> {"https://host:port", "host:port" (default port dropped), "/base"}
struct Endpoint {
  std::string base, host, path;
};

Endpoint parse_endpoint(const std::string& endpoint) {
  const auto sep = endpoint.find("://");
  if (sep == std::string::npos)
    throw UsageError("endpoint '" + endpoint + "' must start with http:// or https://");
  const std::string scheme = endpoint.substr(0, sep);
  if (scheme != "http" && scheme != "https")
    throw UsageError("endpoint '" + endpoint + "' must start with http:// or https://");
  const auto slash = endpoint.find('/', sep + 3);
  Endpoint e;
  std::string authority = endpoint.substr(sep + 3, slash == std::string::npos ? std::string::npos : slash - sep - 3);
  if (authority.empty()) throw UsageError("endpoint '" + endpoint + "' has no host");
  e.base = scheme + "://" + authority;
  const std::string default_port = scheme == "https" ? ":443" : ":80";
  if (authority.size() > default_port.size() &&
      authority.compare(authority.size() - default_port.size(), default_port.size(), default_port) == 0)
    authority.resize(authority.size() - default_port.size());
  e.host = authority;
  if (slash != std::string::npos) {
    e.path = endpoint.substr(slash);
    while (!e.path.empty() && e.path.back() == '/') e.path.pop_back();
  }
  return e;
}

}  // namespace

ObjectStorePtr make_s3_store(Scheme scheme, const std::string& bucket, const RemoteOptions& options) {
  auto core = std::make_shared<S3Core>(options);
  core->bucket = bucket;
  core->list_page_size = options.list_page_size;
  if (scheme == Scheme::GS) {
    core->scheme = "gs";
    std::string endpoint = env_string("CKB_GS_ENDPOINT");
    if (endpoint.empty()) endpoint = "https://storage.googleapis.com";
    const Endpoint e = parse_endpoint(endpoint);
    core->base = e.base;
    core->host = e.host;
    core->path_prefix = e.path + "/" + bucket;
    core->region = "auto";
    GcsAuth auth = gcs_auth(options);
    core->bearer = std::move(auth.bearer);
    core->credentials = std::move(auth.hmac);
  } else {
    core->scheme = "s3";
    core->region = aws_region(options);
    core->credentials = aws_credentials(options);
    if (!options.endpoint.empty()) {
      const Endpoint e = parse_endpoint(options.endpoint);
      core->base = e.base;
      core->host = e.host;
      core->path_prefix = e.path + "/" + bucket;
    } else if (options.path_style || bucket.find('.') != std::string::npos) {
      core->host = "s3." + core->region + ".amazonaws.com";
      core->base = "https://" + core->host;
      core->path_prefix = "/" + bucket;
    } else {
      core->host = bucket + ".s3." + core->region + ".amazonaws.com";
      core->base = "https://" + core->host;
    }
  }
  return std::make_shared<S3Store>(std::move(core));
}

}  // namespace ckb::remote
