// A read-only KvStore over an OCDBT database directory (TensorStore's "Optionally-
// Cooperative Distributed B+Tree", formats.md §2), as Orbax writes it: the latest
// generation of `manifest.ocdbt` (or of the greatest numbered `manifest.<16 hex>`).
//
// Why hand-written: OCDBT is only implemented inside TensorStore (C++ with a Bazel build and
// a large dependency tree); no packaged library reads it, and we need no Python.
//
// Behaviour:
//  - nothing is read at construction; the manifest is loaded on first use;
//  - get() descends the B+tree to the one leaf that can hold the key, so reading one array
//    touches only the nodes on its path (decoded nodes are cached);
//  - data files are resolved as <root>/<base_path><relative_path>, where base paths
//    accumulate down the tree: a merged Orbax root points into "ocdbt.process_N/d/...";
//  - every file is mmap'd once (cached per path); out-of-line values are spans of it;
//  - every constraint of formats.md §2.10 is enforced; violations are FormatError naming
//    the file (manifest or data file) and offset.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "io/file.h"
#include "io/kvstore.h"
#include "io/ocdbt/btree.h"
#include "io/ocdbt/manifest.h"

namespace ckb::ocdbt {

class OcdbtKvStore final : public KvStore {
 public:
  explicit OcdbtKvStore(std::string root);
  std::vector<std::string> list() const override;
  std::optional<KvValue> get(const std::string& key) const override { return find(key, false); }
  // A value in a remote data file comes deferred (io/kvstore.h), one on disk as from get().
  std::optional<KvValue> get_streamed(const std::string& key) const override { return find(key, true); }
  std::string describe() const override { return root_ + " (ocdbt)"; }
  std::string locate(const std::string& key) const override { return root_ + "/manifest.ocdbt[" + key + "]"; }

  // The manifest that was read (loads it if needed) and the file it came from.
  const Manifest& manifest() const;
  std::string manifest_path() const;

  // True when `dir` holds a manifest.ocdbt starting with the manifest magic. Never throws.
  static bool looks_like_database(const std::string& dir);

 private:
  struct NodeRef {
    std::string file;       // full path of the data file
    std::string base_path;  // transitive base for the node's own table
    IndirectRef ref;
    std::uint8_t height;
  };
  void load() const;
  std::shared_ptr<const BtreeNode> read_node(const NodeRef& at) const;
  MappedFilePtr open_file(const std::string& path) const;
  NodeRef child_ref(const BtreeNode& node, std::size_t i) const;
  std::optional<KvValue> find(const std::string& key, bool streamed) const;
  KvValue value_of(const BtreeNode& node, const LeafEntry& e, const std::string& node_file, bool streamed) const;
  void list_subtree(const NodeRef& at, const std::string& prefix, const std::string& lower_bound,
                    std::vector<std::string>& out) const;

  std::string root_;
  mutable std::once_flag loaded_;
  mutable Manifest manifest_;
  mutable std::string manifest_file_;
  mutable bool empty_ = false;
  mutable NodeRef root_node_{};
  mutable std::mutex mu_;  // guards the caches below
  mutable std::map<std::string, MappedFilePtr> files_;
  mutable std::map<std::pair<std::string, std::uint64_t>, std::shared_ptr<const BtreeNode>> nodes_;
};

}  // namespace ckb::ocdbt
