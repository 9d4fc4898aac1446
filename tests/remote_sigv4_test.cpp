// SigV4 against the example values AWS publishes (the S3 "Signature Calculations" examples with
// the example key AKIAIOSFODNN7EXAMPLE, and the general SigV4 IAM ListUsers example), plus
// the URL, percent-encoding, XML and credential-file helpers of io/remote.
#include <gtest/gtest.h>

#include <cstdlib>

#include "core/errors.h"
#include "io/remote/credentials.h"
#include "io/remote/sigv4.h"
#include "io/remote/url.h"
#include "io/remote/xml_text.h"
#include "test_util.h"

namespace ckb::remote {
namespace {

const SigV4Credentials kS3Example{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""};
const char* kEmptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

std::string signature_of(const std::string& authorization) {
  return authorization.substr(authorization.find("Signature=") + 10);
}

// AWS S3 docs, "Example: GET Object": the first 10 bytes of test.txt.
TEST(RemoteSigV4, AwsExampleGetObjectWithRange) {
  SigV4Request r;
  r.method = "GET";
  r.canonical_uri = "/test.txt";
  r.headers = {{"Host", "examplebucket.s3.amazonaws.com"},
               {"Range", "bytes=0-9"},
               {"x-amz-content-sha256", kEmptyHash},
               {"x-amz-date", "20130524T000000Z"}};
  r.payload_hash = kEmptyHash;
  const std::string auth = authorization(r, kS3Example, "20130524T000000Z", "us-east-1", "s3");
  EXPECT_EQ(auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

// AWS S3 docs, "Example: PUT Object": key "test$file.text" ('$' percent-encoded in the
// canonical URI), payload "Welcome to Amazon S3.".
TEST(RemoteSigV4, AwsExamplePutObject) {
  const std::string payload = "Welcome to Amazon S3.";
  EXPECT_EQ(sha256_hex(payload), "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  SigV4Request r;
  r.method = "PUT";
  r.canonical_uri = "/" + uri_encode("test$file.text", true);
  EXPECT_EQ(r.canonical_uri, "/test%24file.text");
  r.headers = {{"Date", "Fri, 24 May 2013 00:00:00 GMT"},
               {"Host", "examplebucket.s3.amazonaws.com"},
               {"x-amz-date", "20130524T000000Z"},
               {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
               {"x-amz-content-sha256", sha256_hex(payload)}};
  r.payload_hash = sha256_hex(payload);
  EXPECT_EQ(signature_of(authorization(r, kS3Example, "20130524T000000Z", "us-east-1", "s3")),
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

// AWS S3 docs, "Example: GET Bucket Lifecycle" (a query parameter without a value).
TEST(RemoteSigV4, AwsExampleGetBucketLifecycle) {
  SigV4Request r;
  r.method = "GET";
  r.canonical_uri = "/";
  r.query = {{"lifecycle", ""}};
  r.headers = {{"Host", "examplebucket.s3.amazonaws.com"},
               {"x-amz-date", "20130524T000000Z"},
               {"x-amz-content-sha256", kEmptyHash}};
  r.payload_hash = kEmptyHash;
  EXPECT_EQ(signature_of(authorization(r, kS3Example, "20130524T000000Z", "us-east-1", "s3")),
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}

// AWS S3 docs, "Example: Get Bucket (List Objects)": max-keys=2&prefix=J.
TEST(RemoteSigV4, AwsExampleListObjects) {
  SigV4Request r;
  r.method = "GET";
  r.canonical_uri = "/";
  r.query = {{"prefix", "J"}, {"max-keys", "2"}};  // sorted by the signer
  r.headers = {{"Host", "examplebucket.s3.amazonaws.com"},
               {"x-amz-date", "20130524T000000Z"},
               {"x-amz-content-sha256", kEmptyHash}};
  r.payload_hash = kEmptyHash;
  EXPECT_EQ(canonical_query(r.query), "max-keys=2&prefix=J");
  EXPECT_EQ(signature_of(authorization(r, kS3Example, "20130524T000000Z", "us-east-1", "s3")),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

// AWS General Reference, SigV4 tasks 1-3: GET https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08
TEST(RemoteSigV4, AwsExampleIamListUsers) {
  const std::string secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
  EXPECT_EQ(to_hex(signing_key(secret, "20150830", "us-east-1", "iam")),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
  SigV4Request r;
  r.method = "GET";
  r.canonical_uri = "/";
  r.query = {{"Action", "ListUsers"}, {"Version", "2010-05-08"}};
  r.headers = {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"},
               {"Host", "iam.amazonaws.com"},
               {"X-Amz-Date", "20150830T123600Z"}};
  r.payload_hash = kEmptyHash;
  EXPECT_EQ(sha256_hex(canonical_request(r)), "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59");
  const SigV4Credentials c{"AKIDEXAMPLE", secret, ""};
  EXPECT_EQ(authorization(r, c, "20150830T123600Z", "us-east-1", "iam"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-date, "
            "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
}

TEST(RemoteSigV4, UriEncodingFollowsTheSpec) {
  EXPECT_EQ(uri_encode("a b/c~d_e-f.g", true), "a%20b/c~d_e-f.g");
  EXPECT_EQ(uri_encode("a b/c", false), "a%20b%2Fc");
  EXPECT_EQ(uri_encode("x+y=z&\xc3\xa9", false), "x%2By%3Dz%26%C3%A9");
  EXPECT_EQ(canonical_query({{"b", "2"}, {"a", "x/y z"}, {"a", "1"}}), "a=1&a=x%2Fy%20z&b=2");
}

TEST(RemoteUrl, ParsesEveryScheme) {
  ParsedUrl p = parse_url("s3://bucket/dir/model.safetensors");
  EXPECT_EQ(p.scheme, Scheme::S3);
  EXPECT_EQ(p.root, "bucket");
  EXPECT_EQ(p.key, "dir/model.safetensors");
  p = parse_url("gs://openpi-assets/checkpoints/pi0_base/params");
  EXPECT_EQ(p.scheme, Scheme::GS);
  EXPECT_EQ(p.root, "openpi-assets");
  EXPECT_EQ(p.key, "checkpoints/pi0_base/params");
  p = parse_url("https://huggingface.co:443/org/m/resolve/main/model.safetensors?download=true#frag");
  EXPECT_EQ(p.scheme, Scheme::Https);
  EXPECT_EQ(p.root, "huggingface.co:443");
  EXPECT_EQ(p.key, "org/m/resolve/main/model.safetensors?download=true");
  p = parse_url("s3://bucket");
  EXPECT_EQ(p.key, "");
  EXPECT_THROW(parse_url("ftp://host/x"), UsageError);
  EXPECT_THROW(parse_url("s3:///key"), UsageError);
  EXPECT_THROW(parse_url("s3://bu cket/key"), UsageError);
  try {
    parse_url("ftp://host/x");
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("ftp://host/x"), std::string::npos) << e.what();
  }
}

TEST(RemoteXml, ExtractsTextAndDecodesEntities) {
  const std::string xml =
      "<ListBucketResult><KeyCount>2</KeyCount><Contents><Key>a&amp;b &lt;c&gt; &#233;&#x263A;</Key><Size>10</Size>"
      "</Contents><Contents><Key>z</Key><Size>0</Size></Contents><IsTruncated>false</IsTruncated><Prefix/>"
      "</ListBucketResult>";
  const auto contents = xml_elements(xml, "Contents");
  ASSERT_EQ(contents.size(), 2u);
  EXPECT_EQ(xml_text(contents[0], "Key").value(), "a&b <c> \xc3\xa9\xe2\x98\xba");
  EXPECT_EQ(xml_text(contents[0], "Size").value(), "10");
  EXPECT_EQ(xml_text(contents[1], "Key").value(), "z");
  EXPECT_EQ(xml_text(xml, "KeyCount").value(), "2");  // not confused with <Key>
  EXPECT_EQ(xml_text(xml, "Prefix").value(), "");
  EXPECT_FALSE(xml_text(xml, "NextContinuationToken").has_value());
  EXPECT_EQ(xml_unescape("&bogus; &#xZZ; & &#1114112;"), "&bogus; &#xZZ; & &#1114112;");
}

// Restores an environment variable when the test ends.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) ::setenv(name_, old_->c_str(), 1);
    else ::unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(RemoteCredentials, ProfilesFromTheSharedFiles) {
  test::TempDir dir;
  test::write_file(dir / "credentials",
                   "[default]\naws_access_key_id = AKDEFAULT\naws_secret_access_key = secret-default\n\n"
                   "[work]\naws_access_key_id=AKWORK\naws_secret_access_key=secret/work\naws_session_token = tok\n");
  test::write_file(dir / "config", "[default]\nregion = eu-west-1\n[profile work]\nregion=ap-south-1\n");
  ScopedEnv a("AWS_ACCESS_KEY_ID", ""), b("AWS_SECRET_ACCESS_KEY", ""), c("AWS_REGION", ""),
      d("AWS_DEFAULT_REGION", ""), e("AWS_PROFILE", ""), f("AWS_SHARED_CREDENTIALS_FILE", dir / "credentials"),
      g("AWS_CONFIG_FILE", dir / "config");
  RemoteOptions o;
  auto creds = aws_credentials(o);
  ASSERT_TRUE(creds.has_value());
  EXPECT_EQ(creds->access_key, "AKDEFAULT");
  EXPECT_EQ(creds->secret_key, "secret-default");
  EXPECT_EQ(creds->session_token, "");
  EXPECT_EQ(aws_region(o), "eu-west-1");
  o.profile = "work";
  creds = aws_credentials(o);
  ASSERT_TRUE(creds.has_value());
  EXPECT_EQ(creds->access_key, "AKWORK");
  EXPECT_EQ(creds->secret_key, "secret/work");
  EXPECT_EQ(creds->session_token, "tok");
  EXPECT_EQ(aws_region(o), "ap-south-1");
  o.profile = "missing";
  EXPECT_FALSE(aws_credentials(o).has_value());  // anonymous
  EXPECT_EQ(aws_region(o), "us-east-1");
  {
    ScopedEnv k("AWS_ACCESS_KEY_ID", "AKENV"), s("AWS_SECRET_ACCESS_KEY", "secret-env");
    creds = aws_credentials(o);
    ASSERT_TRUE(creds.has_value());
    EXPECT_EQ(creds->access_key, "AKENV");
  }
}

TEST(RemoteCredentials, GcsTokenCommandAndBearerScopes) {
  ScopedEnv a("GOOGLE_OAUTH_ACCESS_TOKEN", ""), b("CKB_GS_TOKEN_COMMAND", "echo ya29.test-token; echo second-line"),
      c("GS_ACCESS_KEY_ID", ""), d("GS_SECRET_ACCESS_KEY", "");
  RemoteOptions o;
  EXPECT_EQ(gcs_auth(o).bearer, "ya29.test-token");
  {
    ScopedEnv t("GOOGLE_OAUTH_ACCESS_TOKEN", "ya29.env");
    EXPECT_EQ(gcs_auth(o).bearer, "ya29.env");
  }
  {
    ScopedEnv n("CKB_GS_TOKEN_COMMAND", ""), k("GS_ACCESS_KEY_ID", "GOOG1E"), s("GS_SECRET_ACCESS_KEY", "gsecret");
    const GcsAuth auth = gcs_auth(o);
    EXPECT_EQ(auth.bearer, "");
    ASSERT_TRUE(auth.hmac.has_value());
    EXPECT_EQ(auth.hmac->access_key, "GOOG1E");
  }
  {
    ScopedEnv n("CKB_GS_TOKEN_COMMAND", "exit 3");
    EXPECT_THROW(gcs_auth(o), IoError);
  }
  // HF_TOKEN goes to Hugging Face only; CKB_HTTP_TOKEN and the option go everywhere
  ScopedEnv h("HF_TOKEN", "hf_abc"), x("CKB_HTTP_TOKEN", "");
  EXPECT_EQ(http_bearer(o, "huggingface.co"), "hf_abc");
  EXPECT_EQ(http_bearer(o, "cdn-lfs.hf.co:443"), "hf_abc");
  EXPECT_EQ(http_bearer(o, "example.com"), "");
  EXPECT_EQ(http_bearer(o, "evilhuggingface.co"), "");
  {
    ScopedEnv y("CKB_HTTP_TOKEN", "generic");
    EXPECT_EQ(http_bearer(o, "example.com"), "generic");
  }
  o.bearer_token = "flag";
  EXPECT_EQ(http_bearer(o, "huggingface.co"), "flag");
}

}  // namespace
}  // namespace ckb::remote
