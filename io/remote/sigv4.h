// AWS Signature Version 4 (header-based), written from AWS's specification: the canonical
// request, the string to sign, the derived signing key and the Authorization header.
// S3 flavour: the canonical URI is the path exactly as sent (encoded once, not normalised).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ckb::remote {

struct SigV4Credentials {
  std::string access_key, secret_key, session_token;
};

struct SigV4Request {
  std::string method;
  std::string canonical_uri;                                // already percent-encoded: "/bucket/a%20b"
  std::vector<std::pair<std::string, std::string>> query;   // raw (unencoded) names and values
  std::vector<std::pair<std::string, std::string>> headers; // every header to sign, any case
  std::string payload_hash;                                 // hex sha256 or "UNSIGNED-PAYLOAD"
};

// Lower-case hex of SHA-256(data).
std::string sha256_hex(std::string_view data);
// Raw HMAC-SHA256(key, data) (32 bytes).
std::string hmac_sha256(std::string_view key, std::string_view data);
std::string to_hex(std::string_view bytes);

// "a=1&b=x%2Fy": names and values encoded, sorted by encoded name then value.
std::string canonical_query(const std::vector<std::pair<std::string, std::string>>& query);
std::string canonical_request(const SigV4Request& request);
// "AWS4-HMAC-SHA256\n<amz_date>\n<scope>\n<hex sha256 of canonical request>"
std::string string_to_sign(std::string_view amz_date, std::string_view scope, std::string_view canonical_request);
// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")
std::string signing_key(std::string_view secret, std::string_view date, std::string_view region,
                        std::string_view service);
// The Authorization header's value for `request` at `amz_date` ("20130524T000000Z").
std::string authorization(const SigV4Request& request, const SigV4Credentials& credentials,
                          std::string_view amz_date, std::string_view region, std::string_view service);
// The current UTC time as "YYYYMMDDTHHMMSSZ".
std::string amz_date_now();

}  // namespace ckb::remote
