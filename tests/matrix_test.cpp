// Every fixture converted to every writable format and read back is exactly equal to the
// source (diff reports "equal" for every leaf). Where a format cannot hold something
// (non-tensor leaves in safetensors/npz, bfloat16 in npz), the writer must refuse with a
// MappingError naming it; the test then drops those leaves explicitly and checks the rest.
#include <set>

#include "core/errors.h"
#include "formats/format.h"
#include "test_util.h"
#include "io/file.h"
#include "recipe/diff.h"

namespace ckb {
namespace {

struct Source {
  const char* name;
  const char* path;
};

const Source kSources[] = {
    {"safetensors", "safetensors_single/model.safetensors"},
    {"torch_zip", "torch_zip/model.pt"},
    {"torch_legacy", "torch_legacy/model.pt"},
    {"torch_extras", "torch_with_extras/checkpoint.pt"},
    {"npz", "npz/arrays_compressed.npz"},
    {"msgpack", "flax_msgpack/params.msgpack"},
    {"orbax_ocdbt_zarr3", "orbax_ocdbt_zarr3/ckpt"},
    {"orbax_plain_zarr2", "orbax_plain_zarr2/ckpt"},
    {"openpi_train", "openpi_pi0_tiny_lora/train/checkpoints/100"},
};

// Removes leaves `keep` rejects (and containers left empty).
void prune(Node& n, const std::function<bool(const Node&)>& keep) {
  if (!n.is_container()) return;
  std::vector<Child> kept;
  for (auto& ch : n.container().children) {
    bool was_nonempty_container = ch.node->is_container() && !ch.node->container().children.empty();
    prune(*ch.node, keep);
    if (was_nonempty_container ? !ch.node->container().children.empty() : keep(*ch.node)) kept.push_back(std::move(ch));
  }
  n.container().children = std::move(kept);
  n.container().index.clear();
}

bool has_leaf(const Node& root, const std::function<bool(const Node&)>& pred) {
  bool found = false;
  visit_leaves(root, [&](const Path&, const Node& n) { found |= pred(n); });
  return found;
}

TEST(Matrix, EveryFixtureThroughEveryFormatIsExact) {
  const auto non_tensor = [](const Node& n) { return !n.is_tensor(); };
  const auto bf16 = [](const Node& n) { return n.is_tensor() && n.tensor().info.dtype == DType::BF16; };
  int checked = 0;
  for (const auto& src : kSources) {
    for (const char* fmt : {"safetensors", "torch", "npz", "msgpack", "orbax"}) {
      SCOPED_TRACE(std::string(src.name) + " -> " + fmt);
      Checkpoint ck = read_checkpoint(test::fixture(src.path));
      test::TempDir tmp;
      const std::string out = tmp / "out";
      const bool tensors_only = std::string(fmt) == "safetensors" || std::string(fmt) == "npz";
      const bool no_bf16 = std::string(fmt) == "npz";
      if ((tensors_only && has_leaf(ck.root, non_tensor)) || (no_bf16 && has_leaf(ck.root, bf16))) {
        EXPECT_THROW(write_checkpoint(ck, out, format_by_name(fmt)), MappingError);
        EXPECT_FALSE(path_exists(out));
        prune(ck.root, [&](const Node& n) { return !(tensors_only && !n.is_tensor()) && !(no_bf16 && bf16(n)); });
      }
      if (tensor_list(ck.root).empty()) continue;
      write_checkpoint(ck, out, format_by_name(fmt));
      Checkpoint back = read_checkpoint(out);
      EXPECT_EQ(back.format, fmt);
      auto d = diff_trees(ck.root, back.root, {});
      for (const auto& l : d.leaves) EXPECT_EQ(l.status, "equal") << l.name << " " << l.detail;
      EXPECT_GT(d.leaves.size(), 0u);
      ++checked;
    }
  }
  EXPECT_EQ(checked, 45);
}

}  // namespace
}  // namespace ckb
