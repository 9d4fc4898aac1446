// Local S3 / web / flaky-proxy servers for the remote-storage tests (see remote_servers.h).
#include "remote_servers.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/hash.h"
#include "test_util.h"

namespace ckb::test {

namespace {

namespace fs = std::filesystem;

[[noreturn]] void fail(const std::string& message) {
  ADD_FAILURE() << message;
  throw std::runtime_error(message);
}

std::string find_program(const std::vector<std::string>& candidates, const std::string& install_hint) {
  for (const auto& c : candidates) {
    if (c.find('/') != std::string::npos) {
      if (::access(c.c_str(), X_OK) == 0) return c;
      continue;
    }
    const char* path = std::getenv("PATH");
    std::string p = path ? path : "";
    std::size_t start = 0;
    while (start <= p.size()) {
      const std::size_t end = p.find(':', start);
      const std::string dir = p.substr(start, end == std::string::npos ? std::string::npos : end - start);
      const std::string full = dir + "/" + c;
      if (!dir.empty() && ::access(full.c_str(), X_OK) == 0) return full;
      if (end == std::string::npos) break;
      start = end + 1;
    }
  }
  fail("program not found: " + candidates.front() + " (" + install_hint + ")");
}

struct Child {
  pid_t pid = -1;
  int out_fd = -1;  // the child's stdout (when captured)
};

// fork + exec `argv`, stdout to a pipe (capture) or `log`, stderr to `log`; the child dies with
// this thread's process.
Child spawn(const std::vector<std::string>& argv, const std::string& log, bool capture) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int pipefd[2] = {-1, -1};
  if (capture && ::pipe2(pipefd, O_CLOEXEC) != 0) fail("pipe failed");
  const int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) fail("cannot create " + log);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) fail("fork failed");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::setpgid(0, 0);
    ::dup2(capture ? pipefd[1] : log_fd, 1);
    ::dup2(log_fd, 2);
    const int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(log_fd);
  Child c;
  c.pid = pid;
  if (capture) {
    ::close(pipefd[1]);
    c.out_fd = pipefd[0];
  }
  return c;
}

void stop(pid_t pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGTERM);
  for (int i = 0; i < 100; ++i) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
}

std::string tail_of(const std::string& path) {
  std::string s = read_file(path);
  return s.size() > 2000 ? s.substr(s.size() - 2000) : s;
}

// Reads "LISTENING <port>" from the child's stdout (10 s at most).
int read_port(const Child& c, const std::string& what, const std::string& log) {
  std::string line;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (line.find('\n') == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) fail(what + " did not start within 20 s; its log: " + tail_of(log));
    pollfd p{c.out_fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[256];
    const ssize_t n = ::read(c.out_fd, buf, sizeof buf);
    if (n <= 0) fail(what + " exited before listening; its log: " + tail_of(log));
    line.append(buf, static_cast<std::size_t>(n));
  }
  if (line.rfind("LISTENING ", 0) != 0) fail(what + " printed '" + line + "' instead of LISTENING <port>");
  return std::stoi(line.substr(10));
}

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    fail("cannot find a free port");
  ::close(fd);
  return ntohs(a.sin_port);
}

bool answers(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// The servers of this process, stopped at exit.
struct Servers {
  std::unique_ptr<TempDir> dir;
  std::vector<pid_t> pids;
  std::optional<S3Server> s3;
  std::optional<WebServer> web;
  ~Servers() {
    for (pid_t p : pids) stop(p);
  }
  const std::string& root() {
    if (!dir) dir = std::make_unique<TempDir>();
    return dir->path();
  }
};

Servers& servers() {
  static Servers s;
  return s;
}

}  // namespace

