// libcurl-based HTTP with a handle pool, timeouts and retries (see http_client.h).
#include "io/remote/http_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

#include "core/cancel.h"
#include "core/errors.h"
#include "io/remote/text.h"
#include "io/remote/transfer_stats.h"
#include "io/remote/xml_text.h"

namespace ckb::remote {

namespace {

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) throw IoError("libcurl", "curl_global_init failed");
  });
}

bool transient(CURLcode rc) {
  switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_SEND_FAIL_REWIND:
      return true;
    default:
      return false;
  }
}

bool retryable_status(long status) { return status == 429 || status == 408 || (status >= 500 && status <= 599); }

constexpr std::size_t kMaxErrorBody = 64 * 1024;

// State of one attempt, shared with libcurl's callbacks.
struct Transfer {
  CURL* curl = nullptr;
  const HttpCall* call = nullptr;
  HttpResponse* response = nullptr;
  std::uint64_t* filled = nullptr;   // bytes of call->dst done (across attempts)
  std::uint64_t skip = 0;            // a 200 answer to a ranged GET: bytes to drop first
  bool skip_set = false;
  bool stopped_on_purpose = false;   // the write callback ended the transfer: we had what we wanted
  std::uint64_t received = 0;
  // the no-progress watchdog
  double timeout_s = 0;
  std::chrono::steady_clock::time_point last_progress;
  curl_off_t last_down = -1, last_up = -1;
  bool stalled = false;
  bool cancelled = false;  // the run this request is for was cancelled (core/cancel.h)
};

// libcurl's progress callback: aborts the transfer when no byte has moved either way for
// timeout_s (libcurl's own low-speed check averages over a window of seconds, so it reacts
// late after a burst).
int on_progress(void* user, curl_off_t, curl_off_t down, curl_off_t, curl_off_t up) {
  auto& t = *static_cast<Transfer*>(user);
  if (const CancelToken* c = current_cancel(); c && c->cancelled()) {
    t.cancelled = true;
    return 1;
  }
  const auto now = std::chrono::steady_clock::now();
  if (down != t.last_down || up != t.last_up) {
    t.last_down = down;
    t.last_up = up;
    t.last_progress = now;
    return 0;
  }
  if (std::chrono::duration<double>(now - t.last_progress).count() > t.timeout_s) {
    t.stalled = true;
    return 1;
  }
  return 0;
}

long current_status(Transfer& t) {
  long status = 0;
  curl_easy_getinfo(t.curl, CURLINFO_RESPONSE_CODE, &status);
  return status;
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto& t = *static_cast<Transfer*>(user);
  const std::string_view line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) {  // a new response (redirect, 100 Continue): start over
    t.response->headers.clear();
    const auto sp1 = line.find(' ');
    const auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    t.response->reason = sp2 == std::string_view::npos ? "" : trim_space(line.substr(sp2 + 1));
    return size * n;
  }
  const auto colon = line.find(':');
  if (colon != std::string_view::npos)
    t.response->headers.emplace_back(ascii_lower(trim_space(line.substr(0, colon))), trim_space(line.substr(colon + 1)));
  return size * n;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto& t = *static_cast<Transfer*>(user);
  const std::size_t len = size * n;
  const HttpCall& call = *t.call;
  const long status = current_status(t);
  const bool ok = status >= 200 && status < 300;
  if (ok) detail::stat_counters().bytes_read += len;
  if (ok && call.headers_only) {
    if (status == 206 && len <= 16) return len;  // the probe's byte: keep the connection
    t.stopped_on_purpose = true;                 // a whole object coming: stop it
    return 0;
  }
  if (ok && call.range && !call.dst.empty()) {
    if (!t.skip_set) {
      // 206: the bytes asked for; 200: the server ignored Range and sends the whole object
      t.skip = status == 206 ? 0 : call.range->first + *t.filled;
      t.skip_set = true;
    }
    std::size_t pos = 0;
    if (t.skip) {
      const std::size_t drop = static_cast<std::size_t>(std::min<std::uint64_t>(t.skip, len));
      t.skip -= drop;
      pos = drop;
    }
    const std::uint64_t want = call.dst.size() - *t.filled;
    const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(want, len - pos));
    std::memcpy(call.dst.data() + *t.filled, data + pos, take);
    *t.filled += take;
    t.received += take;
    if (*t.filled == call.dst.size() && pos + take < len) {  // more than asked for: done
      t.stopped_on_purpose = true;
      return 0;
    }
    return len;
  }
  if (ok || t.response->body.size() < kMaxErrorBody) t.response->body.append(data, len);
  return len;
}

}  // namespace

