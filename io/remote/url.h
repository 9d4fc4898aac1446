// Remote URLs: splitting "s3://bucket/key", "gs://bucket/key" and "http(s)://host[:port]/path"
// into a store root and a key, and the percent-encoding AWS Signature V4 prescribes
// (RFC 3986 unreserved characters kept, every other byte as %XX with upper-case hex).
#pragma once

#include <string>
#include <string_view>

namespace ckb::remote {

enum class Scheme { S3, GS, Http, Https };

struct ParsedUrl {
  Scheme scheme = Scheme::S3;
  std::string root;  // bucket (s3, gs) or host[:port] (http, https)
  std::string key;   // no leading '/'; for http(s) the path and query exactly as written
};

// Throws UsageError naming the URL for an unknown scheme, an empty bucket/host or a malformed
// authority.
ParsedUrl parse_url(std::string_view url);
std::string_view scheme_name(Scheme scheme);  // "s3", "gs", "http", "https"

// Percent-encodes every byte except A-Z a-z 0-9 - . _ ~ (and '/' when keep_slash).
std::string uri_encode(std::string_view s, bool keep_slash);

}  // namespace ckb::remote