const S3Server& s3() {
  auto& all = servers();
  if (all.s3) return *all.s3;
  const std::string node = find_program({"node", "nodejs"}, "install Debian's nodejs (tools/setup.sh does)");
  const std::string tools = std::string(CKB_SOURCE_DIR) + "/tools/test-servers";
  if (!fs::exists(tools + "/node_modules/s3rver/package.json") || !fs::exists(tools + "/node_modules/aws4/package.json"))
    fail("s3rver is not installed in " + tools + "/node_modules: run `npm ci --prefix " + tools +
         "` (tools/setup.sh does)");
  S3Server s;
  s.data_dir = all.root() + "/s3-data";
  fs::create_directories(s.data_dir);
  const std::string log = all.root() + "/s3-server.log";
  // s3rver's ListObjectsV2 continuation tokens are DES-encrypted: OpenSSL 3 keeps DES in its
  // legacy provider
  Child c = spawn({node, "--openssl-legacy-provider", tools + "/s3-server.js", s.data_dir, s.bucket}, log, true);
  all.pids.push_back(c.pid);
  s.port = read_port(c, "the S3 server (node s3-server.js)", log);
  ::close(c.out_fd);
  s.endpoint = "http://127.0.0.1:" + std::to_string(s.port);
  all.s3 = s;
  return *all.s3;
}

const WebServer& web() {
  auto& all = servers();
  if (all.web) return *all.web;
  const std::string nginx = find_program({"/usr/sbin/nginx", "nginx"}, "install Debian's nginx-light (tools/setup.sh does)");
  const std::string openssl = find_program({"openssl"}, "install Debian's openssl");
  WebServer w;
  const std::string dir = all.root() + "/web";
  w.root = dir + "/www";
  fs::create_directories(w.root + "/private");
  fs::create_directories(dir + "/tmp");
  w.ca_file = dir + "/cert.pem";
  const std::string key = dir + "/key.pem";
  const std::string cmd = openssl + " req -x509 -newkey rsa:2048 -nodes -keyout " + key + " -out " + w.ca_file +
                          " -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 >" + dir +
                          "/openssl.log 2>&1";
  if (std::system(cmd.c_str()) != 0) fail("openssl could not make a test certificate: " + tail_of(dir + "/openssl.log"));
  w.access_log = dir + "/access.log";
  for (int attempt = 0; attempt < 5; ++attempt) {
    w.port = free_port();
    w.tls_port = free_port();
    const std::string t = dir + "/tmp";
    std::ofstream conf(dir + "/nginx.conf");
    conf << "daemon off;\nmaster_process off;\nworker_processes 1;\npid " << dir << "/nginx.pid;\nerror_log " << dir
         << "/error.log;\nevents { worker_connections 512; }\nhttp {\n"
         << "  log_format plain '$request_method $request_uri $status $body_bytes_sent $http_range';\n"
         << "  access_log " << w.access_log << " plain;\n"
         << "  client_body_temp_path " << t << "/body;\n  proxy_temp_path " << t << "/proxy;\n  fastcgi_temp_path " << t
         << "/fastcgi;\n  uwsgi_temp_path " << t << "/uwsgi;\n  scgi_temp_path " << t << "/scgi;\n"
         << "  types { application/octet-stream bin; }\n  default_type application/octet-stream;\n"
         << "  map $http_authorization $ckb_authorized { default 0; \"Bearer ckb-test-token\" 1; }\n"
         << "  server {\n    listen 127.0.0.1:" << w.port << ";\n    listen 127.0.0.1:" << w.tls_port << " ssl;\n"
         << "    ssl_certificate " << w.ca_file << ";\n    ssl_certificate_key " << key << ";\n"
         << "    root " << w.root << ";\n"
         << "    location /private/ { if ($ckb_authorized = 0) { return 401; } }\n"
         << "    location /nohead/ { if ($request_method = HEAD) { return 405; } }\n"
         << "    location /redirect/ { rewrite ^/redirect/(.*)$ /$1 redirect; }\n"
         << "    location /elsewhere/ { rewrite ^/elsewhere/(.*)$ http://localhost:" << w.port << "/$1 redirect; }\n"
         << "    location /downgrade/ { rewrite ^/downgrade/(.*)$ http://127.0.0.1:" << w.port << "/$1 redirect; }\n"
         << "  }\n}\n";
    conf.close();
    const std::string log = dir + "/nginx.out";
    Child c = spawn({nginx, "-e", dir + "/error.log", "-p", dir, "-c", dir + "/nginx.conf"}, log, false);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    bool up = false;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(c.pid, &status, WNOHANG) == c.pid) break;  // exited: port taken, or bad config
      if (answers(w.port) && answers(w.tls_port)) {
        up = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (up) {
      all.pids.push_back(c.pid);
      w.http_base = "http://127.0.0.1:" + std::to_string(w.port);
      w.https_base = "https://127.0.0.1:" + std::to_string(w.tls_port);
      all.web = w;
      return *all.web;
    }
    stop(c.pid);
    if (attempt == 4) fail("nginx did not start; its log: " + tail_of(dir + "/error.log") + tail_of(log));
  }
  fail("unreachable");
}

