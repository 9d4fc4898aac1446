// http:// and https:// against a real local nginx (started by tests/remote_servers.cpp, https
// with a self-signed certificate): sizes from HEAD or, when HEAD is refused, from a one-byte
// GET; ranged reads; redirects; the bearer token; 404 / 401 naming the URL and the status;
// read-only refusals. The access log proves what the server sent.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "core/errors.h"
#include "core/hash.h"
#include "io/remote/object_store.h"
#include "remote_servers.h"
#include "test_util.h"

namespace ckb::remote {
namespace {

RemoteOptions web_options() {
  RemoteOptions o;
  o.ca_file = test::web().ca_file;
  o.retry_base_s = 0.01;
  o.timeout_s = 20;
  return o;
}

// The file `rel` under the web root with `data`.
void serve(const std::string& rel, const std::string& data) {
  const std::string path = test::web().root + "/" + rel;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  test::write_file(path, data);
}

TEST(RemoteHttp, HttpsSizeAndRangedReadsFetchOnlyWhatIsAsked) {
  const std::string data = test::pattern(300000, 1);
  serve("models/ranged.bin", data);
  const auto store = open_store(test::web().https_base, web_options());
  EXPECT_FALSE(store->writable());
  EXPECT_FALSE(store->can_list());
  EXPECT_EQ(store->url("models/ranged.bin"), test::web().https_base + "/models/ranged.bin");
  EXPECT_EQ(store->stat("models/ranged.bin"), std::optional<std::uint64_t>(300000));
  EXPECT_EQ(test::read_range(*store, "models/ranged.bin", 0, 8), data.substr(0, 8));
  EXPECT_EQ(test::read_range(*store, "models/ranged.bin", 123456, 100000), data.substr(123456, 100000));
  EXPECT_EQ(test::read_range(*store, "models/ranged.bin", 299999, 1), data.substr(299999, 1));
  EXPECT_EQ(store->get("models/ranged.bin").value(), data);
  const auto lines = test::access_log_lines("/models/ranged.bin", 5);
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[0], "HEAD /models/ranged.bin 200 0 -");
  EXPECT_EQ(lines[1], "GET /models/ranged.bin 206 8 bytes=0-7");
  EXPECT_EQ(lines[2], "GET /models/ranged.bin 206 100000 bytes=123456-223455");
  EXPECT_EQ(lines[3], "GET /models/ranged.bin 206 1 bytes=299999-299999");
  EXPECT_EQ(lines[4], "GET /models/ranged.bin 200 300000 -");
}

TEST(RemoteHttp, MissingFileIsNulloptOrAnIoErrorNamingUrlAnd404) {
  const auto store = open_store(test::web().http_base, web_options());
  EXPECT_FALSE(store->stat("nothing/here.bin").has_value());
  EXPECT_FALSE(store->get("nothing/here.bin").has_value());
  try {
    test::read_range(*store, "nothing/here.bin", 0, 8);
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_EQ(e.path(), test::web().http_base + "/nothing/here.bin");
    EXPECT_EQ(e.detail(), "GET bytes=0-7: HTTP 404 Not Found");
  }
}

TEST(RemoteHttp, BearerTokenIsSent) {
  serve("private/weights.bin", "private bytes");
  RemoteOptions o = web_options();
  const auto anonymous = open_store(test::web().https_base, o);
  try {
    anonymous->get("private/weights.bin");
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_EQ(e.path(), test::web().https_base + "/private/weights.bin");
    EXPECT_EQ(e.detail(), "GET: HTTP 401 Unauthorized");
  }
  o.bearer_token = "ckb-test-token";
  const auto with_token = open_store(test::web().https_base, o);
  EXPECT_EQ(with_token->get("private/weights.bin").value(), "private bytes");
  EXPECT_EQ(with_token->stat("private/weights.bin"), std::optional<std::uint64_t>(13));
  EXPECT_EQ(test::read_range(*with_token, "private/weights.bin", 8, 5), "bytes");
  ::setenv("CKB_HTTP_TOKEN", "ckb-test-token", 1);
  const auto from_env = open_store(test::web().http_base, web_options());
  ::unsetenv("CKB_HTTP_TOKEN");
  EXPECT_EQ(from_env->get("private/weights.bin").value(), "private bytes");
}

// gs:// with an OAuth token: the XML API path (endpoint/bucket/key) with Authorization: Bearer,
// here against nginx standing in for storage.googleapis.com (reads only).
TEST(RemoteHttp, GsBearerTokenIsSent) {
  serve("private/gs-object.bin", "gcs bytes");
  ::setenv("CKB_GS_ENDPOINT", test::web().https_base.c_str(), 1);
  ::setenv("GOOGLE_OAUTH_ACCESS_TOKEN", "ckb-test-token", 1);
  const auto gs = open_store("gs://private", web_options());
  ::unsetenv("GOOGLE_OAUTH_ACCESS_TOKEN");
  ::unsetenv("CKB_GS_ENDPOINT");
  EXPECT_EQ(gs->get("gs-object.bin").value(), "gcs bytes");
  EXPECT_EQ(gs->stat("gs-object.bin"), std::optional<std::uint64_t>(9));
  EXPECT_EQ(test::read_range(*gs, "gs-object.bin", 4, 5), "bytes");
}

TEST(RemoteHttp, RefusedHeadFallsBackToAOneByteGet) {
  const std::string data = test::pattern(50000, 2);
  serve("nohead/model.bin", data);
  const auto store = open_store(test::web().http_base, web_options());
  EXPECT_EQ(store->stat("nohead/model.bin"), std::optional<std::uint64_t>(50000));
  const auto lines = test::access_log_lines("/nohead/model.bin", 2);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "HEAD /nohead/model.bin 405 0 -");
  EXPECT_EQ(lines[1], "GET /nohead/model.bin 206 1 bytes=0-0");
  EXPECT_FALSE(store->stat("nohead/absent.bin").has_value());
}

