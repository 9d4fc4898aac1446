// s3:// against a real local S3 server (s3rver behind an independent SigV4 check, started by
// tests/remote_servers.cpp): whole and ranged reads, listing across continuation pages,
// multipart uploads (parts out of order, in parallel; abort), deletes, and the errors a wrong
// key or secret gets.
#include <gtest/gtest.h>

#include <algorithm>
#include <thread>

#include "core/errors.h"
#include "core/hash.h"
#include "io/remote/object_store.h"
#include "remote_servers.h"
#include "test_util.h"

namespace ckb::remote {
namespace {

std::string pattern(std::size_t n, unsigned seed) {
  std::string s(n, '\0');
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& c : s) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

std::span<const std::byte> bytes(const std::string& s) { return std::as_bytes(std::span<const char>(s.data(), s.size())); }

std::string sha(const std::string& s) { return sha256_hex(bytes(s)); }

std::string read_range(const ObjectStore& store, const std::string& key, std::uint64_t offset, std::size_t n) {
  std::string out(n, '\0');
  store.read(key, offset, std::as_writable_bytes(std::span<char>(out.data(), out.size())));
  return out;
}

class RemoteS3 : public ::testing::Test {
 protected:
  void SetUp() override {
    test::s3_credentials_env();
    store_ = open_store("s3://" + test::s3().bucket, test::s3_options(test::s3().endpoint));
  }
  ObjectStorePtr store_;
};

TEST_F(RemoteS3, PutGetStatRangedReadRemove) {
  const std::string data = pattern(100000, 1);
  const std::string key = "round/trip/a b+c=&\xc3\xa9$.bin";  // encoded in the path and in the signature
  store_->put(key, bytes(data));
  EXPECT_EQ(store_->url(key), "s3://ckb-test/" + key);
  ASSERT_EQ(store_->stat(key), std::optional<std::uint64_t>(100000));
  const auto whole = store_->get(key);
  ASSERT_TRUE(whole.has_value());
  EXPECT_EQ(sha(*whole), sha(data));
  EXPECT_EQ(read_range(*store_, key, 0, 8), data.substr(0, 8));
  EXPECT_EQ(read_range(*store_, key, 12345, 54321), data.substr(12345, 54321));
  EXPECT_EQ(read_range(*store_, key, 99990, 10), data.substr(99990, 10));
  EXPECT_FALSE(store_->stat("round/trip/missing").has_value());
  EXPECT_FALSE(store_->get("round/trip/missing").has_value());
  store_->remove(key);
  EXPECT_FALSE(store_->stat(key).has_value());
  store_->remove(key);  // absent is fine
  // an empty object
  store_->put("round/empty", {});
  EXPECT_EQ(store_->stat("round/empty"), std::optional<std::uint64_t>(0));
  EXPECT_EQ(store_->get("round/empty").value(), "");
}

TEST_F(RemoteS3, ReadingMissingObjectOrPastTheEndNamesUrlAndStatus) {
  std::string buf(8, '\0');
  auto dst = std::as_writable_bytes(std::span<char>(buf.data(), buf.size()));
  try {
    store_->read("errors/missing.bin", 0, dst);
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_EQ(e.path(), "s3://ckb-test/errors/missing.bin");
    EXPECT_NE(e.detail().find("GET bytes=0-7: HTTP 404 NoSuchKey"), std::string::npos) << e.what();
  }
  store_->put("errors/short.bin", bytes(std::string("abc")));
  try {
    store_->read("errors/short.bin", 10, dst);
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_EQ(e.path(), "s3://ckb-test/errors/short.bin");
    EXPECT_NE(e.detail().find("GET bytes=10-17: HTTP 416"), std::string::npos) << e.what();
  }
}

TEST_F(RemoteS3, ListFollowsContinuationTokensInKeyOrder) {
  RemoteOptions o = test::s3_options(test::s3().endpoint);
  o.list_page_size = 7;
  const auto store = open_store("s3://ckb-test", o);
  std::vector<std::string> expected;
  for (int i = 0; i < 23; ++i) {
    const std::string key = "listing/item-" + std::to_string(1000 + (i * 7) % 23) + ".bin";
    store->put(key, bytes(pattern(static_cast<std::size_t>(i), 3)));
    expected.push_back(key);
  }
  store->put("listing-other/x", bytes(std::string("x")));
  store->put("listin", bytes(std::string("y")));
  std::sort(expected.begin(), expected.end());
  reset_transfer_stats();
  const auto listed = store->list("listing/");
  EXPECT_EQ(transfer_stats().requests, 4u);  // 23 keys, 7 per page
  ASSERT_EQ(listed.size(), expected.size());
  for (std::size_t i = 0; i < listed.size(); ++i) {
    EXPECT_EQ(listed[i].key, expected[i]);
    const int n = std::stoi(expected[i].substr(13, 4)) - 1000;
    // item-(1000 + (i*7)%23) was written with i bytes: invert (i*7)%23 = n
    int written = 0;
    while ((written * 7) % 23 != n) ++written;
    EXPECT_EQ(listed[i].size, static_cast<std::uint64_t>(written)) << listed[i].key;
  }
  EXPECT_EQ(store->list("nothing-here/").size(), 0u);
}

TEST_F(RemoteS3, MultipartUploadInAnyOrderBecomesVisibleAtComplete) {
  const std::string p1 = pattern(5 << 20, 11), p2 = pattern(5 << 20, 12), p3 = pattern(777777, 13);
  const std::string key = "multipart/three-parts.bin";
  auto upload = store_->begin_upload(key);
  std::thread t3([&] { upload->upload_part(3, bytes(p3)); });
  std::thread t1([&] { upload->upload_part(1, bytes(p1)); });
  t3.join();
  t1.join();
  upload->upload_part(2, bytes(p2));
  EXPECT_FALSE(store_->stat(key).has_value());  // nothing visible before complete()
  upload->complete();
  upload.reset();
  ASSERT_EQ(store_->stat(key), std::optional<std::uint64_t>(p1.size() + p2.size() + p3.size()));
  EXPECT_EQ(sha(store_->get(key).value()), sha(p1 + p2 + p3));
  EXPECT_EQ(read_range(*store_, key, (5 << 20) - 4, 8), p1.substr(p1.size() - 4) + p2.substr(0, 4));
}

TEST_F(RemoteS3, AbortedOrAbandonedUploadLeavesNothing) {
  {
    auto upload = store_->begin_upload("abandoned/object.bin");
    upload->upload_part(1, bytes(pattern(1000, 5)));
  }  // destroyed uncompleted: aborted
  auto upload = store_->begin_upload("aborted/object.bin");
  upload->upload_part(1, bytes(pattern(1000, 6)));
  upload->abort();
  EXPECT_THROW(upload->complete(), UsageError);
  EXPECT_EQ(store_->list("abandoned/").size(), 0u);
  EXPECT_EQ(store_->list("aborted/").size(), 0u);
  EXPECT_FALSE(store_->stat("aborted/object.bin").has_value());
}

TEST_F(RemoteS3, CompleteWithAGapIsRefused) {
  auto upload = store_->begin_upload("gap/object.bin");
  upload->upload_part(1, bytes(pattern(100, 1)));
  upload->upload_part(3, bytes(pattern(100, 3)));
  try {
    upload->complete();
    FAIL() << "no error";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("part 2 is missing"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(store_->stat("gap/object.bin").has_value());
}

TEST_F(RemoteS3, WrongSecretIsRefusedWithSignatureDoesNotMatch) {
  store_->put("auth/object.bin", bytes(std::string("secret bytes")));
  test::s3_credentials_env("CKBTESTKEY", "not-the-secret");
  const auto bad = open_store("s3://ckb-test", test::s3_options(test::s3().endpoint));
  try {
    bad->get("auth/object.bin");
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_EQ(e.path(), "s3://ckb-test/auth/object.bin");
    EXPECT_NE(e.detail().find("GET: HTTP 403 SignatureDoesNotMatch"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("not-the-secret"), std::string::npos) << "a credential in the message";
  }
  test::s3_credentials_env("NOSUCHKEY", "whatever");
  const auto unknown = open_store("s3://ckb-test", test::s3_options(test::s3().endpoint));
  try {
    unknown->stat("auth/object.bin");
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_NE(e.detail().find("HEAD: HTTP 403"), std::string::npos) << e.what();
  }
  test::s3_credentials_env();
}

TEST_F(RemoteS3, SessionTokenIsSigned) {
  ::setenv("AWS_SESSION_TOKEN", "session-token-value", 1);
  const auto store = open_store("s3://ckb-test", test::s3_options(test::s3().endpoint));
  store->put("token/object.bin", bytes(std::string("with a session token")));
  EXPECT_EQ(store->get("token/object.bin").value(), "with a session token");
  ::unsetenv("AWS_SESSION_TOKEN");
}

TEST_F(RemoteS3, OpenRemoteSharesOneStorePerBucket) {
  set_default_options(test::s3_options(test::s3().endpoint));
  const RemoteLocation a = open_remote("s3://ckb-test/x/y.bin");
  const RemoteLocation b = open_remote("s3://ckb-test/z");
  EXPECT_EQ(a.store.get(), b.store.get());
  EXPECT_EQ(a.key, "x/y.bin");
  a.store->put(a.key, bytes(std::string("shared")));
  EXPECT_EQ(b.store->get("x/y.bin").value(), "shared");
  EXPECT_THROW(open_remote("ftp://host/x"), UsageError);
  EXPECT_TRUE(is_remote_url("gs://b/k"));
  EXPECT_FALSE(is_remote_url("/local/path"));
}

}  // namespace
}  // namespace ckb::remote
