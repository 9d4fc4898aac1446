// io/ocdbt/ocdbt_merge.h: per-process OCDBT databases merged into a root that refers to
// their data files (as multi-host Orbax saves), read back through the reader.
#include <filesystem>

#include "core/errors.h"
#include "io/ocdbt/ocdbt_kvstore.h"
#include "io/ocdbt/ocdbt_merge.h"
#include "test_util.h"

namespace ckb {
namespace {

namespace fs = std::filesystem;
using ocdbt::OcdbtKvStore;

std::string filled(char c, std::size_t n) { return std::string(n, c); }

std::string value_at(const OcdbtKvStore& kv, const std::string& key) {
  auto v = kv.get(key);
  return v ? std::string(v->text()) : "<none>";
}

std::uint64_t bytes_in_folder(const std::string& dir) {
  std::uint64_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += fs::file_size(e.path());
  return n;
}

TEST(OcdbtMerge, RootHoldsEveryKeyAndCopiesNoOutOfLineValue) {
  test::TempDir d;
  {
    ocdbt::OcdbtWriter p0(d / "ocdbt.process_0");
    p0.put("a/.zarray", std::string_view("{\"small\": 0}"));
    p0.put("c/0", filled('c', 5000));  // out of line (> 1024 bytes)
    p0.put("e/0", std::string_view());
    p0.finish();
    ocdbt::OcdbtWriter p1(d / "ocdbt.process_1");
    p1.put("b/0", filled('b', 3000));
    p1.put("d/.zarray", std::string_view("{\"small\": 1}"));
    p1.finish();
  }
  const auto stats = ocdbt::merge_databases(d.path(), {"ocdbt.process_0", "ocdbt.process_1"});
  EXPECT_EQ(stats.num_keys, 5u);
  EXPECT_EQ(stats.num_indirect_value_bytes, 8000u);

  OcdbtKvStore root(d.path());
  EXPECT_EQ(root.list(), (std::vector<std::string>{"a/.zarray", "b/0", "c/0", "d/.zarray", "e/0"}));
  EXPECT_EQ(value_at(root, "a/.zarray"), "{\"small\": 0}");
  EXPECT_EQ(value_at(root, "d/.zarray"), "{\"small\": 1}");
  EXPECT_EQ(value_at(root, "e/0"), "");
  EXPECT_EQ(value_at(root, "b/0"), filled('b', 3000));
  EXPECT_EQ(value_at(root, "c/0"), filled('c', 5000));
  // The large values are read from the processes' data files, by base path.
  EXPECT_NE(root.get("b/0")->file.find("/ocdbt.process_1/d/"), std::string::npos) << root.get("b/0")->file;
  EXPECT_NE(root.get("c/0")->file.find("/ocdbt.process_0/d/"), std::string::npos) << root.get("c/0")->file;
  // The root's own data file holds only its leaf: far less than the 8000 value bytes.
  ASSERT_EQ(std::distance(fs::directory_iterator(d / "d"), fs::directory_iterator()), 1);
  EXPECT_LT(bytes_in_folder(d / "d"), 400u);
  // Its table names the processes' files with their base paths, as Orbax's root does.
  std::vector<std::string> bases;
  for (const auto& f : root.manifest().files) bases.push_back(f.base_path);
  EXPECT_EQ(bases, (std::vector<std::string>{"", "ocdbt.process_0/", "ocdbt.process_1/"}));
}

TEST(OcdbtMerge, AKeyInTwoProcessesIsRefusedByName) {
  test::TempDir d;
  for (const char* p : {"ocdbt.process_0", "ocdbt.process_1"}) {
    ocdbt::OcdbtWriter w(d / p);
    w.put("same/0", std::string_view("x"));
    w.finish();
  }
  try {
    ocdbt::merge_databases(d.path(), {"ocdbt.process_0", "ocdbt.process_1"});
    FAIL() << "no error";
  } catch (const MappingError& e) {
    EXPECT_NE(std::string(e.what()).find("key 'same/0' written twice"), std::string::npos) << e.what();
  }
}

TEST(OcdbtMerge, EmptyProcessDatabasesAreFine) {
  test::TempDir d;
  ocdbt::OcdbtWriter(d / "ocdbt.process_0").finish();
  {
    ocdbt::OcdbtWriter w(d / "ocdbt.process_1");
    w.put("k", filled('k', 2000));
    w.finish();
  }
  ocdbt::merge_databases(d.path(), {"ocdbt.process_0", "ocdbt.process_1"});
  OcdbtKvStore root(d.path());
  EXPECT_EQ(root.list(), std::vector<std::string>{"k"});
  EXPECT_EQ(value_at(root, "k"), filled('k', 2000));
}

}  // namespace
}  // namespace ckb