TEST(RemoteHttp, RedirectsAreFollowed) {
  const std::string data = test::pattern(4096, 3);
  serve("target/file.bin", data);
  const auto store = open_store(test::web().https_base, web_options());
  EXPECT_EQ(store->stat("redirect/target/file.bin"), std::optional<std::uint64_t>(4096));
  EXPECT_EQ(test::read_range(*store, "redirect/target/file.bin", 1000, 24), data.substr(1000, 24));
}

// The token is not sent on to another host, and https is never followed down to http.
TEST(RemoteHttp, RedirectsKeepTheTokenAndTlsSafe) {
  serve("private/moved.bin", "moved bytes");
  RemoteOptions o = web_options();
  o.bearer_token = "ckb-test-token";
  o.retries = 1;
  const auto http = open_store(test::web().http_base, o);
  EXPECT_EQ(http->get("redirect/private/moved.bin").value(), "moved bytes");  // same host: token kept
  try {
    http->get("elsewhere/private/moved.bin");  // localhost is another host: no token, 401
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_EQ(e.path(), test::web().http_base + "/elsewhere/private/moved.bin");
    EXPECT_EQ(e.detail(), "GET: HTTP 401 Unauthorized");
  }
  const auto https = open_store(test::web().https_base, o);
  try {
    https->get("downgrade/private/moved.bin");
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_EQ(e.path(), test::web().https_base + "/downgrade/private/moved.bin");
    EXPECT_NE(e.detail().find("GET: "), std::string::npos) << e.what();
  }
  // nginx saw the same-host redirect's target (with the token) and the other host's (without);
  // the downgrade was never followed
  const auto lines = test::access_log_lines("GET /private/moved.bin", 2);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "GET /private/moved.bin 200 11 -");
  EXPECT_EQ(lines[1].substr(0, 27), "GET /private/moved.bin 401 ");
}

TEST(RemoteHttp, ReadOnlyAndNoListing) {
  const auto store = open_store(test::web().http_base, web_options());
  const std::string x = "x";
  const auto bytes = std::as_bytes(std::span<const char>(x.data(), 1));
  EXPECT_THROW(store->put("a", bytes), UsageError);
  EXPECT_THROW(store->begin_upload("a"), UsageError);
  EXPECT_THROW(store->remove("a"), UsageError);
  EXPECT_THROW(store->list(""), UsageError);
}

TEST(RemoteHttp, UntrustedCertificateIsRefused) {
  RemoteOptions o = web_options();
  o.ca_file.clear();  // the system's CAs do not know the test certificate
  o.retries = 2;
  const auto store = open_store(test::web().https_base, o);
  try {
    store->stat("models/ranged.bin");
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_EQ(e.path(), test::web().https_base + "/models/ranged.bin");
    EXPECT_NE(e.detail().find("HEAD: "), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ckb::remote