std::string HttpResponse::header(std::string_view name) const {
  const std::string key = ascii_lower(name);
  for (const auto& [k, v] : headers)
    if (k == key) return v;
  return "";
}

std::string http_error_detail(long status, std::string_view reason, std::string_view body) {
  std::string out = "HTTP " + std::to_string(status);
  const auto code = xml_text(body, "Code");
  if (code && !code->empty()) {
    out += ' ' + *code;
    if (const auto message = xml_text(body, "Message"); message && !message->empty()) out += ": " + *message;
  } else if (!reason.empty()) {
    out += ' ';
    out += reason;
  }
  return out;
}

struct HttpClient::Pool {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<CURL*> idle;
  int created = 0;
  int max = 1;

  CURL* acquire() {
    std::unique_lock lock(mu);
    // In slices: the connections may all be held by requests of another run, stalled.
    while (!cv.wait_for(lock, std::chrono::milliseconds(50), [&] { return !idle.empty() || created < max; }))
      throw_if_current_cancelled();
    if (!idle.empty()) {
      CURL* h = idle.back();
      idle.pop_back();
      return h;
    }
    CURL* h = curl_easy_init();
    if (!h) throw IoError("libcurl", "curl_easy_init failed");
    ++created;
    return h;
  }
  void release(CURL* h) {
    curl_easy_reset(h);  // keeps the live connections and the DNS cache
    {
      std::lock_guard lock(mu);
      idle.push_back(h);
    }
    cv.notify_one();
  }
  ~Pool() {
    for (CURL* h : idle) curl_easy_cleanup(h);
  }
};

HttpClient::HttpClient(const RemoteOptions& options) : options_(options), pool_(std::make_unique<Pool>()) {
  global_init();
  pool_->max = std::max(1, options.parallel_requests);
}

HttpClient::~HttpClient() = default;

namespace {

struct HandleLease {
  HttpClient::Pool* pool;
  CURL* h;
  ~HandleLease() { pool->release(h); }
};

struct HeaderList {
  curl_slist* list = nullptr;
  ~HeaderList() { curl_slist_free_all(list); }
  void add(const std::string& h) {
    curl_slist* next = curl_slist_append(list, h.c_str());
    if (!next) throw std::bad_alloc();
    list = next;
  }
};

double backoff_seconds(const RemoteOptions& options, int retry, const HttpResponse& last) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  const double cap = 20.0;
  double delay = std::min(cap, options.retry_base_s * std::ldexp(1.0, retry - 1));
  delay *= std::uniform_real_distribution<double>(0.5, 1.0)(rng);
  // a server that says when to come back (429 / 503 Retry-After: seconds) is believed, within the cap
  if (const std::string after = last.header("retry-after"); !after.empty()) {
    char* end = nullptr;
    const double s = std::strtod(after.c_str(), &end);
    if (end && *end == '\0' && s > delay) delay = std::min(cap, s);
  }
  return delay;
}

}  // namespace

void HttpClient::wait_before_retry(int retry, const HttpResponse& last) const {
  // In slices, so that a cancelled run stops waiting within one.
  using clock = std::chrono::steady_clock;
  const auto until =
      clock::now() + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(backoff_seconds(options_, retry, last)));
  for (auto now = clock::now(); now < until; now = clock::now()) {
    throw_if_current_cancelled();
    std::this_thread::sleep_for(std::min<clock::duration>(until - now, std::chrono::milliseconds(50)));
  }
  throw_if_current_cancelled();
}

