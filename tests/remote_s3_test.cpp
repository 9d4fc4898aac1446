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

class RemoteS3 : public ::testing::Test {
 protected:
  void SetUp() override {
    test::s3_credentials_env();
    store_ = open_store("s3://" + test::s3().bucket, test::s3_options(test::s3().endpoint));
  }
  ObjectStorePtr store_;
};

TEST_F(RemoteS3, PutGetStatRangedReadRemove) {
  const std::string data = test::pattern(100000, 1);
  const std::string key = "round/trip/a b+c=&\xc3\xa9$.bin";  // encoded in the path and in the signature
  store_->put(key, test::bytes_of_string(data));
  EXPECT_EQ(store_->url(key), "s3://ckb-test/" + key);
  ASSERT_EQ(store_->stat(key), std::optional<std::uint64_t>(100000));
  const auto whole = store_->get(key);
  ASSERT_TRUE(whole.has_value());
  EXPECT_EQ(test::sha256_of(*whole), test::sha256_of(data));
  EXPECT_EQ(test::read_range(*store_, key, 0, 8), data.substr(0, 8));
  EXPECT_EQ(test::read_range(*store_, key, 12345, 54321), data.substr(12345, 54321));
  EXPECT_EQ(test::read_range(*store_, key, 99990, 10), data.substr(99990, 10));
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
  store_->put("errors/short.bin", test::bytes_of_string(std::string("abc")));
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
    store->put(key, test::bytes_of_string(test::pattern(static_cast<std::size_t>(i), 3)));
    expected.push_back(key);
  }
  store->put("listing-other/x", test::bytes_of_string(std::string("x")));
  store->put("listin", test::bytes_of_string(std::string("y")));
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
  const std::string p1 = test::pattern(5 << 20, 11), p2 = test::pattern(5 << 20, 12), p3 = test::pattern(777777, 13);
  const std::string key = "multipart/three-parts.bin";
  auto upload = store_->begin_upload(key);
  std::thread t3([&] { upload->upload_part(3, test::bytes_of_string(p3)); });
  std::thread t1([&] { upload->upload_part(1, test::bytes_of_string(p1)); });
  t3.join();
  t1.join();
  upload->upload_part(2, test::bytes_of_string(p2));
  EXPECT_FALSE(store_->stat(key).has_value());  // nothing visible before complete()
  upload->complete();
  upload.reset();
  ASSERT_EQ(store_->stat(key), std::optional<std::uint64_t>(p1.size() + p2.size() + p3.size()));
  EXPECT_EQ(test::sha256_of(store_->get(key).value()), test::sha256_of(p1 + p2 + p3));
  EXPECT_EQ(test::read_range(*store_, key, (5 << 20) - 4, 8), p1.substr(p1.size() - 4) + p2.substr(0, 4));
}

TEST_F(RemoteS3, AbortedOrAbandonedUploadLeavesNothing) {
  {
    auto upload = store_->begin_upload("abandoned/object.bin");
    upload->upload_part(1, test::bytes_of_string(test::pattern(1000, 5)));
  }  // destroyed uncompleted: aborted
  auto upload = store_->begin_upload("aborted/object.bin");
  upload->upload_part(1, test::bytes_of_string(test::pattern(1000, 6)));
  upload->abort();
  EXPECT_THROW(upload->complete(), UsageError);
  EXPECT_EQ(store_->list("abandoned/").size(), 0u);
  EXPECT_EQ(store_->list("aborted/").size(), 0u);
  EXPECT_FALSE(store_->stat("aborted/object.bin").has_value());
}

TEST_F(RemoteS3, CompleteWithAGapIsRefused) {
  auto upload = store_->begin_upload("gap/object.bin");
  upload->upload_part(1, test::bytes_of_string(test::pattern(100, 1)));
  upload->upload_part(3, test::bytes_of_string(test::pattern(100, 3)));
  try {
    upload->complete();
    FAIL() << "no error";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("part 2 is missing"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(store_->stat("gap/object.bin").has_value());
}

TEST_F(RemoteS3, WrongSecretIsRefusedWithSignatureDoesNotMatch) {
  store_->put("auth/object.bin", test::bytes_of_string(std::string("secret bytes")));
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
  store->put("token/object.bin", test::bytes_of_string(std::string("with a session token")));
  EXPECT_EQ(store->get("token/object.bin").value(), "with a session token");
  ::unsetenv("AWS_SESSION_TOKEN");
}

// gs:// speaks the same dialect; with GCS HMAC keys it signs with SigV4 for region "auto"
// (the server's check recomputes that signature).
TEST_F(RemoteS3, GsWithHmacKeysAgainstAnS3CompatibleEndpoint) {
  ::setenv("CKB_GS_ENDPOINT", test::s3().endpoint.c_str(), 1);
  ::setenv("GS_ACCESS_KEY_ID", "CKBTESTKEY", 1);
  ::setenv("GS_SECRET_ACCESS_KEY", "ckb-test-secret/+=", 1);
  ::unsetenv("GOOGLE_OAUTH_ACCESS_TOKEN");
  ::unsetenv("CKB_GS_TOKEN_COMMAND");
  const auto gs = open_store("gs://ckb-test", test::s3_options(""));
  EXPECT_EQ(gs->url("gcs/a.bin"), "gs://ckb-test/gcs/a.bin");
  gs->put("gcs/a.bin", test::bytes_of_string("via the GCS dialect"));
  EXPECT_EQ(gs->get("gcs/a.bin").value(), "via the GCS dialect");
  EXPECT_EQ(store_->get("gcs/a.bin").value(), "via the GCS dialect");  // the same bucket through s3://
  ASSERT_EQ(gs->list("gcs/").size(), 1u);
  ::setenv("GS_SECRET_ACCESS_KEY", "wrong", 1);
  const auto wrong = open_store("gs://ckb-test", test::s3_options(""));
  try {
    wrong->stat("gcs/a.bin");
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_EQ(e.path(), "gs://ckb-test/gcs/a.bin");
    EXPECT_NE(e.detail().find("HEAD: HTTP 403"), std::string::npos) << e.what();
  }
  ::unsetenv("CKB_GS_ENDPOINT");
  ::unsetenv("GS_ACCESS_KEY_ID");
  ::unsetenv("GS_SECRET_ACCESS_KEY");
}

TEST_F(RemoteS3, OpenRemoteSharesOneStorePerBucket) {
  set_default_options(test::s3_options(test::s3().endpoint));
  const RemoteLocation a = open_remote("s3://ckb-test/x/y.bin");
  const RemoteLocation b = open_remote("s3://ckb-test/z");
  EXPECT_EQ(a.store.get(), b.store.get());
  EXPECT_EQ(a.key, "x/y.bin");
  a.store->put(a.key, test::bytes_of_string(std::string("shared")));
  EXPECT_EQ(b.store->get("x/y.bin").value(), "shared");
  EXPECT_THROW(open_remote("ftp://host/x"), UsageError);
  EXPECT_TRUE(is_remote_url("gs://b/k"));
  EXPECT_FALSE(is_remote_url("/local/path"));
}

}  // namespace
}  // namespace ckb::remote
