// Remote URL parsing and SigV4 percent-encoding (see url.h).
#include "io/remote/url.h"

#include "core/errors.h"

namespace ckb::remote {

std::string_view scheme_name(Scheme scheme) {
  switch (scheme) {
    case Scheme::S3: return "s3";
    case Scheme::GS: return "gs";
    case Scheme::Http: return "http";
    case Scheme::Https: return "https";
  }
  return "?";
}

ParsedUrl parse_url(std::string_view url) {
  const auto sep = url.find("://");
  if (sep == std::string_view::npos) throw UsageError("not a remote URL: '" + std::string(url) + "'");
  const std::string_view scheme = url.substr(0, sep);
  ParsedUrl out;
  if (scheme == "s3") out.scheme = Scheme::S3;
  else if (scheme == "gs") out.scheme = Scheme::GS;
  else if (scheme == "http") out.scheme = Scheme::Http;
  else if (scheme == "https") out.scheme = Scheme::Https;
  else throw UsageError("unsupported URL scheme '" + std::string(scheme) + "' in '" + std::string(url) +
                        "' (supported: s3://, gs://, http://, https://)");
  std::string_view rest = url.substr(sep + 3);
  const auto slash = rest.find('/');
  out.root = std::string(rest.substr(0, slash));
  if (slash != std::string_view::npos) out.key = std::string(rest.substr(slash + 1));
  if (out.root.empty())
    throw UsageError("missing " + std::string(out.scheme == Scheme::S3 || out.scheme == Scheme::GS ? "bucket" : "host") +
                     " in URL '" + std::string(url) + "'");
  const bool bucket = out.scheme == Scheme::S3 || out.scheme == Scheme::GS;
  for (char c : out.root) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '.' || c == '_' || (!bucket && (c == ':' || c == '[' || c == ']'));
    if (!ok) throw UsageError("malformed " + std::string(bucket ? "bucket" : "host") + " '" + out.root + "' in URL '" +
                              std::string(url) + "'");
  }
  if (!bucket) {
    // an http(s) key may carry a query but no fragment
    if (const auto hash = out.key.find('#'); hash != std::string::npos) out.key.resize(hash);
  }
  return out;
}

std::string uri_encode(std::string_view s, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                            c == '.' || c == '_' || c == '~';
    if (unreserved || (keep_slash && c == '/')) {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace ckb::remote
