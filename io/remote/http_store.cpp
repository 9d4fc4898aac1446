// Read-only http(s) object store (see http_store.h).
#include "io/remote/http_store.h"

#include <cstdlib>

#include "core/errors.h"
#include "io/remote/credentials.h"
#include "io/remote/http_client.h"
#include "io/remote/text.h"

namespace ckb::remote {

namespace {

// The key as a URL path: bytes a URL cannot hold (controls, space, non-ASCII) percent-encoded,
// everything else (including existing %XX escapes and the query) as written.
std::string url_path(const std::string& key) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char ch : key) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7F || c == '"' || c == '<' || c == '>' || c == '\\' || c == '^' || c == '`' || c == '{' ||
        c == '|' || c == '}') {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += ch;
    }
  }
  return out;
}

class HttpStore final : public ObjectStore {
 public:
  HttpStore(Scheme scheme, const std::string& host, const RemoteOptions& options)
      : root_(std::string(scheme_name(scheme)) + "://" + host), bearer_(http_bearer(options, host)), client_(options) {}

  std::string url(const std::string& key) const override { return root_ + "/" + key; }
  bool writable() const override { return false; }
  bool can_list() const override { return false; }

  std::optional<std::uint64_t> stat(const std::string& key) const override {
    HttpCall head = call("HEAD", key, "HEAD");
    head.accept = {404, 400, 403, 405, 501};
    const HttpResponse r = client_.perform(head);
    if (r.status == 404) return std::nullopt;
    if (r.status >= 200 && r.status < 300) {
      if (auto size = parse_decimal(r.header("content-length"))) return size;
    }
    // HEAD refused (a URL signed for GET only, a server without HEAD) or sizeless: ask for one byte
    HttpCall probe = call("GET", key, "GET bytes=0-0");
    probe.range = ByteRange{0, 0};
    probe.headers_only = true;
    probe.accept = {404, 416};
    const HttpResponse p = client_.perform(probe);
    if (p.status == 404) return std::nullopt;
    const std::string content_range = p.header("content-range");  // "bytes 0-0/1234" or "bytes */0"
    if (const auto slash = content_range.rfind('/'); slash != std::string::npos) {
      if (auto size = parse_decimal(content_range.substr(slash + 1))) return size;
    }
    if (p.status == 200) {
      if (auto size = parse_decimal(p.header("content-length"))) return size;
    }
    throw IoError(url(key), "HEAD / GET bytes=0-0: the server tells no size (HTTP " + std::to_string(p.status) +
                                ", no Content-Range or Content-Length)");
  }

  void read(const std::string& key, std::uint64_t offset, std::span<std::byte> dst) const override {
    if (dst.empty()) return;
    const ByteRange range{offset, offset + dst.size() - 1};
    HttpCall c = call("GET", key, "GET bytes=" + std::to_string(range.first) + "-" + std::to_string(range.last));
    c.range = range;
    c.dst = dst;
    client_.perform(c);
  }

  std::optional<std::string> get(const std::string& key) const override {
    HttpCall c = call("GET", key, "GET");
    c.accept = {404};
    HttpResponse r = client_.perform(c);
    if (r.status == 404) return std::nullopt;
    return std::move(r.body);
  }

  std::vector<ObjectInfo> list(const std::string& prefix) const override {
    throw UsageError("cannot list " + url(prefix) + ": http(s) URLs name single files (list needs s3:// or gs://)");
  }
  void put(const std::string& key, std::span<const std::byte>) const override { read_only(key); }
  std::unique_ptr<MultipartUpload> begin_upload(const std::string& key) const override { read_only(key); }
  void remove(const std::string& key) const override { read_only(key); }

 private:
  [[noreturn]] void read_only(const std::string& key) const {
    throw UsageError("cannot write " + url(key) + ": http(s) URLs are read-only (write to s3:// or gs://)");
  }

  HttpCall call(const std::string& method, const std::string& key, std::string what) const {
    HttpCall c;
    c.method = method;
    c.object_url = url(key);
    c.what = std::move(what);
    c.follow_redirects = true;
    c.build = [this, target = root_ + "/" + url_path(key)](const std::optional<ByteRange>& range) {
      HttpRequest r;
      r.url = target;
      if (!bearer_.empty()) r.headers.push_back("Authorization: Bearer " + bearer_);
      if (range) r.headers.push_back("Range: bytes=" + std::to_string(range->first) + "-" + std::to_string(range->last));
      return r;
    };
    return c;
  }

  std::string root_;
  std::string bearer_;
  HttpClient client_;
};

}  // namespace

ObjectStorePtr make_http_store(Scheme scheme, const std::string& host, const RemoteOptions& options) {
  return std::make_shared<HttpStore>(scheme, host, options);
}

}  // namespace ckb::remote
