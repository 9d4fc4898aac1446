// AWS Signature Version 4 (see sigv4.h). OpenSSL provides SHA-256 and HMAC.
#include "io/remote/sigv4.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <ctime>
#include <stdexcept>

#include "io/remote/text.h"
#include "io/remote/url.h"

namespace ckb::remote {

std::string to_hex(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

std::string sha256_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("SHA-256 failed (OpenSSL)");
  return to_hex(std::string_view(reinterpret_cast<const char*>(digest), len));
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
            data.size(), out, &len))
    throw std::runtime_error("HMAC-SHA256 failed (OpenSSL)");
  return std::string(reinterpret_cast<const char*>(out), len);
}

std::string canonical_query(const std::vector<std::pair<std::string, std::string>>& query) {
  std::vector<std::pair<std::string, std::string>> encoded;
  encoded.reserve(query.size());
  for (const auto& [name, value] : query) encoded.emplace_back(uri_encode(name, false), uri_encode(value, false));
  std::sort(encoded.begin(), encoded.end());
  std::string out;
  for (const auto& [name, value] : encoded) {
    if (!out.empty()) out += '&';
    out += name;
    out += '=';
    out += value;
  }
  return out;
}

namespace {

// Trims and collapses runs of spaces to one, as the canonical header value requires.
std::string canonical_value(std::string_view v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> sorted_headers(const SigV4Request& request) {
  std::vector<std::pair<std::string, std::string>> headers;
  for (const auto& [name, value] : request.headers) headers.emplace_back(ascii_lower(name), canonical_value(value));
  std::sort(headers.begin(), headers.end());
  return headers;
}

std::string signed_header_list(const std::vector<std::pair<std::string, std::string>>& headers) {
  std::string out;
  for (const auto& h : headers) {
    if (!out.empty()) out += ';';
    out += h.first;
  }
  return out;
}

}  // namespace

std::string canonical_request(const SigV4Request& request) {
  const auto headers = sorted_headers(request);
  std::string out = request.method + '\n' + (request.canonical_uri.empty() ? "/" : request.canonical_uri) + '\n' +
                    canonical_query(request.query) + '\n';
  for (const auto& [name, value] : headers) out += name + ':' + value + '\n';
  out += '\n';
  out += signed_header_list(headers);
  out += '\n';
  out += request.payload_hash;
  return out;
}

std::string string_to_sign(std::string_view amz_date, std::string_view scope, std::string_view canonical) {
  std::string out = "AWS4-HMAC-SHA256\n";
  out += amz_date;
  out += '\n';
  out += scope;
  out += '\n';
  out += sha256_hex(canonical);
  return out;
}

std::string signing_key(std::string_view secret, std::string_view date, std::string_view region,
                        std::string_view service) {
  const std::string k_date = hmac_sha256("AWS4" + std::string(secret), date);
  const std::string k_region = hmac_sha256(k_date, region);
  const std::string k_service = hmac_sha256(k_region, service);
  return hmac_sha256(k_service, "aws4_request");
}

std::string authorization(const SigV4Request& request, const SigV4Credentials& credentials,
                          std::string_view amz_date, std::string_view region, std::string_view service) {
  const std::string date(amz_date.substr(0, 8));
  const std::string scope = date + '/' + std::string(region) + '/' + std::string(service) + "/aws4_request";
  const std::string to_sign = string_to_sign(amz_date, scope, canonical_request(request));
  const std::string signature = to_hex(hmac_sha256(signing_key(credentials.secret_key, date, region, service), to_sign));
  return "AWS4-HMAC-SHA256 Credential=" + credentials.access_key + '/' + scope +
         ", SignedHeaders=" + signed_header_list(sorted_headers(request)) + ", Signature=" + signature;
}

std::string amz_date_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

}  // namespace ckb::remote
