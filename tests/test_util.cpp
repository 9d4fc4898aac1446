// Implementation of tests/test_util.h.
#include "test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/errors.h"
#include "core/hash.h"

namespace ckb::test {

std::string data_path(const std::string& rel) { return std::string(CKB_TEST_DATA) + "/" + rel; }
std::string fixture(const std::string& rel) { return data_path("fixtures/" + rel); }

nlohmann::json load_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  return nlohmann::json::parse(in);
}

void expect_matches_manifest(const Checkpoint& ck, const nlohmann::json& manifest) {
  const auto& want = manifest.at("tensors");
  std::set<std::string> seen;
  for (const auto& [name, t] : tensor_list(ck.root)) {
    seen.insert(name);
    if (!want.contains(name)) {
      ADD_FAILURE() << "unexpected tensor '" << name << "'";
      continue;
    }
    const auto& w = want.at(name);
    EXPECT_EQ(std::string(dtype_name(t->info.dtype)), w.at("dtype").get<std::string>()) << name;
    EXPECT_EQ(t->info.shape, w.at("shape").get<Shape>()) << name;
    EXPECT_EQ(tensor_sha256(*t), w.at("sha256").get<std::string>()) << name;
  }
  for (const auto& [name, w] : want.items())
    if (!seen.count(name)) ADD_FAILURE() << "missing tensor '" << name << "'";
}

std::string bytes_of(const Tensor& t) {
  Bytes b = t.read_all();
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

nlohmann::json sorted_array_metadatas(const std::string& orbax_item) {
  auto j = load_json(orbax_item + "/array_metadatas/process_0")["array_metadatas"];
  std::sort(j.begin(), j.end(), [](const auto& x, const auto& y) {
    return x["array_metadata"]["param_name"] < y["array_metadata"]["param_name"];
  });
  return j;
}

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "ckb-test-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}
TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

CliResult run_cli(const std::string& args) {
  TempDir d;
  std::string cmd = std::string(CKB_CLI_PATH) + " " + args + " >" + d / "out" + " 2>" + d / "err" + " </dev/null";
  int rc = std::system(cmd.c_str());
  int code = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + (WIFSIGNALED(rc) ? WTERMSIG(rc) : 0);
  return {code, read_file(d / "out"), read_file(d / "err")};
}

std::string le64(std::uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

std::string byte_string(std::initializer_list<int> bytes) {
  std::string s;
  for (int b : bytes) s.push_back(static_cast<char>(b));
  return s;
}

std::map<std::string, const Tensor*> tensors_by_name(const Checkpoint& ck) {
  std::map<std::string, const Tensor*> m;
  for (const auto& [name, t] : tensor_list(ck.root)) m[name] = t;
  return m;
}

nlohmann::json safetensors_header(const std::string& path) {
  const std::string bytes = read_file(path);
  std::uint64_t n = 0;
  if (bytes.size() >= 8) std::memcpy(&n, bytes.data(), 8);
  return nlohmann::json::parse(bytes.substr(8, n));
}

double round_to_bf16(double x) {
  if (x == 0) return x;
  int e = 0;
  const double m = std::frexp(x, &e);  // x = m * 2^e, 0.5 <= |m| < 1
  return std::ldexp(std::nearbyint(std::ldexp(m, 8)), e - 8);
}

std::string maxtext_fixture(const std::string& rel) { return fixture("maxtext_linen_nnx/" + rel); }

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const FormatError& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("WRONG TYPE: ") + e.what();
  }
  return "NO ERROR";
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
void write_file(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

}  // namespace ckb::test
