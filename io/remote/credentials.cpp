// Credential and region lookup for the remote stores (see credentials.h).
#include "io/remote/credentials.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>

#include "core/errors.h"
#include "io/remote/text.h"

namespace ckb::remote {

namespace {

std::string home_file(const char* override_var, const char* rel) {
  if (std::string v = env_string(override_var); !v.empty()) return v;
  const std::string home = env_string("HOME");
  return home.empty() ? std::string() : home + "/" + rel;
}

std::string profile_name(const RemoteOptions& options) {
  if (!options.profile.empty()) return options.profile;
  if (std::string p = env_string("AWS_PROFILE"); !p.empty()) return p;
  return "default";
}

}  // namespace

std::string ini_value(const std::string& path, const std::string& section, const std::string& name) {
  if (path.empty()) return "";
  std::ifstream in(path);
  std::string line, current;
  while (std::getline(in, line)) {
    line = trim_space(line);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[' && line.back() == ']') {
      current = trim_space(line.substr(1, line.size() - 2));
      continue;
    }
    if (current != section) continue;
    const auto eq = line.find('=');
    if (eq != std::string::npos && trim_space(line.substr(0, eq)) == name) return trim_space(line.substr(eq + 1));
  }
  return "";
}

std::optional<SigV4Credentials> aws_credentials(const RemoteOptions& options) {
  SigV4Credentials c;
  c.access_key = env_string("AWS_ACCESS_KEY_ID");
  c.secret_key = env_string("AWS_SECRET_ACCESS_KEY");
  if (!c.access_key.empty() && !c.secret_key.empty()) {
    c.session_token = env_string("AWS_SESSION_TOKEN");
    return c;
  }
  const std::string file = home_file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
  const std::string profile = profile_name(options);
  c.access_key = ini_value(file, profile, "aws_access_key_id");
  c.secret_key = ini_value(file, profile, "aws_secret_access_key");
  if (!c.access_key.empty() && !c.secret_key.empty()) {
    c.session_token = ini_value(file, profile, "aws_session_token");
    return c;
  }
  return std::nullopt;
}

std::string aws_region(const RemoteOptions& options) {
  if (!options.region.empty()) return options.region;
  if (std::string r = env_string("AWS_REGION"); !r.empty()) return r;
  if (std::string r = env_string("AWS_DEFAULT_REGION"); !r.empty()) return r;
  const std::string profile = profile_name(options);
  const std::string config = home_file("AWS_CONFIG_FILE", ".aws/config");
  std::string r = ini_value(config, profile == "default" ? "default" : "profile " + profile, "region");
  if (r.empty()) r = ini_value(home_file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"), profile, "region");
  return r.empty() ? "us-east-1" : r;
}

namespace {

// CKB_GS_TOKEN_COMMAND's first output line, run once per distinct command.
std::string token_from_command(const std::string& command) {
  static std::mutex mu;
  static std::string cached_command, cached_token;
  std::lock_guard lock(mu);
  if (command == cached_command && !cached_token.empty()) return cached_token;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) throw_errno("CKB_GS_TOKEN_COMMAND", "cannot run the token command");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  const int status = ::pclose(pipe);
  const std::string token = trim_space(out.substr(0, out.find('\n')));
  if (status != 0 || token.empty())
    throw IoError("CKB_GS_TOKEN_COMMAND", "the token command failed (exit status " + std::to_string(status) +
                                              ") or printed no token");
  cached_command = command;
  cached_token = token;
  return token;
}

}  // namespace

GcsAuth gcs_auth(const RemoteOptions& options) {
  GcsAuth auth;
  if (!options.bearer_token.empty()) {
    auth.bearer = options.bearer_token;
  } else if (std::string t = env_string("GOOGLE_OAUTH_ACCESS_TOKEN"); !t.empty()) {
    auth.bearer = t;
  } else if (std::string cmd = env_string("CKB_GS_TOKEN_COMMAND"); !cmd.empty()) {
    auth.bearer = token_from_command(cmd);
  } else if (std::string id = env_string("GS_ACCESS_KEY_ID"), secret = env_string("GS_SECRET_ACCESS_KEY");
             !id.empty() && !secret.empty()) {
    auth.hmac = SigV4Credentials{id, secret, ""};
  }
  return auth;
}

std::string http_bearer(const RemoteOptions& options, const std::string& host) {
  if (!options.bearer_token.empty()) return options.bearer_token;
  if (std::string t = env_string("CKB_HTTP_TOKEN"); !t.empty()) return t;
  std::string name = host.substr(0, host.rfind(':') == std::string::npos || host.back() == ']' ? host.size()
                                                                                                 : host.rfind(':'));
  auto ends_with = [&](const std::string& suffix) {
    return name == suffix || (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
                              name[name.size() - suffix.size() - 1] == '.');
  };
  if (ends_with("huggingface.co") || ends_with("hf.co")) return env_string("HF_TOKEN");
  return "";
}

}  // namespace ckb::remote