FlakyProxy::FlakyProxy(int upstream_port, double failure_rate, int seed, const std::string& kinds) {
  const std::string python = find_program({"/usr/bin/python3"}, "install Debian's python3");
  auto& all = servers();
  static int count = 0;
  log_ = all.root() + "/proxy-" + std::to_string(++count) + ".log";
  const std::string& log = log_;
  std::vector<std::string> argv{python, std::string(CKB_SOURCE_DIR) + "/tests/remote_flaky_proxy.py",
                                std::to_string(upstream_port), std::to_string(failure_rate), std::to_string(seed)};
  if (!kinds.empty()) argv.push_back(kinds);
  Child c = spawn(argv, log, true);
  pid_ = c.pid;
  try {
    port_ = read_port(c, "the flaky proxy (tests/remote_flaky_proxy.py)", log);
  } catch (...) {
    stop(pid_);
    ::close(c.out_fd);
    throw;
  }
  ::close(c.out_fd);
}

FlakyProxy::~FlakyProxy() { stop(pid_); }

int FlakyProxy::max_in_flight() const {
  const std::string log = read_file(log_);
  const auto pos = log.rfind("max-in-flight ");
  return pos == std::string::npos ? 0 : std::stoi(log.substr(pos + 14));
}

remote::RemoteOptions s3_options(const std::string& endpoint) {
  remote::RemoteOptions o;
  o.endpoint = endpoint;
  o.path_style = true;
  o.region = "us-east-1";
  o.parallel_requests = 8;
  o.retries = 6;
  o.retry_base_s = 0.01;
  o.timeout_s = 20;
  return o;
}

void s3_credentials_env(const std::string& access_key, const std::string& secret) {
  ::setenv("AWS_ACCESS_KEY_ID", access_key.c_str(), 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", secret.c_str(), 1);
  ::unsetenv("AWS_SESSION_TOKEN");
}

std::string pattern(std::size_t n, unsigned seed) {
  std::string s(n, '\0');
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& c : s) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

std::span<const std::byte> bytes_of_string(const std::string& s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

std::string sha256_of(const std::string& s) { return sha256_hex(bytes_of_string(s)); }

std::string read_range(const remote::ObjectStore& store, const std::string& key, std::uint64_t offset, std::size_t n) {
  std::string out(n, '\0');
  store.read(key, offset, std::as_writable_bytes(std::span<char>(out.data(), out.size())));
  return out;
}

std::vector<std::string> access_log_lines(const std::string& uri_part, std::size_t expect) {
  const auto lines_now = [&] {
    std::vector<std::string> out;
    const std::string log = read_file(web().access_log);
    std::size_t start = 0;
    while (start < log.size()) {
      const std::size_t end = log.find('\n', start);
      const std::string line = log.substr(start, end - start);
      if (line.find(uri_part) != std::string::npos) out.push_back(line);
      if (end == std::string::npos) break;
      start = end + 1;
    }
    return out;
  };
  std::vector<std::string> out;
  for (int i = 0; i < 500; ++i) {
    out = lines_now();
    if (out.size() >= expect) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return out;
}

}  // namespace ckb::test