HttpResponse HttpClient::perform(const HttpCall& call) const {
  const int attempts = std::max(1, options_.retries);
  std::uint64_t filled = 0;
  std::string last_error;
  HttpResponse last;
  auto& stats = detail::stat_counters();
  for (int attempt = 1; attempt <= attempts; ++attempt) {
    if (attempt > 1) {
      ++stats.retries;
      wait_before_retry(attempt - 1, last);
    }
    throw_if_current_cancelled();
    std::optional<ByteRange> range = call.range;
    if (range && !call.dst.empty()) range->first += filled;
    const HttpRequest request = call.build(range);

    HttpResponse response;
    Transfer t;
    t.call = &call;
    t.response = &response;
    t.filled = &filled;
    HeaderList headers;
    for (const auto& h : request.headers) headers.add(h);
    headers.add("Expect:");  // no 100-continue round trip before bodies

    HandleLease lease{pool_.get(), pool_->acquire()};
    CURL* h = lease.h;
    t.curl = h;
    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(h, CURLOPT_URL, request.url.c_str());
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.list);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "ckptbridge");
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    t.timeout_s = std::max(0.1, options_.timeout_s);
    t.last_progress = std::chrono::steady_clock::now();
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(std::min(t.timeout_s, 30.0) * 1000));
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &t);
    if (!options_.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, options_.ca_file.c_str());
    if (call.follow_redirects) {
      curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
      curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
      // never from https down to http; curl drops Authorization when the host changes
      curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, request.url.rfind("https:", 0) == 0 ? "https" : "http,https");
    }
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
    if (call.method == "HEAD") {
      curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (call.method == "GET") {
      curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else {
      if (call.method != "POST") curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, call.method.c_str());
      if (call.method == "PUT" || call.method == "POST") {
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(call.body.size()));
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, call.body.empty() ? "" : reinterpret_cast<const char*>(call.body.data()));
      }
    }

    const CURLcode rc = curl_easy_perform(h);
    ++stats.requests;
    curl_off_t uploaded = 0;
    curl_easy_getinfo(h, CURLINFO_SIZE_UPLOAD_T, &uploaded);
    stats.bytes_written += static_cast<std::uint64_t>(uploaded);
    curl_off_t downloaded = 0;
    curl_easy_getinfo(h, CURLINFO_SIZE_DOWNLOAD_T, &downloaded);
    for (auto seen = stats.largest_response.load(); static_cast<std::uint64_t>(downloaded) > seen &&
                                                    !stats.largest_response.compare_exchange_weak(seen, downloaded);) {
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &response.status);

    if (t.cancelled) throw_if_current_cancelled();
    if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && t.stopped_on_purpose)) {
      std::string detail = curl_easy_strerror(rc);
      if (t.stalled) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "no progress for %g s", t.timeout_s);
        detail = buf;
      } else if (errbuf[0]) {
        detail += std::string(" (") + errbuf + ")";
      }
      if (!transient(rc) && !t.stalled) throw IoError(call.object_url, call.what + ": " + detail);
      last_error = detail;
      last = std::move(response);
      continue;
    }
    const long status = response.status;
    response.attempts = attempt;
    if (status >= 200 && status < 300) {
      if (call.range && !call.dst.empty() && filled < call.dst.size()) {
        last_error = "short answer: " + std::to_string(filled) + " of " + std::to_string(call.dst.size()) + " bytes";
        last = std::move(response);
        continue;
      }
      return response;
    }
    if (std::find(call.accept.begin(), call.accept.end(), status) != call.accept.end()) return response;
    if (!retryable_status(status)) {
      std::string detail = http_error_detail(status, response.reason, response.body);
      // S3 names the bucket's region when asked in another one
      if (const std::string region = response.header("x-amz-bucket-region"); !region.empty() && (status == 301 || status == 400))
        detail += " (the bucket is in region " + region + ": set AWS_REGION=" + region + ")";
      throw IoError(call.object_url, call.what + ": " + detail);
    }
    last_error = http_error_detail(status, response.reason, response.body);
    last = std::move(response);
  }
  throw IoError(call.object_url, call.what + ": " + last_error + " (gave up after " + std::to_string(attempts) +
                                     (attempts == 1 ? " attempt)" : " attempts)"));
}

}  // namespace ckb::remote
